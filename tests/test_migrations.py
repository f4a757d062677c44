"""Migrations upgrade a database in use, not only an empty one: a study's records (participants,
their messages, check-ins, alerts pointing at both, the outbox and its delivery events) are made
at the release before this one's migrations, and must come through every later migration whole.

SQLite rebuilds a table to change its constraints, and dropping a table other rows point at
fails while foreign keys are enforced: a migration that passed on empty test databases could
stop a site's upgrade. This test is what catches it."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from study.database import Database
from tests.conftest import PG_URL, REQUIRE_PG
from tests.databases import migrated

BEFORE = "0006"  # the last migration of the release before issue 13
NOW = "2026-11-24 15:00:00"
RECORDS = [
    ("INSERT INTO participants (id, study_id, timezone, language, wocbp, reminder_times, status, telegram_user_id, "
    f"telegram_chat_id, enrolled_at, consented_at, active_since) VALUES (1, 'P001', 'America/New_York', 'en', true, "
    f"'08:00,20:00', 'active', 11, 11, '{NOW}', '{NOW}', '{NOW}')"),
    ("INSERT INTO participants (id, study_id, timezone, language, wocbp, reminder_times, status, enrolled_at) "
    f"VALUES (2, 'P002', 'UTC', 'es', false, '08:00', 'withdrawn', '{NOW}')"),
    ("INSERT INTO participant_messages (id, participant_id, direction, text, at, timezone) "
    f"VALUES (1, 1, 'in', 'hello', '{NOW}', 'America/New_York')"),
    ("INSERT INTO checkins (id, participant_id, kind, started_at, submitted_at, local_date, timezone, source, itch, "
    f"pain) VALUES (1, 1, 'full', '{NOW}', '{NOW}', '2026-11-24', 'America/New_York', 'command', 3, 2)"),
    ("INSERT INTO alerts (id, participant_id, source, triggers, reported_at, status, checkin_id, message_id) "
    f"VALUES (1, 1, 'checkin', '[]', '{NOW}', 'open', 1, 1)"),
    ("INSERT INTO checkin_drafts (id, participant_id, kind, source, step, answers, started_at, updated_at) "
    f"VALUES (1, 1, 'full', 'command', 'pain', '{{\"itch\": 4}}', '{NOW}', '{NOW}')"),
    ("INSERT INTO outbox (id, dedup_key, kind, participant_id, template_id, variables, status, created_at, "
    f"not_before, attempts, disable_notification) VALUES (1, 'k1', 'notice', 1, 't', '{{}}', 'sent', '{NOW}', "
    f"'{NOW}', 1, false)"),
    f"INSERT INTO delivery_events (id, outbox_id, at, event) VALUES (1, 1, '{NOW}', 'sent')",
    ("INSERT INTO diary_entries (id, participant_id, kind, occurred_at, local_date, timezone, recorded_at, source, "
    f"late, recorded_by) VALUES (1, 1, 'applied', '{NOW}', '2026-11-24', 'America/New_York', '{NOW}', 'button', "
    "false, 'participant:P001')"),
]


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'site.db'}"
    if not PG_URL:
        if REQUIRE_PG:
            pytest.fail("TRIALBOT_REQUIRE_POSTGRES=1 but TRIALBOT_TEST_DATABASE_URL is not set")
        pytest.skip("PostgreSQL tests need TRIALBOT_TEST_DATABASE_URL")
    return PG_URL


async def test_every_migration_since_the_last_release_upgrades_a_database_in_use(url: str) -> None:
    async with migrated(url, revision=BEFORE) as db:
        async with db.engine.begin() as connection:
            for statement in RECORDS:
                await connection.execute(text(statement))
        await db.migrate()
        await _check_upgraded(db)


async def _check_upgraded(db: Database) -> None:
    async with db.read() as session:
        def rows(sql: str) -> list:
            return session.execute(text(sql))

        assert (await rows("SELECT study_id, treatment FROM participants ORDER BY id")).all() == [
            ("P001", "on_treatment"), ("P002", "withdrawn")], "a participant who left, left their treatment"
        assert (await rows("SELECT kind, original_length FROM participant_messages")).all() == [("text", None)]
        assert (await rows("SELECT state FROM checkin_drafts")).all() == [("asking",)]
        assert (await rows("SELECT count(*) FROM checkin_drafts WHERE expires_at IS NOT NULL")).scalar() == 1
        assert (await rows("SELECT checkin_id, message_id FROM alerts")).all() == [(1, 1)]
        assert (await rows("SELECT count(*) FROM delivery_events")).scalar() == 1
        assert (await rows("SELECT count(*) FROM diary_entries")).scalar() == 1
    async with db.transaction() as session:  # the append-only guards came through the rebuilds
        with pytest.raises(Exception, match="append-only"):
            async with session.begin_nested():
                await session.execute(text("UPDATE participant_messages SET text = 'changed'"))
