"""Adherence: how many of the expected applications were recorded, per participant and day."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from study.models import DiaryEntry, Participant
from study.protocol import Protocol


@dataclass(frozen=True)
class DayAdherence:
    study_id: str
    applied: int
    expected: int
    missed: int  # said by the participant
    missing: int  # nothing recorded when the slot closed


async def on_day(session: AsyncSession, protocol: Protocol, day: date) -> list[DayAdherence]:
    """Each active or paused participant's record for one local day."""
    withdrawal = aliased(DiaryEntry)
    counts = (
        select(DiaryEntry.participant_id, DiaryEntry.kind, func.count())
        .outerjoin(withdrawal, withdrawal.supersedes_id == DiaryEntry.id)
        .where(DiaryEntry.local_date == day, withdrawal.id.is_(None))
        .group_by(DiaryEntry.participant_id, DiaryEntry.kind)
    )
    tally: dict[tuple[int, str], int] = {(pid, kind): n for pid, kind, n in (await session.execute(counts)).all()}
    people = (await session.scalars(
        select(Participant).where(Participant.status.in_(("active", "paused"))).order_by(Participant.study_id)
    )).all()
    expected = protocol.treatment.applications_per_day
    return [
        DayAdherence(p.study_id, tally.get((p.id, "applied"), 0), expected, tally.get((p.id, "missed"), 0),
                     tally.get((p.id, "missing"), 0))
        for p in people
    ]
