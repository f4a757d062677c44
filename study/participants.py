"""Participants: enrolment, lookup, and the changes to their standing in the study.

Every change is audited with the old and new values. A participant's chat is linked only by
consent (see `study.consent`), and only participants who are active or paused are served.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time
from functools import lru_cache
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from study import audit
from study.audit import Actor
from study.models import Participant
from study.protocol import Protocol, check_timezone, parse_hhmm

SERVED_STATUSES = ("active", "paused")
STUDY_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$"


class EnrolmentError(ValueError):
    """The enrolment request is invalid; the message says what to fix."""


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
    if not re.match(STUDY_ID_PATTERN, request.study_id):
        raise EnrolmentError("study id must be 1-32 letters, digits, '-' or '_' (for example P001)")
    try:
        check_timezone(request.timezone)
    except ValueError as exc:
        raise EnrolmentError(str(exc)) from None
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
    if await by_study_id(session, request.study_id) is not None:
        raise EnrolmentError(f"{request.study_id} is already enrolled")

    participant = Participant(
        study_id=request.study_id,
        timezone=request.timezone,
        language=request.language,
        wocbp=request.wocbp,
        reminder_times=format_times(times),
        status="invited",
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
    return await session.scalar(select(Participant).where(Participant.study_id == study_id))


async def by_chat(session: AsyncSession, chat_id: int) -> Participant | None:
    return await session.scalar(select(Participant).where(Participant.telegram_chat_id == chat_id))


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
    if participant.status != "active":
        return False
    return await change(session, participant, actor=actor, now=now, reason="paused messages", status="paused")


async def resume(session: AsyncSession, participant: Participant, *, actor: Actor, now: datetime) -> bool:
    if participant.status != "paused":
        return False
    # Reminders start again from now: nothing from the paused time is sent late.
    await change(session, participant, actor=actor, now=now, reason="resumed messages", status="active",
                 active_since=now)
    participant.next_plan_at = None
    return True


FINAL_STATUSES = ("withdrawn", "completed")
STATUSES = ("invited", *SERVED_STATUSES, *FINAL_STATUSES)


async def end_participation(session: AsyncSession, participant: Participant, status: str, *, reason: str,
                            actor: Actor, now: datetime) -> bool:
    """Withdrawn or completed: the bot writes to them no more (their records stay)."""
    if status not in FINAL_STATUSES:
        raise EnrolmentError(f"status must be one of {', '.join(FINAL_STATUSES)}")
    return await change(session, participant, actor=actor, now=now, reason=reason, status=status)


async def move_to_zone(session: AsyncSession, participant: Participant, timezone: str, *, actor: Actor,
                       now: datetime) -> bool:
    try:
        check_timezone(timezone)
    except ValueError as exc:
        raise EnrolmentError(str(exc)) from None
    changed = await change(session, participant, actor=actor, now=now, reason="time zone changed",
                           timezone=timezone)
    participant.next_plan_at = None
    return changed
