"""Exactly-once effects for at-least-once updates.

Telegram delivers an update again whenever it is not sure the bot took it: a webhook whose 200
was lost or came too late, polling after a `kill -9`, a second process handed the same update. So:

- `participant_only` / `staff_only` (bot/access.py) look the update up in the ledger
  (study/processed_updates.py) in the read they already make; one handled before is answered
  again from the ledger (`replay`) and its handler does not run.
- A handler that changes anything does it inside `effects(update, context)`: its transaction
  first claims the update, and keeps the reply the handler sets (`fx.reply`), so the effects,
  the claim and the answer commit together. Two deliveries racing each other meet at the claim.
- A button that acts once per message (Save, a red flag in /urgent) claims its action too: a
  second tap that left the phone before the first tap's answer arrived gets the first tap's
  answer, so the safety instructions stay on screen.
- A reply that went out is noted in the ledger with the record of what was sent (bot/replies.py),
  which also writes down updates that changed nothing: a second delivery is not answered twice.
- A handler whose reply edits the pressed message (`effects(..., edits=True)`: a diary tap) has
  the record of that edit written in its effects' transaction, with the update noted answered:
  the message id is the pressed message's, so nothing in the record waits for Telegram. A second
  delivery of such an update records nothing more; the process that made the edit does nothing
  else, any other (the first one died before the edit, or a second process got this copy) makes
  the edit (Telegram finds it made, or makes it now): one record, never lost, never twice.

Strangers are never written down (they are counted, nothing more): their repeated updates are
recognised in memory only (study/strangers.py `RecentUpdates`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from telegram import Update

from bot.runtime import TrialbotContext
from bot.services import services
from messages.renderer import RenderedButton, RenderedMessage
from study import processed_updates
from study.processed_updates import AlreadyHandled, Handled, UpdateKey

log = logging.getLogger(__name__)

# The update being handled, once bot/access.py knows who sent it; and whether a transaction of
# this handling claimed it already (a handler with two effect transactions claims once).
_current: ContextVar[UpdateKey | None] = ContextVar("current_update", default=None)
_claimed: ContextVar[bool] = ContextVar("update_claimed", default=False)


def key_of(update: Update, context: TrialbotContext, *, participant_id: int | None = None,
           staff_id: int | None = None) -> UpdateKey:
    query = update.callback_query
    return UpdateKey(bot_id=context.bot.id, update_id=update.update_id,
                     callback_query_id=query.id if query is not None else None,
                     participant_id=participant_id, staff_id=staff_id)


def current() -> UpdateKey | None:
    return _current.get()


@contextmanager
def handling(key: UpdateKey) -> Iterator[None]:
    token, claimed = _current.set(key), _claimed.set(False)
    try:
        yield
    finally:
        _claimed.reset(claimed)
        _current.reset(token)


async def seen_before(session: AsyncSession, key: UpdateKey, context: TrialbotContext) -> Handled | None:
    """In the caller's read: was this update handled before?"""
    return await processed_updates.find(session, key, now=services(context).clock.now())


async def once(update: Update, context: TrialbotContext, key: UpdateKey, seen: Handled | None,
               handler: Callable[[], Awaitable[None]]) -> None:
    """Run `handler` for an update not seen before; answer one seen before from the ledger."""
    with handling(key):
        try:
            if seen is not None:
                await replay(update, context, seen)
                return
            try:
                await handler()
            except AlreadyHandled as handled:
                await replay(update, context, handled.row)
        finally:
            log.debug("update %s handled", update.update_id)  # the replay drill waits for this line


@dataclass
class Effects:
    """What a handler's transaction needs: the session, and where to put the reply it will give."""

    session: AsyncSession
    reply: RenderedMessage | None = None
    # A further message after the reply (the check-in's question again, after safety advice).
    follow_up: RenderedMessage | None = None
    claim_id: int | None = None  # this update's row in the ledger


def claimed() -> bool:
    """Did a committed transaction of this handling claim the update?"""
    return _claimed.get()


@asynccontextmanager
async def effects(update: Update, context: TrialbotContext, *, once_per_message: bool = False,
                  claim: bool = True, edits: bool = False) -> AsyncIterator[Effects]:
    """The transaction of an update's effects: claims the update first (raising AlreadyHandled
    if it was handled before), commits its effects, the claim and `fx.reply` together.

    `once_per_message`: this button acts once on the message it is on (the press's callback data
    and that message make its action key). `claim=False` when the caller claims later in the
    transaction, once it knows who is writing (`claim_now`). `edits`: the caller shows `fx.reply`
    with `show` right after, which edits the pressed message: the record of that edit (and that
    the update was answered) is written here, so the press costs no transaction after the edit."""
    svc = services(context)
    key = _current.get()
    if key is not None and once_per_message:
        key = replace(key, action_key=action_key(update))
    async with svc.db.transaction() as session:
        fx = Effects(session)
        if key is not None and claim and not _claimed.get():
            fx.claim_id = await processed_updates.claim(session, key, now=svc.clock.now())
        yield fx
        if fx.claim_id is not None and fx.reply is not None:
            from bot.replies import record_edit  # bot.replies records answers through this module

            now = svc.clock.now()
            edited = await record_edit(session, update, fx.reply, now=now) if edits else None
            answer = answer_of(fx.reply) if edited is None else {**answer_of(fx.reply), "edited": edited}
            await processed_updates.keep_answer(session, fx.claim_id, answer,
                                                answered_at=now if edited is not None else None)
    if fx.claim_id is not None:
        _claimed.set(True)  # committed


async def claim_now(update: Update, context: TrialbotContext, fx: Effects, *, participant_id: int) -> None:
    """Claim the update inside `effects(..., claim=False)`, now that the participant is known
    (joining the study: until the invite is checked, the chat is a stranger's)."""
    key = replace(key_of(update, context), participant_id=participant_id)
    _current.set(key)  # the reply's record notes the update as answered (see bot/replies.py)
    fx.claim_id = await processed_updates.claim(fx.session, key, now=services(context).clock.now())


def action_key(update: Update) -> str | None:
    query = update.callback_query
    if query is None or query.message is None:
        return None
    return f"press:{query.message.chat.id}:{query.message.message_id}:{query.data}"[:160]


def answer_of(rendered: RenderedMessage) -> dict[str, Any]:
    return {"template_id": rendered.template_id, "language": rendered.language, "text": rendered.text,
            "buttons": [[[b.label, b.data] for b in row] for row in rendered.buttons],
            "template_hash": rendered.template_hash, "draft": rendered.draft}


def rendered_from(answer: dict[str, Any]) -> RenderedMessage:
    buttons = tuple(tuple(RenderedButton(label, data) for label, data in row) for row in answer["buttons"])
    return RenderedMessage(answer["template_id"], answer["language"], answer["text"], buttons,
                           answer["template_hash"], answer["draft"])


async def replay(update: Update, context: TrialbotContext, row: Handled) -> None:
    """Answer an update whose effects happened before: as it was answered the first time. A
    redelivered update already answered gets nothing more; a second tap gets the first tap's
    answer on its message (usually already shown, so only the button's spinner stops)."""
    from bot.replies import (  # replies records answers through this module
        answer_button,
        show,
    )

    key = _current.get()
    same_update = key is not None and (row.bot_id, row.update_id) == (key.bot_id, key.update_id)
    edited = (row.answer or {}).get("edited")
    if same_update and row.answered_at is not None and edited is not None \
            and services(context).edits_made.first_time(update.update_id):
        # Its edit was recorded with its effects, before it was made, and not made by this process
        # (it died before, or another process took the first copy): make it, record nothing.
        log.info("update %s delivered again: its recorded edit is made (recorded once, before)", update.update_id)
        await show(update, context, rendered_from(row.answer), recorded=True)  # type: ignore[arg-type]
        return
    if same_update and row.answered_at is not None:
        log.info("update %s delivered again: handled and answered before, nothing done", update.update_id)
        return
    if not same_update and row.answered_at is not None:
        # A second tap: the first tap's answer is on the message already; only the spinner stops.
        log.info("update %s: a second tap on a button that acts once; its answer stands", update.update_id)
        await answer_button(update)
        return
    log.info("update %s: %s handled before; answering as then", update.update_id,
             "it was" if same_update else "its action was")
    if row.answer is None:
        await answer_button(update)
        return
    rendered = rendered_from(row.answer)
    svc = services(context)
    if not rendered.draft and not svc.messages.still_approved(rendered.template_id, rendered.language,
                                                              rendered.template_hash):
        # The text was approved when it was first sent; it is not any more, so it is not sent again.
        log.warning("update %s: the earlier answer (%s) is no longer approved text; not repeated",
                    update.update_id, rendered.template_id)
        await answer_button(update)
        return
    await show(update, context, rendered)
