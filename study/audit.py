"""The audit trail (21 CFR Part 11 style): who did what, to which record, when and why.

Entries are chained: each one's hash covers its content and the previous entry's hash, so an
altered, inserted or removed entry breaks the chain and `verify` reports it. The chain is
appended under a lock (SQLite's write lock; an advisory lock on PostgreSQL) so that concurrent
writers cannot fork it; the unique `prev_hash` column is the last line of defence.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from study.models import (
    AuditEntry,
    Correction,
    DiaryEntry,
    Participant,
    PregnancyTest,
    Supersession,
    Visit,
)

GENESIS = "0" * 64
_CHAIN_LOCK_KEY = 0x7472_6961_6C62  # "trialb": arbitrary, constant, for pg_advisory_xact_lock


@dataclass(frozen=True)
class Actor:
    """Who acted: a participant (by study id), a staff member (by staff id) or the system."""

    kind: str
    ident: str

    def __str__(self) -> str:
        return self.kind if self.kind == "system" else f"{self.kind}:{self.ident}"

    @classmethod
    def participant(cls, study_id: str) -> Actor:
        return cls("participant", study_id)

    @classmethod
    def staff(cls, staff_id: int | str) -> Actor:
        return cls("staff", str(staff_id))

    @classmethod
    def cli(cls, user: str) -> Actor:
        """A tool acting outside the staff list (the demo). Commands at the server act as a named
        staff member instead (bot/operator.py), never as an operating-system account."""
        return cls("operator", user)


SYSTEM = Actor("system", "system")


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _entry_hash(entry: AuditEntry) -> str:
    content = {
        "seq": entry.seq,
        "occurred_at": entry.occurred_at.isoformat(),
        "actor": entry.actor,
        "action": entry.action,
        "entity": entry.entity,
        "entity_id": entry.entity_id,
        "old": entry.old_values,
        "new": entry.new_values,
        "reason": entry.reason,
        "timezone": entry.timezone,
        "prev": entry.prev_hash,
    }
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Change:
    """One thing to write down: who did what to which record, when and why."""

    actor: Actor
    action: str
    entity: str
    entity_id: object
    now: datetime
    old: dict[str, Any] | None = None
    new: dict[str, Any] | None = None
    reason: str | None = None
    timezone: str | None = None


async def record(
    session: AsyncSession,
    *,
    actor: Actor,
    action: str,
    entity: str,
    entity_id: object,
    now: datetime,
    old: dict[str, Any] | None = None,
    new: dict[str, Any] | None = None,
    reason: str | None = None,
    timezone: str | None = None,
) -> AuditEntry:
    """Append one entry to the trail, in the caller's transaction."""
    [entry] = await record_many(session, [Change(actor, action, entity, entity_id, now, old, new, reason, timezone)])
    return entry


async def record_many(session: AsyncSession, changes: list[Change]) -> list[AuditEntry]:
    """Append entries to the trail in order, chained, with one read of the chain's end and one
    write (the scheduler records thousands of missing doses at once)."""
    if not changes:
        return []
    if session.bind.dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CHAIN_LOCK_KEY})
    last = (
        await session.execute(select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1))
    ).first()
    seq, prev = (last.seq, last.hash) if last else (0, GENESIS)
    entries: list[AuditEntry] = []
    for change in changes:
        seq += 1
        entry = AuditEntry(
            seq=seq,
            occurred_at=change.now,
            actor=str(change.actor),
            action=change.action,
            entity=change.entity,
            entity_id=str(change.entity_id),
            old_values=_jsonable(change.old),
            new_values=_jsonable(change.new),
            reason=change.reason,
            timezone=change.timezone,
            prev_hash=prev,
        )
        entry.hash = prev = _entry_hash(entry)
        entries.append(entry)
    # A Core INSERT rather than the unit of work's bookkeeping: entries are never changed after.
    columns = [c.key for c in AuditEntry.__table__.columns if c.key != "id"]
    await session.execute(AuditEntry.__table__.insert(), [{c: getattr(e, c) for c in columns} for e in entries])
    return entries


@dataclass
class VerifyReport:
    entries: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


async def verify(session: AsyncSession) -> VerifyReport:
    """Walk the whole chain; report altered, missing or re-ordered entries, and records that
    exist without the audit entry that created them (which is how removing the newest entries
    shows up, since nothing follows them in the chain)."""
    report = VerifyReport()
    expected_prev, expected_seq = GENESIS, 1
    created: set[tuple[str, str]] = set()
    # Corrections and supersessions are written down as changes of the record they are about,
    # each naming its own row (study/corrections.py).
    noted: set[tuple[str, str]] = set()
    for entry in (await session.scalars(select(AuditEntry).order_by(AuditEntry.seq))).all():
        report.entries += 1
        if entry.seq != expected_seq:
            report.problems.append(f"entry {expected_seq} is missing (found {entry.seq} next)")
        if entry.prev_hash != expected_prev:
            report.problems.append(f"entry {entry.seq}: does not follow the entry before it")
        if _entry_hash(entry) != entry.hash:
            report.problems.append(f"entry {entry.seq}: content was altered (hash mismatch)")
        if entry.action == "create":
            created.add((entry.entity, entry.entity_id))
        for action, kind in (("correct", "correction"), ("supersede", "supersession")):
            if entry.action == action and isinstance(entry.new_values, dict) and f"{kind}_id" in entry.new_values:
                noted.add((kind, str(entry.new_values[f"{kind}_id"])))
        expected_prev, expected_seq = entry.hash, entry.seq + 1

    for entity, model in (("participant", Participant), ("diary_entry", DiaryEntry), ("visit", Visit),
                          ("pregnancy_test", PregnancyTest)):
        ids = (await session.scalars(select(model.id))).all()
        for ident in ids:
            if (entity, str(ident)) not in created:
                report.problems.append(f"{entity} {ident} has no audit entry for its creation")
    for kind, table in (("correction", Correction.__table__), ("supersession", Supersession.__table__)):
        for ident in (await session.scalars(select(table.c.id))).all():
            if (kind, str(ident)) not in noted:
                report.problems.append(f"{kind} {ident} has no audit entry")
    return report


async def entries(session: AsyncSession, *, entity: str | None = None, entity_ids: list[str] | None = None,
                  actor: str | None = None, limit: int | None = None) -> list[AuditEntry]:
    query = select(AuditEntry).order_by(AuditEntry.seq)
    if entity:
        query = query.where(AuditEntry.entity == entity)
    if entity_ids is not None:
        query = query.where(AuditEntry.entity_id.in_(entity_ids))
    if actor:
        query = query.where(AuditEntry.actor == actor)
    rows = list((await session.scalars(query)).all())
    return rows[-limit:] if limit else rows


async def count(session: AsyncSession) -> int:
    return (await session.scalar(select(func.count()).select_from(AuditEntry))) or 0
