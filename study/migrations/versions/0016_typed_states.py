"""typed states: every status, kind, source and event column whose values are a closed set gets a
CHECK constraint naming that set (study/models.py has an enum for each, and the CHECK the models
declare is made from it): participants.status, outbox.status and kind, delivery_events.event,
visits.status, alerts.status and source, diary entries' kind and source, consent decisions,
check-ins' (and drafts' and unfinished ones') kind and source, pregnancy tests' result and
source, participant messages' direction, a treatment change's previous state, staff roles and
the strangers' counts

A value outside its set already in the database (written by hand, or by a release with a bug)
stops the upgrade before anything changes, naming each table, column and value with how many rows
hold it: which value was meant is the study team's decision, not the migration's.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-08
"""
import sqlalchemy as sa
from alembic import op

from study.migrations.append_only import allow_changes, forbid_changes

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None

# Written out here rather than taken from study.models: a migration that ran once must run the
# same way again, whatever the enums become. (table, column, the values it may hold)
CHECKS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("participants", "status", ("invited", "active", "paused", "withdrawn", "completed")),
    ("staff", "role", ("coordinator", "investigator", "monitor")),
    ("stranger_counts", "kind", ("message", "wrong_code", "locked_out")),
    ("outbox", "status", ("pending", "sending", "sent", "failed", "skipped")),
    ("outbox", "kind", ("notice", "reminder", "nudge", "visit_reminder", "pregnancy_reminder", "checkin",
                        "checkin_expired", "treatment", "alert", "alert_closed", "participant_message",
                        "media_copy", "message_receipt", "reply", "broadcast", "digest", "anchor")),
    ("delivery_events", "event", ("sent", "retry", "failed", "skipped", "answered")),
    ("visits", "status", ("scheduled", "confirmed", "reschedule_requested", "cancelled", "done")),
    ("alerts", "status", ("open", "acknowledged")),
    ("alerts", "source", ("checkin", "urgent", "message", "pregnancy_test")),
    ("diary_entries", "kind", ("applied", "missed", "missing", "withdrawal")),
    ("diary_entries", "source", ("button", "reminder", "command", "system")),
    ("consent_decisions", "decision", ("agreed", "declined")),
    ("checkins", "kind", ("full", "scores")),
    ("checkins", "source", ("command", "scheduled")),
    ("checkin_drafts", "kind", ("full", "scores")),
    ("checkin_drafts", "source", ("command", "scheduled")),
    ("incomplete_checkins", "kind", ("full", "scores")),
    ("incomplete_checkins", "source", ("command", "scheduled")),
    ("pregnancy_tests", "result", ("negative", "positive", "not_yet")),
    ("pregnancy_tests", "source", ("reminder", "staff")),
    ("participant_messages", "direction", ("in", "out")),
    ("treatment_changes", "previous", ("on_treatment", "interrupted", "off_treatment", "completed", "withdrawn")),
)
# Append-only tables: SQLite adds a CHECK by rebuilding the table, which drops its guard.
APPEND_ONLY = {"delivery_events", "diary_entries", "consent_decisions", "checkins", "incomplete_checkins",
               "pregnancy_tests", "participant_messages", "treatment_changes"}


def _sql(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _tables() -> dict[str, list[tuple[str, tuple[str, ...]]]]:
    tables: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
    for table, column, values in CHECKS:
        tables.setdefault(table, []).append((column, values))
    return tables


def upgrade() -> None:
    _refuse_values_outside()
    for table, columns in _tables().items():
        if table in APPEND_ONLY:
            allow_changes(table)
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column, values in columns:
                batch_op.create_check_constraint(op.f(f'ck_{table}_{column}'), _sql(column, values))
        if table in APPEND_ONLY:
            forbid_changes(table)


def _refuse_values_outside() -> None:
    bind = op.get_bind()
    found = []
    for table, column, values in CHECKS:
        rows = bind.execute(sa.text(
            f"SELECT {column} AS value, count(*) AS n FROM {table} "
            f"WHERE NOT ({_sql(column, values)}) GROUP BY {column} ORDER BY {column}")).all()
        found += [f"{table}.{column} = {row.value!r} ({row.n} row{'s' if row.n != 1 else ''})" for row in rows]
    if found:
        raise RuntimeError(f"cannot upgrade to 0016: {'; '.join(found)}: each of these columns holds one of a "
                           "fixed set of values (study/models.py), and these are not among them. Nothing was "
                           "changed; correct those rows (which value was meant is the study team's decision), "
                           "then upgrade again")


def downgrade() -> None:
    for table, columns in reversed(list(_tables().items())):
        if table in APPEND_ONLY:
            allow_changes(table)
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column, _values in reversed(columns):
                batch_op.drop_constraint(op.f(f'ck_{table}_{column}'), type_='check')
        if table in APPEND_ONLY:
            forbid_changes(table)
