"""The last line: an unexpected error is logged without what the person wrote, and the person
gets a kind message instead of silence or a stack trace."""

from __future__ import annotations

import logging
import traceback

from telegram import Update
from telegram.error import NetworkError, RetryAfter, TelegramError

from bot.access import stranger_language
from bot.replies import alert, render, send_new
from bot.runtime import TrialbotContext
from study.database import is_unavailable, outage_cause

log = logging.getLogger(__name__)


async def on_error(update: object, context: TrialbotContext) -> None:
    error = context.error
    update_id = update.update_id if isinstance(update, Update) else None
    what = f"update {update_id}" if update_id is not None else f"job {getattr(context.job, 'name', None)}"
    if error is not None and is_unavailable(error):
        # Expected while the database is away (logged once by study/database.py): one line each,
        # no traceback, so the log shows the outage rather than drowning in it.
        log.warning("%s not handled: the database is unavailable (%s)", what, outage_cause(error))
    elif isinstance(error, (NetworkError, RetryAfter)):
        # Telegram slow, failing or flood-limiting (TimedOut is a NetworkError): its weather, not
        # a bug here, so one line; whatever was stored before the reply failed stays stored.
        log.warning("%s: Telegram did not take the reply (%s)", what, type(error).__name__)
    else:
        # The traceback's frames, not the exception's message: messages can quote what was written.
        frames = "".join(traceback.format_tb(error.__traceback__)) if error else ""
        log.error("%s failed with %s\n%s", what, type(error).__name__, frames)
    if not isinstance(update, Update) or update.effective_chat is None:
        return
    rendered = render(context, "error_generic", stranger_language(update, context))
    try:
        # A pressed button gets the apology as its answer, never as an edit of its message: that
        # message may already say "Saved" (only Telegram's answer to the edit was lost), and its
        # buttons are how the participant tries again, with the same idempotency key.
        if not await alert(update, context, rendered, answers_update=False):
            await send_new(update, context, rendered, answers_update=False)
    except TelegramError as exc:
        log.warning("could not tell update %s about the error: %s", update_id, type(exc).__name__)
