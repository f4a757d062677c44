"""Turning rendered templates into Telegram messages: send, or edit the message a button was on."""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

from telegram import Message, Update
from telegram.error import BadRequest
from telegram.ext import CallbackContext

from bot.services import services
from messages.markup import inline_keyboard as keyboard
from messages.renderer import Button, RenderedMessage

log = logging.getLogger(__name__)


def render(
    context: CallbackContext,
    template_id: str,
    language: str,
    variables: Mapping[str, Any] | None = None,
    buttons: Sequence[Sequence[Button]] = (),
) -> RenderedMessage:
    svc = services(context)
    return svc.messages.render(template_id, language, {**svc.study_variables(), **(variables or {})}, buttons)


async def send(context: CallbackContext, chat_id: int, rendered: RenderedMessage, **kwargs: Any) -> Message:
    return await context.bot.send_message(chat_id, rendered.text, reply_markup=keyboard(rendered), **kwargs)


async def show(update: Update, context: CallbackContext, rendered: RenderedMessage) -> None:
    """Answer the user: edit the message whose button they pressed, or send a new message.

    A pressed button is answered (its spinner stopped) only after the edit, so the answer also
    tells the client, and the tests, that everything the press caused is done.
    """
    query = update.callback_query
    if query is not None and query.message is not None:
        if not _already_shown(query.message, rendered):  # a repeated tap: the message already says this
            try:
                await query.edit_message_text(rendered.text, reply_markup=keyboard(rendered))
            except BadRequest as exc:
                # Two taps in flight at once can both try the same edit; Telegram refuses the second.
                if "not modified" not in str(exc).lower():
                    raise
        await answer_button(update)
        return
    if update.effective_chat is not None:
        await send(context, update.effective_chat.id, rendered)
        await answer_button(update)


_TAG = re.compile(r"<[^>]+>")


def _already_shown(message: object, rendered: RenderedMessage) -> bool:
    """Would editing `message` to `rendered` change nothing? Telegram refuses such edits."""
    shown_text = getattr(message, "text", None)
    if shown_text is None:
        return False
    plain = html.unescape(_TAG.sub("", rendered.text)).strip()
    return shown_text == plain and getattr(message, "reply_markup", None) == keyboard(rendered)


async def answer_button(update: Update, text: str | None = None) -> None:
    """Stop the spinner on a pressed button. A query too old to answer is not worth failing for."""
    if update.callback_query is None:
        return
    try:
        await update.callback_query.answer(text)
    except BadRequest as exc:
        log.info("callback query not answered: %s", exc)
