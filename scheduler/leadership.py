"""Which process runs the scheduler: one leader per deployment, chosen through PostgreSQL.

Why only one: the planner tick is cheap to repeat, but the outbox dispatcher paces Telegram's
limit, which is per bot (about 30 messages a second overall); two dispatchers each pacing at
29/s would together exceed it. So one process plans and delivers, and any process answers
updates.

How: the leader holds a session-level advisory lock (`pg_try_advisory_lock`) on a connection of
its own, outside the pool. Followers try again every `retry_seconds`. When the leader dies its
connection closes, PostgreSQL releases the lock, and the next follower to try takes over. A
leader that loses its connection (a database restart, a network cut) stops leading at once:
asyncpg tells it when the connection closes, and it checks every `retry_seconds` that it still
holds the lock; then it competes again like any follower.

The lock guards the tables of one deployment, so its key is derived from the database and the
schema the tables live in (`current_database()`, `current_schema()`), not a constant: test runs
share one PostgreSQL server with a schema or database each, and must not elect one leader
between them. (The study's name is deliberately not part of the key: two processes configured
with different study files but one schema would still share one outbox, and must share one
leader.)

On SQLite there is only ever one process on one machine: it is always the leader.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from sqlalchemy import text

from study.database import Database

log = logging.getLogger(__name__)
Duty = Callable[[], Awaitable[None]]


class _LockConnection(Protocol):
    """What is used of the leader's asyncpg.Connection (asyncpg ships no type information)."""

    def get_server_pid(self) -> int: ...
    def is_closed(self) -> bool: ...
    def add_termination_listener(self, callback: Callable[[Any], object]) -> None: ...
    async def fetchrow(self, query: str, *args: object) -> Any: ...  # an asyncpg.Record, or None
    async def fetchval(self, query: str, *args: object) -> Any: ...  # the first column's value
    async def close(self) -> None: ...
    def terminate(self) -> None: ...

# A bigint advisory-lock key shows in pg_locks as classid (high 32 bits), objid (low 32 bits)
# and objsubid 1.
_HOLDS_LOCK = """
SELECT EXISTS (SELECT 1 FROM pg_locks
               WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted
                 AND classid = $1::bigint::oid AND objid = $2::bigint::oid AND objsubid = 1)
"""
_FENCE = """
EXISTS (SELECT 1 FROM pg_locks
        WHERE locktype = 'advisory' AND pid = :leader_pid AND granted
          AND classid = CAST(:high AS bigint)::oid AND objid = CAST(:low AS bigint)::oid AND objsubid = 1)
"""


def lock_key(database: str, schema: str) -> int:
    """A signed 64-bit advisory-lock key for one deployment's tables."""
    digest = hashlib.blake2b(f"trialbot scheduler leader|{database}|{schema}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _halves(key: int) -> tuple[int, int]:
    return (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF


class SoleProcess:
    """SQLite: one process on one machine, so it leads from the start, with no lock."""

    def __init__(self, *, on_gain: Duty, on_loss: Duty) -> None:
        self.on_gain, self.on_loss = on_gain, on_loss
        self.is_leader = False

    async def try_to_lead(self) -> bool:
        if not self.is_leader:
            self.is_leader = True
            await self.on_gain()
        return True

    def fence(self) -> None:
        return None  # nobody else to keep out

    async def run(self) -> None:
        try:
            await self.try_to_lead()
            await asyncio.Event().wait()  # until cancelled: the process is stopping
        finally:
            if self.is_leader:
                self.is_leader = False
                await self.on_loss()


class AdvisoryLockLeadership:
    """PostgreSQL: lead while holding the deployment's advisory lock; see the module docstring.

    `on_gain` starts the leader's work and `on_loss` stops it; `on_loss` always runs before the
    lock is released, so a successor never starts while this process still works."""

    def __init__(self, db: Database, *, on_gain: Duty, on_loss: Duty, on_other_leader: Duty | None = None,
                 retry_seconds: float = 5.0) -> None:
        self.db = db
        self.on_gain, self.on_loss = on_gain, on_loss
        # Called at each attempt that finds another process leading (so the database answers and
        # someone else holds the lock); not while the database cannot be reached at all.
        self.on_other_leader = on_other_leader
        self._unreachable = False
        self.retry_seconds = retry_seconds
        # How long the database may take to answer before the connection counts as lost. Not
        # shorter than a few seconds, whatever the retry interval: a slow moment must not make
        # a leader step down. (Stepping down late is safe: while the server still holds the lock
        # for this connection, nobody else can lead.)
        self.answer_seconds = max(retry_seconds, 5.0)
        self.is_leader = False
        self.key: int | None = None
        self._connection: _LockConnection | None = None  # asyncpg.Connection, this process's own
        self._closed = asyncio.Event()
        self._said_standing_by = False

    async def run(self) -> None:
        """Compete until cancelled: lead while the lock is held, then compete again."""
        try:
            while True:
                if self.is_leader or await self.try_to_lead():
                    await self._hold()
                    await self._step_down("lost the connection that held the lock")
                await asyncio.sleep(self.retry_seconds)
        finally:
            if self.is_leader:
                await self._step_down("stopping")
            await self._disconnect()

    def fence(self) -> Any:
        """A SQL condition, true only while this process's lock connection still holds the lock:
        the dispatcher claims a message only under it, so a leader cut off from its lock claims
        nothing more, even before it notices; it can finish at most the one message it had."""
        assert self._connection is not None and self.key is not None, "only a leader has a fence"
        high, low = _halves(self.key)
        return text(_FENCE).bindparams(leader_pid=self._connection.get_server_pid(), high=high, low=low)

    async def try_to_lead(self) -> bool:
        """One attempt: True if this process is now the leader (and its work has started)."""
        try:
            connection = await self._connect()
            async with asyncio.timeout(self.answer_seconds):
                got = await connection.fetchval("SELECT pg_try_advisory_lock($1)", self.key)
        except Exception as exc:  # noqa: BLE001 - whatever went wrong, try again later
            if not self._unreachable:  # once per outage, not at every attempt
                self._unreachable = True
                log.warning("scheduler leadership: cannot reach the database (%s); trying again every %g s",
                            type(exc).__name__, self.retry_seconds)
            await self._disconnect()
            return False
        if self._unreachable:
            self._unreachable = False
            log.info("scheduler leadership: the database answers again")
        if not got:
            if not self._said_standing_by:  # once per change, not at every attempt
                self._said_standing_by = True
                log.info("another process is the scheduler leader; this one stands by")
            if self.on_other_leader is not None:
                await self.on_other_leader()
            return False
        self.is_leader, self._said_standing_by = True, False
        log.info("this process is now the scheduler leader")
        try:
            await self.on_gain()
        except Exception:
            log.exception("the scheduler leader could not start its work; stepping down")
            await self._step_down("could not start")
            return False
        return True

    async def _connect(self) -> _LockConnection:
        if self._connection is None or self._connection.is_closed():
            self._closed = asyncio.Event()
            async with asyncio.timeout(self.answer_seconds):
                self._connection = connection = await self.db.dedicated_connection()
                connection.add_termination_listener(lambda _connection: self._closed.set())
                database, schema = await connection.fetchrow("SELECT current_database(), current_schema()")
            self.key = lock_key(database, schema)
        return self._connection

    async def _hold(self) -> None:
        """Return when the lock may no longer be ours: the connection closed, or a check failed."""
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation that
        # arrives as its timeout fires, and this loop would then outlive the process's stop.
        assert self.key is not None, "the key is known once connected"
        high, low = _halves(self.key)
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.retry_seconds):
                    await self._closed.wait()
                return
            try:
                async with asyncio.timeout(self.answer_seconds):
                    assert self._connection is not None  # else: lost, like a failed check
                    held = await self._connection.fetchval(_HOLDS_LOCK, high, low)
            except Exception:  # noqa: BLE001 - cannot tell: assume it is lost, and stop at once
                held = False
            if not held:
                return

    async def _step_down(self, why: str) -> None:
        """Stop the leader's work first, then let go of the lock (by closing its connection)."""
        self.is_leader = False
        if why == "stopping":
            log.info("this process is stopping and gives up scheduler leadership")
        else:
            log.warning("this process lost scheduler leadership (%s)", why)
        try:
            await self.on_loss()
        except Exception:
            log.exception("stopping the scheduler leader's work failed")
        await self._disconnect()

    async def _disconnect(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None or connection.is_closed():
            return
        try:
            async with asyncio.timeout(2):
                await connection.close()
        except Exception:  # noqa: BLE001 - a connection that will not close politely is cut
            connection.terminate()


def leadership_for(db: Database, *, on_gain: Duty, on_loss: Duty, on_other_leader: Duty | None = None,
                   retry_seconds: float = 5.0) -> SoleProcess | AdvisoryLockLeadership:
    if db.is_sqlite:
        return SoleProcess(on_gain=on_gain, on_loss=on_loss)
    return AdvisoryLockLeadership(db, on_gain=on_gain, on_loss=on_loss, on_other_leader=on_other_leader,
                                  retry_seconds=retry_seconds)
