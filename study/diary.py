"""The application diary: "I applied the cream", "I missed a dose", and taking an entry back.

Entries keep when the participant says it happened (`occurred_at`, UTC, with the participant's
zone and local day), when the server recorded it, where it came from, and a late flag. Nothing
is changed in place: /undo writes a withdrawal entry that points at the entry it takes back; the
study team's corrections, and a participant's entry standing for the system's "missing" record
of the same slot, are rows of their own (study/corrections.py), and what is shown and counted is
read through `corrections.entry_views`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import Enum
from typing import TYPE_CHECKING, Any, NamedTuple, TypeAlias, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import Row, Select, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from study import audit, corrections, record_hashes
from study.audit import Actor
from study.database import Readers, among, as_stored, insert_new
from study.models import DiaryEntry, Participant
from study.protocol import DiarySection

if TYPE_CHECKING:
    from scheduler.planner import ParticipantView

# A phone's clock may run a little ahead of the server's; a "now" this far ahead is still now.
FUTURE_TOLERANCE = timedelta(minutes=5)
# How an entry came: a diary button, a reminder's button, a command (/undo), or the system (a slot
# recorded missing when its window closed).
SOURCES = ("button", "reminder", "command", "system")


class LogStatus(Enum):
    LOGGED = "logged"
    ALREADY_LOGGED = "already_logged"  # the same button again: the first entry stands
    TOO_OLD = "too_old"
    IN_FUTURE = "in_future"
    UNKNOWN_REASON = "unknown_reason"


@dataclass(frozen=True)
class LogResult:
    status: LogStatus
    entry: DiaryEntry | None = None


class UndoStatus(Enum):
    WITHDRAWN = "withdrawn"
    NOTHING_TO_UNDO = "nothing"
    TOO_LATE = "too_late"


@dataclass(frozen=True)
class UndoResult:
    status: UndoStatus
    entry: DiaryEntry | None = None


def zone_of(participant: Participant) -> ZoneInfo:
    return ZoneInfo(participant.timezone)


def local_today(participant: Participant, now: datetime) -> date:
    return now.astimezone(zone_of(participant)).date()


def loggable_days(rules: DiarySection, participant: Participant, now: datetime) -> list[date]:
    """Today first, then as many earlier days as the protocol lets a participant back-fill."""
    today = local_today(participant, now)
    return [today - timedelta(days=n) for n in range(rules.backfill_days + 1)]


def _day_problem(rules: DiarySection, participant: Participant, day: date, now: datetime) -> LogStatus | None:
    days = loggable_days(rules, participant, now)
    if day > days[0]:
        return LogStatus.IN_FUTURE
    if day < days[-1]:
        return LogStatus.TOO_OLD
    return None


async def log_application(
    session: AsyncSession,
    participant: Participant,
    *,
    occurred_at: datetime,
    source: str,
    key: str | None,
    rules: DiarySection,
    now: datetime,
) -> LogResult:
    local = occurred_at.astimezone(zone_of(participant))
    if occurred_at > now + FUTURE_TOLERANCE:
        return LogResult(LogStatus.IN_FUTURE)
    problem = _day_problem(rules, participant, local.date(), now)
    if problem:
        return LogResult(problem)
    entry = DiaryEntry(
        participant_id=participant.id,
        kind="applied",
        occurred_at=min(occurred_at, now),
        local_date=local.date(),
        late=now - occurred_at > timedelta(hours=rules.late_after_hours),
        source=source,
    )
    result = await _append(session, participant, entry, key=key, now=now)
    if result.status is LogStatus.LOGGED and result.entry is not None:
        await corrections.supersede_missing(session, participant, result.entry, now=now)
    return result


async def log_missed(
    session: AsyncSession,
    participant: Participant,
    *,
    day: date,
    reason: str,
    source: str,
    key: str | None,
    rules: DiarySection,
    now: datetime,
) -> LogResult:
    if reason not in rules.missed_reasons and reason != "none":
        return LogResult(LogStatus.UNKNOWN_REASON)
    problem = _day_problem(rules, participant, day, now)
    if problem:
        return LogResult(problem)
    entry = DiaryEntry(
        participant_id=participant.id,
        kind="missed",
        occurred_at=None,
        local_date=day,
        late=_missed_late(rules, participant, day, now),
        missed_reason=None if reason == "none" else reason,
        source=source,
    )
    result = await _append(session, participant, entry, key=key, now=now)
    if result.status is LogStatus.LOGGED and result.entry is not None:
        await corrections.supersede_missing(session, participant, result.entry, now=now)
    return result


def _missed_late(rules: DiarySection, participant: Participant, day: date, now: datetime) -> bool:
    """A missed dose has a day, not a time: it is late when recorded more than the protocol's
    hours after that day ended (the participant's midnight), as an application is when recorded
    that long after it happened. Said on the day itself, it is never late."""
    day_ended = datetime.combine(day + timedelta(days=1), time(0), zone_of(participant))
    return now - day_ended > timedelta(hours=rules.late_after_hours)


async def _append(
    session: AsyncSession, participant: Participant, entry: DiaryEntry, *, key: str | None, now: datetime,
    actor: Actor | None = None,
) -> LogResult:
    scoped_key = f"{participant.id}:{key}" if key else None
    actor = actor or Actor.participant(participant.study_id)
    entry.timezone = participant.timezone
    entry.recorded_at = now
    entry.recorded_by = str(actor)
    entry.idempotency_key = scoped_key
    # One statement that stores the entry unless this key was stored before: a press repeated, or
    # the same press handled a moment ago elsewhere. (This is the hot path of every tap.)
    table = DiaryEntry.__table__
    # It returns the entry as stored, which its audit entry's content hash is taken from.
    inserted = await insert_new(session, table, [{c.key: getattr(entry, c.key) for c in table.columns if c.key != "id"}],
                                unique="idempotency_key", returning=record_hashes.returned(DiaryEntry))
    if not inserted:
        existing = await session.scalar(select(DiaryEntry).where(DiaryEntry.idempotency_key == scoped_key))
        return LogResult(LogStatus.ALREADY_LOGGED, existing)
    entry.id = inserted[0].id
    await audit.record(
        session, actor=actor, action="create", entity="diary_entry", entity_id=entry.id, now=now,
        new=_describe(entry), reason=f"diary entry via {entry.source}", timezone=participant.timezone,
        row=inserted[0]._mapping,
    )
    return LogResult(LogStatus.LOGGED, entry)


def _describe(entry: DiaryEntry) -> dict[str, object]:
    return {
        "participant_id": entry.participant_id,
        "kind": entry.kind,
        "occurred_at": entry.occurred_at,
        "local_date": entry.local_date,
        "recorded_at": entry.recorded_at,
        "source": entry.source,
        "late": entry.late,
        "missed_reason": entry.missed_reason,
        "supersedes_id": entry.supersedes_id,
    }


def _standing_entries(participant: Participant) -> Select[DiaryEntry]:
    """Applied and missed entries that no later withdrawal has taken back."""
    withdrawal = aliased(DiaryEntry)
    return (
        select(DiaryEntry)
        .outerjoin(withdrawal, withdrawal.supersedes_id == DiaryEntry.id)
        .where(
            DiaryEntry.participant_id == participant.id,
            DiaryEntry.kind.in_(("applied", "missed")),
            withdrawal.id.is_(None),
        )
    )


async def entries_on(session: AsyncSession, participant: Participant, day: date) -> list[corrections.EntryView]:
    """The entries that stand on a local day, as corrected (each says whether it was), in time order."""
    views = await corrections.entry_views_of(session, participant.id, day)
    standing = [v for v in views if v.stands and v.local_date == day and v.kind in ("applied", "missed")]
    return sorted(standing, key=lambda v: (v.occurred_at is not None, v.occurred_at or v.entry.recorded_at, v.id))


async def withdraw_last(
    session: AsyncSession, participant: Participant, *, rules: DiarySection, now: datetime
) -> UndoResult:
    last = await session.scalar(_standing_entries(participant).order_by(DiaryEntry.recorded_at.desc(), DiaryEntry.id.desc()).limit(1))
    if last is None:
        return UndoResult(UndoStatus.NOTHING_TO_UNDO)
    if now - last.recorded_at > timedelta(minutes=rules.undo_minutes):
        return UndoResult(UndoStatus.TOO_LATE, last)
    withdrawal = DiaryEntry(
        participant_id=participant.id,
        kind="withdrawal",
        occurred_at=now,
        local_date=local_today(participant, now),
        late=False,
        source="command",
        supersedes_id=last.id,
    )
    await _append(session, participant, withdrawal, key=None, now=now)
    await audit.record(
        session, actor=Actor.participant(participant.study_id), action="correct", entity="diary_entry",
        entity_id=last.id, now=now, old={"standing": True}, new={"standing": False, "withdrawn_by": withdrawal.id},
        reason="participant took the entry back (/undo)", timezone=participant.timezone,
    )
    return UndoResult(UndoStatus.WITHDRAWN, last)


async def record_missing(
    session: AsyncSession, missing: list[tuple[ParticipantView, datetime, date, str]], *, now: datetime
) -> int:
    """The system's records that dose slots closed with nothing logged: (participant, slot
    instant, local day, slot key) each. Not a guess about what happened, only that nothing was
    recorded. Idempotent per slot; written in bulk, since a whole time zone's slots close together.
    Returns how many were new."""
    keyed = {f"{p.id}:missing:{key}": (p, at, day) for p, at, day, key in missing}
    rows: list[dict[str, Any]] = [
        dict(participant_id=p.id, kind="missing", occurred_at=at, local_date=day, timezone=p.timezone,
             recorded_at=now, source="system", late=False, missed_reason=None, supersedes_id=None,
             recorded_by=str(audit.SYSTEM), idempotency_key=key)
        for key, (p, at, day) in keyed.items()
    ]
    table = DiaryEntry.__table__
    inserted = await insert_new(session, table, rows, unique="idempotency_key",
                                returning=(table.c.id, table.c.idempotency_key))
    by_key = {row["idempotency_key"]: row for row in rows}
    await audit.record_many(session, [
        audit.Change(audit.SYSTEM, "create", "diary_entry", entry_id, now,
                     new={k: by_key[key][k] for k in ("participant_id", "kind", "occurred_at", "local_date",
                                                       "recorded_at", "source", "late", "missed_reason",
                                                       "supersedes_id")},
                     reason="dose slot closed with nothing recorded", timezone=by_key[key]["timezone"])
        for entry_id, key in sorted(inserted)
    ])
    return len(inserted)


class Fact(NamedTuple):
    participant_id: int
    kind: str
    local_date: date
    occurred_at: datetime | None


# A standing fact as read: a Fact, or the plain query's row of the same columns.
FactRow: TypeAlias = Fact | Row[int, str, date, datetime | None]


async def standing_facts(session: AsyncSession, participant_ids: list[int], since: date) -> list[FactRow]:
    """Standing applied, missed and missing entries of many participants from `since` on, as rows
    of (participant_id, kind, local_date, occurred_at): all the planners need. Corrected entries
    count as corrected, withdrawn ones not at all, and a missing record a participant's own entry
    stands for neither: for the few participants with corrections or supersessions their entries
    are read through `corrections.entry_views`; everyone else's with one plain query."""
    rows = await _plain_standing_facts(session, participant_ids, since)
    touched = await corrections.touched(session, participant_ids)
    if not touched:
        return rows
    views = await corrections.entry_views(session, sorted(touched), since=since)
    return [row for row in rows if row.participant_id not in touched] + [
        Fact(v.participant_id, v.kind, v.local_date, v.occurred_at) for v in views if v.stands]


F = TypeVar("F")


async def planning_facts(session: AsyncSession, participant_ids: list[int], since: date, since_at: datetime,
                         fact: Callable[[str, date, datetime | None], F]) -> dict[int, list[F]]:
    """`standing_facts` as the tick's planners need them, for a batch of thousands: by
    participant, each made by `fact(kind, local_date, occurred_at)`, and only what they can look
    at: applications and missing records from the instant `since_at` on, "missed a dose" entries
    of days from `since` on (`since` also bounds the index range read: no entry from `since_at`
    on has an earlier day). Read as stored and converted here, not by SQLAlchemy's row
    processing, which cost more than the query. Participants with corrections or supersessions
    get all of `standing_facts` from `since` (more than needed, never less)."""
    query = _planning_facts_query(session, participant_ids, since, since_at)
    read = Readers(session.get_bind().dialect.name)
    instant, day = read.instant, read.day
    facts: dict[int, list[F]] = {}
    touched = await corrections.touched(session, participant_ids)
    for participant_id, kind, local_date, occurred_at in (await session.execute(query)).all():
        if participant_id not in touched:
            facts.setdefault(participant_id, []).append(
                fact(kind, day(local_date), None if occurred_at is None else instant(occurred_at)))
    if touched:
        for v in await corrections.entry_views(session, sorted(touched), since=since):
            if v.stands:
                facts.setdefault(v.participant_id, []).append(fact(v.kind, v.local_date, v.occurred_at))
    return facts


def _planning_facts_query(session: AsyncSession, participant_ids: list[int], since: date,
                          since_at: datetime) -> Select[*tuple[Any, ...]]:
    query = _plain_standing_facts_query(session, participant_ids, since).where(
        or_(DiaryEntry.kind == "missed", DiaryEntry.occurred_at >= since_at))
    return query.with_only_columns(*(as_stored(c) for c in query.selected_columns))


async def _plain_standing_facts(session: AsyncSession, participant_ids: list[int], since: date) -> list[FactRow]:
    return list((await session.execute(_plain_standing_facts_query(session, participant_ids, since))).all())


def _plain_standing_facts_query(session: AsyncSession, participant_ids: list[int],
                                since: date) -> Select[int, str, date, datetime | None]:
    """Found through the (participant, day) index: each participant's entries from `since` on,
    not their whole diary."""
    withdrawal = aliased(DiaryEntry)
    return (
        select(DiaryEntry.participant_id, DiaryEntry.kind, DiaryEntry.local_date, DiaryEntry.occurred_at)
        .outerjoin(withdrawal, withdrawal.supersedes_id == DiaryEntry.id)
        .where(
            among(session, DiaryEntry.participant_id, participant_ids),
            DiaryEntry.local_date >= since,
            DiaryEntry.kind.in_(("applied", "missed", "missing")),
            withdrawal.id.is_(None),
        )
    )
