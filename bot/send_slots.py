"""The send limiter's ring in PostgreSQL, shared by every process of the bot (bot/send_limiter.py).

`send_slots` holds one row per slot of the overall limit, each with the time (the database's
clock, so every process reads one clock) of the last send made in it (bot/send_limiter.py
`SlotRing` has the rules). Taking a slot is one statement: the row least recently used, if that
was at least `period` seconds ago, locked with SKIP LOCKED (two processes taking at once take two
different rows) and stamped as under way; settling it, once Telegram answered, is one more. A
slot about to free (`TAKE_AHEAD`) may be taken a moment early: the send then waits here until it
frees, so the statement's round trip does not lengthen each slot's cycle. Each
row's sends are at least `period` apart, so no window of `period` seconds holds more than one send
per row: `limit` sends in all. A 429 stamps every row forward, so no process sends before
Telegram's `retry_after`.

Telegram paces each chat over all the bot's processes too (a burst of three, then about one a
second). With updates shared among processes, one chat's answers come from several of them, so
`send_chats` keeps each chat's pace beside the slots (by a bucket of chats, not the chat's id:
`_bucket`): a send to a chat takes its slot and the
chat's turn in the same statement, or neither, and learns how long the chat must wait when
another process had its turn (the limiter then lets other chats go first).

Replies go ahead of bulk messages across processes as well: a reply that finds no slot free
marks `send_replies` (one row: until when a reply is waiting), and no process's bulk message
takes a slot before then; the reply takes the next one that frees.

With the database away the limiter goes on with a ring in this process's memory (the apology
for the outage must still go out), and back to the table when the database answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Result, TextClause, text
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.send_limiter import CHAT_BURST, IN_FLIGHT_HOLD, SEND_WINDOW_SECONDS, LocalSlots, Taken
from study.database import Database, is_unavailable

log = logging.getLogger(__name__)

_DATABASE_NOW = "extract(epoch from clock_timestamp())"
#: A reply that found no slot free keeps bulk messages of every process from the next free slots
#: until this long after the next one frees (time for it to take one).
REPLY_HOLD = 0.05
#: A slot that frees within this many seconds may be taken now, for a send that waits in this
#: process until the moment it frees: the statement's round trip (a few milliseconds, during
#: which no send of this process is let through) is then made before the slot frees, not after,
#: where every slot's cycle would be that much longer than its window (a thousand sends at 30 a
#: second: 33 cycles).
TAKE_AHEAD = 0.01


def _statements(now: str) -> dict[str, TextClause]:
    return {
        # A slot, and the chat's turn (Telegram's pace for one chat: a burst, then one a second;
        # a bulk message `gap` after the chat's last): taken together, or neither. Without a slot
        # or the chat's turn, the seconds until each. (Every send Telegram counts has a chat:
        # bot/send_limiter.py `counted`.)
        "take_for_chat": text(f"""
            WITH clock AS (SELECT {now} AS now),
            replies AS (SELECT waiting_until FROM send_replies WHERE id = 0),
            free AS (
                SELECT slot, greatest(clock.now, taken_at + :period) AS at FROM send_slots, clock
                WHERE slot < :limit AND taken_at <= clock.now - :period + :ahead
                  AND NOT (CAST(:bulk AS boolean) AND EXISTS (SELECT FROM replies WHERE waiting_until > clock.now))
                ORDER BY taken_at LIMIT 1
                FOR UPDATE OF send_slots SKIP LOCKED),
            chat AS (
                INSERT INTO send_chats AS c (bucket, tokens, at, newest)
                SELECT :bucket, :burst - 1, free.at, free.at FROM free
                ON CONFLICT (bucket) DO UPDATE
                    SET tokens = least(:burst, c.tokens + (excluded.at - c.at) / :every) - 1,
                        at = excluded.at, newest = excluded.at
                    WHERE c.tokens + (excluded.at - c.at) / :every >= 1 AND c.newest <= excluded.at - :gap
                RETURNING c.bucket),
            taken AS (
                UPDATE send_slots SET taken_at = clock.now + :in_flight FROM free, clock
                WHERE send_slots.slot = free.slot AND EXISTS (SELECT FROM chat)
                RETURNING send_slots.slot, free.at, free.at - clock.now AS wait),
            next_free AS (SELECT min(taken_at) + :period - clock.now AS wait FROM send_slots, clock WHERE slot < :limit
                          GROUP BY clock.now),
            waiting AS (
                UPDATE send_replies SET waiting_until = greatest(
                    waiting_until, clock.now + least(greatest((SELECT wait FROM next_free), 0), :period) + :hold)
                FROM clock WHERE id = 0 AND NOT CAST(:bulk AS boolean) AND NOT EXISTS (SELECT FROM free))
            SELECT slot, at, wait, NULL AS chat_wait FROM taken
            UNION ALL
            SELECT NULL, NULL,
                greatest((SELECT wait FROM next_free) - :ahead,
                         CASE WHEN CAST(:bulk AS boolean) THEN (SELECT waiting_until - clock.now FROM replies) END),
                (SELECT greatest((1 - (c.tokens + (clock.now - c.at) / :every)) * :every, c.newest + :gap - clock.now)
                 FROM send_chats AS c WHERE c.bucket = :bucket)
            FROM clock WHERE NOT EXISTS (SELECT FROM taken)"""),
        "settle": text(f"UPDATE send_slots SET taken_at = greatest(CAST(:taken AS double precision), {now} - CAST(:lag AS double precision)) WHERE slot = :slot"),
        "hold": text(f"UPDATE send_slots SET taken_at = greatest(taken_at, {now} + :seconds - :period) "
                     "WHERE slot < :limit"),
        "make": text("INSERT INTO send_slots (slot, taken_at) SELECT s, 0 FROM generate_series(0, :limit - 1) AS s "
                     "ON CONFLICT (slot) DO NOTHING"),
        "make_replies": text("INSERT INTO send_replies (id, waiting_until) VALUES (0, 0) ON CONFLICT (id) DO NOTHING"),
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
                    await connection.execute(self._sql["make_replies"])
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

    async def take(self, chat: str, *, gap: float = 0.0, bulk: bool = False) -> Taken:
        bucket = _bucket(chat)
        try:
            result = await self._execute("take_for_chat", lambda: self._params(
                in_flight=IN_FLIGHT_HOLD, bucket=bucket, gap=gap, burst=CHAT_BURST, every=SEND_WINDOW_SECONDS,
                bulk=bulk, hold=REPLY_HOLD, ahead=TAKE_AHEAD))
            slot, taken, wait, chat_wait = tuple(result.one())
        except Exception as error:
            if not is_unavailable(error):
                raise
            if not self._away:
                log.warning("send slots: the database is unavailable; pacing sends in this process alone")
                self._away = True
            here = await self._fallback.take(chat)
            return Taken(None if here.token is None else ("here", here.token), here.wait)
        self._away = False
        if slot is not None:  # (`wait`: until the slot frees, by the database's clock, from when it answered)
            return Taken(("shared", (slot, taken)), max(float(wait), 0.0))
        if chat_wait is not None and chat_wait > 0:
            return Taken(None, float(wait or 0.0), float(chat_wait))
        # A row another process is stamping this moment reads as free: try again very soon.
        return Taken(None, max(float(wait or 0.0), 0.002))

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


def _bucket(chat: str) -> int:
    """Where a chat's pace is kept in `send_chats`: one of 65,536 buckets, a hash of the chat,
    never the chat itself (an unknown chat is answered, and nothing about it may be stored; two
    chats that share a bucket are paced together, which only ever makes them slower)."""
    return int.from_bytes(hashlib.blake2b(chat.encode(), digest_size=2).digest(), "big")
