"""Empty, migrated databases for tests: a SQLite file, or a schema of its own on PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from study.database import Database


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
