"""Invite links (`https://t.me/<bot>?start=<code>`) and their QR codes (segno: pure Python, no
imaging library needed)."""

from __future__ import annotations

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


def write_qr(link: str, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    segno.make(link, error="m").save(path, scale=8, border=4)
    return path
