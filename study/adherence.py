"""Adherence: how many of the expected applications were recorded, per participant and day.

Counted as corrected (study/corrections.py): a corrected entry counts as corrected, a withdrawn
one not at all, and a "missing" record a participant's own entry stands for is not counted again."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from study import corrections, participants
from study.models import DiaryEntry, DiaryKind, Participant, ParticipantStatus
from study.protocol import Protocol


@dataclass(frozen=True)
class DayAdherence:
    study_id: str
    applied: int
    expected: int
    missed: int  # said by the participant
    missing: int  # nothing recorded when the slot closed
    corrected: int = 0  # entries of the day the study team corrected (withdrawn ones too)


async def on_day(session: AsyncSession, protocol: Protocol, day: date) -> list[DayAdherence]:
    """The record for one local day of each participant in the study (active or paused) who was
    active on that day: not the day before they joined, nor a day spent paused."""
    everyone = (await session.scalars(
        select(Participant).where(Participant.status.in_(ParticipantStatus.SERVED)).order_by(Participant.study_id)
    )).all()
    periods = await participants.active_periods(session, everyone)
    people = [p for p in everyone if participants.active_on(periods[p.id], day, ZoneInfo(p.timezone))]
    ids = [p.id for p in people]
    touched = await corrections.touched(session, ids) if ids else set()
    withdrawal = aliased(DiaryEntry)
    counts = (
        select(DiaryEntry.participant_id, DiaryEntry.kind, func.count())
        .outerjoin(withdrawal, withdrawal.supersedes_id == DiaryEntry.id)
        .where(DiaryEntry.local_date == day, withdrawal.id.is_(None))
        .group_by(DiaryEntry.participant_id, DiaryEntry.kind)
    )
    tally: dict[tuple[int, str], int] = {(pid, kind): n for pid, kind, n in (await session.execute(counts)).all()
                                         if pid not in touched}
    corrected: dict[int, int] = {}
    if touched:  # the few with corrections or supersessions: as their entries stand now
        for view in await corrections.entry_views(session, sorted(touched), since=day):
            if view.local_date != day:
                continue
            if view.stands:
                tally[(view.participant_id, view.kind)] = tally.get((view.participant_id, view.kind), 0) + 1
            if view.corrected and not view.undone:  # counted as corrected, or withdrawn by the study team
                corrected[view.participant_id] = corrected.get(view.participant_id, 0) + 1
    expected = protocol.treatment.applications_per_day
    return [
        DayAdherence(p.study_id, tally.get((p.id, DiaryKind.APPLIED), 0), expected,
                     tally.get((p.id, DiaryKind.MISSED), 0),
                     tally.get((p.id, DiaryKind.MISSING), 0), corrected.get(p.id, 0))
        for p in people
    ]
