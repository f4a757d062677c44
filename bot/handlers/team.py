"""/staff: the investigator manages the study team from Telegram.

`/staff` lists the team, each active member a button; a member's card offers another role or
the end of their access. Someone is added by forwarding their shared contact card here (it
carries their Telegram user id) or with `/staff add TELEGRAM_ID Name`, then a role is picked.
Typed: `/staff role NUMBER ROLE`, `/staff deactivate NUMBER reason`. Every change is first a
proposal (study/staff.py `propose`, a `staff_changes` row) shown with Confirm / Cancel, made and
audited (old and new values) only at Confirm, once however often Confirm is tapped.

Who may: the investigator (study/roles.py MANAGE_STAFF); while the team has no active
investigator, a coordinator (SET_UP_TEAM), as at the server (`trialbot staff`). Anyone else is
refused with the approved text, on the record.

Buttons: s:l (the list), s:m:<member> (a card), s:r:<member>:<c|i|m> (propose a role),
s:d:<member> (propose ending access), s:a:<change>:<c|i|m> (the role of an addition),
s:y:<change>[:<c|i|m>] (Confirm), s:n:<change> (Cancel).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any

from telegram import Update

from bot import callback_data as cb
from bot.access import StaffHandler, refuse_role, staff_only
from bot.exactly_once import effects
from bot.handlers import diary
from bot.replies import render, show
from bot.runtime import TrialbotContext
from bot.services import services
from messages.renderer import Button, RenderedMessage
from study import roles, staff
from study.models import StaffChange, StaffChangeKind, StaffChangeState, StaffMember
from study.staff import StaffError

ROLE_CODES = {"c": "coordinator", "i": "investigator", "m": "monitor"}
CODES = {role: code for code, role in ROLE_CODES.items()}
LISTED = 20  # members listed (and buttons) in one message (Telegram's 4,096 characters)


def staff_manager(handler: StaffHandler) -> Callable[[Update, TrialbotContext], Coroutine[Any, Any, None]]:
    """`staff_only`, and the member may change the team now (study/staff.py managing_permission)."""

    @staff_only
    @functools.wraps(handler)
    async def wrapper(update: Update, context: TrialbotContext, member: StaffMember) -> None:
        async with services(context).db.read() as session:
            permission = await staff.managing_permission(session)
        if not roles.allowed(member, permission):
            await refuse_role(update, context, member, what="staff", permission=permission)
            return
        await handler(update, context, member)

    return wrapper


def _refused(context: TrialbotContext, member: StaffMember, reason: str) -> RenderedMessage:
    return render(context, "staff_change_refused", member.language, {"reason": reason})


async def _team(context: TrialbotContext, member: StaffMember, session) -> RenderedMessage:
    everyone = await staff.all_staff(session)
    team = sorted(everyone, key=lambda m: not m.active)[:LISTED]  # the active members first
    buttons = [[Button("staff_member", f"s:m:{m.id}", {"name": m.name})] for m in team if m.active]
    return render(context, "staff_team", member.language, {
        "members": [{"number": m.id, "name": m.name, "role": m.role, "active": m.active} for m in team],
        "not_listed": len(everyone) - len(team),
    }, buttons)


def _card(context: TrialbotContext, member: StaffMember, shown: StaffMember) -> RenderedMessage:
    buttons: list[list[Button]] = []
    if shown.active and shown.id != member.id:
        buttons = [[Button(f"staff_make_{role}", f"s:r:{shown.id}:{code}")]
                   for code, role in ROLE_CODES.items() if role != shown.role]
        buttons.append([Button("staff_deactivate", f"s:d:{shown.id}")])
    buttons.append([Button("staff_back", "s:l")])
    return render(context, "staff_member", member.language, {
        "number": shown.id, "name": shown.name, "role": shown.role, "active": shown.active,
        "yourself": shown.id == member.id}, buttons)


def _change_message(context: TrialbotContext, member: StaffMember, change: StaffChange, *, state: str,
                    role: str | None = None, old_role: str = "", was_inactive: bool = False) -> RenderedMessage:
    role = role or change.role or ""
    buttons: list[list[Button]] = []
    if state == "pick_role":
        buttons = [[Button(f"staff_make_{r}", f"s:a:{change.id}:{code}")] for code, r in ROLE_CODES.items()]
        buttons.append([Button("staff_cancel", f"s:n:{change.id}")])
    elif state == "proposed":
        confirm = f"s:y:{change.id}" + (f":{CODES[role]}" if change.kind == StaffChangeKind.ADD else "")
        buttons = [[Button("staff_confirm", confirm), Button("staff_cancel", f"s:n:{change.id}")]]
    return render(context, "staff_change", member.language, {
        "kind": change.kind, "state": state, "name": change.name or "", "telegram_id": change.telegram_user_id or 0,
        "role": role, "old_role": old_role, "reason": change.reason or "", "was_inactive": was_inactive,
    }, buttons)


@staff_manager
async def staff_command(update: Update, context: TrialbotContext, member: StaffMember) -> None:
    """/staff, /staff add ID Name, /staff role NUMBER ROLE, /staff deactivate NUMBER reason."""
    svc = services(context)
    message = update.effective_message
    words = ((message.text if message else None) or "").split(maxsplit=3)[1:]
    action = words[0].lower() if words else ""
    if not action:
        async with svc.db.read() as session:
            reply = await _team(context, member, session)
        await show(update, context, reply)
        return
    async with effects(update, context) as fx:
        try:
            if action == "add" and len(words) == 3 and words[1].isdigit():
                fx.reply = await _propose_add(context, fx.session, member, int(words[1]), words[2])
            elif action == "role" and len(words) == 3 and words[2].lower() in staff.ROLES:
                shown = await _member(fx.session, words[1])
                fx.reply = await _propose(context, fx.session, member, shown, StaffChangeKind.ROLE,
                                          role=words[2].lower())
            elif action == "deactivate" and len(words) >= 2:
                shown = await _member(fx.session, words[1])
                fx.reply = await _propose(context, fx.session, member, shown, StaffChangeKind.DEACTIVATE,
                                          reason=words[2] if len(words) > 2 else None)
            else:
                fx.reply = _refused(context, member, "usage")
        except _Refusal as refusal:
            fx.reply = _refused(context, member, refusal.reason)
    await show(update, context, fx.reply)


class _Refusal(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def _member(session, number: str) -> StaffMember:
    found = await staff.by_id(session, int(number)) if cb.record_id(number) is not None else None
    if found is None:
        raise _Refusal("unknown_member")
    return found


async def _propose_add(context: TrialbotContext, session, member: StaffMember, telegram_user_id: int,
                       name: str) -> RenderedMessage:
    if not 0 < telegram_user_id < 2**53:  # Telegram's user ids fit in 52 bits
        raise _Refusal("no_user_id")
    known = await staff.by_telegram_id(session, telegram_user_id)
    try:
        change = await staff.propose(session, member, StaffChangeKind.ADD, now=services(context).clock.now(),
                                     telegram_user_id=telegram_user_id, name=name)
    except StaffError as exc:
        raise _Refusal("on_team_already" if known is not None else "name_too_long" if name.strip() else "usage") \
            from exc
    return _change_message(context, member, change, state="pick_role",
                           was_inactive=known is not None and not known.active)


async def _propose(context: TrialbotContext, session, member: StaffMember, shown: StaffMember, kind: StaffChangeKind,
                   *, role: str | None = None, reason: str | None = None) -> RenderedMessage:
    if shown.id == member.id:
        raise _Refusal("yourself")
    if not shown.active:
        raise _Refusal("not_active")
    if kind == StaffChangeKind.ROLE and role == shown.role:
        raise _Refusal("same_role")
    old_role = shown.role
    change = await staff.propose(session, member, kind, now=services(context).clock.now(), member=shown, role=role,
                                 reason=reason)
    return _change_message(context, member, change, state="proposed", old_role=old_role)


async def contact(update: Update, context: TrialbotContext) -> None:
    """A contact card: from a staff member, someone to add to the team (the investigator's); from
    anyone else, what it always was (the participant's "I did not understand")."""
    user = update.effective_user
    async with services(context).db.read() as session:
        member = await staff.by_telegram_id(session, user.id) if user is not None else None
    if member is None:
        await diary.free_text(update, context)
        return
    await _contact_from_staff(update, context)


@staff_manager
async def _contact_from_staff(update: Update, context: TrialbotContext, member: StaffMember) -> None:
    message = update.effective_message
    card = message.contact if message is not None else None
    user_id = card.user_id if card is not None else None
    name = " ".join(part for part in (card.first_name, card.last_name) if part) if card is not None else ""
    async with effects(update, context) as fx:
        try:
            if not user_id:
                raise _Refusal("no_user_id")
            fx.reply = await _propose_add(context, fx.session, member, user_id, name)
        except _Refusal as refusal:
            fx.reply = _refused(context, member, refusal.reason)
    await show(update, context, fx.reply)


@staff_manager
async def button(update: Update, context: TrialbotContext, member: StaffMember) -> None:
    svc = services(context)
    query = update.callback_query
    parts = ((query.data if query else None) or "").split(":")
    step = parts[1]
    target = cb.record_id(parts[2]) if len(parts) > 2 else None
    role = ROLE_CODES.get(parts[3]) if len(parts) > 3 else None
    if step == "l":
        async with svc.db.read() as session:
            reply = await _team(context, member, session)
        await show(update, context, reply)
        return
    if step in ("m", "a"):  # looking, or picking an addition's role: nothing changes yet
        async with svc.db.read() as session:
            if step == "m":
                shown = await staff.by_id(session, target) if target is not None else None
                reply = _card(context, member, shown) if shown else _refused(context, member, "unknown_member")
            else:
                change = await _own_proposal(session, member, target)
                reply = (_change_message(context, member, change, state="proposed", role=role)
                         if change is not None and change.kind == StaffChangeKind.ADD and role
                         else _refused(context, member, "not_proposed"))
        await show(update, context, reply)
        return
    async with effects(update, context, once_per_message=step == "y") as fx:
        try:
            if step in ("r", "d"):
                shown = await staff.by_id(fx.session, target) if target is not None else None
                if shown is None:
                    raise _Refusal("unknown_member")
                kind = StaffChangeKind.ROLE if step == "r" else StaffChangeKind.DEACTIVATE
                if kind == StaffChangeKind.ROLE and role is None:
                    raise _Refusal("usage")
                fx.reply = await _propose(context, fx.session, member, shown, kind, role=role)
            else:
                change = await _own_proposal(fx.session, member, target)
                if change is None or change.state != StaffChangeState.PROPOSED:
                    raise _Refusal("not_proposed")
                if step == "n":
                    await staff.cancel(fx.session, change, now=svc.clock.now())
                    fx.reply = _change_message(context, member, change, state="cancelled")
                else:
                    fx.reply = await _confirm(context, fx.session, member, change, role)
        except _Refusal as refusal:
            fx.reply = _refused(context, member, refusal.reason)
    await show(update, context, fx.reply)


async def _own_proposal(session, member: StaffMember, change_id: int | None) -> StaffChange | None:
    change = await session.get(StaffChange, change_id) if change_id is not None else None
    return change if change is not None and change.proposed_by == member.id else None


async def _confirm(context: TrialbotContext, session, member: StaffMember, change: StaffChange,
                   role: str | None) -> RenderedMessage:
    subject = await staff.by_id(session, change.staff_id) if change.staff_id else None
    old_role = subject.role if subject is not None else ""
    was_inactive = False
    if change.kind == StaffChangeKind.ADD and change.telegram_user_id is not None:
        known = await staff.by_telegram_id(session, change.telegram_user_id)
        was_inactive = known is not None and not known.active
    try:
        async with session.begin_nested():  # a refusal leaves the team as it was
            done = await staff.confirm(session, change, member, now=services(context).clock.now(), role=role)
    except StaffError as exc:
        raise _Refusal("changed_since") from exc
    assert done is not None
    return _change_message(context, member, change, state="confirmed", old_role=old_role, was_inactive=was_inactive)
