"""Invite links (`https://t.me/<bot>?start=<code>`) and their QR codes (segno: pure Python, no
imaging library needed)."""

from __future__ import annotations

import io
from pathlib import Path

import segno

from bot.settings import Settings


async def bot_username(settings: Settings) -> str | None:
    if settings.telegram_bot_username:
        return settings.telegram_bot_username.lstrip("@")
    if not settings.token:
        return None
    from telegram import Bot

    async with Bot(settings.token, base_url=settings.bot_base_url()) as bot:
        return bot.username


def invite_link(username: str, code: str) -> str:
    return f"https://t.me/{username}?start={code}"


def qr_png(link: str) -> bytes:
    """The link's QR code as a PNG (8 pixels a module, the standard 4-module quiet zone): what
    `trialbot enroll` writes to a file and `/enroll` sends as a photo."""
    out = io.BytesIO()
    segno.make(link, error="m").save(out, kind="png", scale=8, border=4)
    return out.getvalue()


def write_qr(link: str, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(qr_png(link))
    return path
