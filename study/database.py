"""The database connection: engines, transactions and schema migrations.

`DATABASE_URL` picks the backend: SQLite through aiosqlite by default, PostgreSQL through asyncpg.
On SQLite every transaction starts with BEGIN IMMEDIATE so writers queue up instead of failing
half-way with "database is locked"; on PostgreSQL the audit chain takes an advisory lock instead.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import json
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, cast

import aiosqlite
from alembic import command
from alembic.config import Config
from sqlalchemy import event, exc, text
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.engine import Connection, Row, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.util import EMPTY_DICT
from sqlalchemy.util.concurrency import await_

MIGRATIONS = Path(__file__).parent / "migrations"
_READ_ONLY = "trialbot_read_only"
# How long to wait for PostgreSQL to accept a connection before calling it away (asyncpg's own
# default is a minute, during which a participant's tap would hang).
CONNECT_TIMEOUT_SECONDS = 10
# How long a writer waits for another to finish on SQLite before giving up.
SQLITE_BUSY_SECONDS = 30
# A pooled PostgreSQL connection idle this long is pinged when taken again, and replaced if the
# server dropped it (a restart, a network cut: the first tap after an outage works). One used more
# recently is not (HikariCP's `aliveBypassWindowMs` makes the same call): the ping is a round trip
# on every transaction (nearly half of a trivial one's CPU), and a server cannot go away and come back
# in between; a connection cut in that half second fails one operation, as any cut mid-use does,
# and the pool is then renewed.
PING_AFTER_IDLE_SECONDS = 0.5
log = logging.getLogger(__name__)
# Database.schema_state(): how the schema compares with this code's migrations.
SCHEMA_CURRENT, SCHEMA_EMPTY, SCHEMA_OLDER, SCHEMA_UNKNOWN = "current", "empty", "older", "unknown"


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
            connect_args["timeout"] = SQLITE_BUSY_SECONDS
        else:
            connect_args["timeout"] = CONNECT_TIMEOUT_SECONDS
            if schema:
                # Tests isolate themselves in a schema of their own on a shared PostgreSQL database.
                connect_args["server_settings"] = {"search_path": schema}
        self._connect_args = connect_args
        # hide_parameters: errors must not carry participants' data into logs. A server's pooled
        # connections are pinged when taken after a while idle (_ping_when_idle).
        # On SQLite, each statement is one trip to aiosqlite's thread (_OneTripCursor).
        driver: dict[str, Any] = {"module": _OneTripDBAPI(aiosqlite, sqlite3)} if self.is_sqlite else {}
        self.engine: AsyncEngine = create_async_engine(self.url, connect_args=connect_args, hide_parameters=True,
                                                       **driver)
        if self.is_sqlite:
            _serialise_sqlite_writers(self.engine)
        else:
            _ping_when_idle(self.engine)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        # Reads take no write lock: on SQLite they begin DEFERRED, so they neither wait for nor
        # hold up the writers (every update starts with one: who is writing?).
        self._read_sessions = async_sessionmaker(self.engine.execution_options(**{_READ_ONLY: True}),
                                                 expire_on_commit=False)
        self.availability = Availability()
        # SQLite takes one writer at a time, and a writer refused the lock sleeps in SQLite's busy
        # handler (1, 2, 5, 10... ms) however soon the lock is free. Writers of this process queue
        # here instead and start the moment the one before them commits.
        self._sqlite_writer = WriterQueue() if self.is_sqlite else None

    @property
    def is_sqlite(self) -> bool:
        return self.url.get_backend_name() == "sqlite"

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One unit of work: commits when the block ends, rolls back if it raises."""
        if self._sqlite_writer is None:
            async with self._watched(self.sessions) as session:
                yield session
            return
        async with self._sqlite_writer.turn(), self._watched(self.sessions) as session:
            yield session

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A unit of work that only reads (writing in it is a mistake; SQLite would refuse it
        only when another writer holds the lock, so don't)."""
        async with self._watched(self._read_sessions) as session:
            yield session

    @asynccontextmanager
    async def _watched(self, sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
        """A session in a transaction, noting whether the database answered (see Availability)."""
        try:
            async with sessions() as session, session.begin():
                yield session
        except Exception as error:
            if is_unavailable(error):
                self.availability.failed(error)
            raise
        self.availability.answered()

    async def migrate(self, revision: str = "head") -> None:
        """Bring the schema to the newest migration (idempotent), or to `revision`."""
        if self.is_sqlite:
            await self._migrate_sqlite(revision)
            return
        async with self.engine.begin() as connection:
            if not self.is_sqlite:
                # Several processes starting at once (one per machine) migrate one after the
                # other: the second finds the schema at head. Keyed by database and schema.
                await connection.execute(text(
                    "SELECT pg_advisory_xact_lock(hashtextextended("
                    "'trialbot migrations|' || current_database() || '|' || coalesce(current_schema(), ''), 0))"))
            before = await connection.run_sync(_current_heads)
            await connection.run_sync(_upgrade, revision)
            if await connection.run_sync(_current_heads) != before:
                # A migration may have built indexes or moved rows: statistics now, not whenever
                # autovacuum comes round, so the first ticks after an upgrade plan with them.
                tables = (await connection.execute(text(
                    "SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = current_schema()"))).scalars().all()
                await connection.execute(text(f"ANALYZE {', '.join(tables)}"))

    async def analyze(self, *tables: str) -> None:
        """PostgreSQL: gather the query planner's statistics for `tables` now, after a bulk change
        has made them stale (autovacuum would, within a minute or so, where it is on). SQLite keeps
        no statistics unless ANALYZE is run by hand, and plans by its rules without: nothing."""
        if self.is_sqlite:
            return
        async with self.transaction() as session:
            for table in tables:
                await session.execute(text(f"ANALYZE {table}"))

    async def at_newest_migration(self) -> bool:
        """Is the schema what this code expects (commands that do not migrate check first)?"""
        return await self.schema_state() == SCHEMA_CURRENT

    async def schema_state(self) -> str:
        """How the schema compares with this code's migrations, changing nothing: SCHEMA_CURRENT,
        SCHEMA_EMPTY (no trialbot tables yet; a SQLite file that does not exist is not created to
        find that out), SCHEMA_OLDER (`trialbot db upgrade` brings it up to date) or SCHEMA_UNKNOWN
        (at a revision this code does not have: a newer trialbot's, or not trialbot's at all)."""
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory

        file = self.sqlite_file
        if file is not None and not file.exists():
            return SCHEMA_EMPTY
        script = ScriptDirectory.from_config(alembic_config())
        async with self.engine.connect() as connection:
            current = await connection.run_sync(lambda sync: set(MigrationContext.configure(sync).get_current_heads()))
        if not current:
            return SCHEMA_EMPTY
        if current == set(script.get_heads()):
            return SCHEMA_CURRENT
        known = {revision.revision for revision in script.walk_revisions()}
        return SCHEMA_OLDER if current <= known else SCHEMA_UNKNOWN

    @property
    def sqlite_file(self) -> Path | None:
        """The SQLite database's file; None for PostgreSQL, an in-memory database or a file: URI."""
        name = self.url.database if self.is_sqlite else None
        if not name or name == ":memory:" or name.startswith("file:") or self.url.query.get("uri"):
            return None
        return Path(name)

    def display_url(self) -> str:
        """DATABASE_URL as an operator may see it: the password masked."""
        return self.url.render_as_string(hide_password=True)

    async def _migrate_sqlite(self, revision: str) -> None:
        """SQLite changes a table's constraints by rebuilding it (copy, drop the old one, rename the
        copy), and dropping a table other rows point at fails while foreign keys are enforced: so,
        as SQLite's documentation prescribes, enforcement is off for the migration (it can only
        be switched outside a transaction), every reference is checked before the commit, and
        enforcement is back on before the connection returns to the pool."""
        async with self.engine.connect() as connection:
            driver = (await connection.get_raw_connection()).driver_connection
            assert driver is not None  # an open connection has its driver's
            await driver.execute("PRAGMA foreign_keys=OFF")
            try:
                async with connection.begin():
                    await connection.run_sync(_upgrade, revision)
                    broken = (await connection.exec_driver_sql("PRAGMA foreign_key_check")).all()
                    if broken:
                        raise RuntimeError(f"migration left {len(broken)} broken reference(s); rolled back")
            finally:
                await driver.execute("PRAGMA foreign_keys=ON")

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


class WriterQueue:
    """SQLite's writers of this process, one at a time, in the order they came.

    A transaction opened inside another by the same task (the outer one not yet begun, say) goes
    straight on to SQLite's own lock, as it would without the queue. A writer that waits longer
    than SQLite's busy timeout gets TimeoutError, as it would have got "database is locked"."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._holder: asyncio.Task[Any] | None = None

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        task = asyncio.current_task()
        if task is not None and task is self._holder:
            yield
            return
        async with asyncio.timeout(SQLITE_BUSY_SECONDS):
            await self._lock.acquire()
        self._holder = task
        try:
            yield
        finally:
            self._holder = None
            self._lock.release()


def _current_heads(connection: Connection) -> set[str]:
    from alembic.runtime.migration import MigrationContext

    return set(MigrationContext.configure(connection).get_current_heads())


def _upgrade(connection: Connection, revision: str = "head") -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def _serialise_sqlite_writers(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # let SQLAlchemy, not the driver, emit BEGIN
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_SECONDS * 1000}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # Owed, not sent: the BEGIN goes to SQLite in the trip of the transaction's first statement
        # (_OneTripCursor), which SQLAlchemy sends right after this event; a transaction with no
        # statement begins nothing on the database.
        connection.connection.dbapi_connection.owe_begin("BEGIN" if is_read_only(connection) else "BEGIN IMMEDIATE")  # type: ignore[union-attr]


def is_read_only(connection: Connection) -> bool:
    """Is this connection in a transaction of `Database.read`?"""
    return bool(connection.get_execution_options().get(_READ_ONLY, False))


def _ping_when_idle(engine: AsyncEngine) -> None:
    """SQLAlchemy's `pool_pre_ping`, for connections idle `PING_AFTER_IDLE_SECONDS` or more only
    (a new connection is not pinged either). A ping that fails renews the whole pool, as the
    pre-ping does: if one connection was dropped, the others were too."""
    pool, dialect = engine.sync_engine.pool, engine.sync_engine.dialect
    idle_since = "trialbot_idle_since"  # in the connection's `info`, which a replaced connection starts without

    @event.listens_for(pool, "checkin")
    def _idle_from_now(_dbapi_connection: Any, record: Any) -> None:
        record.info[idle_since] = time.monotonic()

    @event.listens_for(pool, "checkout")
    def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get(idle_since)
        if since is None or time.monotonic() - since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as error:  # whatever the reason, this connection is no use
            raise exc.InvalidatePoolError(f"pooled connection dropped while idle ({type(error).__name__})") from error


async def insert_new(session: AsyncSession, table: Any, rows: list[dict[str, Any]], *, unique: str,
                     returning: tuple[Any, ...]) -> list[Row[*tuple[Any, ...]]]:
    """Insert many rows at once, skipping any whose `unique` column is taken already, and return
    the `returning` columns of the rows actually inserted (INSERT ... ON CONFLICT DO NOTHING
    RETURNING, on SQLite and PostgreSQL alike). One statement instead of a look-up per key."""
    if not rows:
        return []
    statement = _insert_new_statement(session.get_bind().dialect.name, table, unique, returning)
    return list((await session.execute(statement, rows)).all())


@functools.cache
def _insert_new_statement(dialect: str, table: Any, unique: str, returning: tuple[Any, ...]) -> Any:
    """`insert_new`'s statement, built once for each table and shape (every tap inserts its entry)."""
    from sqlalchemy.dialects import postgresql, sqlite

    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(table).on_conflict_do_nothing(index_elements=[unique]).returning(*returning)


async def insert_new_counted(session: AsyncSession, table: Any, rows: list[dict[str, Any]], *, unique: str) -> int:
    """`insert_new` when only how many rows were new matters (a wave's reminders: thousands of
    rows sharing a handful of distinct instants and payloads). Each distinct value is converted
    once by its column's type (`_bound_rows`), not once a row, and the rows go in with no
    RETURNING; the database counts the rows it added. On SQLite one batch of `INSERT ... ON
    CONFLICT DO NOTHING` (the driver sums the rows each added). On PostgreSQL a single statement
    with one array parameter per column (`INSERT ... SELECT FROM unnest(...)`), where 5,000 rows
    sent one by one (asyncpg's batch) took the server twice as long, and a look-up of the keys
    taken before them was needed to count."""
    if not rows:
        return 0
    dialect = session.get_bind().dialect
    names, values = _bound_rows(dialect, table, rows)
    connection = await session.connection()
    if dialect.name == "postgresql":
        statement = _unnest_insert(dialect, table, tuple(names), unique)
        columns = tuple(list(column) for column in zip(*values, strict=True))
        result = await connection.exec_driver_sql(statement, columns)
    else:
        quote = dialect.identifier_preparer.quote
        statement = (f"INSERT INTO {quote(table.name)} ({', '.join(quote(n) for n in names)}) "
                     f"VALUES ({', '.join('?' for _ in names)}) ON CONFLICT ({quote(unique)}) DO NOTHING")
        result = await connection.exec_driver_sql(statement, values)
    return int(result.rowcount)


@functools.cache
def _unnest_insert(dialect: Any, table: Any, names: tuple[str, ...], unique: str) -> str:
    """PostgreSQL: insert the rows given as one array per column (of the column's type; JSON as
    text, cast back), skipping taken keys."""
    quote = dialect.identifier_preparer.quote
    types = [table.c[name].type.dialect_impl(dialect).compile(dialect=dialect) for name in names]
    arrays = ", ".join(f"${n}::{'TEXT' if sql_type in ('JSON', 'JSONB') else sql_type}[]"
                       for n, sql_type in enumerate(types, start=1))
    values = ", ".join(f"CAST(v{n} AS {sql_type})" for n, sql_type in enumerate(types))
    return (f"INSERT INTO {quote(table.name)} ({', '.join(quote(n) for n in names)}) SELECT {values} "
            f"FROM unnest({arrays}) AS rows({', '.join(f'v{n}' for n in range(len(names)))}) "
            f"ON CONFLICT ({quote(unique)}) DO NOTHING")


def _bound_rows(dialect: Any, table: Any, rows: list[dict[str, Any]]) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The rows' columns (with the scalar defaults of the table's other columns, as SQLAlchemy's
    insert adds them) and each row's values as the driver takes them: converted by the column
    type's own bind processing for the dialect, as `session.execute(insert(table), rows)` would,
    but each distinct value once (by equality, or by identity for the JSON payloads a wave
    shares), rather than every value of every row."""
    names = list(rows[0])
    defaults = {c.name: c.default.arg for c in table.columns
                if c.name not in rows[0] and c.default is not None and c.default.is_scalar}
    spec: list[tuple[str, Callable[[Any], Any] | None, dict[Any, Any]]] = [
        (name, table.c[name].type.dialect_impl(dialect).bind_processor(dialect), {}) for name in names]
    by_identity: dict[tuple[str, int], Any] = {}
    values = []
    for row in rows:
        if len(row) != len(names):
            raise ValueError("insert_new_counted: every row must have the same columns")
        bound = []
        for name, process, memo in spec:
            value = row[name]
            if process is not None:  # None too: a JSON column stores it as JSON null
                try:
                    if value not in memo:
                        memo[value] = process(value)
                    value = memo[value]
                except TypeError:  # unhashable: a JSON payload, the same object for many rows
                    key = (name, id(value))
                    if key not in by_identity:
                        by_identity[key] = process(value)
                    value = by_identity[key]
            bound.append(value)
        values.append(tuple(bound))
    if defaults:
        extra = tuple(_bound_one(dialect, table.c[name], value) for name, value in defaults.items())
        values = [row + extra for row in values]
    return names + list(defaults), values


def _bound_one(dialect: Any, column: Any, value: Any) -> Any:
    process = column.type.dialect_impl(dialect).bind_processor(dialect)
    return value if process is None else process(value)


# Longer id lists go to SQLite as one JSON parameter (see `among`).
_SQLITE_JSON_IDS_FROM = 100


def among(session: AsyncSession, column: Any, ids: list[int]) -> Any:
    """`column IN ids` for the planner's batches of thousands, as one parameter rather than
    thousands. On PostgreSQL as `= ANY(array)` (asyncpg would otherwise prepare a statement for
    each length); on SQLite as `IN (SELECT value FROM json_each(?))`, which SQLite answers with
    the same index look-ups as a list, without SQLAlchemy expanding thousands of parameters at
    every execution (about 0.1 s of a 20,000-participant wave per query)."""
    from sqlalchemy import Integer, String, any_, bindparam, func, select

    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import ARRAY

        return column == any_(bindparam(None, list(ids), type_=ARRAY(Integer)))
    if len(ids) < _SQLITE_JSON_IDS_FROM:
        return column.in_(ids)
    values = func.json_each(bindparam(None, json.dumps([int(i) for i in ids]), type_=String)).table_valued("value")
    return column.in_(select(values.c.value))


def as_stored(column: Any) -> Any:
    """`column` read as the driver gives it, with none of SQLAlchemy's conversion of results:
    for the planner's bulk reads (tens of thousands of rows a wave), where that conversion cost
    more than the query. Turn the values into Python ones with `Readers`."""
    from sqlalchemy import type_coerce
    from sqlalchemy.types import NullType

    return type_coerce(column, NullType())


class Readers:
    """What `as_stored` columns hold, as the column types would have given it. SQLite keeps
    instants as text in UTC ("2026-11-24 13:00:00.000000", the format UTCDateTime writes), days
    as text and booleans as 0 and 1; asyncpg gives aware datetimes, dates and booleans. The
    `maybe_` readers pass None through."""

    def __init__(self, dialect: str) -> None:
        sqlite = dialect == "sqlite"
        self.instant: Callable[[Any], datetime] = _sqlite_instant if sqlite else _pg_instant
        self.day: Callable[[Any], date] = date.fromisoformat if sqlite else _same
        self.boolean: Callable[[Any], bool] = bool

    def maybe_instant(self, value: Any) -> datetime | None:
        return None if value is None else self.instant(value)


def _sqlite_instant(value: str) -> datetime:
    # UTCDateTime's result, about six times cheaper: no naive datetime made and then replaced.
    return datetime.fromisoformat(value + "+00:00")


def _pg_instant(value: datetime) -> datetime:
    return value if value.tzinfo is UTC else value.astimezone(UTC)


def _same(value: Any) -> Any:
    return value


def among_param(dialect: str, column: Any, name: str) -> Any:
    """`among` for a statement built once and reused: the ids are the named parameter `name`,
    given at execution (a list). `dialect`: the session's, `session.bind.dialect.name`."""
    from sqlalchemy import Integer, any_, bindparam

    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import ARRAY

        return column == any_(bindparam(name, type_=ARRAY(Integer)))
    return column.in_(bindparam(name, expanding=True))


def is_unavailable(error: BaseException | None) -> bool:
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


# --- SQLite: one trip to aiosqlite's thread per statement -----------------------------------------

class _OneTripCursor(AsyncAdapt_aiosqlite_cursor):
    """SQLAlchemy's aiosqlite cursor makes four trips to aiosqlite's thread per statement (open a
    cursor, execute, fetch, close), each a queue hand-off there and a wake-up of the event loop
    back. This one makes one: the statement runs, its rows are fetched and its cursor closed in a
    single call on that thread; the first statement of a transaction takes its BEGIN along (see
    `_OneTripConnection`). Results are what the plain cursor gives (all rows fetched at once,
    as it does too); server-side cursors are not used by this code."""

    __slots__ = ("_description", "_lastrowid", "_rowcount")

    def __init__(self, adapt_connection: Any) -> None:
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = None  # type: ignore[assignment]
        self._soft_closed_memoized = EMPTY_DICT
        self._rows = collections.deque()
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: int | None = None

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> Any:
        return self._lastrowid

    async def _async_soft_close(self) -> None:
        return

    def close(self) -> None:
        self._rows.clear()

    def _run(self, many: bool, operation: Any, parameters: Any) -> Any:
        driver = self._connection  # aiosqlite's Connection; its sqlite3 connection runs on its thread
        connection = cast(_OneTripConnection, self._adapt_connection)
        begin, connection.begin_owed = connection.begin_owed, None
        trip = object()
        on_its_way = connection.on_its_way

        def on_thread() -> tuple[Any, int, int | None, list[Any]]:
            cursor = driver._conn.cursor()
            try:
                if begin is not None:
                    cursor.execute(begin)
                if many:
                    cursor.executemany(operation, parameters)
                elif parameters is None:
                    cursor.execute(operation)
                else:
                    cursor.execute(operation, parameters)
                rows = cursor.fetchall() if cursor.description else []
                return cursor.description, cursor.rowcount, cursor.lastrowid, rows
            finally:
                cursor.close()
                on_its_way.discard(trip)  # done on the thread: whatever it began is begun

        on_its_way.add(trip)
        try:
            self._description, self._rowcount, self._lastrowid, rows = await_(driver._execute(on_thread))
        except Exception as error:  # noqa: BLE001 - translated to the DBAPI's errors, as SQLAlchemy's cursor does
            self._adapt_connection._handle_exception(error)
        self._rows = collections.deque(rows)

    def execute(self, operation: Any, parameters: Any = None) -> Any:
        self._run(False, operation, parameters)

    def executemany(self, operation: Any, seq_of_parameters: Any) -> Any:
        self._run(True, operation, seq_of_parameters)


class _OneTripConnection(AsyncAdapt_aiosqlite_connection):
    """Two trips to aiosqlite's thread saved per transaction, neither of which did anything:

    - BEGIN is owed (`owe_begin`, from the engine's `begin` event) and sent in the trip of the
      transaction's first statement, just before it; SQLAlchemy sends that statement right after
      the event, so the transaction starts at the same moment. A transaction that ends with no
      statement (its BEGIN still owed) commits or rolls back nothing, with no trip.
    - The rollback SQLAlchemy's pool makes of every connection given back, after the commit that
      ended its transaction, is made only when SQLite has a transaction open on the connection or
      a statement is still on its way there (one whose waiter was cancelled may yet begin one):
      a rollback with nothing to roll back is no trip."""

    __slots__ = ("begin_owed", "on_its_way")
    _cursor_cls = _OneTripCursor

    def __init__(self, dbapi: Any, connection: Any) -> None:
        super().__init__(dbapi, connection)
        self.begin_owed: str | None = None
        self.on_its_way: set[object] = set()  # statements handed to the thread and not done there

    def owe_begin(self, statement: str) -> None:
        self.begin_owed = statement

    def commit(self) -> None:
        if self.begin_owed is not None:
            self.begin_owed = None  # nothing was begun
            return
        super().commit()

    def rollback(self) -> None:
        if self.begin_owed is not None:
            self.begin_owed = None
            return
        plain = self._connection._connection  # sqlite3's connection (None once closed)
        if plain is not None and not self.on_its_way and not plain.in_transaction:
            return  # nothing to roll back (sqlite3's rollback would do nothing either)
        super().rollback()


class _OneTripDBAPI(AsyncAdapt_aiosqlite_dbapi):
    def connect(self, *arg: Any, **kw: Any) -> Any:
        plain = super().connect(*arg, **kw)
        return _OneTripConnection(self, plain._connection)
