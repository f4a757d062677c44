"""Who is writing: an enrolled participant, a staff member, or a stranger.

Participant handlers are wrapped in `participant_only`, so a handler only ever runs for the
participant linked to the chat the update came from: callback data is never trusted to say who
someone is. Strangers get one polite sentence and nothing about them is kept except a count.
A staff member whose access has ended (study/staff.py `deactivate`) can do nothing: whatever
they send or tap is answered with `staff_access_ended`, and each attempt is on the record.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from telegram import Update

from bot import exactly_once
from bot.replies import alert, render, replying_to, show
from bot.runtime import TrialbotContext
from bot.services import services
from messages.sent import Recipient
from study import audit, participants, processed_updates, roles, staff, strangers
from study.audit import Actor
from study.models import Participant, StaffMember, StrangerEvent

ParticipantHandler = Callable[[Update, TrialbotContext, Participant], Awaitable[None]]
# What a handler reads beside who is writing (`participant_only(reading=...)`): the session, the
# participant, the moment the update is handled at.
Reading = Callable[[AsyncSession, Participant, datetime], Awaitable[Any]]


def stranger_language(update: Update, context: TrialbotContext) -> str:
    offered = services(context).protocol.study.languages
    code = (update.effective_user.language_code or "")[:2] if update.effective_user else ""
    return code if code in offered else offered[0]


async def reply_to_stranger(update: Update, context: TrialbotContext) -> None:
    svc = services(context)
    if not svc.recent_strangers.first_time(update.update_id):
        return  # the same update delivered again: counted and answered already
    async with svc.db.transaction() as session:
        await strangers.count(session, StrangerEvent.MESSAGE, svc.clock.now().date())
    await show(update, context, render(context, "stranger", stranger_language(update, context)))


def participant_only(handler: Callable[..., Awaitable[None]] | None = None, *, others_hear_nothing: bool = False,
                     reading: Reading | None = None) -> Any:
    """`others_hear_nothing`: for updates that need no answer from anyone else (a message
    edited by staff or a stranger is not answered at all). `reading`: what the handler shows,
    read in the same transaction as who is writing (one transaction fewer, one snapshot); the
    handler is called with what it returned after the participant."""
    if handler is None:
        return functools.partial(participant_only, others_hear_nothing=others_hear_nothing, reading=reading)

    @functools.wraps(handler)
    async def wrapper(update: Update, context: TrialbotContext) -> None:
        chat, user = update.effective_chat, update.effective_user
        if chat is None or user is None or chat.type != "private":
            return  # the bot lives in private chats only; group traffic is ignored
        svc = services(context)
        key = exactly_once.key_of(update, context)
        now = svc.clock.now()
        read: tuple[Any, ...] = ()  # what `reading` read, if it did: the handler's last argument
        async with svc.db.read() as session:
            participant, seen = await processed_updates.find_beside(
                session, participants.BY_CHAT, {"chat_id": chat.id}, key, now=now)
            member = await staff.by_telegram_id(session, user.id) if participant is None else None
            if reading is not None and seen is None and _served(participant, user.id):
                read = (await reading(session, participant, now),)  # type: ignore[arg-type]  # served: not None
        if participant is None or participant.telegram_user_id != user.id:
            if others_hear_nothing:
                return
            if member is not None and not member.active:
                await access_ended(update, context, member)
            elif member is not None and member.active:
                await show(update, context, render(context, "staff_not_participant", member.language))
            else:
                await reply_to_stranger(update, context)
            return
        if participant.unreachable_since is not None and seen is None:
            async with svc.db.transaction() as session:
                (await session.merge(participant)).unreachable_since = None  # they wrote: reachable again
        with replying_to(Recipient.participant(participant.id)):
            if participant.status not in participants.SERVED_STATUSES:
                await show(update, context, render(context, "not_active", participant.language))
                return
            key = exactly_once.key_of(update, context, participant_id=participant.id)
            await exactly_once.once(update, context, key, seen, lambda: handler(update, context, participant, *read))

    return wrapper


def _served(participant: Participant | None, user_id: int) -> bool:
    return (participant is not None and participant.telegram_user_id == user_id
            and participant.status in participants.SERVED_STATUSES)


StaffHandler = Callable[[Update, TrialbotContext, StaffMember], Awaitable[None]]


def staff_only(handler: StaffHandler) -> Callable[[Update, TrialbotContext], Coroutine[Any, Any, None]]:
    """For the study team's commands and buttons: anyone else is answered as if the command did
    not exist (participants get their usual help, strangers the one polite sentence)."""

    @functools.wraps(handler)
    async def wrapper(update: Update, context: TrialbotContext) -> None:
        chat, user = update.effective_chat, update.effective_user
        if chat is None or user is None or chat.type != "private":
            return
        svc = services(context)
        key = exactly_once.key_of(update, context)
        async with svc.db.read() as session:
            member, seen = await processed_updates.find_beside(
                session, staff.BY_TELEGRAM_ID, {"user_id": user.id}, key, now=svc.clock.now())
            participant = await participants.by_chat(session, chat.id) if member is None else None
        if member is not None and member.active:
            with replying_to(Recipient.staff(member.id)):
                key = exactly_once.key_of(update, context, staff_id=member.id)
                await exactly_once.once(update, context, key, seen, lambda: handler(update, context, member))
        elif member is not None:
            await access_ended(update, context, member, seen)
        elif participant is not None and participant.status in participants.SERVED_STATUSES:
            await show(update, context, render(context, "unknown_input", participant.language))
        else:
            await reply_to_stranger(update, context)

    return wrapper


async def access_ended(update: Update, context: TrialbotContext, member: StaffMember, seen=None) -> None:
    """A deactivated staff member sent or tapped something: nothing is done; they are told, kindly,
    and the attempt is recorded (once, however often the update is delivered)."""
    svc = services(context)
    key = exactly_once.key_of(update, context, staff_id=member.id)
    if seen is None:
        async with svc.db.read() as session:
            seen = await exactly_once.seen_before(session, key, context)

    async def refuse() -> None:
        async with exactly_once.effects(update, context) as fx:
            await audit.record(fx.session, actor=Actor.staff(member.id), action="refused", entity="staff_command",
                               entity_id=_what(update), now=svc.clock.now(), new={"active": False},
                               reason="the staff member's access has ended")
            fx.reply = render(context, "staff_access_ended", member.language)
        # A tap is answered on the tap (the message it was on stays as it was), else in the chat.
        if not await alert(update, context, fx.reply):
            await show(update, context, fx.reply)

    with replying_to(Recipient.staff(member.id)):
        await exactly_once.once(update, context, key, seen, refuse)


def _what(update: Update) -> str:
    """What a refused update asked for, without what it said: a command's name, "button", "message"."""
    message = update.effective_message
    if update.callback_query is not None:
        return "button"
    text = (message.text or "") if message is not None else ""
    if text.startswith("/"):
        return text.split()[0][1:].split("@")[0][:32] or "message"
    return "message"


def staff_command(permission: str, what: str | None = None):
    """`staff_only`, and the member's role must allow `permission` (study/roles.py). A refusal is
    answered with the approved `staff_not_allowed` text and recorded in the audit trail."""

    def decorate(handler: StaffHandler) -> Callable[[Update, TrialbotContext], Coroutine[Any, Any, None]]:
        name = what or handler.__name__

        @staff_only
        @functools.wraps(handler)
        async def wrapper(update: Update, context: TrialbotContext, member: StaffMember) -> None:
            if not roles.allowed(member, permission):
                await refuse_role(update, context, member, what=name, permission=permission)
                return
            await handler(update, context, member)

        return wrapper

    return decorate


async def refuse_role(update: Update, context: TrialbotContext, member: StaffMember, *, what: str,
                      permission: str) -> None:
    """Answer with the approved `staff_not_allowed` text and record the refusal in the audit trail
    (for a staff command whose role check depends on what was asked: `/visits P001 move ...`)."""
    async with exactly_once.effects(update, context) as fx:
        await roles.record_refusal(fx.session, member, what=what, permission=permission,
                                   now=services(context).clock.now())
        fx.reply = render(context, "staff_not_allowed", member.language, {"role": member.role})
    await show(update, context, fx.reply)
