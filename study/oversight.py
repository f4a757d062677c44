"""What the study team sees at a glance: per participant status, adherence over 7 and 28 days,
last entry, open alerts, next visit, reachable or not; the coming week's visits; and each
participant's daily record for plots. Read-only."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from study.diary import local_today
from study.models import Alert, CheckIn, DiaryEntry, Participant, Visit
from study.protocol import Protocol
from study.visits import OPEN_STATUSES


def start_day(participant: Participant) -> date | None:
    """The participant's first study day (local): the day they consented."""
    if participant.consented_at is None:
        return None
    return local_today(participant, participant.consented_at)


async def applied_per_day(session: AsyncSession, participant_id: int) -> dict[date, int]:
    """Standing (not withdrawn) applications per local day."""
    withdrawal = aliased(DiaryEntry)
    query = (select(DiaryEntry.local_date, func.count())
             .outerjoin(withdrawal, withdrawal.supersedes_id == DiaryEntry.id)
             .where(DiaryEntry.participant_id == participant_id, DiaryEntry.kind == "applied",
                    withdrawal.id.is_(None))
             .group_by(DiaryEntry.local_date))
    return {day: n for day, n in (await session.execute(query)).all()}


async def scores(session: AsyncSession, participant_id: int) -> list[tuple[date, int | None, int | None]]:
    rows = await session.execute(select(CheckIn.local_date, CheckIn.itch, CheckIn.pain)
                                 .where(CheckIn.participant_id == participant_id).order_by(CheckIn.submitted_at))
    return [(d, i, p) for d, i, p in rows.all()]


def adherence(applied: dict[date, int], first: date | None, today: date, days: int, per_day: int) -> int | None:
    """Percent of expected applications recorded over the last `days` local days (today included),
    counting only study days; None before the study started for them."""
    if first is None:
        return None
    window = [today - timedelta(days=k) for k in range(days) if today - timedelta(days=k) >= first]
    if not window:
        return None
    done = sum(min(applied.get(day, 0), per_day) for day in window)
    return round(100 * done / (per_day * len(window)))


@dataclass(frozen=True)
class Row:
    study_id: str
    status: str
    adherence_7: int | None
    adherence_28: int | None
    last_entry_at: datetime | None
    open_alerts: int
    next_visit: date | None
    reachable: bool


async def overview(session: AsyncSession, protocol: Protocol, *, now: datetime) -> list[Row]:
    people = (await session.scalars(select(Participant).order_by(Participant.study_id))).all()
    alerts = dict((await session.execute(select(Alert.participant_id, func.count()).where(Alert.status == "open")
                                         .group_by(Alert.participant_id))).all())
    last = dict((await session.execute(select(DiaryEntry.participant_id, func.max(DiaryEntry.recorded_at))
                                       .group_by(DiaryEntry.participant_id))).all())
    result = []
    per_day = protocol.treatment.applications_per_day
    for p in people:
        today = local_today(p, now)
        applied = await applied_per_day(session, p.id)
        first = start_day(p)
        next_visit = await session.scalar(select(func.min(Visit.scheduled_date)).where(
            Visit.participant_id == p.id, Visit.status.in_(OPEN_STATUSES), Visit.scheduled_date >= today))
        last_at = last.get(p.id)
        if last_at is not None and last_at.tzinfo is None:
            from datetime import UTC
            last_at = last_at.replace(tzinfo=UTC)
        result.append(Row(p.study_id, p.status, adherence(applied, first, today, 7, per_day),
                          adherence(applied, first, today, 28, per_day), last_at, alerts.get(p.id, 0),
                          next_visit, p.telegram_chat_id is not None and p.unreachable_since is None))
    return result


async def visits_between(session: AsyncSession, first: date, last: date) -> list[tuple[Visit, Participant]]:
    query = (select(Visit, Participant).join(Participant, Participant.id == Visit.participant_id)
             .where(Visit.status.in_(OPEN_STATUSES), Visit.scheduled_date >= first, Visit.scheduled_date <= last)
             .order_by(Visit.scheduled_date, Visit.scheduled_time, Participant.study_id))
    return [(v, p) for v, p in (await session.execute(query)).all()]


async def next_visit(session: AsyncSession, participant: Participant, *, now: datetime) -> Visit | None:
    today = local_today(participant, now)
    return await session.scalar(select(Visit).where(
        Visit.participant_id == participant.id, Visit.status.in_(OPEN_STATUSES), Visit.scheduled_date >= today)
        .order_by(Visit.scheduled_date, Visit.scheduled_time).limit(1))
