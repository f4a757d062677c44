"""A message's text or caption as the Bot API takes it: its parse_mode applied (Telegram's HTML rules
live in messages/telegram_html.py, shared with the IRB lint) and Telegram's length limits, with the
errors Telegram answers."""

from __future__ import annotations

from typing import Any

from messages.telegram_html import MAX_CAPTION_LENGTH, MAX_TEXT_LENGTH, TelegramHtmlError, parse_html, utf16_len
from sandbox.errors import bad_request

__all__ = ["MAX_CAPTION_LENGTH", "MAX_TEXT_LENGTH", "render_text", "utf16_len"]


def render_text(
    text: str, parse_mode: str | None, *, limit: int, too_long: str, empty: str | None
) -> tuple[str, list[dict[str, Any]] | None]:
    """Apply a message's parse_mode and Telegram's length limit to its text or caption.

    Returns (plain text, entities or None when no parse mode). `empty` is the error detail
    for text that is empty after parsing, or None when empty is allowed (captions).
    """
    mode = (parse_mode or "").strip()
    if not mode:
        plain, entities = text, None
    elif mode.lower() == "html":
        try:
            plain, entities = parse_html(text)
        except TelegramHtmlError as exc:
            raise bad_request(str(exc)) from None
    elif mode.lower() in ("markdown", "markdownv2"):
        raise bad_request(
            f"parse_mode {mode} is not supported by the sandbox (the product uses HTML only)"
        )
    else:
        raise bad_request(f"unsupported parse_mode {mode}")
    if empty is not None and not plain.strip():
        raise bad_request(empty)
    if utf16_len(plain) > limit:
        raise bad_request(too_long)
    return plain, entities
