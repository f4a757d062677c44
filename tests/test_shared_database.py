"""Several processes on one database: they migrate one after the other, and strangers' daily
counts stay right when they count at the same moment."""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import date

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from study import strangers
from study.database import Database


def another_process(db: Database) -> Database:
    if db.is_sqlite:
        return Database(str(db.url))
    return Database(db.url.render_as_string(hide_password=False), schema=db.schema)


async def test_counts_from_two_processes_at_once_add_up(db: Database) -> None:
    other = another_process(db)
    day = date(2026, 11, 24)

    async def count_on(database: Database) -> None:
        async with database.transaction() as session:
            await strangers.count(session, "message", day)

    try:
        await asyncio.gather(*(count_on(db if n % 2 else other) for n in range(20)))
    finally:
        await other.dispose()
    async with db.transaction() as session:
        [row] = await strangers.counts(session)
    assert (row.day, row.kind, row.count) == (day, "message", 20)


async def test_processes_starting_together_migrate_one_after_the_other() -> None:
    url = os.environ.get("TRIALBOT_TEST_DATABASE_URL")
    if not url:
        pytest.skip("on SQLite there is one process; set TRIALBOT_TEST_DATABASE_URL")
    schema = f"test_{uuid.uuid4().hex[:16]}"
    admin = create_async_engine(url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as connection:
        await connection.execute(text(f"CREATE SCHEMA {schema}"))
    starting = [Database(url, schema=schema) for _ in range(3)]
    try:
        await asyncio.gather(*(db.migrate() for db in starting))  # without the lock: "already exists"
        async with starting[0].transaction() as session:
            assert await session.scalar(text("SELECT count(*) FROM alembic_version")) == 1
    finally:
        for db in starting:
            await db.dispose()
        async with admin.connect() as connection:
            await connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        await admin.dispose()
