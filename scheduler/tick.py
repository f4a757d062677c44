"""The clock's tick: find who needs looking at, plan, queue, record, wake the dispatcher.

Only participants whose `next_plan_at` has come are loaded (an indexed query), so a tick with
nothing due costs one query however large the study. Everything a tick writes is keyed so that
running it twice, after a crash or a scheduler misfire, adds nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Row, Select, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from scheduler.daily_anchor import plan_anchors
from scheduler.planner import (
    DiaryFact,
    ParticipantView,
    Plan,
    PlannedMessage,
    VisitFact,
    diary_window,
    plan_applications,
    plan_pregnancy_tests,
    plan_visits,
)
from scheduler.safety_planner import plan_alert_followups, plan_checkins
from scheduler.staff_digest import plan_digests
from study import (
    alerts,
    checkins,
    diary,
    outbox,
    pregnancy_tests,
    processed_updates,
    strangers,
    visits,
)
from study.clock import Clock
from study.database import Database, Readers, among, as_stored
from study.models import Participant, Visit
from study.participants import parse_times
from study.pregnancy_tests import PregnancyFact
from study.protocol import Protocol

log = logging.getLogger(__name__)
# Participants planned per transaction: big enough that a wave costs few statements, small
# enough that a batch's IN lists and rows stay modest.
BATCH = 5000
# A tick that gives this many participants their first next look (a bulk enrolment, everyone
# told to look again) has made PostgreSQL's statistics wrong about who has none: gathered again
# at once, or the next ticks' "never looked at" query reads the whole table until autovacuum
# comes round (tens of milliseconds a tick at 100,000 participants).
ANALYZE_AFTER_FIRST_LOOKS = 1000


@dataclass
class TickReport:
    participants: int = 0
    queued: int = 0
    stale: int = 0
    missing: int = 0
    expired: int = 0  # check-in drafts
    first_looks: int = 0  # participants who had no next look and were given one


def visit_fact(visit: Visit) -> VisitFact:
    return VisitFact(id=visit.id, name=visit.name, local_date=visit.scheduled_date, local_time=visit.scheduled_time,
                     status=visit.status, revision=visit.revision, changed_at=visit.changed_at)


@dataclass(frozen=True)
class Records:
    """What the planners need of one participant's records (recent ones only)."""

    diary: Sequence[DiaryFact] = ()
    visits: Sequence[VisitFact] = ()
    pregnancy_tests: Sequence[PregnancyFact] = ()
    last_full_checkin: datetime | None = None
    pregnancy_anchor: date | None = None  # the protocol's day 0 for the test calendar


async def _due_for_planning(session: AsyncSession, now: datetime) -> list[int]:
    """Active participants whose next look has come, or who were never looked at. Two indexed
    look-ups rather than one OR, which SQLite answers by reading every participant."""
    ids: set[int] = set()
    for due in (Participant.next_plan_at.is_(None), Participant.next_plan_at <= now):
        ids.update((await session.scalars(select(Participant.id).where(
            due, Participant.status == "active", Participant.telegram_chat_id.is_not(None)))).all())
    return sorted(ids)


def plan_participant(protocol: Protocol, participant: ParticipantView, records: Records, now: datetime) -> Plan:
    """Everything due for one participant; each kind of reminder adds its own plan."""
    plan = Plan()
    plan.extend(plan_applications(protocol, participant, records.diary, now))
    plan.extend(plan_visits(protocol, participant, records.visits, now))
    plan.extend(plan_pregnancy_tests(protocol, participant, records.pregnancy_tests, now, records.pregnancy_anchor))
    plan.extend(plan_checkins(protocol, participant, records.last_full_checkin, now))
    return plan


class Tick:
    def __init__(self, db: Database, protocol: Protocol, clock: Clock, wake: asyncio.Event | None = None) -> None:
        self.db = db
        self.protocol = protocol
        self.clock = clock
        self.wake = wake

    async def run_once(self) -> TickReport:
        now = self.clock.now()
        report = TickReport()
        async with self.db.read() as session:
            due_ids = await _due_for_planning(session, now)
        # Batch by batch: read and plan the next batch while the one before is being written, so
        # the database's work on a morning wave overlaps the planner's.
        writing: asyncio.Task[None] | None = None
        try:
            for start in range(0, len(due_ids), BATCH):
                batch = await self._read_and_plan(due_ids[start:start + BATCH], now)
                if writing is not None:
                    await writing
                writing = asyncio.create_task(self._write(batch, now, report))
            if writing is not None:
                await writing
        finally:
            # If planning failed, a write under way still finishes (what it holds is correct).
            if writing is not None and not writing.done():
                await asyncio.wait([writing])
                if not writing.cancelled() and writing.exception() is not None:
                    log.warning("tick: a batch could not be written: %s", type(writing.exception()).__name__)
        if report.first_looks >= ANALYZE_AFTER_FIRST_LOOKS:
            await self.db.analyze(Participant.__tablename__)
        async with self.db.transaction() as session:
            study_wide = (await plan_digests(session, self.protocol, now) + await plan_anchors(session, self.protocol, now)
                          + await self._alert_followups(session, now))
            queued, stale = await outbox.enqueue_planned(session, study_wide, now=now)
            report.queued += queued
            report.stale += stale
            # Check-ins left unfinished past their time: kept as incomplete, the participant told.
            report.expired = await checkins.expire_due(session, self.protocol, now=now)
            report.queued += report.expired
            await processed_updates.forget_older_than(session, now=now)
            # Strangers' wrong codes and lock-outs that no longer count: nothing kept past its use.
            await strangers.forget_old(session, now=now,
                                       window=timedelta(minutes=self.protocol.enrolment.wrong_code_window_minutes))
        if report.queued and self.wake is not None:
            self.wake.set()
        if report.queued or report.stale or report.missing:
            log.info("tick: %s participants planned, %s queued, %s stale, %s missing doses recorded",
                     report.participants, report.queued, report.stale, report.missing)
        return report

    async def _alert_followups(self, session: AsyncSession, now: datetime) -> list[PlannedMessage]:
        open_now = await alerts.open_alerts(session)
        if not open_now:
            return []
        staff = [(m.id, m.role) for m in await alerts.acknowledgers(session)]
        return plan_alert_followups(self.protocol, [(a.id, a.reported_at, alerts.alert_variables(a, p))
                                                    for a, p in open_now], staff, now)

    async def _read_and_plan(self, ids: list[int], now: datetime) -> PlannedBatch:
        batch = PlannedBatch()
        async with self.db.read() as session:
            # Plain rows read as stored, not ORM objects nor SQLAlchemy's converted rows: a
            # morning wave is tens of thousands of participants, and the planner wants snapshots
            # anyway. The last full check-in comes in the same query.
            read = Readers(session.get_bind().dialect.name)
            people = [_view_from_row(row, read) for row in
                      (await session.execute(_participants_query(session, ids))).all()]
            if not people:
                return batch
            # Only the entries the planners can look at (an index on participant and day finds
            # them), so a year of history costs what a day does.
            since, since_at = diary_window(now, {person.timezone for person, _, _ in people})
            facts = await diary.planning_facts(session, ids, since, since_at, DiaryFact)
            visit_facts: dict[int, list[VisitFact]] = {}
            for visit in await visits.open_visits(session, ids, (now - timedelta(days=2)).date()):
                visit_facts.setdefault(visit.participant_id, []).append(visit_fact(visit))
            women = [person for person, _, _ in people if person.wocbp]
            tests = await pregnancy_tests.facts_for(session, [person.id for person in women])
            anchors = await pregnancy_tests.anchors_for(session, self.protocol.pregnancy_tests, women)
        no_facts: tuple[DiaryFact, ...] = ()
        for person, next_plan_at, last_full in people:
            pid = person.id
            records = Records(facts.get(pid, no_facts), visit_facts.get(pid, ()), tests.get(pid, ()), last_full,
                              anchors.get(pid))
            plan = plan_participant(self.protocol, person, records, now)
            batch.messages += plan.messages
            if plan.missing:
                batch.missing += [(person, m.slot.at, m.slot.local_date, m.slot.key) for m in plan.missing]
            batch.next_plan.setdefault((next_plan_at, plan.next_check), []).append(pid)
        return batch

    async def _write(self, batch: PlannedBatch, now: datetime, report: TickReport) -> None:
        async with self.db.transaction() as session:
            missing = await diary.record_missing(session, batch.missing, now=now)
            queued, stale = await outbox.enqueue_planned(session, batch.messages, now=now)
            # Participants who share a zone and reminder times share their next look: one UPDATE
            # per (old, new) pair. Only where it is still what was read: a participant whose times
            # or zone changed meanwhile was set to be looked at again, and stays so.
            for (was, moment), same in batch.next_plan.items():
                await session.execute(
                    update(Participant)
                    .where(among(session, Participant.id, same), Participant.next_plan_at.is_not_distinct_from(was))
                    .values(next_plan_at=moment)
                    .execution_options(synchronize_session=False))
        report.participants += sum(len(same) for same in batch.next_plan.values())
        report.first_looks += sum(len(same) for (was, moment), same in batch.next_plan.items()
                                  if was is None and moment is not None)
        report.missing += missing
        report.queued += queued
        report.stale += stale


@dataclass
class PlannedBatch:
    """What planning one batch decided, waiting to be written."""

    messages: list[PlannedMessage] = field(default_factory=list)
    missing: list[tuple[ParticipantView, datetime, date, str]] = field(default_factory=list)
    next_plan: dict[tuple[datetime | None, datetime | None], list[int]] = field(default_factory=dict)


def _participants_query(session: AsyncSession, ids: list[int]) -> Select[*tuple[Any, ...]]:
    """What the planners need of each participant, and their next look (the tick's UPDATE keeps
    it only where it is still what was read), read as stored (`_view_from_row` converts)."""
    return select(*(as_stored(c) for c in (
        Participant.id, Participant.study_id, Participant.timezone, Participant.reminder_times,
        func.coalesce(Participant.active_since, Participant.consented_at, Participant.enrolled_at),
        Participant.consented_at, Participant.wocbp, Participant.treatment, Participant.treatment_reason,
        Participant.treatment_since, Participant.next_plan_at, checkins.last_submitted_column(),
    ))).where(among(session, Participant.id, ids))


def _view_from_row(row: Row[*tuple[Any, ...]],
                   read: Readers) -> tuple[ParticipantView, datetime | None, datetime | None]:
    """(the participant, their next look as read, their last full check-in) from a
    `_participants_query` row."""
    (pid, study_id, timezone, times, active_since, consented_at, wocbp, treatment, treatment_reason,
     treatment_since, next_plan_at, last_full) = row
    maybe = read.maybe_instant
    return (ParticipantView(
        id=pid, study_id=study_id, timezone=timezone, reminder_times=parse_times(times),
        active_since=read.instant(active_since), wocbp=read.boolean(wocbp), consented_at=maybe(consented_at),
        treatment=treatment, treatment_reason=treatment_reason, treatment_since=maybe(treatment_since),
    ), maybe(next_plan_at), maybe(last_full))
