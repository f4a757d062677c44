"""Migrations upgrade a database in use, not only an empty one: a study's records (participants,
their messages, check-ins, alerts pointing at both, the outbox and its delivery events) are made
at the release before this one's migrations, and must come through every later migration whole.

SQLite rebuilds a table to change its constraints, and dropping a table other rows point at
fails while foreign keys are enforced: a migration that passed on empty test databases could
stop a site's upgrade. This test is what catches it."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from study.database import Database
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


@pytest.fixture
def url(empty_database_url: str) -> str:
    return empty_database_url


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


# Issue 17: study ids are stored in capitals (0014). A site that enrolled p002 and " P003" before
# gets them normalised, each change audited and the trail still intact; p001 beside P001 stops
# the upgrade, naming both, with nothing changed.
def _participant(pid: int, study_id: str) -> str:
    return ("INSERT INTO participants (id, study_id, timezone, language, wocbp, reminder_times, status, "
            f"enrolled_at, treatment) VALUES ({pid}, '{study_id}', 'America/New_York', 'en', false, '08:00,20:00', "
            f"'invited', '{NOW}', 'on_treatment')")


async def test_study_ids_written_before_are_normalised_and_audited(url: str) -> None:
    from study import audit

    async with migrated(url, revision="0013") as db:
        async with db.engine.begin() as connection:
            for pid, study_id in ((1, "P001"), (2, "p002"), (3, " P003 ")):
                await connection.execute(text(_participant(pid, study_id)))
        await db.migrate()
        async with db.read() as session:
            rows = (await session.execute(text("SELECT id, study_id FROM participants ORDER BY id"))).all()
            assert rows == [(1, "P001"), (2, "P002"), (3, "P003")]
            changes = [(e.entity_id, e.old_values, e.new_values, e.actor)
                       for e in await audit.entries(session, entity="participant")]
            assert changes == [("2", {"study_id": "p002"}, {"study_id": "P002"}, "system"),
                               ("3", {"study_id": " P003 "}, {"study_id": "P003"}, "system")]
            report = await audit.verify(session)  # the chain holds (the rows were written here without entries)
            assert report.entries == 2 and [p for p in report.problems if "no creation entry" not in p] == []
        async with db.transaction() as session:  # the database itself refuses an id not normalised
            for study_id in ("p004", " P004", "P 004", "P.004", "", "P" * 33, "-P004", "PÉ04"):
                with pytest.raises(Exception, match="(?i)check|too long"):  # PostgreSQL: varchar(32)
                    async with session.begin_nested():
                        await session.execute(text(_participant(4, study_id)))
            await session.execute(text(_participant(4, "P004-A_1")))
            with pytest.raises(Exception, match="(?i)unique|duplicate"):  # unique, whatever the case was typed
                async with session.begin_nested():
                    await session.execute(text(_participant(5, "P002")))


async def test_two_ids_that_differ_only_in_case_stop_the_upgrade_and_change_nothing(url: str) -> None:
    async with migrated(url, revision="0013") as db:
        async with db.engine.begin() as connection:
            for pid, study_id in ((1, "P001"), (2, "p001"), (3, "p003")):
                await connection.execute(text(_participant(pid, study_id)))
        with pytest.raises(RuntimeError, match=r"'P001' \(participant 1\) and 'p001' \(participant 2\) would both "
                                               r"be P001"):
            await db.migrate()
        assert not await db.at_newest_migration()
        async with db.read() as session:
            rows = (await session.execute(text("SELECT study_id FROM participants ORDER BY id"))).scalars().all()
            assert rows == ["P001", "p001", "p003"]
            assert (await session.execute(text("SELECT count(*) FROM audit_entries"))).scalar() == 0
