"""Pregnancy tests for women of childbearing potential: when the next one is due, and the
participant's answers (Done - negative, Done - positive, Not yet).

Answers are append-only rows, each audited. A test is due `every_days` after the last recorded
result (negative or positive; "not yet" does not reset it), and the first `every_days` after
consent. What a positive answer triggers beyond a staff notice belongs to the safety workflow.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from study import audit
from study.audit import Actor
from study.database import among
from study.models import Participant, PregnancyTest
from study.protocol import PregnancyTestSection

RESULTS = ("negative", "positive", "not_yet")
RESETTING = ("negative", "positive")  # a result: the next test is counted from it


@dataclass(frozen=True)
class PregnancyFact:
    """A recorded answer, as the planner sees it."""

    result: str
    local_date: date


def due_date(rules: PregnancyTestSection, consent_day: date, facts: Iterable[PregnancyFact]) -> date:
    """The day the next test is due: `every_days` after the last result, or after consent."""
    results = [f.local_date for f in facts if f.result in RESETTING]
    anchor = max(results) if results else consent_day
    return anchor + timedelta(days=rules.every_days)


def consent_day(participant: Participant) -> date:
    consented = participant.consented_at or participant.enrolled_at
    return consented.astimezone(ZoneInfo(participant.timezone)).date()


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


async def current_due(session: AsyncSession, rules: PregnancyTestSection, participant: Participant) -> date:
    facts = (await facts_for(session, [participant.id])).get(participant.id, [])
    return due_date(rules, consent_day(participant), facts)


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
        earlier = await session.scalar(select(PregnancyTest).where(PregnancyTest.idempotency_key == key))
        return Recorded(earlier, False)
    await audit.record(session, actor=actor, action="create", entity="pregnancy_test", entity_id=entry.id, now=now,
                       new={"result": result, "local_date": entry.local_date, "source": source},
                       reason="pregnancy test answer", timezone=participant.timezone)
    return Recorded(entry, True)
