"""What the study team sees at a glance: per participant status, adherence over 7 and 28 days,
last entry, open alerts, next visit, reachable or not; the coming week's visits; and each
participant's daily record for plots. Read-only.

The diary and the check-ins are read as corrected (study/corrections.py): a corrected entry
counts as corrected, and how many of the entries counted were corrected is shown beside them."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from study import corrections, participants
from study.diary import local_today
from study.models import Alert, AlertStatus, DiaryEntry, DiaryKind, Participant, Visit
from study.protocol import Protocol
from study.visits import OPEN_STATUSES


def start_day(participant: Participant) -> date | None:
    """The participant's first study day (local): the day they consented."""
    if participant.consented_at is None:
        return None
    return local_today(participant, participant.consented_at)


async def applied_per_day(session: AsyncSession, participant_id: int) -> dict[date, int]:
    """Standing (not withdrawn, as corrected) applications per local day."""
    return (await diary_record(session, participant_id)).applied


@dataclass(frozen=True)
class DiaryRecord:
    applied: dict[date, int]  # standing applications per local day, as corrected
    corrected: list[date]  # the local day of each entry the study team corrected


async def diary_record(session: AsyncSession, participant_id: int) -> DiaryRecord:
    return (await diary_records(session, [participant_id])).get(participant_id, DiaryRecord({}, []))


async def diary_records(session: AsyncSession, participant_ids: list[int] | None = None, *,
                        since: date | None = None) -> dict[int, DiaryRecord]:
    """Each participant's diary (of these, or all) from the local day `since` on, as corrected."""
    records: dict[int, DiaryRecord] = {}
    for view in await corrections.entry_views(session, participant_ids, since=since):
        record = records.setdefault(view.participant_id, DiaryRecord({}, []))
        if view.stands and view.kind == DiaryKind.APPLIED:
            record.applied[view.local_date] = record.applied.get(view.local_date, 0) + 1
        if view.corrected:
            record.corrected.append(view.local_date)
    return records


def corrected_within(record: DiaryRecord, first: date | None, today: date, days: int | None = None) -> int:
    """How many corrected entries fall on the study days counted (the last `days`, or all)."""
    if first is None:
        return 0
    start = first if days is None else max(first, today - timedelta(days=days - 1))
    return sum(start <= day <= today for day in record.corrected)


async def scores(session: AsyncSession, participant_id: int) -> list[tuple[date, int | None, int | None]]:
    """Itch and pain per check-in, as corrected."""
    return [(v.checkin.local_date, v["itch"], v["pain"])
            for v in await corrections.checkin_views(session, [participant_id])]


def adherence(applied: dict[date, int], active: Collection[date], today: date, days: int, per_day: int) -> int | None:
    """Percent of expected applications recorded over the last `days` local days (today included),
    counting only days on which the participant was active (`active`: participants.active_days),
    so not the days before they joined, paused or after they left; None with no such day."""
    window = [today - timedelta(days=k) for k in range(days) if today - timedelta(days=k) in active]
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
    corrected_28: int = 0  # entries of the last 28 days corrected by the study team
    joined: bool = True  # False: invited, has not joined the bot (not "unreachable": never reached)


async def overview(session: AsyncSession, protocol: Protocol, *, now: datetime) -> list[Row]:
    people = (await session.scalars(select(Participant).order_by(Participant.study_id))).all()
    alerts = dict((await session.execute(select(Alert.participant_id, func.count()).where(Alert.status == AlertStatus.OPEN)
                                         .group_by(Alert.participant_id))).all())
    last = dict((await session.execute(select(DiaryEntry.participant_id, func.max(DiaryEntry.recorded_at))
                                       .group_by(DiaryEntry.participant_id))).all())
    result = []
    per_day = protocol.treatment.applications_per_day
    # One read of everyone's last 28 days (and a day's margin for time zones ahead of UTC).
    records = await diary_records(session, since=now.date() - timedelta(days=29))
    periods = await participants.active_periods(session, people)
    for p in people:
        today = local_today(p, now)
        active = participants.active_days(periods[p.id], ZoneInfo(p.timezone), today, 28)
        record = records.get(p.id, DiaryRecord({}, []))
        applied = record.applied
        first = start_day(p)
        next_visit = await session.scalar(select(func.min(Visit.scheduled_date)).where(
            Visit.participant_id == p.id, Visit.status.in_(OPEN_STATUSES), Visit.scheduled_date >= today))
        last_at = last.get(p.id)
        if last_at is not None and last_at.tzinfo is None:
            from datetime import UTC
            last_at = last_at.replace(tzinfo=UTC)
        result.append(Row(p.study_id, p.status, adherence(applied, active, today, 7, per_day),
                          adherence(applied, active, today, 28, per_day), last_at, alerts.get(p.id, 0),
                          next_visit, p.telegram_chat_id is not None and p.unreachable_since is None,
                          corrected_within(record, first, today, 28), joined=p.telegram_chat_id is not None))
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
