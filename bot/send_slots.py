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

import logging
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import TextClause, text

from bot.send_limiter import IN_FLIGHT_HOLD, LocalSlots
from study.database import Database, is_unavailable

log = logging.getLogger(__name__)

_DATABASE_NOW = "extract(epoch from clock_timestamp())"


def _statements(now: str) -> dict[str, TextClause]:
    return {
        "take": text(f"""
            WITH free AS (
                SELECT slot FROM send_slots
                WHERE slot < :limit AND taken_at <= {now} - :period
                ORDER BY taken_at LIMIT 1
                FOR UPDATE SKIP LOCKED)
            UPDATE send_slots SET taken_at = {now} + :in_flight FROM free WHERE send_slots.slot = free.slot
            RETURNING send_slots.slot, send_slots.taken_at - :in_flight"""),
        "settle": text(f"UPDATE send_slots SET taken_at = greatest(CAST(:taken AS double precision), {now} - CAST(:lag AS double precision)) WHERE slot = :slot"),
        "wait": text(f"SELECT min(taken_at) + :period - {now} FROM send_slots WHERE slot < :limit"),
        "hold": text(f"UPDATE send_slots SET taken_at = greatest(taken_at, {now} + :seconds - :period) "
                     "WHERE slot < :limit"),
        "make": text("INSERT INTO send_slots (slot, taken_at) SELECT s, 0 FROM generate_series(0, :limit - 1) AS s "
                     "ON CONFLICT (slot) DO NOTHING"),
    }


class SharedSlots:
    """A `SlotStore` (bot/send_limiter.py) in the database, for every process of one bot."""

    def __init__(self, db: Database, *, limit: int, period: float, clock: Callable[[], float] | None = None) -> None:
        """`clock`: the database's by default (one clock for every process); the tests' virtual one."""
        self.db = db
        self.clock = clock
        self._sql = _statements(_DATABASE_NOW if clock is None else "CAST(:now AS double precision)")
        self.limit = limit
        self.period = period
        self._made = False
        self._fallback = LocalSlots(limit, period, clock=clock or time.monotonic)
        self._away = False

    async def take(self) -> tuple[Any, float]:
        try:
            async with self.db.engine.begin() as connection:
                if not self._made:
                    await connection.execute(self._sql["make"], {"limit": self.limit})
                    self._made = True
                taken = (await connection.execute(self._sql["take"], self._params(in_flight=IN_FLIGHT_HOLD))).first()
                if taken is None:
                    wait = (await connection.execute(self._sql["wait"], self._params())).scalar()
        except Exception as error:
            if not is_unavailable(error):
                raise
            if not self._away:
                log.warning("send slots: the database is unavailable; pacing sends in this process alone")
                self._away = True
            slot, wait = await self._fallback.take()
            return (None if slot is None else ("here", slot)), wait
        self._away = False
        if taken is not None:
            return ("shared", (taken[0], taken[1])), 0.0
        # A row another process is stamping this moment reads as free: try again very soon.
        return None, max(float(wait or 0.0), 0.002)

    async def settle(self, token: Any, lag: float) -> None:
        where, slot = token
        if where == "here":
            await self._fallback.settle(slot, lag)
            return
        number, taken = slot
        try:
            async with self.db.engine.begin() as connection:
                await connection.execute(self._sql["settle"], self._params(slot=number, taken=taken, lag=lag))
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
            async with self.db.engine.begin() as connection:
                await connection.execute(self._sql["hold"], self._params(seconds=seconds))
        except Exception as error:
            if not is_unavailable(error):
                raise
