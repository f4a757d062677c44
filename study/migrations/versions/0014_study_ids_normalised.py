"""study ids normalised: a participant's study id is stored in capitals, with no spaces around it,
1-32 letters, digits, '-' or '_', a letter or digit first (a CHECK); since it is in capitals, the
unique constraint it always had (uq_participants_study_id) makes it unique whatever the case: p001
can no longer be enrolled beside P001

Ids written before this are normalised here ("p001 " becomes P001), each change audited like any
change of a participant's record. Two participants whose ids differ only in case would become one
id: the upgrade stops, naming them, and nothing changes, since which record is which participant
is the study team's decision, not the migration's. So does an id that cannot be made one.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01
"""
import re
from datetime import UTC, datetime
from types import SimpleNamespace

import sqlalchemy as sa
from alembic import op

from study.audit import CHAIN_LOCK_KEY, GENESIS, entry_hash

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None

# Written out here rather than taken from study.participants: a migration that ran once must run
# the same way again, whatever the code becomes. (SQLite has no regular expressions; GLOB is its
# pattern match, case-sensitive like PostgreSQL's ~.)
SHAPE = re.compile(r"[A-Z0-9][A-Z0-9_-]{0,31}")
CHECK = {
    "postgresql": "study_id ~ '^[A-Z0-9][A-Z0-9_-]{0,31}$'",
    "sqlite": ("length(study_id) BETWEEN 1 AND 32 AND study_id GLOB '[A-Z0-9]*' "
               "AND study_id NOT GLOB '*[^A-Z0-9_-]*'"),
}
REASON = "study id normalised (migration 0014): capitals, no spaces around it"
PARTICIPANTS = sa.table("participants", sa.column("id", sa.Integer()), sa.column("study_id", sa.String()),
                        sa.column("timezone", sa.String()))
ENTRIES = sa.table(
    "audit_entries",
    sa.column("seq", sa.Integer()), sa.column("occurred_at", sa.DateTime(timezone=True)),
    sa.column("actor", sa.String()), sa.column("action", sa.String()), sa.column("entity", sa.String()),
    sa.column("entity_id", sa.String()), sa.column("old_values", sa.JSON()), sa.column("new_values", sa.JSON()),
    sa.column("reason", sa.Text()), sa.column("timezone", sa.String()), sa.column("prev_hash", sa.String()),
    sa.column("hash", sa.String()), sa.column("content", sa.JSON()),
)


def upgrade() -> None:
    _normalise()
    with op.batch_alter_table('participants', schema=None) as batch_op:
        batch_op.create_check_constraint(op.f('ck_participants_study_id'), CHECK[op.get_bind().dialect.name])


def _normalise() -> None:
    bind = op.get_bind()
    rows = bind.execute(sa.select(PARTICIPANTS).order_by(PARTICIPANTS.c.id)).all()
    wanted = {row.id: row.study_id.strip().upper() for row in rows}
    bad = [f"{row.study_id!r} (participant {row.id})" for row in rows if not SHAPE.fullmatch(wanted[row.id])]
    if bad:
        raise RuntimeError(f"cannot upgrade to 0014: {', '.join(bad)} cannot be made a study id (1-32 letters, "
                           "digits, '-' or '_'); give the participant a valid study id, then upgrade again")
    shared: dict[str, list[str]] = {}
    for row in rows:
        shared.setdefault(wanted[row.id], []).append(f"{row.study_id!r} (participant {row.id})")
    clashes = [f"{' and '.join(ids)} would both be {study_id}" for study_id, ids in shared.items() if len(ids) > 1]
    if clashes:
        raise RuntimeError(f"cannot upgrade to 0014: study ids must differ in more than letter case, and "
                           f"{'; '.join(clashes)}. Decide with the investigator which participant keeps the id, "
                           "give the other a new one, then upgrade again")
    changed = [row for row in rows if wanted[row.id] != row.study_id]
    if not changed:
        return
    for row in changed:
        bind.execute(PARTICIPANTS.update().where(PARTICIPANTS.c.id == row.id).values(study_id=wanted[row.id]))
    if bind.dialect.name == "postgresql":  # a process still running the release before may be appending
        bind.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": CHAIN_LOCK_KEY})
    last = bind.execute(sa.select(ENTRIES.c.seq, ENTRIES.c.hash).order_by(ENTRIES.c.seq.desc()).limit(1)).first()
    seq, prev = (last.seq, last.hash) if last else (0, GENESIS)
    now = datetime.now(UTC)  # migrations have no study clock: when the change really happened
    entries = []
    for row in changed:
        seq += 1
        entry = {"seq": seq, "occurred_at": now, "actor": "system", "action": "update", "entity": "participant",
                 "entity_id": str(row.id), "old_values": {"study_id": row.study_id},
                 "new_values": {"study_id": wanted[row.id]}, "reason": REASON, "timezone": row.timezone,
                 "prev_hash": prev, "content": None}
        entry["hash"] = prev = entry_hash(SimpleNamespace(**entry))
        entries.append(entry)
    bind.execute(ENTRIES.insert(), entries)


def downgrade() -> None:
    # The ids stay as normalised: which were typed in lower case is in the audit trail.
    with op.batch_alter_table('participants', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_participants_study_id'), type_='check')
