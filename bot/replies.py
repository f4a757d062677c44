"""Turning rendered templates into Telegram messages: send, or edit the message a button was on."""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import select
from telegram import CallbackQuery, Message, Update
from telegram.error import BadRequest, TelegramError

from bot import callback_data as cb
from bot import exactly_once
from bot.runtime import TrialbotContext
from bot.services import services
from messages import sent
from messages.markup import inline_keyboard as keyboard
from messages.renderer import Button, RenderedMessage
from study import processed_updates
from study.database import is_unavailable
from study.invites import hash_code
from study.models import Invite, Participant, StaffMember

log = logging.getLogger(__name__)
MAX_ALERT_CHARACTERS = 200  # Telegram's limit for a callback query's answer


def render(
    context: TrialbotContext,
    template_id: str,
    language: str,
    variables: Mapping[str, Any] | None = None,
    buttons: Sequence[Sequence[Button]] = (),
) -> RenderedMessage:
    svc = services(context)
    return svc.messages.render(template_id, language, {**svc.study_variables(), **(variables or {})}, buttons)


async def send(context: TrialbotContext, chat_id: int, rendered: RenderedMessage, **kwargs: Any) -> Message:
    return await context.bot.send_message(chat_id, rendered.text, reply_markup=keyboard(rendered), **kwargs)


# Who the update being handled comes from, once `bot.access` has established it: the record of
# each reply then needs no look-up of its own.
_known_recipient: ContextVar[sent.Recipient | None] = ContextVar("known_recipient", default=None)


@contextmanager
def replying_to(recipient: sent.Recipient) -> Iterator[None]:
    token = _known_recipient.set(recipient)
    try:
        yield
    finally:
        _known_recipient.reset(token)


# The reply whose edit was recorded in its effects' transaction (bot/exactly_once.py `effects`):
# `show` makes the edit and writes no record of its own.
_recorded_edit: ContextVar[RenderedMessage | None] = ContextVar("recorded_edit", default=None)


async def record_edit(session, update: Update, rendered: RenderedMessage, *, now) -> int | None:
    """In the transaction of a press's effects: the record of the edit `show` will make of the
    pressed message, written before the edit (its message id is known: the pressed message's).
    Returns that message id; None when `show` will not edit (no message, already shown, the
    recipient not known), and `show` records as usual after sending."""
    query = update.callback_query
    recipient = _known_recipient.get()
    if query is None or query.message is None or recipient is None or _already_shown(query.message, rendered):
        return None
    await sent.insert(session, rendered, recipient=recipient, via="edit", telegram_message_id=query.message.message_id,
                      now=now)
    _recorded_edit.set(rendered)
    return query.message.message_id


async def _record(update: Update, context: TrialbotContext, rendered: RenderedMessage, *, via: str,
                  message_id: int | None, answers_update: bool = True) -> None:
    """Write down what was just sent, and to whom (see messages/sent.py), and that the update
    was answered (bot/exactly_once.py): delivered again, it is not answered again.
    `answers_update=False` for the apology after a failure, which answers nothing."""
    svc = services(context)
    try:
        async with svc.db.transaction() as session:  # one short transaction: (who, then) one insert
            recipient = _known_recipient.get() or await _recipient(session, update, rendered)
            await sent.insert(session, rendered, recipient=recipient, via=via, telegram_message_id=message_id,
                              now=svc.clock.now())
            key = exactly_once.current()
            if answers_update and key is not None and recipient.kind != "stranger":
                await processed_updates.answered(
                    session, replace(key, participant_id=recipient.participant_id, staff_id=recipient.staff_id),
                    exactly_once.answer_of(rendered), now=svc.clock.now(), claimed=exactly_once.claimed())
    except Exception as error:  # the message is out already; a lost record is logged loudly
        if not is_unavailable(error):
            log.exception("could not record sent message %s (%s, via %s)", rendered.template_id, rendered.language, via)
        else:  # the outage itself is logged once by the database; no traceback per message
            log.warning("could not record sent message %s (%s, via %s): the database is unavailable",
                        rendered.template_id, rendered.language, via)


async def _recipient(session, update: Update, rendered: RenderedMessage) -> sent.Recipient:
    """The participant linked to the chat; before they joined, the participant whose invite the
    consent buttons carry; else the staff member; else a stranger, of whom nothing is kept."""
    chat, user = update.effective_chat, update.effective_user
    if chat is not None:
        found = await session.scalar(select(Participant.id).where(Participant.telegram_chat_id == chat.id))
        if found is not None:
            return sent.Recipient.participant(found)
    code = _consent_code(update, rendered)
    if code is not None:
        found = await session.scalar(select(Invite.participant_id).where(Invite.code_hash == hash_code(code)))
        if found is not None:
            return sent.Recipient.participant(found)
    if user is not None:
        found = await session.scalar(select(StaffMember.id).where(StaffMember.telegram_user_id == user.id))
        if found is not None:
            return sent.Recipient.staff(found)
    return sent.STRANGER


def _consent_code(update: Update, rendered: RenderedMessage) -> str | None:
    datas = [b.data for row in rendered.buttons for b in row]
    if update.callback_query is not None and update.callback_query.data:
        datas.append(update.callback_query.data)
    for data in datas:
        for prefix in (cb.CONSENT_AGREE, cb.CONSENT_DECLINE):
            if data.startswith(prefix):
                return data[len(prefix):]
    return None


async def show(update: Update, context: TrialbotContext, rendered: RenderedMessage, *, answer: bool = True,
               recorded: bool = False) -> None:
    """Answer the user: edit the message whose button they pressed, or send a new message.

    A pressed button is answered (its spinner stopped) only after the edit, so the answer also
    tells the client, and the tests, that everything the press caused is done. `recorded`: the
    edit's record is written already (a second delivery of a press whose effects recorded it).
    """
    query = update.callback_query
    if query is not None and query.message is not None:
        recorded = recorded or _recorded_edit.get() is rendered
        if recorded or not _already_shown(query.message, rendered):  # a repeated tap: the message says this
            try:
                await query.edit_message_text(rendered.text, reply_markup=keyboard(rendered))
            except BadRequest as exc:
                # Two taps in flight at once can both try the same edit; Telegram refuses the second.
                if "not modified" not in str(exc).lower():
                    if recorded:
                        log.warning("the edit recorded for %s (%s) was refused by Telegram (%s)",
                                    rendered.template_id, rendered.language, type(exc).__name__)
                    raise
            else:
                if not recorded:
                    await _record(update, context, rendered, via="edit", message_id=query.message.message_id)
            if recorded:
                services(context).edits_made.first_time(update.update_id)
        if answer:  # a caller with more to do answers the button itself, when it is done
            await answer_button(update)
        return
    if update.effective_chat is not None:
        message = await send(context, update.effective_chat.id, rendered)
        await _record(update, context, rendered, via="reply", message_id=message.message_id)
        await answer_button(update)


async def send_new(update: Update, context: TrialbotContext, rendered: RenderedMessage, *,
                   answers_update: bool = True) -> None:
    """A further message in the same chat (a preview, a listing), even when a button was pressed."""
    if update.effective_chat is not None:
        message = await send(context, update.effective_chat.id, rendered)
        await _record(update, context, rendered, via="reply", message_id=message.message_id,
                      answers_update=answers_update)


_TAG = re.compile(r"<[^>]+>")


def _already_shown(message: object, rendered: RenderedMessage) -> bool:
    """Would editing `message` to `rendered` change nothing? Telegram refuses such edits."""
    shown_text = getattr(message, "text", None)
    if shown_text is None:
        return False
    plain = html.unescape(_TAG.sub("", rendered.text)).strip()
    return shown_text == plain and getattr(message, "reply_markup", None) == keyboard(rendered)


@dataclass
class WebhookReply:
    """The one Bot API method the acknowledgement of a webhook POST may carry (bot/webhook.py):
    the pressed button's answer, given when the handler is done instead of by a call of its own."""

    update: Update
    method: str | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def put_answer(self, query: CallbackQuery, text: str | None, *, show_alert: bool = False) -> bool | None:
        """True: the answer goes with the acknowledgement. False: the button was answered already
        (as Telegram would refuse a second answer). None: it cannot go here (another query)."""
        if self.update.callback_query is None or self.update.callback_query.id != query.id:
            return None
        if self.method is not None:
            return False
        self.method = "answerCallbackQuery"
        self.params = {"callback_query_id": query.id, "text": text, "show_alert": show_alert or None}
        return True


_webhook_reply: ContextVar[WebhookReply | None] = ContextVar("webhook_reply", default=None)


@contextmanager
def webhook_reply(update: Update) -> Iterator[WebhookReply]:
    """While `update` is handled, a button's answer is kept for the webhook's acknowledgement."""
    reply = WebhookReply(update)
    token = _webhook_reply.set(reply)
    try:
        yield reply
    finally:
        _webhook_reply.reset(token)


def _answer_in_webhook_reply(query: CallbackQuery, text: str | None, *, show_alert: bool = False) -> bool | None:
    reply = _webhook_reply.get()
    return None if reply is None else reply.put_answer(query, text, show_alert=show_alert)


async def answer_button(update: Update, text: str | None = None) -> None:
    """Stop the spinner on a pressed button. A query too old to answer, or an answer lost on the
    way, is not worth failing for: what the press did is done and shown already."""
    if update.callback_query is None:
        return
    placed = _answer_in_webhook_reply(update.callback_query, text)
    if placed is not None:
        if not placed:
            log.info("callback query not answered: answered already")
        return
    try:
        await update.callback_query.answer(text)
    except TelegramError as exc:
        log.info("callback query not answered: %s", type(exc).__name__)


async def alert(update: Update, context: TrialbotContext, rendered: RenderedMessage, *,
                answers_update: bool = True) -> bool:
    """Show `rendered` as the pressed button's answer (an alert to dismiss), leaving the message
    and its buttons as they are. False when that cannot be done (no button pressed, a text too
    long for an alert, the button answered already or too old): the caller sends a message."""
    query = update.callback_query
    plain = html.unescape(_TAG.sub("", rendered.text)).strip()
    if query is None or len(plain) > MAX_ALERT_CHARACTERS:
        return False
    placed = _answer_in_webhook_reply(query, plain, show_alert=True)
    if placed is False:
        return False
    if placed is None:
        try:
            await query.answer(plain, show_alert=True)
        except BadRequest:
            return False
    await _record(update, context, rendered, via="alert", message_id=None, answers_update=answers_update)
    return True
