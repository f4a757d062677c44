"""The audit trail (21 CFR Part 11 style): who did what, to which record, when and why.

Entries are chained: each one's hash covers its content and the previous entry's hash, so an
altered, inserted or removed entry breaks the chain and `verify` reports it. The chain is
appended under a lock (SQLite's write lock; an advisory lock on PostgreSQL) so that concurrent
writers cannot fork it; the unique `prev_hash` column is the last line of defence.

An entry that creates a clinical record also holds the record's content hash (study/record_hashes.py),
so `verify` finds a record changed after it was made, not only a changed entry. Removing the
newest entries leaves a shorter chain that is intact: an anchor kept outside the database
(study/audit_anchor.py) catches that.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, cast

from sqlalchemy import Table, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from study import record_hashes
from study.models import AuditEntry, Participant, Visit

GENESIS = "0" * 64
CHAIN_LOCK_KEY = 0x7472_6961_6C62  # "trialb": arbitrary, constant, for pg_advisory_xact_lock


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


def entry_hash(entry: Any) -> str:
    """An entry's hash (an AuditEntry, or anything with its attributes: migration 0010 hashes
    the entries it writes). Never change it: every chain ever written depends on it."""
    hashed = {
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
    # Only entries that hold a content hash name it, so every entry written before there were
    # content hashes keeps the hash it was written with.
    if entry.content is not None:
        hashed["content"] = entry.content
    canonical = json.dumps(hashed, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
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
    # The record this change creates as its INSERT returned it (record_hashes.returned's columns):
    # its content hash is taken from it, with no read back.
    row: Mapping[Any, Any] | None = None


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
    row: Mapping[Any, Any] | None = None,
) -> AuditEntry:
    """Append one entry to the trail, in the caller's transaction. `row`: see `Change`."""
    [entry] = await record_many(session, [Change(actor, action, entity, entity_id, now, old, new, reason, timezone,
                                                 row)])
    return entry


# Built once: every change appends here.
_TAIL = select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)
# (A mapped class's __table__ is its Table; DeclarativeBase declares only a FromClause.)
_INSERT = cast(Table, AuditEntry.__table__).insert()
_COLUMNS = [c.key for c in cast(Table, AuditEntry.__table__).columns if c.key != "id"]
_CHAIN_LOCK = text("SELECT pg_advisory_xact_lock(:key)")


async def record_many(session: AsyncSession, changes: list[Change]) -> list[AuditEntry]:
    """Append entries to the trail in order, chained, with one read of the chain's end and one
    write (the scheduler records thousands of missing doses at once)."""
    if not changes:
        return []
    # Read before the chain's lock is taken: the records are the caller's, in its transaction.
    contents = await record_hashes.contents_for(session, [(c.action, c.entity, c.entity_id, c.new) for c in changes],
                                                [c.row for c in changes])
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(_CHAIN_LOCK, {"key": CHAIN_LOCK_KEY})
    last = (await session.execute(_TAIL)).first()
    seq, prev = (last.seq, last.hash) if last else (0, GENESIS)
    entries: list[AuditEntry] = []
    for change, content in zip(changes, contents, strict=True):
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
            content=content,
        )
        entry.hash = prev = entry_hash(entry)
        entries.append(entry)
    # A Core INSERT rather than the unit of work's bookkeeping: entries are never changed after.
    await session.execute(_INSERT, [{c: getattr(e, c) for c in _COLUMNS} for e in entries])
    return entries


@dataclass
class VerifyReport:
    entries: int = 0
    records: int = 0  # records whose content was re-hashed and found as recorded
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


async def verify(session: AsyncSession) -> VerifyReport:
    """Walk the whole chain and report altered, missing or re-ordered entries; then re-hash every
    clinical record against its creation entry, and report records changed since, gone, or
    made without an entry (which is also how removing the newest entries shows, when they
    created records; an anchor catches the rest: study/audit_anchor.py)."""
    report = VerifyReport()
    expected_prev, expected_seq = GENESIS, 1
    created: set[tuple[str, str]] = set()
    creations = record_hashes.Creations()
    for entry in (await session.scalars(select(AuditEntry).order_by(AuditEntry.seq))).all():
        report.entries += 1
        if entry.seq != expected_seq:
            report.problems.append(f"entry {expected_seq} is missing (found {entry.seq} next)")
        if entry.prev_hash != expected_prev:
            report.problems.append(f"entry {entry.seq}: does not follow the entry before it")
        if entry_hash(entry) != entry.hash:
            report.problems.append(f"entry {entry.seq}: content was altered (hash mismatch)")
        if entry.action == "create":
            created.add((entry.entity, entry.entity_id))
        creations.note(entry)
        expected_prev, expected_seq = entry.hash, entry.seq + 1

    # Participants and visits are current state, changed in place (each change audited): their
    # creation is checked, not their content.
    for entity, model in (("participant", Participant), ("visit", Visit)):
        for ident in (await session.scalars(select(model.id).order_by(model.id))).all():
            if (entity, str(ident)) not in created:
                report.problems.append(f"{model.__tablename__} {ident}: has no creation entry in the audit trail")
    report.records, problems = await record_hashes.check(session, creations)
    report.problems += problems
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
