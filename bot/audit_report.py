"""The audit trail printed for people: one line per entry, UTC time and the participant's local time."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from study import audit, participants, record_hashes
from study.audit import Actor
from study.models import (
    AuditEntry,
    CheckIn,
    ConsentDecision,
    DiaryEntry,
    Invite,
    PregnancyTest,
    StaffMember,
    Visit,
)


async def participant_entries(session: AsyncSession, study_id: str, *, limit: int | None = None) -> list[AuditEntry]:
    """Entries about the participant and about every record that belongs to them."""
    participant = await participants.by_study_id(session, study_id)
    if participant is None:
        return []
    related = {"participant": [str(participant.id)]}
    for entity, model in (("diary_entry", DiaryEntry), ("invite", Invite), ("consent_decision", ConsentDecision),
                          ("visit", Visit), ("pregnancy_test", PregnancyTest), ("checkin", CheckIn)):
        ids = (await session.scalars(select(model.id).where(model.participant_id == participant.id))).all()
        related[entity] = [str(i) for i in ids]
    for kind in record_hashes.RECORDS:  # content hashes taken after the record was made (migration 0010)
        ids = (await session.scalars(select(kind.model.id).where(kind.model.participant_id == participant.id))).all()
        related[kind.table] = [str(i) for i in ids]
    rows: list[AuditEntry] = []
    for entity, entity_ids in related.items():
        rows += await audit.entries(session, entity=entity, entity_ids=entity_ids)
    rows.sort(key=lambda e: e.seq)
    return rows[-limit:] if limit else rows


def format_entries(entries: Iterable[AuditEntry], names: dict[str, str] | None = None) -> Iterator[str]:
    """One line per entry; `names` ("staff:1" -> "Dana Lee") puts a person's name beside their id."""
    names = names or {}
    for e in entries:
        when = e.occurred_at.strftime("%Y-%m-%d %H:%M:%S UTC")
        if e.timezone:
            when += " / " + e.occurred_at.astimezone(ZoneInfo(e.timezone)).strftime("%H:%M %Z")
        change = ""
        if e.old_values:
            change += " old=" + json.dumps(e.old_values, ensure_ascii=False)
        if e.new_values:
            change += " new=" + json.dumps(e.new_values, ensure_ascii=False)
        if e.content:  # the record's content hash (study/record_hashes.py): its start is enough for a person
            change += f" content=sha256:{str(e.content.get('sha256', ''))[:12]}"
        actor = f"{e.actor} ({names[e.actor]})" if e.actor in names else e.actor
        yield f"#{e.seq:<5} {when}  {actor:<22} {e.action:<7} {e.entity} {e.entity_id}{change}  ({e.reason or ''})"


async def staff_names(session: AsyncSession) -> dict[str, str]:
    """Every staff member's actor id ("staff:1") and name, for printing who did what."""
    rows = (await session.execute(select(StaffMember.id, StaffMember.name))).all()
    return {str(Actor.staff(staff_id)): name for staff_id, name in rows}
