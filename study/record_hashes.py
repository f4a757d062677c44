"""What each append-only record said when it was made, so that `audit verify` can tell whether
it still says so.

The audit entry that creates a record (its creation entry) holds the record's content hash: the
SHA-256 of a canonical serialisation of the record's columns, and a short digest of each column
so that the columns changed since can be named without copying the record (a participant's
words) into the trail. The entry's own hash covers both, so neither can be rewritten without
breaking the chain. The digests are of single values: a score or a yes/no could be guessed from
its digest, which tells nothing the database does not already hold beside it.

`RECORDS` is the one list of what is covered: every append-only table of the study record, how
its creation entry names it, and the columns hashed. `sent_messages` and `delivery_events` are
append-only too but are not covered: they are the delivery log, written after Telegram answered
in transactions of their own (one per message sent), not study data; putting them in the chain
would take the chain's lock for every reply.

Records made before content hashes existed were hashed once, by migration 0010, in entries of
their own (action `backfill`): from then on they verify like the rest.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from enum import Enum
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from study.database import among_param
from study.models import (
    AuditEntry,
    CheckIn,
    ConsentDecision,
    ContraceptionAnswer,
    Correction,
    DiaryEntry,
    IncompleteCheckin,
    ParticipantMessage,
    PregnancyTest,
    Supersession,
    TreatmentChange,
)

BACKFILL = "backfill"  # the audit action of a content hash taken after the record was made
DIGEST_CHARS = 16  # of a column's digest: enough to name a changed column; the full hash decides


@dataclass(frozen=True)
class RecordType:
    """One append-only table of the study record: how its creation entry names a row (action,
    entity, and the row's id in the entry's `entity_id`, or in its new values under `id_key`)
    and which columns are hashed (all but `id`: tests/test_record_hashes.py checks)."""

    model: Any
    entities: tuple[str, ...]
    columns: tuple[str, ...]
    action: str = "create"
    id_key: str | None = None

    @property
    def table(self) -> str:
        return str(self.model.__tablename__)

    def named_by(self, action: str, entity: str, entity_id: object, new: object) -> int | None:
        """The id of the row an audit entry creates, if it creates one of this table's."""
        if action != self.action or entity not in self.entities:
            return None
        if self.id_key is None:
            return _int(entity_id)
        return _int(new.get(self.id_key)) if isinstance(new, Mapping) else None


RECORDS: tuple[RecordType, ...] = (
    RecordType(DiaryEntry, ("diary_entry",), (
        "participant_id", "kind", "occurred_at", "local_date", "timezone", "recorded_at", "source", "late",
        "missed_reason", "supersedes_id", "recorded_by", "idempotency_key")),
    RecordType(CheckIn, ("checkin",), (
        "participant_id", "kind", "started_at", "submitted_at", "local_date", "timezone", "source", "itch", "pain",
        "reaction", "reaction_severity", "new_problem", "medicines", "medicines_change", "red_flags")),
    RecordType(IncompleteCheckin, ("incomplete_checkin",), (
        "participant_id", "kind", "source", "step", "answers", "started_at", "ended_at", "local_date", "timezone",
        "reason")),
    RecordType(PregnancyTest, ("pregnancy_test",), (
        "participant_id", "result", "local_date", "timezone", "recorded_at", "source", "recorded_by",
        "idempotency_key")),
    RecordType(ContraceptionAnswer, ("contraception_answer",), (
        "participant_id", "uses", "due_date", "local_date", "timezone", "recorded_at", "recorded_by",
        "idempotency_key")),
    RecordType(ConsentDecision, ("consent_decision",), (
        "participant_id", "invite_id", "decision", "decided_at", "timezone")),
    RecordType(ParticipantMessage, ("participant_message",), (
        "participant_id", "direction", "text", "staff_id", "at", "timezone", "kind", "original_length", "context",
        "screening", "telegram_message_id")),
    RecordType(TreatmentChange, ("treatment",), (
        "participant_id", "state", "previous", "reason", "reason_text", "changed_by", "changed_at", "local_date",
        "timezone"), action="update", id_key="treatment_change_id"),
    # Corrections and supersessions are written down as changes of the record they are about,
    # each naming its own row (study/corrections.py).
    RecordType(Correction, ("diary_entry", "checkin"), (
        "participant_id", "entity", "diary_entry_id", "checkin_id", "field", "old_value", "new_value", "reason",
        "corrected_by", "corrected_at", "timezone"), action="correct", id_key="correction_id"),
    RecordType(Supersession, ("diary_entry",), (
        "participant_id", "superseded_id", "by_entry_id", "recorded_at", "timezone"),
        action="supersede", id_key="supersession_id"),
)
BY_TABLE = {kind.table: kind for kind in RECORDS}


def _int(value: object) -> int | None:
    try:
        return int(str(value))
    except ValueError:
        return None


def created_by(action: str, entity: str, entity_id: object, new: object) -> tuple[RecordType, int] | None:
    """Which record an audit entry creates (or hashes afterwards, for a backfill), if any."""
    if action == BACKFILL:
        kind = BY_TABLE.get(entity)
        row_id = _int(entity_id)
        return (kind, row_id) if kind is not None and row_id is not None else None
    for kind in RECORDS:
        row_id = kind.named_by(action, entity, entity_id, new)
        if row_id is not None:
            return kind, row_id
    return None


# -- The canonical serialisation. Never change it: every hash ever stored depends on it. --------


def canonical(value: Any) -> Any:
    """A value as JSON, the same whichever database it was read from: instants as UTC ISO text
    with microseconds (SQLite hands them back without a zone, so a zone-less one is UTC), days
    and times as ISO text, enumerations as their value."""
    if isinstance(value, datetime):
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, Enum):
        return canonical(value.value)
    if isinstance(value, Mapping):
        return {str(k): canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [canonical(v) for v in value]
    return value


def _sha256(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def content_of(row: Mapping[Any, Any], columns: Iterable[str]) -> dict[str, Any]:
    """What a creation entry holds about its record: the hash of the columns together, and a
    digest of each (the list of columns a hash covers is kept with it, so a column added to the
    table later leaves the hashes taken before it valid)."""
    values = {column: canonical(row[column]) for column in columns}
    return {"sha256": _sha256(values),
            "fields": {column: _sha256([column, value])[:DIGEST_CHARS] for column, value in values.items()}}


def changed_columns(content: Mapping[str, Any], row: Mapping[Any, Any]) -> list[str] | None:
    """None if the row still says what `content` recorded; otherwise the columns that differ
    (every column, when the content hash itself is unreadable)."""
    fields = content.get("fields") if isinstance(content, Mapping) else None
    if not isinstance(fields, Mapping) or any(column not in row for column in fields):
        return sorted(row.keys() - {"id"})
    now = content_of(row, fields)
    if now["sha256"] == content.get("sha256"):
        return None
    return [column for column in fields if now["fields"][column] != fields[column]] or sorted(fields)


def _select(kind: RecordType) -> Any:
    table = kind.model.__table__
    return select(table.c.id, *(table.c[column] for column in kind.columns))


@functools.cache
def _read_back(dialect: str, kind: RecordType) -> Any:
    """`contents_for`'s read of a kind of record by ids, built once (every tap reads its entry back)."""
    return _select(kind).where(among_param(dialect, kind.model.__table__.c.id, "ids"))


@functools.cache
def returned(model: Any) -> tuple[Any, ...]:
    """The columns an INSERT of a `model` record returns so that its content hash needs no read
    back (`contents_for`'s `rows`): its id and every column hashed, built once."""
    kind = next(kind for kind in RECORDS if kind.model is model)
    table = model.__table__
    return (table.c.id, *(table.c[column] for column in kind.columns))


async def contents_for(session: AsyncSession, changes: Sequence[tuple[str, str, object, object]],
                       rows: Sequence[Mapping[Any, Any] | None] = ()) -> list[dict[str, Any] | None]:
    """The content hash each change's entry is to hold: for (action, entity, entity_id, new) that
    creates a record, its record as the database holds it (read back, so that it is hashed
    exactly as `audit verify` will read it); None for the rest. `rows`, beside `changes`: a
    record the caller has as the database holds it already (its INSERT's RETURNING of the
    columns `returned` names: the row as stored, read through the same column types), hashed
    without a read back."""
    named = [created_by(*change) for change in changes]
    contents: dict[tuple[str, int], dict[str, Any]] = {}
    wanted: dict[RecordType, set[int]] = {}
    for found, given in zip(named, [*rows, *[None] * (len(named) - len(rows))], strict=True):
        if found is None:
            continue
        if given is not None and given["id"] == found[1]:
            contents[(found[0].table, found[1])] = content_of(given, found[0].columns)
        else:
            wanted.setdefault(found[0], set()).add(found[1])
    if not wanted:
        return [contents[(found[0].table, found[1])] if found is not None else None for found in named]
    await session.flush()  # rows the caller added are written before they are read back
    dialect = session.get_bind().dialect.name
    for kind, ids in wanted.items():
        for row in (await session.execute(_read_back(dialect, kind), {"ids": sorted(ids)})).mappings():
            contents[(kind.table, row["id"])] = content_of(row, kind.columns)
    result: list[dict[str, Any] | None] = []
    for found in named:
        if found is None:
            result.append(None)
            continue
        kind, row_id = found
        if (kind.table, row_id) not in contents:
            raise LookupError(f"an audit entry creates {kind.table} {row_id}, which is not there")
        result.append(contents[(kind.table, row_id)])
    return result


# -- Verification --------------------------------------------------------------------------------


@dataclass
class Creations:
    """The records the trail says were made, and the content each was made with, gathered while
    the chain is walked (the first entry that holds a content hash for a record counts)."""

    seen: dict[tuple[str, int], int] = field(default_factory=dict)  # record -> the first entry naming it
    contents: dict[tuple[str, int], tuple[int, dict[str, Any]]] = field(default_factory=dict)  # -> (entry, hash)

    def note(self, entry: AuditEntry) -> None:
        found = created_by(entry.action, entry.entity, entry.entity_id, entry.new_values)
        if found is None:
            return
        record = (found[0].table, found[1])
        self.seen.setdefault(record, entry.seq)
        if isinstance(entry.content, dict) and record not in self.contents:
            self.contents[record] = (entry.seq, entry.content)


async def check(session: AsyncSession, creations: Creations) -> tuple[int, list[str]]:
    """Re-hash every covered record: (how many verified, one line per problem) for each record
    that differs from its creation entry, has none, or is gone while its entry remains."""
    verified, problems = 0, []
    for kind in RECORDS:
        present: set[int] = set()
        for row in (await session.execute(_select(kind).order_by(kind.model.__table__.c.id))).mappings():
            record = (kind.table, row["id"])
            present.add(row["id"])
            if record not in creations.seen:
                problems.append(f"{kind.table} {row['id']}: has no creation entry in the audit trail")
            elif record not in creations.contents:
                problems.append(f"{kind.table} {row['id']}: its creation entry (#{creations.seen[record]}) "
                                "holds no content hash")
            elif (changed := changed_columns(creations.contents[record][1], row)) is not None:
                problems.append(f"{kind.table} {row['id']}: content differs from its creation entry "
                                f"#{creations.contents[record][0]} ({', '.join(changed)})")
            else:
                verified += 1
        for (table, row_id), seq in sorted(creations.seen.items()):
            if table == kind.table and row_id not in present:
                problems.append(f"{table} {row_id}: missing (audit entry #{seq} created it)")
    return verified, problems
