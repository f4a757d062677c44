"""record hashes: an audit entry that creates a clinical record holds the record's content hash;
records made before are hashed now, each in a new entry of its own (action "backfill"), so the
trail stays append-only and every record verifies from here on

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29
"""
from datetime import UTC, datetime
from types import SimpleNamespace

import sqlalchemy as sa
from alembic import op

from study.audit import CHAIN_LOCK_KEY, GENESIS, entry_hash
from study.migrations.append_only import allow_changes, forbid_changes
from study.record_hashes import BACKFILL, content_of

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

# Written out here rather than taken from study.record_hashes.RECORDS: a migration that ran once
# must run the same way again, whatever the models become. (The hash functions it imports are
# fixed for good: every stored hash depends on them.)
COLUMNS = {
    "diary_entries": ("participant_id", "kind", "occurred_at", "local_date", "timezone", "recorded_at", "source",
                      "late", "missed_reason", "supersedes_id", "recorded_by", "idempotency_key"),
    "checkins": ("participant_id", "kind", "started_at", "submitted_at", "local_date", "timezone", "source", "itch",
                 "pain", "reaction", "reaction_severity", "new_problem", "medicines", "medicines_change",
                 "red_flags"),
    "incomplete_checkins": ("participant_id", "kind", "source", "step", "answers", "started_at", "ended_at",
                            "local_date", "timezone", "reason"),
    "pregnancy_tests": ("participant_id", "result", "local_date", "timezone", "recorded_at", "source",
                        "recorded_by", "idempotency_key"),
    "contraception_answers": ("participant_id", "uses", "due_date", "local_date", "timezone", "recorded_at",
                              "recorded_by", "idempotency_key"),
    "consent_decisions": ("participant_id", "invite_id", "decision", "decided_at", "timezone"),
    "participant_messages": ("participant_id", "direction", "text", "staff_id", "at", "timezone", "kind",
                             "original_length", "context", "screening", "telegram_message_id"),
    "treatment_changes": ("participant_id", "state", "previous", "reason", "reason_text", "changed_by",
                          "changed_at", "local_date", "timezone"),
    "corrections": ("participant_id", "entity", "diary_entry_id", "checkin_id", "field", "old_value", "new_value",
                    "reason", "corrected_by", "corrected_at", "timezone"),
    "supersessions": ("participant_id", "superseded_id", "by_entry_id", "recorded_at", "timezone"),
}
REASON = "content hash backfilled: the record was made before creation entries held one"
ENTRIES = sa.table(
    "audit_entries",
    sa.column("seq", sa.Integer()), sa.column("occurred_at", sa.DateTime(timezone=True)),
    sa.column("actor", sa.String()), sa.column("action", sa.String()), sa.column("entity", sa.String()),
    sa.column("entity_id", sa.String()), sa.column("old_values", sa.JSON()), sa.column("new_values", sa.JSON()),
    sa.column("reason", sa.Text()), sa.column("timezone", sa.String()), sa.column("prev_hash", sa.String()),
    sa.column("hash", sa.String()), sa.column("content", sa.JSON()),
)


def upgrade() -> None:
    # A column added in place (no rebuild of the table on SQLite), so the append-only guard stays.
    with op.batch_alter_table('audit_entries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('content', sa.JSON(), nullable=True))
    _backfill()


def _backfill() -> None:
    """One entry per record already there, chained after the last entry, holding its content
    hash as the database holds it now: whatever happened to a record before this migration, the
    trail can no longer tell (`trialbot audit verify` before upgrading says whether anything
    was wrong then); from now on a change shows."""
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":  # a process still running the release before may be appending
        bind.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": CHAIN_LOCK_KEY})
    last = bind.execute(sa.select(ENTRIES.c.seq, ENTRIES.c.hash).order_by(ENTRIES.c.seq.desc()).limit(1)).first()
    seq, prev = (last.seq, last.hash) if last else (0, GENESIS)
    now = datetime.now(UTC)  # migrations have no study clock: when the backfill really ran
    metadata = sa.MetaData()
    rows = []
    for name, columns in COLUMNS.items():
        table = sa.Table(name, metadata, autoload_with=bind)
        query = sa.select(table.c.id, *(table.c[column] for column in columns)).order_by(table.c.id)
        for record in bind.execute(query).mappings():
            seq += 1
            row = {"seq": seq, "occurred_at": now, "actor": "system", "action": BACKFILL, "entity": name,
                   "entity_id": str(record["id"]), "old_values": None, "new_values": None, "reason": REASON,
                   "timezone": None, "prev_hash": prev, "content": content_of(record, columns)}
            row["hash"] = prev = entry_hash(SimpleNamespace(**row))
            rows.append(row)
    if rows:
        bind.execute(ENTRIES.insert(), rows)


def downgrade() -> None:
    # Entries that hold a content hash are chained by it: dropping the column would break every
    # one of them, and the backfill's entries cannot be taken out of an append-only trail.
    held = op.get_bind().execute(sa.text("SELECT count(*) FROM audit_entries WHERE content IS NOT NULL")).scalar()
    if held:
        raise RuntimeError(f"cannot downgrade below 0010: {held} audit entries hold content hashes their chain "
                           "depends on")
    allow_changes('audit_entries')  # SQLite drops a column by rebuilding the table, triggers and all
    with op.batch_alter_table('audit_entries', schema=None) as batch_op:
        batch_op.drop_column('content')
    forbid_changes('audit_entries')
