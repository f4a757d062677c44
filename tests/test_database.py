"""The database layer's own promises: reads never wait for a writer."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from study.database import Database
from study.models import Participant


async def test_a_read_goes_on_while_a_write_transaction_is_open(db: Database) -> None:
    """Every update starts with a read (who is writing?); it must not queue behind the dispatcher's
    or the scheduler's write transaction. On SQLite a write transaction holds the write lock
    from BEGIN IMMEDIATE; a read begun the same way would wait for it (here: time out)."""
    async with db.transaction() as writer:
        await writer.execute(select(Participant.id).limit(1))  # the write transaction has begun
        async def read() -> list[int]:
            async with db.read() as session:
                return list((await session.scalars(select(Participant.id))).all())

        assert await asyncio.wait_for(read(), timeout=5) == []


async def test_writers_of_one_process_queue_for_sqlite_instead_of_meeting_its_lock(tmp_path) -> None:
    """SQLite lets one writer in at a time; a writer that finds the lock taken sleeps in SQLite's
    busy handler (1, 2, 5, 10... ms, whenever the lock is freed). So the writers of this process
    queue in order and each begins the moment the one before it ends. Shown with the busy wait
    switched off: a writer meeting the lock would fail at once with "database is locked"."""
    from sqlalchemy import event, text

    db = Database(f"sqlite+aiosqlite:///{tmp_path}/queue.db")

    @event.listens_for(db.engine.sync_engine, "connect")
    def _no_busy_wait(dbapi_connection, _record) -> None:  # after the Database's own (30 s)
        dbapi_connection.cursor().execute("PRAGMA busy_timeout=0")

    await db.migrate()
    order: list[tuple[str, int]] = []

    async def writer(n: int) -> None:
        async with db.transaction() as session:
            order.append(("begin", n))
            await session.execute(text("SELECT 1"))
            await asyncio.sleep(0)  # let the others try to begin meanwhile
            order.append(("end", n))

    try:
        await asyncio.gather(*(writer(n) for n in range(20)))
    finally:
        await db.dispose()
    assert order == [(step, n) for n in range(20) for step in ("begin", "end")]


async def test_one_trip_cursor_gives_what_the_plain_cursor_gives(tmp_path) -> None:
    """study/database.py `_OneTripCursor`: rows, rowcount, lastrowid, many rows at once and errors,
    as SQLAlchemy's own aiosqlite cursor gives them."""
    import sqlalchemy as sa

    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'one_trip.db'}")
    try:
        async with db.transaction() as session:
            await session.execute(sa.text("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT UNIQUE)"))
            inserted = await session.execute(sa.text("INSERT INTO t (v) VALUES (:v)"), {"v": "a"})
            assert inserted.lastrowid == 1 and inserted.rowcount == 1
            await session.execute(sa.text("INSERT INTO t (v) VALUES (:v)"), [{"v": "b"}, {"v": "c"}])
            changed = await session.execute(sa.text("UPDATE t SET v = v || '!' WHERE id > 1"))
            assert changed.rowcount == 2
            returned = (await session.execute(sa.text("INSERT INTO t (v) VALUES ('d') RETURNING id"))).scalar()
            assert returned == 4
        async with db.read() as session:
            rows = (await session.execute(sa.text("SELECT id, v FROM t ORDER BY id"))).all()
            assert [tuple(r) for r in rows] == [(1, "a"), (2, "b!"), (3, "c!"), (4, "d")]
            assert (await session.execute(sa.text("SELECT v FROM t WHERE id = 99"))).first() is None
        with pytest.raises(sa.exc.IntegrityError):
            async with db.transaction() as session:
                await session.execute(sa.text("INSERT INTO t (v) VALUES ('a')"))
    finally:
        await db.dispose()


async def test_a_transaction_on_sqlite_is_its_statements_and_its_commit(tmp_path) -> None:
    """study/database.py `_OneTripConnection`: BEGIN goes to aiosqlite's thread with the first
    statement, the pool's rollback of a connection whose transaction was committed is no trip,
    and a transaction with no statement makes none. The write lock is still taken at the first
    statement: another process (another engine) cannot write until the commit."""
    import aiosqlite
    import sqlalchemy as sa

    path = tmp_path / "trips.db"
    db, other = Database(f"sqlite+aiosqlite:///{path}"), Database(f"sqlite+aiosqlite:///{path}")

    @sa.event.listens_for(other.engine.sync_engine, "connect")
    def _no_busy_wait(dbapi_connection, _record) -> None:
        dbapi_connection.cursor().execute("PRAGMA busy_timeout=0")

    trips: list[object] = []
    plain = aiosqlite.Connection._execute

    async def counted(self, fn, *args, **kwargs):
        trips.append(fn)
        return await plain(self, fn, *args, **kwargs)

    try:
        async with db.transaction() as session:
            await session.execute(sa.text("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"))
        aiosqlite.Connection._execute = counted
        try:
            async with db.transaction() as session:
                await session.execute(sa.text("INSERT INTO t (v) VALUES ('a')"))
                await session.execute(sa.text("INSERT INTO t (v) VALUES ('b')"))
                assert len(trips) == 2  # BEGIN IMMEDIATE went with the first
                with pytest.raises(sa.exc.OperationalError, match="locked"):
                    async with other.transaction() as elsewhere:
                        await elsewhere.execute(sa.text("INSERT INTO t (v) VALUES ('x')"))
                trips.clear()
            assert len(trips) == 1  # the commit; no rollback after it
            trips.clear()
            async with db.read() as session:
                assert (await session.execute(sa.text("SELECT count(*) FROM t"))).scalar() == 2
            async with db.transaction():
                pass
            assert len(trips) == 2  # the read's statement and its commit; the empty transaction none
        finally:
            aiosqlite.Connection._execute = plain
        with pytest.raises(sa.exc.IntegrityError):  # a failed statement: its transaction rolled back
            async with db.transaction() as session:
                await session.execute(sa.text("INSERT INTO t (id, v) VALUES (1, 'again')"))
        async with other.transaction() as elsewhere:  # the lock is free
            await elsewhere.execute(sa.text("INSERT INTO t (v) VALUES ('c')"))
    finally:
        await db.dispose()
        await other.dispose()


async def test_a_writer_cancelled_while_waiting_for_sqlites_lock_leaves_no_transaction_behind(tmp_path) -> None:
    """A writer waiting for the write lock another process holds (its BEGIN IMMEDIATE, sent with its
    first statement, in SQLite's busy handler) is cancelled: once the lock is free that BEGIN may
    yet go through on aiosqlite's thread, and whatever becomes of the connection (SQLAlchemy
    closes one whose statement was cancelled; a rollback given back to the pool is not skipped
    while a statement is on its way), it must not keep the write lock."""
    import sqlalchemy as sa

    path = tmp_path / "cancelled.db"
    db, other = Database(f"sqlite+aiosqlite:///{path}"), Database(f"sqlite+aiosqlite:///{path}")

    @sa.event.listens_for(other.engine.sync_engine, "connect")
    def _short_busy_wait(dbapi_connection, _record) -> None:
        dbapi_connection.cursor().execute("PRAGMA busy_timeout=2000")

    try:
        async with db.transaction() as session:
            await session.execute(sa.text("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"))

        async def writer() -> None:
            async with db.transaction() as session:
                await session.execute(sa.text("INSERT INTO t (v) VALUES ('w')"))

        async with other.transaction() as holder:
            await holder.execute(sa.text("INSERT INTO t (v) VALUES ('h')"))
            waiting = asyncio.create_task(writer())
            await asyncio.sleep(0.3)  # on aiosqlite's thread, in BEGIN IMMEDIATE's busy wait
            waiting.cancel()
            await asyncio.sleep(0)  # the cancelled writer gives its connection back meanwhile
        with pytest.raises(asyncio.CancelledError):  # the lock is free: its BEGIN goes through, then a rollback
            await waiting
        async with other.transaction() as elsewhere:  # would fail "database is locked" after 2 s
            await elsewhere.execute(sa.text("INSERT INTO t (v) VALUES ('after')"))
        async with other.read() as session:
            assert (await session.execute(sa.text("SELECT v FROM t ORDER BY id"))).scalars().all() == ["h", "after"]
    finally:
        await db.dispose()
        await other.dispose()


async def _cut_pooled_connection(db: Database) -> None:
    """Use one pooled connection, then have the server drop it (as a restart or a network cut
    does) while it waits in the pool."""
    from sqlalchemy import text

    async with db.read() as session:
        pid = await session.scalar(text("SELECT pg_backend_pid()"))
    admin = await db.dedicated_connection()  # outside the pool
    try:
        await admin.execute("SELECT pg_terminate_backend($1)", pid)
        while await admin.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid):
            await asyncio.sleep(0.01)  # until the server has let the connection go
    finally:
        await admin.close()


@pytest.mark.parametrize("db", ["postgresql"], indirect=True)
async def test_a_connection_dropped_while_idle_is_replaced_when_taken(db: Database, monkeypatch) -> None:
    """The first transaction after the server dropped an idle pooled connection works: the
    connection is pinged when taken after `PING_AFTER_IDLE_SECONDS` idle, and replaced. (Here
    every connection counts as idle long enough: no test waits on the wall clock.)"""
    from sqlalchemy import text

    import study.database

    monkeypatch.setattr(study.database, "PING_AFTER_IDLE_SECONDS", 0.0)
    await _cut_pooled_connection(db)
    async with db.read() as session:
        assert await session.scalar(text("SELECT 1")) == 1


@pytest.mark.parametrize("db", ["postgresql"], indirect=True)
async def test_a_connection_used_a_moment_ago_is_taken_without_a_ping(db: Database, monkeypatch) -> None:
    """A connection back in the pool for less than `PING_AFTER_IDLE_SECONDS` is used as it is (no
    round trip to ping it on every transaction). Cut in that moment, it fails the one operation
    that meets the cut, and the pool is renewed: the next works."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    import study.database

    monkeypatch.setattr(study.database, "PING_AFTER_IDLE_SECONDS", 3600.0)
    await _cut_pooled_connection(db)
    with pytest.raises(DBAPIError) as failed:
        async with db.read() as session:
            await session.scalar(text("SELECT 1"))
    assert failed.value.connection_invalidated
    async with db.read() as session:
        assert await session.scalar(text("SELECT 1")) == 1
