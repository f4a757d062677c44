"""The database connection: engines, transactions and schema migrations.

`DATABASE_URL` picks the backend: SQLite through aiosqlite by default, PostgreSQL through asyncpg.
On SQLite every transaction starts with BEGIN IMMEDIATE so writers queue up instead of failing
half-way with "database is locked"; on PostgreSQL the audit chain takes an advisory lock instead.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

MIGRATIONS = Path(__file__).parent / "migrations"
# How long to wait for PostgreSQL to accept a connection before calling it away (asyncpg's own
# default is a minute, during which a participant's tap would hang).
CONNECT_TIMEOUT_SECONDS = 10
log = logging.getLogger(__name__)


def alembic_config(url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if url:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


class Database:
    def __init__(self, url: str, *, schema: str | None = None) -> None:
        self.url = make_url(url)
        connect_args: dict[str, Any] = {}
        if self.is_sqlite:
            connect_args["timeout"] = 30
        else:
            connect_args["timeout"] = CONNECT_TIMEOUT_SECONDS
            if schema:
                # Tests isolate themselves in a schema of their own on a shared PostgreSQL database.
                connect_args["server_settings"] = {"search_path": schema}
        # hide_parameters: errors must not carry participants' data into logs. pool_pre_ping (a
        # server's only): a pooled connection the server dropped while it was away is replaced
        # when taken, so the first tap after an outage works instead of failing once more.
        self.engine: AsyncEngine = create_async_engine(self.url, connect_args=connect_args, hide_parameters=True,
                                                       pool_pre_ping=not self.is_sqlite)
        if self.is_sqlite:
            _serialise_sqlite_writers(self.engine)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self.availability = Availability()

    @property
    def is_sqlite(self) -> bool:
        return self.url.get_backend_name() == "sqlite"

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One unit of work: commits when the block ends, rolls back if it raises."""
        try:
            async with self.sessions() as session, session.begin():
                yield session
        except Exception as error:
            if is_unavailable(error):
                self.availability.failed(error)
            raise
        self.availability.answered()

    async def migrate(self) -> None:
        """Bring the schema to the newest migration (idempotent)."""
        async with self.engine.begin() as connection:
            await connection.run_sync(_upgrade_to_head)

    async def dispose(self) -> None:
        await self.engine.dispose()


def _upgrade_to_head(connection: Connection) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def _serialise_sqlite_writers(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # let SQLAlchemy, not the driver, emit BEGIN
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


async def insert_new(session: AsyncSession, table: Any, rows: list[dict[str, Any]], *, unique: str,
                     returning: tuple) -> list:
    """Insert many rows at once, skipping any whose `unique` column is taken already, and return
    the `returning` columns of the rows actually inserted (INSERT ... ON CONFLICT DO NOTHING
    RETURNING, on SQLite and PostgreSQL alike). One statement instead of a look-up per key."""
    if not rows:
        return []
    if session.bind.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    statement = insert(table).on_conflict_do_nothing(index_elements=[unique]).returning(*returning)
    return list((await session.execute(statement, rows)).all())


def is_unavailable(error: BaseException) -> bool:
    """Is this the database being away (connection refused, dropped, the server shutting down or
    starting up) rather than something wrong with what was asked of it? Such an error says nothing
    about the data, and passes when the server is back.

    A bare OSError counts (asyncpg raises them while connecting); one inside another error only
    when a database driver's error is there too, so a Telegram network error (an OSError inside
    PTB's NetworkError) is never taken for the database."""
    from asyncpg.exceptions import OperatorInterventionError, PostgresConnectionError

    if isinstance(error, OSError):
        return True
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if getattr(error, "connection_invalidated", False):
            return True  # SQLAlchemy's verdict: the driver reported a disconnect
        if isinstance(error, (PostgresConnectionError, OperatorInterventionError)):
            return True  # connection lost, or the server shutting down / starting up (SQLSTATE 08, 57P)
        error = error.__cause__ or error.__context__
    return False


def outage_cause(error: BaseException) -> str:
    """The innermost error's type, for a log line that says what happened and nothing else."""
    seen: set[int] = set()
    while (inner := error.__cause__ or error.__context__) is not None and id(inner) not in seen:
        seen.add(id(inner))
        error = inner
    return type(error).__name__


class Availability:
    """Whether the database answered the last time it was asked. An outage is logged when it
    starts and when it ends, not once for every operation that failed in between."""

    def __init__(self) -> None:
        self.down_since: float | None = None
        self.failures = 0

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def failed(self, error: BaseException) -> None:
        self.failures += 1
        if self.down_since is None:
            self.down_since = time.monotonic()
            log.warning("database unavailable (%s): running degraded until it answers again; participants "
                        "are told something went wrong, nothing is half-written, queued messages wait",
                        outage_cause(error))

    def answered(self) -> None:
        if self.down_since is not None:
            log.warning("database available again after %.0f s; %s operation(s) failed meanwhile",
                        time.monotonic() - self.down_since, self.failures)
            self.down_since, self.failures = None, 0
