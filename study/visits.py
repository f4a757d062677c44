"""Study visits on each participant's calendar: planned from the protocol's schedule, added,
moved, cancelled, confirmed by the participant or flagged for rescheduling.

A visit is current state and changes in place; every change is audited with its old and new
values. Any change makes the participant's planner look again (`next_plan_at = None`), and a
move raises the visit's `revision`, so reminders planned for the old date are not sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from study import audit
from study.audit import Actor
from study.database import among
from study.models import JSONObject, Participant, ParticipantStatus, Visit, VisitStatus
from study.protocol import Protocol

STATUSES = tuple(VisitStatus)
OPEN_STATUSES = VisitStatus.OPEN  # still to happen: reminded
NAME_PATTERN = r"^[a-z0-9_]{1,16}$"


class VisitError(ValueError):
    """The request cannot be carried out; the message says why in plain words, `code` names why
    for a template: no_schedule, ended, planned, name, name_taken, closed, status."""

    def __init__(self, message: str, code: str = "refused") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class PlannedVisit:
    """A visit of the protocol's schedule laid on a participant's calendar from a baseline date."""

    name: str
    label: str
    day: date
    window_days: int


def schedule_from(protocol: Protocol, baseline: date) -> list[PlannedVisit]:
    """The protocol's visits counted from `baseline` (what `plan_schedule` creates)."""
    return [PlannedVisit(d.name, d.label, baseline + timedelta(days=d.day), d.window_days)
            for d in protocol.visits.schedule]


async def check_plan(session: AsyncSession, protocol: Protocol, participant: Participant) -> None:
    """Raise VisitError if a visit plan cannot be made for the participant now."""
    if not protocol.visits.schedule:
        raise VisitError("the protocol lists no visits ([visits] schedule in study.toml)", "no_schedule")
    if participant.status in ParticipantStatus.LEFT:
        raise VisitError(f"{participant.study_id} is {participant.status}", "ended")
    names = [v.name for v in protocol.visits.schedule]
    existing = await session.scalar(select(Visit.id).where(Visit.participant_id == participant.id,
                                                          Visit.name.in_(names)))
    if existing is not None:
        raise VisitError(f"{participant.study_id} already has a visit plan; change single visits with "
                         "visits move, add or cancel", "planned")


def check_open(visit: Visit, *, moving: bool = False) -> None:
    """Raise VisitError if the visit is cancelled or done (nothing more changes it)."""
    if visit.status in VisitStatus.CLOSED:
        if moving:
            raise VisitError(f"the {visit.name} visit is {visit.status}; add a new visit instead", "closed")
        raise VisitError(f"the {visit.name} visit is already {visit.status}", "closed")


@dataclass(frozen=True)
class MoveResult:
    visit: Visit
    outside_window: bool  # the new date lies outside the protocol's window for this visit


def _snapshot(visit: Visit) -> dict[str, Any]:
    return {
        "name": visit.name, "label": visit.label, "scheduled_date": visit.scheduled_date,
        "scheduled_time": visit.scheduled_time.strftime("%H:%M") if visit.scheduled_time else None,
        "status": visit.status, "revision": visit.revision,
    }


async def _audit(session: AsyncSession, visit: Visit, participant: Participant, *, action: str, actor: Actor,
                 now: datetime, old: JSONObject | None, reason: str | None) -> None:
    new = _snapshot(visit)
    if old is not None:
        changed = [k for k in new if new[k] != old[k]]
        old, new = {k: old[k] for k in changed}, {k: new[k] for k in changed}
    await audit.record(session, actor=actor, action=action, entity="visit", entity_id=visit.id, now=now,
                       old=old, new=new, reason=reason, timezone=participant.timezone)


async def for_participant(session: AsyncSession, participant: Participant) -> list[Visit]:
    query = (select(Visit).where(Visit.participant_id == participant.id)
             .order_by(Visit.scheduled_date, Visit.scheduled_time, Visit.id))
    return list((await session.scalars(query)).all())


async def by_name(session: AsyncSession, participant: Participant, name: str) -> Visit | None:
    return await session.scalar(select(Visit).where(Visit.participant_id == participant.id, Visit.name == name))


async def plan_schedule(session: AsyncSession, protocol: Protocol, participant: Participant, *, baseline: date,
                        actor: Actor, now: datetime) -> list[Visit]:
    """Create the protocol's visits from the baseline date; refuses if any were planned before."""
    await check_plan(session, protocol, participant)
    created = []
    for planned in schedule_from(protocol, baseline):
        visit = Visit(participant_id=participant.id, name=planned.name, label=planned.label,
                      scheduled_date=planned.day, scheduled_time=None, target_date=planned.day,
                      window_days=planned.window_days, status=VisitStatus.SCHEDULED, revision=1, created_at=now,
                      changed_at=now)
        session.add(visit)
        await session.flush()
        await _audit(session, visit, participant, action="create", actor=actor, now=now, old=None,
                     reason=f"visit plan from baseline {baseline.isoformat()}")
        created.append(visit)
    participant.next_plan_at = None
    return created


async def add(session: AsyncSession, participant: Participant, *, name: str, day: date, at: time | None = None,
              label: str | None = None, actor: Actor, now: datetime, reason: str | None = None) -> Visit:
    """An extra visit, outside the protocol's schedule."""
    if not re.match(NAME_PATTERN, name):
        raise VisitError("a visit name is 1-16 lower-case letters, digits or '_' (for example extra1)", "name")
    if participant.status in ParticipantStatus.LEFT:
        raise VisitError(f"{participant.study_id} is {participant.status}", "ended")
    if await by_name(session, participant, name) is not None:
        raise VisitError(f"{participant.study_id} already has a visit named {name}", "name_taken")
    visit = Visit(participant_id=participant.id, name=name, label=(label or name)[:64], scheduled_date=day,
                  scheduled_time=at, target_date=None, window_days=None, status=VisitStatus.SCHEDULED, revision=1,
                  created_at=now, changed_at=now)
    session.add(visit)
    await session.flush()
    await _audit(session, visit, participant, action="create", actor=actor, now=now, old=None,
                 reason=reason or "extra visit")
    participant.next_plan_at = None
    return visit


def outside_window(visit: Visit, day: date) -> bool:
    if visit.target_date is None or visit.window_days is None:
        return False
    return abs((day - visit.target_date).days) > visit.window_days


async def move(session: AsyncSession, participant: Participant, visit: Visit, *, day: date, at: time | None,
               actor: Actor, now: datetime, reason: str | None = None) -> MoveResult:
    """A new date (and time): reminders start again for it, and it waits for a new confirmation."""
    check_open(visit, moving=True)
    if visit.scheduled_date == day and visit.scheduled_time == at:
        return MoveResult(visit, outside_window(visit, day))
    old = _snapshot(visit)
    visit.scheduled_date, visit.scheduled_time = day, at
    visit.status = VisitStatus.SCHEDULED
    visit.revision += 1
    visit.changed_at = now
    await _audit(session, visit, participant, action="update", actor=actor, now=now, old=old,
                 reason=reason or "visit moved")
    participant.next_plan_at = None
    return MoveResult(visit, outside_window(visit, day))


async def set_status(session: AsyncSession, participant: Participant, visit: Visit, status: str, *, actor: Actor,
                     now: datetime, reason: str) -> bool:
    """Change a visit's status (audited); False if it already had that status."""
    if status not in STATUSES:
        raise VisitError(f"status must be one of {', '.join(STATUSES)}", "status")
    if visit.status == status:
        return False
    check_open(visit)
    old = _snapshot(visit)
    visit.status = status
    visit.changed_at = now
    await _audit(session, visit, participant, action="update", actor=actor, now=now, old=old, reason=reason)
    participant.next_plan_at = None
    return True


async def cancel(session: AsyncSession, participant: Participant, visit: Visit, *, actor: Actor, now: datetime,
                 reason: str) -> bool:
    check_open(visit)
    return await set_status(session, participant, visit, VisitStatus.CANCELLED, actor=actor, now=now, reason=reason)


async def open_visits(session: AsyncSession, participant_ids: list[int], since: date) -> list[Visit]:
    """Visits still to happen on or after `since`, for the planner."""
    if not participant_ids:
        return []
    query = select(Visit).where(among(session, Visit.participant_id, participant_ids), Visit.status.in_(OPEN_STATUSES),
                                Visit.scheduled_date >= since).order_by(Visit.id)
    return list((await session.scalars(query)).all())


async def on_day(session: AsyncSession, day: date) -> list[tuple[str, Visit]]:
    """(study id, visit) for every open visit on a calendar day, for the staff digest."""
    query = (select(Participant.study_id, Visit).join(Participant, Participant.id == Visit.participant_id)
             .where(Visit.scheduled_date == day, Visit.status.in_(OPEN_STATUSES),
                    Participant.status.in_((ParticipantStatus.INVITED, *ParticipantStatus.SERVED)))
             .order_by(Visit.scheduled_time, Participant.study_id))
    return [(study_id, visit) for study_id, visit in (await session.execute(query)).all()]
