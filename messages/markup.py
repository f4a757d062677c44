"""A rendered message's buttons as Telegram's inline keyboard (shared by replies and the outbox)."""

from __future__ import annotations

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from messages.renderer import RenderedMessage


def inline_keyboard(rendered: RenderedMessage) -> InlineKeyboardMarkup | None:
    if not rendered.buttons:
        return None
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(b.label, callback_data=b.data) for b in row] for row in rendered.buttons]
    )
