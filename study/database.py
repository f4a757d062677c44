"""The database connection: engines, transactions and schema migrations.

`DATABASE_URL` picks the backend: SQLite through aiosqlite by default, PostgreSQL through asyncpg.
On SQLite every transaction starts with BEGIN IMMEDIATE so writers queue up instead of failing
half-way with "database is locked"; on PostgreSQL the audit chain takes an advisory lock instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

MIGRATIONS = Path(__file__).parent / "migrations"
_READ_ONLY = "trialbot_read_only"


def alembic_config(url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if url:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


class Database:
    def __init__(self, url: str, *, schema: str | None = None) -> None:
        self.url = make_url(url)
        self.schema = schema
        connect_args: dict[str, Any] = {}
        if self.is_sqlite:
            connect_args["timeout"] = 30
        elif schema:
            # Tests isolate themselves in a schema of their own on a shared PostgreSQL database.
            connect_args["server_settings"] = {"search_path": schema}
        self._connect_args = connect_args
        # hide_parameters: errors must not carry participants' data into logs.
        self.engine: AsyncEngine = create_async_engine(self.url, connect_args=connect_args, hide_parameters=True)
        if self.is_sqlite:
            _serialise_sqlite_writers(self.engine)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        # Reads take no write lock: on SQLite they begin DEFERRED, so they neither wait for nor
        # hold up the writers (every update starts with one: who is writing?).
        self._read_sessions = async_sessionmaker(self.engine.execution_options(**{_READ_ONLY: True}),
                                                 expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return self.url.get_backend_name() == "sqlite"

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One unit of work: commits when the block ends, rolls back if it raises."""
        async with self.sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A unit of work that only reads (writing in it is a mistake; SQLite would refuse it
        only when another writer holds the lock, so don't)."""
        async with self._read_sessions() as session, session.begin():
            yield session

    async def migrate(self) -> None:
        """Bring the schema to the newest migration (idempotent)."""
        async with self.engine.begin() as connection:
            if not self.is_sqlite:
                # Several processes starting at once (one per machine) migrate one after the
                # other: the second finds the schema at head. Keyed by database and schema.
                await connection.execute(text(
                    "SELECT pg_advisory_xact_lock(hashtextextended("
                    "'trialbot migrations|' || current_database() || '|' || coalesce(current_schema(), ''), 0))"))
            await connection.run_sync(_upgrade_to_head)

    async def dispose(self) -> None:
        await self.engine.dispose()

    async def dedicated_connection(self) -> Any:
        """PostgreSQL only: an asyncpg connection of its own, outside the pool, with the engine's
        settings (the scheduler leader holds its session-level lock on one; see
        scheduler/leadership.py). The caller closes it."""
        import asyncpg

        if self.is_sqlite:
            raise RuntimeError("a dedicated connection is for PostgreSQL")
        _, options = self.engine.dialect.create_connect_args(self.url)
        for sqlalchemy_only in ("prepared_statement_cache_size", "prepared_statement_name_func"):
            options.pop(sqlalchemy_only, None)
        return await asyncpg.connect(**options, **self._connect_args)


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
        read_only = connection.get_execution_options().get(_READ_ONLY, False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


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


async def insert_new_counted(session: AsyncSession, table: Any, rows: list[dict[str, Any]], *, unique: str) -> int:
    """`insert_new` when only how many rows were new matters (a wave's reminders). On PostgreSQL
    the keys taken are looked up first (one array parameter) and the rest go in as a plain
    batch, which asyncpg sends far faster than a RETURNING statement; should another writer
    take a key in between, ON CONFLICT still skips it and only the count is off by that."""
    if not rows:
        return 0
    if session.bind.dialect.name != "postgresql":
        return len(await insert_new(session, table, rows, unique=unique, returning=(table.c[unique],)))
    from sqlalchemy import String, any_, bindparam, select
    from sqlalchemy.dialects.postgresql import ARRAY, insert

    column = table.c[unique]
    keys = [row[unique] for row in rows]
    taken = set((await session.scalars(
        select(column).where(column == any_(bindparam(None, keys, type_=ARRAY(String)))))).all())
    new = [row for row in rows if row[unique] not in taken]
    if new:
        await session.execute(insert(table).on_conflict_do_nothing(index_elements=[unique]), new)
    return len(new)


def among(session: AsyncSession, column: Any, ids: list[int]) -> Any:
    """`column IN ids` for the planner's batches of thousands. On PostgreSQL as `= ANY(array)`:
    one parameter rather than thousands, which asyncpg would otherwise prepare a statement for."""
    if session.bind.dialect.name == "postgresql":
        from sqlalchemy import Integer, any_, bindparam
        from sqlalchemy.dialects.postgresql import ARRAY

        return column == any_(bindparam(None, list(ids), type_=ARRAY(Integer)))
    return column.in_(ids)
