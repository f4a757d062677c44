"""Participants: enrolment, lookup, and the changes to their standing in the study.

Every change is audited with the old and new values. A participant's chat is linked only by
consent (see `study.consent`), and only participants who are active or paused are served.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from study import audit, outbox, treatment, zones
from study.audit import Actor
from study.models import Participant, ParticipantStatus
from study.protocol import Protocol, parse_hhmm

SERVED_STATUSES = ParticipantStatus.SERVED
# A study id as stored: upper case, 1-32 letters, digits, '-' or '_', a letter or digit first. What
# anyone types is read trimmed and in capitals (`normal_study_id`: p001 is P001), so ids that differ
# only in case are one id; the database refuses any other (migration 0014, models.Participant).
STUDY_ID = re.compile(r"[A-Z0-9][A-Z0-9_-]{0,31}")
STUDY_ID_RULE = "1 to 32 letters, digits, '-' or '_', starting with a letter or digit (for example P001)"


class EnrolmentError(ValueError):
    """The enrolment request (or a change of a participant's record) is invalid; the message says
    what to fix, `code` names it for a template (timezone, study_id, ended, status...); a zone
    refused carries why and what it may have meant (`zone`)."""

    def __init__(self, message: str, code: str = "invalid", *, zone: zones.ZoneAnswer | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.zone = zone


def normal_study_id(typed: str) -> str:
    """A study id as the study writes it: trimmed, in capitals (" p001 " is P001). Not checked:
    looking up words that cannot be a study id finds no one."""
    return typed.strip().upper()


def check_study_id(typed: str) -> str:
    """The study id as stored (`normal_study_id`), or EnrolmentError (code study_id) if it cannot be one."""
    study_id = normal_study_id(typed)
    if not STUDY_ID.fullmatch(study_id):
        raise EnrolmentError(f"{typed.strip()[:40]!r} cannot be a study id: use {STUDY_ID_RULE}", "study_id")
    return study_id


@dataclass(frozen=True)
class EnrolmentRequest:
    study_id: str
    timezone: str
    language: str
    wocbp: bool = False
    reminder_times: tuple[time, ...] | None = None


def format_times(times: tuple[time, ...] | list[time]) -> str:
    return ",".join(t.strftime("%H:%M") for t in times)


def reminder_times(participant: Participant) -> list[time]:
    return list(parse_times(participant.reminder_times))


@lru_cache(maxsize=1024)
def parse_times(stored: str) -> tuple[time, ...]:
    """"08:00,20:00" as sorted times (cached: most participants keep the protocol's times)."""
    return tuple(sorted(parse_hhmm(v) for v in stored.split(",") if v))


def _snapshot(p: Participant, fields: tuple[str, ...]) -> dict[str, Any]:
    return {name: getattr(p, name) for name in fields}


async def enroll(
    session: AsyncSession, protocol: Protocol, request: EnrolmentRequest, *, actor: Actor, now: datetime
) -> Participant:
    study_id = check_study_id(request.study_id)
    timezone = check_zone(request.timezone)
    if request.language not in protocol.study.languages:
        raise EnrolmentError(
            f"language {request.language!r} is not offered by this study ({', '.join(protocol.study.languages)})"
        )
    times = request.reminder_times or tuple(protocol.default_reminder_times)
    if len(times) != protocol.treatment.applications_per_day:
        raise EnrolmentError(
            f"give {protocol.treatment.applications_per_day} reminder time(s), one per daily application"
        )
    if list(times) != sorted(set(times)):
        raise EnrolmentError("reminder times must be distinct and in order")
    if await by_study_id(session, study_id) is not None:
        raise EnrolmentError(f"{study_id} is already enrolled", "exists")

    participant = Participant(
        study_id=study_id,
        timezone=timezone,
        language=request.language,
        wocbp=request.wocbp,
        reminder_times=format_times(times),
        status=ParticipantStatus.INVITED,
        enrolled_at=now,
    )
    session.add(participant)
    await session.flush()
    await audit.record(
        session,
        actor=actor,
        action="create",
        entity="participant",
        entity_id=participant.id,
        now=now,
        new=_snapshot(participant, ("study_id", "timezone", "language", "wocbp", "reminder_times", "status")),
        reason="enrolment",
        timezone=participant.timezone,
    )
    return participant


async def by_study_id(session: AsyncSession, study_id: str) -> Participant | None:
    """The participant with this study id, however it was typed (p001, " P001 "), or None."""
    return await session.scalar(select(Participant).where(Participant.study_id == normal_study_id(study_id)))


# Who writes from a chat: built once (every update asks; bot/access.py asks it beside the
# update's record in the ledger: study/processed_updates.py `find_beside`).
BY_CHAT = select(Participant).where(Participant.telegram_chat_id == bindparam("chat_id"))


async def by_chat(session: AsyncSession, chat_id: int) -> Participant | None:
    return await session.scalar(BY_CHAT, {"chat_id": chat_id})


async def change(
    session: AsyncSession,
    participant: Participant,
    *,
    actor: Actor,
    now: datetime,
    reason: str,
    **values: Any,
) -> bool:
    """Change fields of a participant, auditing old and new values; False if nothing changed."""
    changed = {name: value for name, value in values.items() if getattr(participant, name) != value}
    if not changed:
        return False
    old = _snapshot(participant, tuple(changed))
    for name, value in changed.items():
        setattr(participant, name, value)
    await session.flush()
    await audit.record(
        session,
        actor=actor,
        action="update",
        entity="participant",
        entity_id=participant.id,
        now=now,
        old=old,
        new=changed,
        reason=reason,
        timezone=participant.timezone,
    )
    return True


async def pause(session: AsyncSession, participant: Participant, *, actor: Actor, now: datetime) -> bool:
    """Stop every message the bot starts; the data stays. False if already paused."""
    if participant.status != ParticipantStatus.ACTIVE:
        return False
    return await change(session, participant, actor=actor, now=now, reason="paused messages",
                        status=ParticipantStatus.PAUSED)


async def resume(session: AsyncSession, participant: Participant, *, actor: Actor, now: datetime) -> bool:
    if participant.status != ParticipantStatus.PAUSED:
        return False
    # Reminders start again from now: nothing from the paused time is sent late.
    await change(session, participant, actor=actor, now=now, reason="resumed messages", status=ParticipantStatus.ACTIVE,
                 active_since=now)
    participant.next_plan_at = None
    return True


async def pause_messages(session: AsyncSession, participant: Participant, *, actor: Actor, now: datetime,
                         why: str) -> bool:
    """Pause the bot's messages to a participant (their own /stop, or a staff member's /pause for
    them): what was queued for them is not sent, and the study team is told. False, and nothing
    done, if they were not active."""
    if not await pause(session, participant, actor=actor, now=now):
        return False
    await outbox.cancel_pending(session, participant.id, reason=why, now=now)
    await outbox.notify_staff(session, event_key=f"pause:{participant.study_id}:{now.isoformat()}",
                              template_id="staff_paused", now=now,
                              variables={"study_id": participant.study_id,
                                         "by_team": actor.kind != "participant"})
    return True


def check_can_pause(participant: Participant) -> None:
    """Raise EnrolmentError unless the participant is active (only then can messages be paused)."""
    if participant.status == ParticipantStatus.PAUSED:
        raise EnrolmentError(f"{participant.study_id} has paused messages already", "paused")
    if participant.status == ParticipantStatus.INVITED:
        raise EnrolmentError(f"{participant.study_id} has not joined the bot yet: there are no messages to pause",
                             "invited")
    if participant.status != ParticipantStatus.ACTIVE:
        raise EnrolmentError(f"{participant.study_id} is {participant.status}", participant.status)


FINAL_STATUSES = ParticipantStatus.LEFT
STATUSES = tuple(ParticipantStatus)


def check_can_end(participant: Participant, status: str) -> None:
    """Raise EnrolmentError unless the participant can be withdrawn or completed now."""
    if status not in FINAL_STATUSES:
        raise EnrolmentError(f"status must be one of {', '.join(FINAL_STATUSES)}", "status")
    if participant.status in FINAL_STATUSES:
        raise EnrolmentError(f"{participant.study_id} is {participant.status} already", "ended")


async def end_participation(session: AsyncSession, participant: Participant, status: str, *, reason: str,
                            actor: Actor, now: datetime) -> bool:
    """Withdrawn or completed: the bot writes to them no more (their records stay). `leave_study`
    is the whole of it (queued messages, the treatment course)."""
    if status not in FINAL_STATUSES:
        raise EnrolmentError(f"status must be one of {', '.join(FINAL_STATUSES)}", "status")
    return await change(session, participant, actor=actor, now=now, reason=reason, status=status)


async def leave_study(session: AsyncSession, participant: Participant, status: str, *, reason: str,
                      actor: Actor, now: datetime) -> None:
    """A participant withdrawn or completed (`trialbot participant end`, /end): the bot writes to
    them no more, what was queued for them is not sent, and their treatment course ends with it.
    Refused (EnrolmentError) for someone who has left already."""
    check_can_end(participant, status)
    await end_participation(session, participant, status, reason=reason, actor=actor, now=now)
    await outbox.cancel_pending(session, participant.id, reason=f"participant {status}", now=now)
    await treatment.leave_study(session, participant, status, reason=reason, actor=actor, now=now)


def check_zone(timezone: str) -> str:
    """The zone as IANA spells it, if the study takes it (study/zones.py: Area/Location, or UTC);
    EnrolmentError (code timezone, with why and the zones it may mean) otherwise."""
    try:
        return zones.check(timezone)
    except zones.ZoneError as exc:
        raise EnrolmentError(str(exc), "timezone", zone=exc.answer) from None


async def move_to_zone(session: AsyncSession, participant: Participant, timezone: str, *, actor: Actor,
                       now: datetime) -> bool:
    timezone = check_zone(timezone)
    changed = await change(session, participant, actor=actor, now=now, reason="time zone changed",
                           timezone=timezone)
    participant.next_plan_at = None
    return changed


@dataclass(frozen=True)
class Period:
    """A stretch of time a participant was active: joined, not paused, not ended."""

    start: datetime
    end: datetime | None = None  # None: active still


async def active_periods(session: AsyncSession, people: Sequence[Participant]) -> dict[int, list[Period]]:
    """When each participant was active, read from the audit trail's record of their status
    changes (joining makes them active; /stop, a staff member's pause, withdrawal or completion
    ends a period; /resume starts another). Adherence counts only these days."""
    if not people:
        return {}
    changes: dict[int, list[tuple[datetime, str]]] = {}
    for entry in await audit.entries(session, entity="participant", entity_ids=[str(p.id) for p in people]):
        status = (entry.new_values or {}).get("status")
        if isinstance(status, str):
            changes.setdefault(int(entry.entity_id), []).append((entry.occurred_at, status))
    return {p.id: periods_of(p, changes.get(p.id, [])) for p in people}


def periods_of(participant: Participant, changes: list[tuple[datetime, str]]) -> list[Period]:
    """The active periods in a participant's status changes (oldest first). A participant who is
    active with no change on record that made them so (a row written outside the audited path)
    counts as active since they consented, or were enrolled."""
    periods: list[Period] = []
    start: datetime | None = None
    for at, status in changes:
        if status == ParticipantStatus.ACTIVE and start is None:
            start = at
        elif status != ParticipantStatus.ACTIVE and start is not None:
            periods.append(Period(start, at))
            start = None
    if start is not None:
        periods.append(Period(start))
    if not periods and participant.status == ParticipantStatus.ACTIVE:
        periods.append(Period(participant.consented_at or participant.active_since or participant.enrolled_at))
    return periods


def active_on(periods: Sequence[Period], day: date, zone: ZoneInfo) -> bool:
    """Was the participant active at any moment of this local day?"""
    start = datetime.combine(day, time(), zone)
    end = datetime.combine(day + timedelta(days=1), time(), zone)
    return any(p.start < end and (p.end is None or p.end > start) for p in periods)


def active_days(periods: Sequence[Period], zone: ZoneInfo, last: date, days: int) -> set[date]:
    """The local days among the `days` up to `last` (included) on which the participant was active."""
    return {day for k in range(days) if active_on(periods, day := last - timedelta(days=k), zone)}
