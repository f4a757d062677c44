"""Empty, migrated databases for tests: a SQLite file, or a schema of its own on PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from study.database import Database

# The PostgreSQL the suite runs on besides SQLite (README, Tests); with REQUIRE_PG a missing one fails.
PG_URL = os.environ.get("TRIALBOT_TEST_DATABASE_URL")
REQUIRE_PG = os.environ.get("TRIALBOT_REQUIRE_POSTGRES") == "1"


@asynccontextmanager
async def migrated(url: str, *, prefix: str = "test", revision: str = "head") -> AsyncIterator[Database]:
    """The database `url` names, migrated (to `revision`): for SQLite the file itself; for
    PostgreSQL a new schema named `<prefix>_<random>` on that server, dropped afterwards."""
    if url.startswith("sqlite"):
        database = Database(url)
        await database.migrate(revision)
        try:
            yield database
        finally:
            await database.dispose()
        return
    schema = f"{prefix}_{uuid.uuid4().hex[:16]}"
    admin = create_async_engine(url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as connection:
        await connection.execute(text(f"CREATE SCHEMA {schema}"))
    database = Database(url, schema=schema)
    try:
        await database.migrate(revision)
        yield database
    finally:
        await database.dispose()
        async with admin.connect() as connection:
            await connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        await admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL on each backend for a test that migrates it itself (to a revision of its
    choosing): a SQLite file of its own, or the test PostgreSQL server (`migrated` makes a schema)."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'site.db'}"
    if not PG_URL:
        if REQUIRE_PG:
            pytest.fail("TRIALBOT_REQUIRE_POSTGRES=1 but TRIALBOT_TEST_DATABASE_URL is not set")
        pytest.skip("PostgreSQL tests need TRIALBOT_TEST_DATABASE_URL")
    return PG_URL
