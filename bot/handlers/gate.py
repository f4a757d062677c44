"""What never reaches a handler: updates of a kind the bot does not handle, and buttons pressed
on a message of another chat.

Runs before every handler (bot/app.py registers it in group -2, ahead of group -1's typed answers). Telegram sends the kinds
`ALLOWED_UPDATES` names, but nothing here relies on that: a business message, a channel post or
an edit of either is not a participant writing to the bot, and PTB would otherwise route it by
its `effective_message` like a new message (an edited business message saying "/undo" would
undo). A pressed button names its message, and that message's chat is the one a handler would
answer in and edit: a press whose message is in another chat than the presser's (a forged
callback) changes neither chat; the spinner is stopped, nothing more.
"""

from __future__ import annotations

import logging

from telegram import Update
from telegram.ext import ApplicationHandlerStop

from bot.replies import answer_button
from bot.runtime import TrialbotContext

log = logging.getLogger(__name__)


def _handled_kind(update: Update) -> bool:
    return update.message is not None or update.edited_message is not None or update.callback_query is not None


def _pressed_elsewhere(update: Update) -> bool:
    """A private chat's id is its user's id: a press on a message of any other chat is forged
    (or in a group, where the bot does not live)."""
    query = update.callback_query
    return query is not None and query.message is not None and query.message.chat.id != query.from_user.id


async def screen(update: object, context: TrialbotContext) -> None:
    if not isinstance(update, Update):
        return
    if not _handled_kind(update):
        log.info("update %s is of a kind the bot does not handle; ignored", update.update_id)
        raise ApplicationHandlerStop
    if _pressed_elsewhere(update):
        log.info("update %s: a button pressed on another chat's message; nothing done", update.update_id)
        await answer_button(update)
        raise ApplicationHandlerStop
