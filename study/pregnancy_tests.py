"""Pregnancy tests for women of childbearing potential: when the next one is due, and the
participant's answers (Done - negative, Done - positive, Not yet).

Answers are append-only rows, each audited. Tests fall due on the protocol's calendar: every
`every_days` from the anchor (the date of `[pregnancy_tests] anchor_visit`, the protocol's day 0;
from consent until that visit is planned), not from the last answer, so late answers do not make
the schedule drift. The test due now is the latest calendar day that no result (negative or
positive; "not yet" is no result) has answered. A positive result starts the pregnancy pathway
(bot/handlers/pregnancy.py): treatment interrupted, the team alerted.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from study import audit
from study.audit import Actor
from study.database import among
from study.models import ContraceptionAnswer, Participant, PregnancyResult, PregnancySource, PregnancyTest, Visit
from study.protocol import PregnancyTestSection

RESULTS = tuple(PregnancyResult)
SOURCES = tuple(PregnancySource)  # answered on a reminder's buttons, or recorded by the study team
RESETTING = (PregnancyResult.NEGATIVE, PregnancyResult.POSITIVE)  # a result: the next test is counted from it


@dataclass(frozen=True)
class PregnancyFact:
    """A recorded answer, as the planner sees it."""

    result: str
    local_date: date


def due_date(rules: PregnancyTestSection, anchor: date, facts: Iterable[PregnancyFact], today: date) -> date:
    """The calendar day of the test due now (or next): the first day of the calendar (anchor +
    k * every_days, k >= 1) after the last result; once that day has come, the latest calendar
    day reached (a missed test is not chased after the next one is due)."""
    every = rules.every_days
    results = [f.local_date for f in facts if f.result in RESETTING]
    last = max(results) if results else None
    first = 1 if last is None or last < anchor else (last - anchor).days // every + 1
    reached = (today - anchor).days // every
    return anchor + timedelta(days=every * max(first, reached))


def apply_to(rules: PregnancyTestSection, participant: Participant) -> bool:
    """Does the protocol schedule tests for this participant now (childbearing potential, tests
    on, and a treatment state in which they are due)?"""
    from study.treatment import pregnancy_tests_due

    return (rules.enabled and participant.wocbp
            and pregnancy_tests_due(rules.during, participant.treatment, participant.treatment_reason))


async def anchors_for(session: AsyncSession, rules: PregnancyTestSection,
                      participants: Iterable[Participant | Any]) -> dict[int, date]:
    """Each participant's calendar anchor: their anchor visit's protocol date, else consent."""
    people = list(participants)
    anchors: dict[int, date] = {}
    for person in people:
        consented = person.consented_at or person.active_since or person.enrolled_at
        anchors[person.id] = consented.astimezone(ZoneInfo(person.timezone)).date()
    if rules.anchor_visit and people:
        rows = await session.execute(
            select(Visit.participant_id, Visit.target_date, Visit.scheduled_date)
            .where(among(session, Visit.participant_id, [p.id for p in people]), Visit.name == rules.anchor_visit))
        for participant_id, target, scheduled in rows.all():
            anchors[participant_id] = target or scheduled
    return anchors
async def facts_for(session: AsyncSession, participant_ids: list[int]) -> dict[int, list[PregnancyFact]]:
    if not participant_ids:
        return {}
    rows = await session.execute(select(PregnancyTest.participant_id, PregnancyTest.result, PregnancyTest.local_date)
                                 .where(among(session, PregnancyTest.participant_id, participant_ids))
                                 .order_by(PregnancyTest.id))
    facts: dict[int, list[PregnancyFact]] = {}
    for participant_id, result, day in rows.all():
        facts.setdefault(participant_id, []).append(PregnancyFact(result, day))
    return facts


async def current_due(session: AsyncSession, rules: PregnancyTestSection, participant: Participant, *,
                      today: date) -> date:
    facts = (await facts_for(session, [participant.id])).get(participant.id, [])
    anchor = (await anchors_for(session, rules, [participant]))[participant.id]
    return due_date(rules, anchor, facts, today)


@dataclass(frozen=True)
class Recorded:
    entry: PregnancyTest
    new: bool  # False: this reminder was answered before (a double tap); the first answer stands


async def record(session: AsyncSession, participant: Participant, result: str, *, key: str | None, source: str,
                 actor: Actor, now: datetime) -> Recorded:
    """Store one answer, audited. The same `key` (one reminder message) stores one answer only."""
    if result not in RESULTS:
        raise ValueError(f"unknown pregnancy test result {result!r}")
    if key is not None:
        earlier = await session.scalar(select(PregnancyTest).where(PregnancyTest.idempotency_key == key))
        if earlier is not None:
            return Recorded(earlier, False)
    zone = ZoneInfo(participant.timezone)
    entry = PregnancyTest(participant_id=participant.id, result=result, local_date=now.astimezone(zone).date(),
                          timezone=participant.timezone, recorded_at=now, source=source, recorded_by=str(actor),
                          idempotency_key=key)
    try:
        async with session.begin_nested():
            session.add(entry)
            await session.flush()
    except IntegrityError:  # the other tap of a double tap got there first
        first = (await session.execute(select(PregnancyTest).where(PregnancyTest.idempotency_key == key))).scalar_one()
        return Recorded(first, False)
    await audit.record(session, actor=actor, action="create", entity="pregnancy_test", entity_id=entry.id, now=now,
                       new={"result": result, "local_date": entry.local_date, "source": source},
                       reason="pregnancy test answer", timezone=participant.timezone)
    return Recorded(entry, True)


async def record_contraception(session: AsyncSession, participant: Participant, uses: bool, *, due: date, key: str,
                               actor: Actor, now: datetime) -> tuple[ContraceptionAnswer, bool]:
    """Store the answer to the protocol's contraception question, audited; one per reminder
    (`key`): a second tap finds the first. Returns (the answer, whether it is new)."""
    earlier = await session.scalar(select(ContraceptionAnswer).where(ContraceptionAnswer.idempotency_key == key))
    if earlier is not None:
        return earlier, False
    zone = ZoneInfo(participant.timezone)
    entry = ContraceptionAnswer(participant_id=participant.id, uses=uses, due_date=due,
                                local_date=now.astimezone(zone).date(), timezone=participant.timezone,
                                recorded_at=now, recorded_by=str(actor), idempotency_key=key)
    session.add(entry)
    await session.flush()
    await audit.record(session, actor=actor, action="create", entity="contraception_answer", entity_id=entry.id,
                       now=now, new={"uses": uses, "due_date": due}, reason="contraception question",
                       timezone=participant.timezone)
    return entry, True
