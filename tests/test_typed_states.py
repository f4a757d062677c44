"""Typed states (issue 18): every status, kind, source and event column holds one of its enum's
values (study/models.py), and the database itself refuses anything else, on SQLite and PostgreSQL.
Migration 0016 adds those CHECKs to a database in use, and stops, changing nothing, when a row
already holds a value outside its set."""

from __future__ import annotations

from enum import StrEnum

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from study import models as m
from study.database import Database
from tests.databases import migrated

NOW = "2026-11-24 15:00:00"
DAY = "2026-11-24"
BEFORE = "0015"  # the revision before migration 0016

# Rows the others point at: participants 1-9, a staff member, an invite, an outbox row. (Rows
# given an id take it outside the sequence PostgreSQL numbers others by: the tables below give ids too.)
BASE = [
    *(("INSERT INTO participants (id, study_id, timezone, language, wocbp, reminder_times, status, enrolled_at, "
       f"treatment) VALUES ({n}, 'P00{n}', 'UTC', 'en', false, '08:00', 'active', '{NOW}', 'on_treatment')")
      for n in range(1, 10)),
    f"INSERT INTO staff (id, telegram_user_id, name, role, active, language, added_at) VALUES (1, 11, 'A', "
    f"'coordinator', true, 'en', '{NOW}')",
    f"INSERT INTO invites (id, participant_id, code_hash, issued_at, expires_at) VALUES (1, 1, 'h', '{NOW}', '{NOW}')",
    ("INSERT INTO outbox (id, dedup_key, kind, participant_id, template_id, variables, status, created_at, not_before, "
     f"attempts, disable_notification) VALUES (1, 'k', 'notice', 1, 't', '{{}}', 'sent', '{NOW}', '{NOW}', 1, false)"),
]

# Per table: an INSERT of one row ({n} makes it unique where a unique column needs it), the
# values of its typed columns when not the one tried, and each typed column's enum.
TABLES: dict[str, tuple[str, dict[str, str], dict[str, type[StrEnum]]]] = {
    "participants": (
        "INSERT INTO participants (id, study_id, timezone, language, wocbp, reminder_times, status, enrolled_at, "
        f"treatment) VALUES (10{{n}}, 'Q{{n}}', 'UTC', 'en', false, '08:00', :status, '{NOW}', 'on_treatment')",
        {"status": "invited"}, {"status": m.ParticipantStatus}),
    "staff": (
        f"INSERT INTO staff (id, telegram_user_id, name, role, active, language, added_at) VALUES (10{{n}}, 100{{n}}, "
        f"'B', :role, "
        f"true, 'en', '{NOW}')", {"role": "monitor"}, {"role": m.StaffRole}),
    "stranger_counts": (
        f"INSERT INTO stranger_counts (day, kind, count) VALUES ('{DAY}', :kind, 1)",
        {"kind": "message"}, {"kind": m.StrangerEvent}),
    "outbox": (
        "INSERT INTO outbox (id, dedup_key, kind, participant_id, template_id, variables, status, created_at, "
        f"not_before, attempts, disable_notification) VALUES (10{{n}}, 'k{{n}}', :kind, 1, 't', '{{{{}}}}', :status, '{NOW}', '{NOW}', 0, "
        "false)", {"kind": "notice", "status": "pending"}, {"kind": m.OutboxKind, "status": m.OutboxStatus}),
    "delivery_events": (
        f"INSERT INTO delivery_events (outbox_id, at, event) VALUES (1, '{NOW}', :event)",
        {"event": "sent"}, {"event": m.DeliveryStep}),
    "visits": (
        "INSERT INTO visits (participant_id, name, label, scheduled_date, status, revision, created_at, changed_at) "
        f"VALUES (1, 'v{{n}}', 'V', '{DAY}', :status, 1, '{NOW}', '{NOW}')",
        {"status": "scheduled"}, {"status": m.VisitStatus}),
    "alerts": (
        f"INSERT INTO alerts (participant_id, source, triggers, reported_at, status) VALUES (1, :source, '[]', "
        f"'{NOW}', :status)", {"source": "urgent", "status": "open"},
        {"source": m.AlertSource, "status": m.AlertStatus}),
    "diary_entries": (
        "INSERT INTO diary_entries (participant_id, kind, occurred_at, local_date, timezone, recorded_at, source, "
        f"late, recorded_by) VALUES (1, :kind, '{NOW}', '{DAY}', 'UTC', '{NOW}', :source, false, 'x')",
        {"kind": "applied", "source": "button"}, {"kind": m.DiaryKind, "source": m.DiarySource}),
    "consent_decisions": (
        f"INSERT INTO consent_decisions (participant_id, invite_id, decision, decided_at, timezone) VALUES (1, 1, "
        f":decision, '{NOW}', 'UTC')", {"decision": "agreed"}, {"decision": m.Consent}),
    "checkins": (
        "INSERT INTO checkins (participant_id, kind, started_at, submitted_at, local_date, timezone, source) "
        f"VALUES (1, :kind, '{NOW}', '{NOW}', '{DAY}', 'UTC', :source)",
        {"kind": "full", "source": "command"}, {"kind": m.CheckinKind, "source": m.CheckinSource}),
    "checkin_drafts": (
        "INSERT INTO checkin_drafts (participant_id, kind, source, step, answers, started_at, updated_at, state, "
        f"expires_at) VALUES ({{n}}, :kind, :source, 'itch', '{{{{}}}}', '{NOW}', '{NOW}', 'asking', '{NOW}')",
        {"kind": "full", "source": "command"}, {"kind": m.CheckinKind, "source": m.CheckinSource}),
    "incomplete_checkins": (
        "INSERT INTO incomplete_checkins (participant_id, kind, source, step, answers, started_at, ended_at, "
        f"local_date, timezone, reason) VALUES (1, :kind, :source, 'itch', '{{{{}}}}', '{NOW}', '{NOW}', '{DAY}', "
        "'UTC', 'expired')",
        {"kind": "full", "source": "command"}, {"kind": m.CheckinKind, "source": m.CheckinSource}),
    "pregnancy_tests": (
        "INSERT INTO pregnancy_tests (participant_id, result, local_date, timezone, recorded_at, source, "
        f"recorded_by) VALUES (1, :result, '{DAY}', 'UTC', '{NOW}', :source, 'x')",
        {"result": "negative", "source": "reminder"}, {"result": m.PregnancyResult, "source": m.PregnancySource}),
    "participant_messages": (
        "INSERT INTO participant_messages (participant_id, direction, text, at, timezone, kind) VALUES (1, "
        f":direction, 'hi', '{NOW}', 'UTC', 'text')", {"direction": "in"}, {"direction": m.Direction}),
    "treatment_changes": (
        "INSERT INTO treatment_changes (participant_id, state, previous, reason, changed_by, changed_at, local_date, "
        f"timezone) VALUES (1, 'interrupted', :previous, 'other', 'x', '{NOW}', '{DAY}', 'UTC')",
        {"previous": "on_treatment"}, {"previous": m.TreatmentState}),
}


@pytest.fixture
def url(empty_database_url: str) -> str:
    return empty_database_url


def _rows(table: str) -> list[tuple[str, dict[str, str]]]:
    """One row per value of each typed column of the table (the others at their defaults)."""
    sql, defaults, columns = TABLES[table]
    rows = []
    for column, enum in columns.items():
        for member in enum:
            rows.append((sql.format(n=len(rows) + 2), {**defaults, column: member.value}))
    return rows


async def _base(db: Database) -> None:
    async with db.engine.begin() as connection:
        for statement in BASE:
            await connection.execute(text(statement))


def test_every_typed_column_has_its_check_made_from_its_enum() -> None:
    for table, (_sql, _defaults, columns) in TABLES.items():
        checks = {str(c.sqltext) for c in m.Base.metadata.tables[table].constraints if c.__class__.__name__ ==
                  "CheckConstraint"}
        for column, enum in columns.items():
            wanted = f"{column} IN ({', '.join(repr(v.value) for v in enum)})"
            assert wanted in checks, (table, column)


@pytest.mark.parametrize("table", list(TABLES))
async def test_the_database_takes_every_value_of_the_enum_and_refuses_any_other(url: str, table: str) -> None:
    async with migrated(url) as db:
        await _base(db)
        sql, defaults, columns = TABLES[table]
        async with db.engine.begin() as connection:
            for statement, values in _rows(table):
                await connection.execute(text(statement), values)
        for column in columns:
            for wrong in ("bogus", "", "ACTIVE" if column == "status" else "Sent"):
                async with db.engine.connect() as connection:
                    with pytest.raises(IntegrityError, match=f"ck_{table}_{column}"):
                        await connection.execute(text(sql.format(n=99)), {**defaults, column: wrong})
                    await connection.rollback()


async def test_the_migration_keeps_every_valid_value_and_adds_the_checks(url: str) -> None:
    async with migrated(url, revision=BEFORE) as db:
        await _base(db)
        async with db.engine.begin() as connection:
            for table in TABLES:
                for statement, values in _rows(table):
                    await connection.execute(text(statement), values)
        await db.migrate()
        assert await db.at_newest_migration()
        async with db.read() as session:
            for table, (_sql, _defaults, columns) in TABLES.items():
                for column, enum in columns.items():
                    held = set((await session.execute(text(f"SELECT DISTINCT {column} FROM {table}"))).scalars())
                    assert {v.value for v in enum} <= held, (table, column)
        async with db.engine.connect() as connection:  # and the checks are there
            with pytest.raises(IntegrityError):
                await connection.execute(text("UPDATE outbox SET status = 'delivered' WHERE id = 1"))
            await connection.rollback()
        async with db.transaction() as session:  # the append-only guards came through the rebuilds
            with pytest.raises(Exception, match="append-only"):
                async with session.begin_nested():
                    await session.execute(text("UPDATE delivery_events SET event = 'sent'"))


async def test_a_value_outside_its_set_stops_the_migration_naming_it_and_nothing_changes(url: str) -> None:
    async with migrated(url, revision=BEFORE) as db:
        await _base(db)
        async with db.engine.begin() as connection:
            await connection.execute(text("UPDATE outbox SET status = 'delivered' WHERE id = 1"))
            await connection.execute(text("UPDATE participants SET status = 'Active' WHERE id IN (2, 3)"))
        with pytest.raises(RuntimeError, match=r"cannot upgrade to 0016: participants.status = 'Active' \(2 rows\); "
                                               r"outbox.status = 'delivered' \(1 row\)"):
            await db.migrate()
        assert not await db.at_newest_migration()
        async with db.engine.begin() as connection:  # no CHECK came: the old values are still taken
            await connection.execute(text("UPDATE participants SET status = 'active' WHERE id = 2"))
            await connection.execute(text("UPDATE participants SET status = 'other' WHERE id = 4"))
        async with db.read() as session:
            statuses = (await session.execute(text("SELECT status FROM participants ORDER BY id"))).scalars().all()
            assert statuses[:4] == ["active", "active", "Active", "other"]
