"""The clock's tick: find who needs looking at, plan, queue, record, wake the dispatcher.

Only participants whose `next_plan_at` has come are loaded (an indexed query), so a tick with
nothing due costs one query however large the study. Everything a tick writes is keyed so that
running it twice, after a crash or a scheduler misfire, adds nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from scheduler.planner import (
    DiaryFact,
    ParticipantView,
    Plan,
    VisitFact,
    plan_applications,
    plan_pregnancy_tests,
    plan_visits,
)
from scheduler.safety_planner import plan_alert_followups, plan_checkins
from scheduler.staff_digest import plan_digests
from study import alerts, checkins, diary, outbox, pregnancy_tests, visits
from study.models import Visit
from study.pregnancy_tests import PregnancyFact
from study.clock import Clock
from study.database import Database
from study.models import Participant
from study.participants import reminder_times
from study.protocol import Protocol

log = logging.getLogger(__name__)
BATCH = 500


@dataclass
class TickReport:
    participants: int = 0
    queued: int = 0
    stale: int = 0
    missing: int = 0


def view_of(participant: Participant) -> ParticipantView:
    return ParticipantView(
        id=participant.id, study_id=participant.study_id, timezone=participant.timezone,
        reminder_times=tuple(reminder_times(participant)),
        active_since=participant.active_since or participant.consented_at or participant.enrolled_at,
        wocbp=participant.wocbp, consented_at=participant.consented_at,
    )


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


def plan_participant(protocol: Protocol, participant: ParticipantView, records: Records, now: datetime) -> Plan:
    """Everything due for one participant; each kind of reminder adds its own plan."""
    plan = Plan()
    plan.extend(plan_applications(protocol, participant, records.diary, now))
    plan.extend(plan_visits(protocol, participant, records.visits, now))
    plan.extend(plan_pregnancy_tests(protocol, participant, records.pregnancy_tests, now))
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
        async with self.db.transaction() as session:
            due_ids = list((await session.scalars(
                select(Participant.id).where(
                    Participant.status == "active",
                    Participant.telegram_chat_id.is_not(None),
                    or_(Participant.next_plan_at.is_(None), Participant.next_plan_at <= now),
                ).order_by(Participant.id))).all())
        for start in range(0, len(due_ids), BATCH):
            async with self.db.transaction() as session:
                await self._plan_batch(session, due_ids[start:start + BATCH], now, report)
        async with self.db.transaction() as session:
            study_wide = await plan_digests(session, self.protocol, now) + await self._alert_followups(session, now)
            queued, stale = await outbox.enqueue_planned(session, study_wide, now=now)
            report.queued += queued
            report.stale += stale
        if report.queued and self.wake is not None:
            self.wake.set()
        if report.queued or report.stale or report.missing:
            log.info("tick: %s participants planned, %s queued, %s stale, %s missing doses recorded",
                     report.participants, report.queued, report.stale, report.missing)
        return report

    async def _alert_followups(self, session: AsyncSession, now: datetime) -> list:
        open_now = await alerts.open_alerts(session)
        if not open_now:
            return []
        staff = [(m.id, m.role) for m in await alerts.acknowledgers(session)]
        return plan_alert_followups(self.protocol, [(a.id, a.reported_at, alerts.alert_variables(a, p))
                                                    for a, p in open_now], staff, now)

    async def _plan_batch(self, session: AsyncSession, ids: list[int], now: datetime, report: TickReport) -> None:
        people = (await session.scalars(select(Participant).where(Participant.id.in_(ids)))).all()
        since = (now - timedelta(days=3)).date()
        facts: dict[int, list[DiaryFact]] = {}
        for entry in await diary.standing_facts(session, ids, since):
            facts.setdefault(entry.participant_id, []).append(DiaryFact(entry.kind, entry.local_date, entry.occurred_at))
        visit_facts: dict[int, list[VisitFact]] = {}
        for visit in await visits.open_visits(session, ids, (now - timedelta(days=2)).date()):
            visit_facts.setdefault(visit.participant_id, []).append(visit_fact(visit))
        tests = await pregnancy_tests.facts_for(session, [p.id for p in people if p.wocbp])
        last_checkins = await checkins.last_submitted(session, ids)
        planned, missing = [], []
        for person in people:
            records = Records(facts.get(person.id, []), visit_facts.get(person.id, []), tests.get(person.id, []),
                              last_checkins.get(person.id))
            plan = plan_participant(self.protocol, view_of(person), records, now)
            planned += plan.messages
            missing += [(person, m.slot.at, m.slot.local_date, m.slot.key) for m in plan.missing]
            person.next_plan_at = plan.next_check
        report.missing += await diary.record_missing(session, missing, now=now)
        queued, stale = await outbox.enqueue_planned(session, planned, now=now)
        report.participants += len(people)
        report.queued += queued
        report.stale += stale
