"""Scheduler leadership: of several processes on one PostgreSQL database, one leads; when it stops
or loses its connection, another takes over; deployments in other schemas are not involved.

Each `Database` here stands for one process (its own pool and its own lock connection)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import literal, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from scheduler.leadership import AdvisoryLockLeadership, SoleProcess, leadership_for, lock_key
from study.database import Database

pytestmark = pytest.mark.timeout(60)
PG_URL = os.environ.get("TRIALBOT_TEST_DATABASE_URL")
RETRY = 0.05  # seconds between a follower's attempts: short, so a takeover is quick to see


@contextlib.asynccontextmanager
async def schema() -> AsyncIterator[str]:
    name = f"test_{uuid.uuid4().hex[:16]}"
    admin = create_async_engine(PG_URL, isolation_level="AUTOCOMMIT")
    async with admin.connect() as connection:
        await connection.execute(text(f"CREATE SCHEMA {name}"))
    try:
        yield name
    finally:
        async with admin.connect() as connection:
            await connection.execute(text(f"DROP SCHEMA {name} CASCADE"))
        await admin.dispose()


@pytest.fixture
async def deployment() -> AsyncIterator[str]:
    if not PG_URL:
        if os.environ.get("TRIALBOT_REQUIRE_POSTGRES") == "1":
            pytest.fail("TRIALBOT_REQUIRE_POSTGRES=1 but TRIALBOT_TEST_DATABASE_URL is not set")
        pytest.skip("leader election is a PostgreSQL matter; set TRIALBOT_TEST_DATABASE_URL")
    async with schema() as name:
        yield name


class Process:
    """One process's leadership, with what it was told: the leader's work started or stopped."""

    def __init__(self, name: str, db: Database, *, fail_first_gain: bool = False) -> None:
        self.name, self.db = name, db
        self.gained, self.lost = asyncio.Event(), asyncio.Event()
        self.events: list[str] = []
        self._fail_next_gain = fail_first_gain
        self.leadership = AdvisoryLockLeadership(db, on_gain=self._gain, on_loss=self._loss, retry_seconds=RETRY)
        self.task: asyncio.Task | None = None
        self.while_stopping = None  # called inside on_loss, while the lock should still be held

    async def _gain(self) -> None:
        self.events.append("gain")
        if self._fail_next_gain:
            self._fail_next_gain = False
            raise RuntimeError("could not start")
        self.gained.set()

    async def _loss(self) -> None:
        self.events.append("loss")
        if self.while_stopping is not None:
            await self.while_stopping()
        self.lost.set()

    def compete(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self.leadership.run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        await self.db.dispose()


async def soon(event: asyncio.Event, seconds: float = 10) -> None:
    await asyncio.wait_for(event.wait(), seconds)


@contextlib.asynccontextmanager
async def processes(deployment: str, *names: str, **options) -> AsyncIterator[list[Process]]:
    made = [Process(name, Database(PG_URL, schema=deployment), **options) for name in names]
    try:
        yield made
    finally:
        for process in made:
            await process.stop()


async def test_one_process_leads_and_another_takes_over_when_it_stops(deployment: str, caplog) -> None:
    caplog.set_level(logging.INFO, logger="scheduler.leadership")
    async with processes(deployment, "a", "b", "c") as (a, b, c):
        assert await a.leadership.try_to_lead()
        assert a.events == ["gain"] and a.leadership.is_leader
        assert not await c.leadership.try_to_lead(), "the lock is taken"
        assert c.events == [] and not c.leadership.is_leader
        a.compete()
        tries = count_attempts(b)
        b.compete()
        await soon(tries.reached(3))
        assert b.events == [], "b keeps trying, and keeps failing, while a leads"
        taken_while_a_stopped: list[bool] = []

        async def try_c() -> None:
            taken_while_a_stopped.append(await c.leadership.try_to_lead())

        a.while_stopping = try_c
        await a.stop()
        assert a.events == ["gain", "loss"]
        assert taken_while_a_stopped == [False], "a stops its work before it lets go of the lock"
        await soon(b.gained)
        assert b.leadership.is_leader and b.events == ["gain"]
    messages = [r.getMessage() for r in caplog.records]
    assert messages.count("this process is now the scheduler leader") == 2
    assert "this process is stopping and gives up scheduler leadership" in messages


class Attempts:
    def __init__(self) -> None:
        self.made = 0
        self._wanted: dict[int, asyncio.Event] = {}

    def reached(self, n: int) -> asyncio.Event:
        event = self._wanted.setdefault(n, asyncio.Event())
        if self.made >= n:
            event.set()
        return event

    def add(self) -> None:
        self.made += 1
        for n, event in self._wanted.items():
            if self.made >= n:
                event.set()


def count_attempts(process: Process) -> Attempts:
    """Count a process's attempts to lead (our own object, wrapped: no wall-clock guessing)."""
    attempts, attempt = Attempts(), process.leadership.try_to_lead

    async def counted() -> bool:
        try:
            return await attempt()
        finally:
            attempts.add()

    process.leadership.try_to_lead = counted
    return attempts


async def test_a_leader_whose_connection_is_cut_stops_at_once_and_competes_again(deployment: str) -> None:
    async with processes(deployment, "a", "b") as (a, b):
        assert await a.leadership.try_to_lead()
        a.compete()
        # What a database restart or a network cut does to the leader's lock connection.
        async with b.db.engine.connect() as connection:
            await connection.execute(text("SELECT pg_terminate_backend(:pid)"),
                                     {"pid": a.leadership._connection.get_server_pid()})
        await soon(a.lost)
        assert not a.leadership.is_leader and a.events == ["gain", "loss"]
        a.gained.clear()
        b.compete()
        # Exactly one of them leads again (a competes again too, and may win).
        winners, _ = await asyncio.wait([asyncio.ensure_future(soon(p.gained)) for p in (a, b)],
                                        return_when=asyncio.FIRST_COMPLETED)
        assert winners.pop().exception() is None
        assert a.leadership.is_leader != b.leadership.is_leader


async def test_the_fence_holds_only_while_the_lock_does(deployment: str) -> None:
    async with processes(deployment, "a", "b") as (a, b):
        assert await a.leadership.try_to_lead()
        fence = a.leadership.fence()
        assert await _holds(b.db, fence), "the fence is checked from any connection (the dispatcher's pool)"
        a.leadership._connection.terminate()  # the lock connection is gone, the process lives on
        await asyncio.wait_for(_until_false(b.db, fence), 10)


async def test_a_leader_that_cannot_start_its_work_lets_another_lead(deployment: str) -> None:
    async with processes(deployment, "a", fail_first_gain=True) as (a,), processes(deployment, "b") as (b,):
        assert not await a.leadership.try_to_lead()
        assert a.events == ["gain", "loss"] and not a.leadership.is_leader
        b.compete()
        await soon(b.gained)


async def test_deployments_in_other_schemas_elect_their_own_leader(deployment: str) -> None:
    async with schema() as other, processes(deployment, "a") as (a,), processes(other, "b") as (b,):
        assert await a.leadership.try_to_lead()
        assert await b.leadership.try_to_lead(), "another schema, another lock"
        assert a.leadership.key != b.leadership.key


def test_the_lock_key_is_per_database_and_schema() -> None:
    keys = {lock_key(database, schema_name) for database in ("test", "trialbot") for schema_name in ("public", "s1")}
    assert len(keys) == 4
    assert lock_key("test", "public") == lock_key("test", "public")
    assert all(-2**63 <= key < 2**63 for key in keys)


async def test_on_sqlite_the_one_process_leads_at_once(tmp_path) -> None:
    events: list[str] = []

    async def gain() -> None:
        events.append("gain")

    async def loss() -> None:
        events.append("loss")

    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'one.db'}")
    leadership = leadership_for(db, on_gain=gain, on_loss=loss)
    assert isinstance(leadership, SoleProcess) and leadership.fence() is None
    assert await leadership.try_to_lead() and leadership.is_leader
    task = asyncio.get_running_loop().create_task(leadership.run())
    await asyncio.sleep(0)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert events == ["gain", "loss"]
    await db.dispose()


async def _holds(db: Database, fence) -> bool:
    async with db.engine.connect() as connection:
        return bool(await connection.scalar(select(literal(True)).where(fence)))


async def _until_false(db: Database, fence) -> None:
    while await _holds(db, fence):
        await asyncio.sleep(RETRY)
