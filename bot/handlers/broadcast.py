"""/broadcast: an approved notice to many participants, previewed, confirmed, maybe approved by
a second staff member, then delivered by the outbox with one status message edited in place.

`/broadcast` alone offers the notices and audiences as buttons; `/broadcast notice AUDIENCE text`
or `/broadcast closure AUDIENCE` does it in one line. The draft lives in the
`broadcasts` table (survives restarts); buttons carry only `b:<step>:<id>` and every press is
checked against the row and the presser's role. A broadcast awaiting the second approval can be
withdrawn (`b:w:<id>`) by its author, from its status message, or by the investigator, from the
approval request; approvals expire (study/broadcasts.py).
"""

from __future__ import annotations

import logging

from telegram import Update
from telegram.error import TelegramError

from bot import callback_data as cb
from bot.access import staff_command
from bot.exactly_once import effects
from bot.replies import answer_button, render, send_new, show
from bot.runtime import TrialbotContext
from bot.services import services
from messages.renderer import Button
from study import audit, broadcasts, outbox, roles
from study.audit import Actor
from study.broadcasts import BroadcastError
from study.models import Broadcast, BroadcastStatus, StaffMember

log = logging.getLogger(__name__)


def _audience_variables(audience: str) -> dict:
    kind, _, value = audience.partition(":")
    return {"audience_kind": kind, "audience_value": value}


async def _refuse(update: Update, context: TrialbotContext, member: StaffMember, reason: str) -> None:
    await show(update, context, render(context, "staff_broadcast_refused", member.language, {"reason": reason}))


@staff_command(roles.BROADCAST, "broadcast")
async def broadcast(update: Update, context: TrialbotContext, member: StaffMember) -> None:
    args = context.args or []
    if not args:  # from a phone: pick the notice, then the audience, with buttons
        await show(update, context, render(context, "staff_broadcast_pick_notice", member.language, {},
                                           [[Button("pick_notice", "b:p:notice")],
                                            [Button("pick_closure", "b:p:closure")]]))
        return
    template_id = broadcasts.SHORT_NAMES.get(args[0].lower())
    if template_id is None or len(args) < 2:
        await show(update, context, render(context, "staff_broadcast_usage", member.language,
                                           {"limit": broadcasts.TEXT_MAX}))
        return
    parts = (update.effective_message.text or "").split(maxsplit=3)
    await _draft_and_preview(update, context, member, template_id, args[1], parts[3] if len(parts) > 3 else None)


@staff_command(roles.BROADCAST, "broadcast")
async def pick(update: Update, context: TrialbotContext, member: StaffMember) -> None:
    """b:p:<notice> -> choose the audience; b:p:<notice>:<audience> -> the preview (a fixed
    notice) or how to type the text (the team's own notice, which needs words)."""
    _, _, rest = update.callback_query.data.split(":", 2)
    short, _, audience = rest.partition(":")
    if not audience:
        await show(update, context, render(context, "staff_broadcast_pick_audience", member.language,
                                           {"notice": short}, [
            [Button("audience_all", f"b:p:{short}:all")],
            [Button("audience_wocbp", f"b:p:{short}:wocbp")],
            [Button("audience_visits", f"b:p:{short}:visits:7", {"days": 7})],
        ]))
        return
    if short == "notice":
        await show(update, context, render(context, "staff_broadcast_type_text", member.language,
                                           {"audience": audience, "limit": broadcasts.TEXT_MAX}))
        return
    await _draft_and_preview(update, context, member, broadcasts.SHORT_NAMES[short], audience, None)


async def _draft_and_preview(update: Update, context: TrialbotContext, member: StaffMember, template_id: str,
                             audience_text: str, text: str | None) -> None:
    svc = services(context)
    now = svc.clock.now()
    people = []
    async with effects(update, context) as fx:
        try:
            audience = broadcasts.parse_audience(audience_text)
            # Checked before anything is written, so a refusal leaves no draft behind.
            people = await broadcasts.audience_members(fx.session, audience, now=now)
            if not people:
                raise BroadcastError("no_recipients")
            row = await broadcasts.create_draft(fx.session, member, template_id=template_id, audience=audience,
                                                text=text, now=now)
        except BroadcastError as exc:
            people = []  # nothing to preview: the refusal is the answer
            fx.reply = render(context, "staff_broadcast_refused", member.language, {"reason": exc.code})
        else:
            fx.reply = render(context, "staff_broadcast_confirm", member.language, {
                "broadcast_id": row.id, "template": row.template_id, **_audience_variables(audience),
                "count": len(people), "needs_approval": svc.protocol.broadcasts.require_second_approval,
            }, [[Button("broadcast_send", f"b:s:{row.id}"), Button("broadcast_cancel", f"b:x:{row.id}")]])
    if not people:
        await show(update, context, fx.reply)
        return
    by_language: dict[str, int] = {}
    for person in people:
        by_language[person.language] = by_language.get(person.language, 0) + 1
    for language, count in sorted(by_language.items()):
        # The previews come before the question, which is the update's answer (a second delivery
        # of the update gets the question again if it was not shown, never the previews twice).
        await send_new(update, context, render(context, "staff_broadcast_preview", member.language,
                                               {"language": language, "count": count}), answers_update=False)
        # Exactly what participants get: the same template, language and variables the outbox uses.
        await send_new(update, context, render(context, row.template_id, language, broadcasts.variables(row)),
                       answers_update=False)
    if update.callback_query is not None:  # picked with buttons: the question comes after the preview
        await send_new(update, context, fx.reply)
        await answer_button(update)
    else:
        await show(update, context, fx.reply)


def _broadcast_id(update: Update) -> int | None:
    data = update.callback_query.data or ""
    return cb.record_id(data.split(":")[-1])


def _status_variables(row: Broadcast, state: str, progress=None, approver: str = "", by: str = "") -> dict:
    counts = progress.as_variables() if progress else {"sent": 0, "failed": 0, "blocked": 0, "skipped": 0,
                                                        "expired": 0, "total": len(row.recipients or [])}
    return {"broadcast_id": row.id, "state": state, "approver": approver, "by": by, **counts}


def _withdraw_button(row_id: int) -> list[list[Button]]:
    return [[Button("broadcast_withdraw", f"b:w:{row_id}")]]


@staff_command(roles.BROADCAST, "broadcast_confirm")
async def confirm_or_cancel(update: Update, context: TrialbotContext, member: StaffMember) -> None:
    """The author's Confirm (or Cancel). The confirmation message first becomes the broadcast's
    status message, and only then is anything queued: the progress edits and the final report
    always have their message, and never race the author's own press."""
    svc = services(context)
    now = svc.clock.now()
    step, row_id = update.callback_query.data[2:3], _broadcast_id(update)
    second = svc.protocol.broadcasts.require_second_approval
    refused = False
    async with effects(update, context) as fx:
        session = fx.session
        row = await session.get(Broadcast, row_id) if row_id else None
        if row is None or row.author_id != member.id or row.status != BroadcastStatus.DRAFT:
            refused = True
            fx.reply = render(context, "staff_broadcast_refused", member.language, {"reason": "not_draft"})
        elif step == "x":
            await broadcasts.cancel(session, row, member, now=now)
            fx.reply = render(context, "staff_broadcast_status", member.language, _status_variables(row, "cancelled"))
        else:
            people = await broadcasts.audience_members(session, row.audience, now=now)
            variables = {**_status_variables(row, "awaiting_approval" if second else "sending"), "total": len(people)}
            # Awaiting approval, the author may withdraw it (until it is approved).
            fx.reply = render(context, "staff_broadcast_status", member.language, variables,
                              _withdraw_button(row.id) if second else ())
    await show(update, context, fx.reply, answer=refused or step == "x")
    if refused or step == "x":
        return
    hashes = {language: svc.messages.render(row.template_id, language, {
        **svc.study_variables(), **broadcasts.variables(row)}).template_hash for language in svc.protocol.study.languages}
    try:
        async with svc.db.transaction() as session:
            row = await session.get(Broadcast, row_id)
            row.status_chat_id = update.effective_chat.id
            row.status_message_id = update.callback_query.message.message_id
            # What the message says now, so progress is edited only when a count changes.
            row.progress = broadcasts.Progress(total=variables["total"], sent=0, failed=0, blocked=0,
                                               skipped=0).key()
            valid = svc.protocol.broadcasts.approval_valid
            await broadcasts.confirm(session, row, member, hashes=hashes, second_approval=second, valid=valid,
                                     now=now)
            if second:
                for other in await _approvers(session, member):
                    buttons = [[["broadcast_approve", f"b:a:{row.id}", {}]]]
                    if roles.allowed(other, roles.WITHDRAW_ANY_BROADCAST):
                        buttons.append([["broadcast_withdraw", f"b:w:{row.id}", {}]])
                    # An approval request is of no use once approving is no longer possible.
                    await outbox.enqueue(
                        session, dedup_key=f"broadcast-approval:{row.id}:staff{other.id}",
                        template_id="staff_broadcast_approval", now=now, staff_id=other.id,
                        variables={"broadcast_id": row.id, "author": member.name, "template": row.template_id,
                                   **_audience_variables(row.audience), "text": row.text or "",
                                   "count": variables["total"], "hours": svc.protocol.broadcasts.approval_valid_hours},
                        buttons=buttons, stale_after=now + valid)
    except BroadcastError as exc:  # pressed twice at once: the first press confirmed it
        log.info("broadcast %s not confirmed again: %s", row_id, exc.code)
    else:
        # The dispatcher is woken now, not once the button's answer has come back (a round trip
        # later): the answer is no message, and nothing of it is needed to send the notices.
        svc.outbox_ready.set()
    finally:
        await answer_button(update)  # only now is the press fully handled


async def _approvers(session, author: StaffMember) -> list[StaffMember]:
    from study import staff

    return [m for m in await staff.on_duty(session) if m.id != author.id and roles.allowed(m, roles.APPROVE_BROADCAST)]


@staff_command(roles.APPROVE_BROADCAST, "broadcast_approve")
async def approve(update: Update, context: TrialbotContext, member: StaffMember) -> None:
    svc = services(context)
    now = svc.clock.now()
    valid = svc.protocol.broadcasts.approval_valid
    row_id = _broadcast_id(update)
    async with effects(update, context) as fx:
        row = await fx.session.get(Broadcast, row_id) if row_id else None
        try:
            if row is None:
                raise BroadcastError("not_awaiting")
            # Too late: marked expired (and that stays, though the approval is refused).
            if await broadcasts.expire(fx.session, row, valid=valid, now=now, pressed_by=member):
                raise BroadcastError("expired")
            async with fx.session.begin_nested():  # a refusal undoes whatever the approval began
                await broadcasts.approve(fx.session, row, member, valid=valid, now=now)
        except BroadcastError as exc:
            if exc.code == "own":
                await audit.record(fx.session, actor=Actor.staff(member.id), action="refused", entity="broadcast",
                                   entity_id=row_id, now=now, new={"approver": member.name},
                                   reason="the author may not approve their own broadcast")
            fx.reply = render(context, "staff_broadcast_refused", member.language, {"reason": exc.code})
        else:
            fx.reply = render(context, "staff_broadcast_status", member.language,
                              _status_variables(row, "sending", approver=member.name))
    svc.outbox_ready.set()
    await show(update, context, fx.reply)


@staff_command(roles.BROADCAST, "broadcast_withdraw")
async def withdraw(update: Update, context: TrialbotContext, member: StaffMember) -> None:
    """Withdraw a broadcast awaiting the second approval: its author (from the status message) or
    the investigator (from the approval request). Anyone else is refused, on the record."""
    svc = services(context)
    now = svc.clock.now()
    row_id = _broadcast_id(update)
    status_message = None
    async with effects(update, context, once_per_message=True) as fx:
        row = await fx.session.get(Broadcast, row_id) if row_id else None
        try:
            if row is None:
                raise BroadcastError("not_awaiting")
            await broadcasts.withdraw(fx.session, row, member, now=now, valid=svc.protocol.broadcasts.approval_valid,
                                      may_withdraw_others=roles.allowed(member, roles.WITHDRAW_ANY_BROADCAST))
        except BroadcastError as exc:
            if exc.code == "not_yours":
                await audit.record(fx.session, actor=Actor.staff(member.id), action="refused", entity="broadcast",
                                   entity_id=row_id, now=now, new={"withdrawn_by": member.name},
                                   reason=f"a {member.role} may withdraw only their own broadcast")
            fx.reply = render(context, "staff_broadcast_refused", member.language, {"reason": exc.code})
        else:
            fx.reply = render(context, "staff_broadcast_status", member.language,
                              _status_variables(row, "withdrawn", by=member.name))
            if row.author_id != member.id and row.status_chat_id and row.status_message_id:
                author = await fx.session.get(StaffMember, row.author_id)
                status_message = (row.status_chat_id, row.status_message_id, render(
                    context, "staff_broadcast_status", author.language if author else member.language,
                    _status_variables(row, "withdrawn", by=member.name)))
    await show(update, context, fx.reply)
    if status_message is not None:  # the author's status message says so too (no Withdraw button left)
        chat_id, message_id, rendered = status_message
        try:
            await context.bot.edit_message_text(rendered.text, chat_id=chat_id, message_id=message_id)
        except TelegramError as exc:
            log.info("broadcast %s: the author's status message not updated (%s)", row_id, type(exc).__name__)
