"""Is an outbox message still wanted, now that its time has come? The reason not to send it, or
None: the dispatcher (scheduler/dispatcher.py) claims a row, asks `why_not`, and sends it or
records it skipped with that reason (in the outbox row and its delivery events, word for word).

The rules are one table, `RULES`, with a row for every outbox kind (study/models.py `OutboxKind`;
tests/test_still_wanted.py holds it to that): whether the kind goes to a participant who paused,
the permission a staff member needs to receive it, what a stale one is called, and the kind's own
look at what has happened since it was queued. Before the kind's own look come the rules common
to all kinds, in this order (the first that says no is the reason):

- the recipient no longer exists; a staff member's access has ended;
- a participant has no linked chat, or is not active (paused: only the kinds that go to a
  participant who paused; withdrawn, completed, still invited: nothing);
- a staff member's role does not give the permission the kind needs (their role changed since);
- the message is past its `stale_after` (a missed delivery; a broadcast whose approval expired).

A message an earlier try delivered (the participant answered it though Telegram's answer was lost)
is recorded as sent whatever these rules say: that is the dispatcher's, which does not ask.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from study import broadcasts, diary, outbox, pregnancy_tests, roles
from study.models import (
    Alert,
    AlertStatus,
    OutboxKind,
    OutboxMessage,
    Participant,
    ParticipantMessage,
    ParticipantStatus,
    StaffMember,
    TreatmentState,
    Visit,
    VisitStatus,
)
from study.participants import parse_times
from study.protocol import Protocol
from study.slots import DiaryFact, accounted_slots

RECIPIENT_GONE = "recipient no longer exists"
STAFF_INACTIVE = "staff member inactive"
NO_CHAT = "participant has no linked chat"


@dataclass(frozen=True)
class Due:
    """A message whose time has come, as a rule looks at it."""

    session: AsyncSession
    protocol: Protocol
    row: OutboxMessage
    recipient: Participant | StaffMember
    now: datetime


# A kind's own look: the reason not to send, or None.
Check = Callable[[Due], Awaitable[str | None]]


@dataclass(frozen=True)
class Rule:
    """How one kind of message is judged when its time comes, beside the rules common to all."""

    while_paused: bool = False  # also goes to a participant who paused (/stop): answers to what they sent
    needs: str | None = None  # the permission (study/roles.py) a staff member needs to receive it
    stale_note: str = outbox.STALE_NOTE  # the reason recorded when it is past its stale_after
    check: Check | None = None  # what has happened since it was queued that makes it unwanted


async def why_not(session: AsyncSession, protocol: Protocol, row: OutboxMessage,
                  recipient: Participant | StaffMember | None, now: datetime) -> str | None:
    """Why `row` should not be sent to `recipient` after all, now; None to send it."""
    if recipient is None:
        return RECIPIENT_GONE
    rule = RULES[OutboxKind(row.kind)]
    due = Due(session, protocol, row, recipient, now)
    for common in COMMON:
        why = common(due, rule)
        if why is not None:
            return why
    return await rule.check(due) if rule.check is not None else None


# The rules common to all kinds, in the order they are asked (after "the recipient no longer exists").

def _staff_inactive(due: Due, rule: Rule) -> str | None:
    return STAFF_INACTIVE if isinstance(due.recipient, StaffMember) and not due.recipient.active else None


def _no_chat(due: Due, rule: Rule) -> str | None:
    return NO_CHAT if isinstance(due.recipient, Participant) and due.recipient.telegram_chat_id is None else None


def _not_active(due: Due, rule: Rule) -> str | None:
    person = due.recipient
    if not isinstance(person, Participant) or person.status == ParticipantStatus.ACTIVE:
        return None
    if person.status == ParticipantStatus.PAUSED and rule.while_paused:
        return None
    return f"participant is {person.status}"


def _not_permitted(due: Due, rule: Rule) -> str | None:
    member = due.recipient
    if isinstance(member, StaffMember) and rule.needs is not None and not roles.may(member.role, rule.needs):
        return f"a {member.role} does not receive this ({rule.needs})"
    return None


def _stale(due: Due, rule: Rule) -> str | None:
    stale_after = due.row.stale_after
    return rule.stale_note if stale_after is not None and due.now >= stale_after else None


COMMON: tuple[Callable[[Due, Rule], str | None], ...] = (_staff_inactive, _no_chat, _not_active, _not_permitted,
                                                          _stale)


# The kinds' own looks.

def _to_participants(check: Callable[[Due, Participant], Awaitable[str | None]]) -> Check:
    """A participant's own reminder: looked at only when it goes to a participant."""
    async def checked(due: Due) -> str | None:
        return await check(due, due.recipient) if isinstance(due.recipient, Participant) else None
    return checked


async def _alert_acknowledged(due: Due) -> str | None:
    alert = await due.session.get(Alert, due.row.variables.get("alert_id"))
    if alert is not None and alert.status != AlertStatus.OPEN:
        return "alert acknowledged before this was sent"
    return None


async def _not_copyable(due: Due) -> str | None:
    """A participant's photo or voice note is copied from their chat: gone, it cannot be."""
    record = await due.session.get_one(ParticipantMessage, due.row.participant_message_id)
    participant = await due.session.get_one(Participant, record.participant_id)
    if participant.telegram_chat_id is None or record.telegram_message_id is None:
        return "the participant's message can no longer be copied (their chat is gone)"
    return None


@_to_participants
async def _dose_not_due(due: Due, participant: Participant) -> str | None:
    """A dose reminder (or nudge) is for one slot: not while off the cream, nor once recorded."""
    if participant.treatment != TreatmentState.ON_TREATMENT:
        return f"treatment {participant.treatment}: no cream reminders"
    if await _slot_recorded(due.session, participant, due.row):
        return "the dose was recorded before the reminder went out"
    return None


async def _slot_recorded(session: AsyncSession, participant: Participant, row: OutboxMessage) -> bool:
    """Does the diary account for the slot the reminder is for (its key ends with the slot's), as
    the planner counts it (study/slots.py)?"""
    slot_day = date.fromisoformat(row.variables["slot_date"])
    facts = [DiaryFact(e.kind, e.local_date, e.occurred_at)
             for e in await diary.standing_facts(session, [participant.id], slot_day)]
    slots = accounted_slots(parse_times(participant.reminder_times), diary.zone_of(participant), facts, [slot_day])
    return row.dedup_key.rsplit(":", 1)[-1] in slots


@_to_participants
async def _visit_changed(due: Due, participant: Participant) -> str | None:
    """A visit reminder is for one revision of one visit: moved or cancelled since, it is not sent."""
    visit = await due.session.get(Visit, due.row.variables.get("visit_id"))
    if visit is None or visit.participant_id != participant.id:
        return "the visit no longer exists"
    if visit.status not in VisitStatus.OPEN:
        return f"the visit was {visit.status} after the reminder was queued"
    if visit.revision != due.row.variables.get("revision"):
        return "the visit was moved after the reminder was queued"
    return None


@_to_participants
async def _pregnancy_answered(due: Due, participant: Participant) -> str | None:
    """A pregnancy-test reminder is for one due test: answered since, or tests no longer applying
    to the participant (their treatment changed), it is not sent."""
    rules = due.protocol.pregnancy_tests
    if not pregnancy_tests.apply_to(rules, participant):
        return f"pregnancy tests do not apply to this participant now (treatment {participant.treatment})"
    today = diary.local_today(participant, due.row.due_at or due.row.not_before)
    test_due = await pregnancy_tests.current_due(due.session, rules, participant, today=today)
    if test_due.isoformat() != due.row.variables.get("due_date"):
        return "a test result was recorded before the reminder went out"
    return None


# Every kind of outbox message, and how it is judged. A kind with `Rule()` is deliberately judged
# by the common rules alone.
_DOSE = Rule(check=_dose_not_due)
RULES: Mapping[OutboxKind, Rule] = {
    OutboxKind.NOTICE: Rule(),
    **dict.fromkeys(outbox.SLOT_KINDS, _DOSE),  # reminder, nudge: a dose's reminders
    OutboxKind.VISIT_REMINDER: Rule(check=_visit_changed),
    OutboxKind.PREGNANCY_REMINDER: Rule(check=_pregnancy_answered),
    OutboxKind.CHECKIN: Rule(),
    OutboxKind.CHECKIN_EXPIRED: Rule(),
    OutboxKind.TREATMENT: Rule(),
    OutboxKind.ALERT: Rule(needs=roles.ACKNOWLEDGE, check=_alert_acknowledged),
    OutboxKind.ALERT_CLOSED: Rule(),
    OutboxKind.PARTICIPANT_MESSAGE: Rule(needs=roles.RECEIVE_PARTICIPANT_MESSAGES),
    OutboxKind.MEDIA_COPY: Rule(needs=roles.RECEIVE_PARTICIPANT_MESSAGES, check=_not_copyable),
    OutboxKind.MESSAGE_RECEIPT: Rule(while_paused=True),
    OutboxKind.REPLY: Rule(),
    OutboxKind.BROADCAST: Rule(stale_note=broadcasts.EXPIRED_NOTE),
    OutboxKind.DIGEST: Rule(),
    OutboxKind.ANCHOR: Rule(),
}
