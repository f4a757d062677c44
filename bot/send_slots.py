"""The send limiter's ring in PostgreSQL, shared by every process of the bot (bot/send_limiter.py).

`send_slots` holds one row per slot of the overall limit, each with the time (the database's
clock, so every process reads one clock) of the last send made in it (bot/send_limiter.py
`SlotRing` has the rules). Taking a slot is one statement: the row least recently used, if that
was at least `period` seconds ago, locked with SKIP LOCKED (two processes taking at once take two
different rows) and stamped as under way; settling it, once Telegram answered, is one more. Each
row's sends are at least `period` apart, so no window of `period` seconds holds more than one send
per row: `limit` sends in all. A 429 stamps every row forward, so no process sends before
Telegram's `retry_after`.

With the database away the limiter goes on with a ring in this process's memory (the apology
for the outage must still go out), and back to the table when the database answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Result, TextClause, text
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.send_limiter import IN_FLIGHT_HOLD, LocalSlots
from study.database import Database, is_unavailable

log = logging.getLogger(__name__)

_DATABASE_NOW = "extract(epoch from clock_timestamp())"


def _statements(now: str) -> dict[str, TextClause]:
    return {
        # A slot and the time it was taken; or, with none free, the seconds until one may be.
        "take": text(f"""
            WITH free AS (
                SELECT slot FROM send_slots
                WHERE slot < :limit AND taken_at <= {now} - :period
                ORDER BY taken_at LIMIT 1
                FOR UPDATE SKIP LOCKED),
            taken AS (
                UPDATE send_slots SET taken_at = {now} + :in_flight FROM free WHERE send_slots.slot = free.slot
                RETURNING send_slots.slot, send_slots.taken_at - :in_flight AS at)
            SELECT slot, at, NULL AS wait FROM taken
            UNION ALL
            SELECT NULL, NULL, (SELECT min(taken_at) + :period - {now} FROM send_slots WHERE slot < :limit)
            WHERE NOT EXISTS (SELECT FROM taken)"""),
        "settle": text(f"UPDATE send_slots SET taken_at = greatest(CAST(:taken AS double precision), {now} - CAST(:lag AS double precision)) WHERE slot = :slot"),
        "hold": text(f"UPDATE send_slots SET taken_at = greatest(taken_at, {now} + :seconds - :period) "
                     "WHERE slot < :limit"),
        "make": text("INSERT INTO send_slots (slot, taken_at) SELECT s, 0 FROM generate_series(0, :limit - 1) AS s "
                     "ON CONFLICT (slot) DO NOTHING"),
    }


class SharedSlots:
    """A `SlotStore` (bot/send_limiter.py) in the database, for every process of one bot.

    Its statements run on a connection of its own, in autocommit: each is one round trip, where a
    pooled transaction is four (the pool's ping, BEGIN, the statement, COMMIT), and the limiter lets
    no send through while it waits for a slot (at 30 sends a second, 4.6 ms a slot was a
    twentieth of the rate). Statements take turns on it; a connection lost is opened again."""

    def __init__(self, db: Database, *, limit: int, period: float, clock: Callable[[], float] | None = None) -> None:
        """`clock`: the database's by default (one clock for every process); the tests' virtual one."""
        self.db = db
        self.clock = clock
        self._sql = _statements(_DATABASE_NOW if clock is None else "CAST(:now AS double precision)")
        self.limit = limit
        self.period = period
        self._connection: AsyncConnection | None = None
        self._turn = asyncio.Lock()
        self._fallback = LocalSlots(limit, period, clock=clock or time.monotonic)
        self._away = False

    async def _execute(self, name: str, params: Callable[[], dict[str, Any]]) -> Result[Any]:
        """One statement on the slots' own connection; `params` are made once it is this one's turn."""
        async with self._turn:
            try:
                if self._connection is None:
                    connection = await self.db.engine.connect()
                    await connection.execution_options(isolation_level="AUTOCOMMIT")
                    await connection.execute(self._sql["make"], {"limit": self.limit})
                    self._connection = connection
                return await self._connection.execute(self._sql[name], params())
            except Exception:
                await self.close()
                raise

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):  # a connection already lost has nothing to close
                await connection.close()

    async def take(self) -> tuple[Any, float]:
        try:
            result = await self._execute("take", lambda: self._params(in_flight=IN_FLIGHT_HOLD))
            slot, taken, wait = tuple(result.one())
        except Exception as error:
            if not is_unavailable(error):
                raise
            if not self._away:
                log.warning("send slots: the database is unavailable; pacing sends in this process alone")
                self._away = True
            slot, wait = await self._fallback.take()
            return (None if slot is None else ("here", slot)), wait
        self._away = False
        if slot is not None:
            return ("shared", (slot, taken)), 0.0
        # A row another process is stamping this moment reads as free: try again very soon.
        return None, max(float(wait or 0.0), 0.002)

    async def settle(self, token: Any, lag: float) -> None:
        where, slot = token
        if where == "here":
            await self._fallback.settle(slot, lag)
            return
        number, taken = slot
        called = time.monotonic()

        def params() -> dict[str, Any]:
            # The slot counts from the answer, not from whenever the connection was free to say
            # so: the wait for its turn is added to the lag, or each slot's sends would drift
            # apart by it.
            return self._params(slot=number, taken=taken, lag=lag + time.monotonic() - called)

        try:
            await self._execute("settle", params)
        except Exception as error:
            if not is_unavailable(error):
                raise  # (the slot frees itself after IN_FLIGHT_HOLD)

    def _params(self, **more: float) -> dict[str, Any]:
        params = {"limit": self.limit, "period": self.period, **more}
        if self.clock is not None:
            params["now"] = self.clock()
        return params

    async def hold(self, seconds: float) -> None:
        await self._fallback.hold(seconds)
        try:
            await self._execute("hold", lambda: self._params(seconds=seconds))
        except Exception as error:
            if not is_unavailable(error):
                raise
