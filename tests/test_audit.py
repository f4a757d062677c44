"""The audit trail: every create and correction is in it, chained, and tampering shows."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from study import audit
from study.audit import Actor
from study.database import Database

NOW = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)


async def _trail(db: Database, n: int = 5) -> None:
    async with db.transaction() as session:
        for i in range(n):
            await audit.record(session, actor=Actor.staff(1), action="create", entity="thing", entity_id=i,
                               now=NOW, new={"value": i, "note": "naïve café"}, reason="test",
                               timezone="America/New_York")


async def _drop_append_only_guards(db: Database) -> None:
    """What a person with database access would do first to tamper with the record."""
    async with db.transaction() as session:
        if db.is_sqlite:
            for verb in ("update", "delete"):
                await session.execute(text(f"DROP TRIGGER audit_entries_no_{verb}"))
        else:
            await session.execute(text("DROP TRIGGER audit_entries_append_only ON audit_entries"))


async def test_intact_chain_verifies(db: Database) -> None:
    await _trail(db)
    async with db.transaction() as session:
        report = await audit.verify(session)
    assert report.ok and report.entries == 5


async def test_the_database_refuses_to_change_or_delete_records(trial) -> None:
    user = await trial.join()
    await user.press("✅ I put it on now")
    await user.next_bot_event()
    for statement in (
        "UPDATE audit_entries SET reason = 'x'",
        "DELETE FROM audit_entries",
        "UPDATE diary_entries SET late = TRUE",
        "DELETE FROM diary_entries",
        "DELETE FROM consent_decisions",
    ):
        with pytest.raises(DBAPIError, match="append-only"):
            async with trial.db.transaction() as session:
                await session.execute(text(statement))


async def test_an_altered_entry_fails_verification(db: Database) -> None:
    await _trail(db)
    await _drop_append_only_guards(db)
    async with db.transaction() as session:
        await session.execute(text("UPDATE audit_entries SET reason = 'nothing to see' WHERE seq = 3"))
    async with db.transaction() as session:
        report = await audit.verify(session)
    assert not report.ok
    assert report.problems == ["entry 3: content was altered (hash mismatch)"]


async def test_a_removed_entry_fails_verification(db: Database) -> None:
    await _trail(db)
    await _drop_append_only_guards(db)
    async with db.transaction() as session:
        await session.execute(text("DELETE FROM audit_entries WHERE seq = 2"))
    async with db.transaction() as session:
        report = await audit.verify(session)
    assert "entry 2 is missing (found 3 next)" in report.problems
    assert "entry 3: does not follow the entry before it" in report.problems


async def test_removing_the_newest_entry_shows_as_a_record_without_its_audit(trial) -> None:
    user = await trial.join()
    await user.press("✅ I put it on now")
    await user.next_bot_event()
    await _drop_append_only_guards(trial.db)
    async with trial.db.transaction() as session:
        await session.execute(text("DELETE FROM audit_entries WHERE seq = (SELECT MAX(seq) FROM audit_entries)"))
        report = await audit.verify(session)
    assert report.problems == ["diary_entries 1: has no creation entry in the audit trail"]


async def test_a_real_session_leaves_a_complete_verifiable_trail(trial) -> None:
    user = await trial.join()
    await user.press("✅ I put it on now")
    await user.next_bot_event()
    await user.send_text("/undo")
    await user.next_bot_event()
    async with trial.db.transaction() as session:
        report = await audit.verify(session)
        trail = await audit.entries(session)
    assert report.ok, report.problems
    assert [(e.actor, e.action, e.entity) for e in trail] == [
        ("operator:coordinator", "create", "participant"),
        ("operator:coordinator", "create", "invite"),
        ("participant:P001", "update", "invite"),
        ("participant:P001", "create", "consent_decision"),
        ("participant:P001", "update", "participant"),
        ("participant:P001", "create", "diary_entry"),
        ("participant:P001", "create", "diary_entry"),
        ("participant:P001", "correct", "diary_entry"),
    ]
    withdrawn = trail[-1]
    assert withdrawn.old_values == {"standing": True}
    assert withdrawn.new_values["standing"] is False
    assert withdrawn.timezone == "America/New_York" and withdrawn.occurred_at.tzinfo is not None
