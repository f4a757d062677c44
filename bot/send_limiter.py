"""One limiter per bot token: every message the bot sends or edits passes it.

Telegram answers 429 when a bot sends more than about 30 messages in a second (over all its
chats, and over every process that uses its token), or more than about one a second to one chat.
PTB's AIORateLimiter is a leaky bucket per process: after a quiet spell it lets a burst through
and then refills, so a one-second window can see twice its rate; and each process counts only
its own sends. This limiter instead keeps the times of the last `limit` sends (a ring): a send
may start only once the oldest of them is `period` seconds old, so no window of `period`
seconds ever holds more than `limit` sends (`SlidingWindow`). `period` is one second plus a
margin for the jitter between the moment a send is let through here and the moment Telegram
counts it.

- Where the ring is kept (`SlotStore`): in memory on SQLite (one process), in a table of
  `limit` rows on PostgreSQL (`study/send_slots.py`), so every process of the bot shares it.
- Which calls count: those Telegram's flood control counts, messages sent, copied, forwarded
  or edited (anything with a `chat_id` but chat actions); a button's answer does not.
- Priority: `Pace(bulk=True)` (the outbox's reminders, broadcasts, digests) waits behind
  every other send waiting in this process: a participant's reply goes first.
- Bulk sends go at most one a second to one chat (`per_chat_seconds`).
- A 429 stops every send of the bot (every process) for its `retry_after`, and is retried
  up to `max_retries` times (0 in the tests: the outbox retries on the injected clock).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

from telegram.error import RetryAfter
from telegram.ext import BaseRateLimiter

log = logging.getLogger(__name__)

#: Telegram's overall limit: messages per second, over every chat and process of one bot.
MESSAGES_PER_SECOND = 30
#: Between the moment a send is let through and the moment Telegram counts it lie the request's
#: way out and a busy event loop's delays; the window is this much longer than a second, so that
#: a send held up that long still finds the window it falls in not full.
JITTER_MARGIN_SECONDS = 0.03
SEND_WINDOW_SECONDS = 1.0 + JITTER_MARGIN_SECONDS
#: Bulk messages (reminders, broadcasts) to one chat: at most one in this many seconds.
PER_CHAT_SECONDS = 1.0


@dataclass(frozen=True)
class Pace:
    """What a send asks of the limiter (PTB's `rate_limit_args`)."""

    bulk: bool = False  # the outbox's scheduled and mass messages: behind replies, one a second per chat


BULK = Pace(bulk=True)


def counted(endpoint: str, data: dict[str, Any]) -> bool:
    """Does Telegram's flood control count this call? Messages sent, copied, forwarded, edited."""
    return (data.get("chat_id") is not None and endpoint.startswith(("send", "edit", "copy", "forward"))
            and endpoint != "sendChatAction")


class SlidingWindow:
    """At most `limit` grants in any `period` seconds: the ring of the last `limit` grant times.

    A grant at `now` needs the oldest time in the ring to be at most `now - period`; so grant k
    and grant k + limit are at least `period` apart, and any half-open window of `period` seconds
    holds at most `limit` grants. Times must not go backwards (a monotonic clock)."""

    def __init__(self, limit: int, period: float) -> None:
        self.limit = limit
        self.period = period
        self._ring: deque[float] = deque(maxlen=limit)

    def wait(self, now: float) -> float:
        """Seconds until a grant is possible (0: now)."""
        if len(self._ring) < self.limit:
            return 0.0
        return max(0.0, self._ring[0] + self.period - now)

    def take(self, now: float) -> float:
        """Grant at `now` if possible (returns 0), else the seconds to wait (nothing taken)."""
        wait = self.wait(now)
        if wait == 0:
            self._ring.append(now)
        return wait

    def hold(self, until: float) -> None:
        """Nothing is granted before `until` (Telegram said to wait): every slot is taken then."""
        times = [max(t, until - self.period) for t in self._ring]
        times += [until - self.period] * (self.limit - len(times))
        self._ring = deque(sorted(times), maxlen=self.limit)


class SlotStore(Protocol):
    """Where the ring is kept: this process's memory, or a table every process shares."""

    async def take(self) -> float:
        """Take a send slot now (returns 0) or say how many seconds until one is free."""
        ...

    async def hold(self, seconds: float) -> None:
        """No slot for anyone for `seconds` (a 429's retry_after)."""
        ...


class LocalSlots:
    """The ring in this process's memory (SQLite: one process sends)."""

    def __init__(self, limit: int = MESSAGES_PER_SECOND, period: float = SEND_WINDOW_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.window = SlidingWindow(limit, period)
        self.clock = clock

    async def take(self) -> float:
        return self.window.take(self.clock())

    async def hold(self, seconds: float) -> None:
        self.window.hold(self.clock() + seconds)


class VirtualTime:
    """A clock that moves only when the limiter sleeps on it: the tests pace sends without waiting
    on the wall clock (the order and priority of sends are the same; no second really passes).
    Starts at the epoch's present, like the database's clock the shared ring otherwise reads."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 0.0)
        await asyncio.sleep(0)


@dataclass(order=True)
class _Waiter:
    priority: int
    seq: int
    chat: Any = field(compare=False)
    granted: asyncio.Future = field(compare=False)


class SendLimiter(BaseRateLimiter[Pace]):
    """The limiter PTB's Application runs every Bot API request through (bot/app.py).

    Sends waiting here are let through one at a time, each as soon as the ring has a slot:
    replies first, then bulk messages, each class in the order it came; a bulk message whose
    chat had one less than `per_chat_seconds` ago is passed over (not blocking the others)
    until its chat's second is up. `clock` and `sleep` are injectable (tests run on virtual time)."""

    def __init__(self, slots: SlotStore | None = None, *, per_chat_seconds: float = PER_CHAT_SECONDS,
                 max_retries: int = 0, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> None:
        self.slots: SlotStore = slots or LocalSlots(clock=clock)
        self.per_chat_seconds = per_chat_seconds
        self.max_retries = max_retries
        self.clock = clock
        self.sleep = sleep
        self._waiting: list[_Waiter] = []
        self._seq = itertools.count()
        self._arrived: asyncio.Event | None = None
        self._pump: asyncio.Task | None = None
        self._last_bulk: dict[Any, float] = {}  # chat -> when its last bulk message was let through
        #: Sends let through, and 429s met (for the benches and the log).
        self.granted = 0
        self.refused = 0

    async def initialize(self) -> None:
        pass

    async def shutdown(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
            self._pump = None
        for waiter in self._waiting:
            waiter.granted.cancel()
        self._waiting.clear()

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, bool | dict[str, Any] | list[dict[str, Any]]]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: Pace | None,
    ) -> bool | dict[str, Any] | list[dict[str, Any]]:
        if not counted(endpoint, data):
            return await callback(*args, **kwargs)
        pace = rate_limit_args or Pace()
        for attempt in range(self.max_retries + 1):
            await self.acquire(bulk=pace.bulk, chat=data.get("chat_id"))
            try:
                return await callback(*args, **kwargs)
            except RetryAfter as exc:
                self.refused += 1
                wait = exc.retry_after
                seconds = wait.total_seconds() if isinstance(wait, timedelta) else float(wait)
                await self.slots.hold(seconds)
                if attempt == self.max_retries:
                    raise
                log.info("Telegram asked to wait %.0f s (429); trying again then", seconds)
        raise AssertionError("unreachable")  # pragma: no cover

    async def acquire(self, *, bulk: bool = False, chat: Any = None) -> None:
        """Wait for this send's turn and slot."""
        waiter = _Waiter(1 if bulk else 0, next(self._seq), str(chat) if bulk and chat is not None else None,
                         asyncio.get_running_loop().create_future())
        heapq.heappush(self._waiting, waiter)
        if self._arrived is None:
            self._arrived = asyncio.Event()
        self._arrived.set()
        if self._pump is None or self._pump.done():
            self._pump = asyncio.get_running_loop().create_task(self._let_through(), name="send-limiter")
        try:
            await waiter.granted
        except asyncio.CancelledError:
            if waiter in self._waiting:
                self._waiting.remove(waiter)
                heapq.heapify(self._waiting)
            raise

    def _next(self, now: float) -> tuple[_Waiter | None, float]:
        """The first waiter in order whose chat may have one now; else None and how long until one may."""
        soonest = float("inf")
        for waiter in sorted(self._waiting):
            if waiter.granted.done():
                continue
            if waiter.chat is None:
                return waiter, 0.0
            free_at = self._last_bulk.get(waiter.chat, -float("inf")) + self.per_chat_seconds
            if free_at <= now:
                return waiter, 0.0
            soonest = min(soonest, free_at - now)
        return None, soonest

    async def _let_through(self) -> None:
        assert self._arrived is not None
        while True:
            self._waiting = [w for w in self._waiting if not w.granted.done()]
            heapq.heapify(self._waiting)
            if not self._waiting:
                self._arrived.clear()
                await self._arrived.wait()
                continue
            waiter, until_chat_free = self._next(self.clock())
            if waiter is None:  # every waiter is a bulk message to a chat that had one this second
                self._arrived.clear()
                await self._pause(until_chat_free)
                continue
            wait = await self.slots.take()
            if wait > 0:
                await self.sleep(wait)
                continue
            # The slot is taken: it goes to the first in order now (one may have come meanwhile).
            waiter, _ = self._next(self.clock())
            if waiter is None:  # (the waiter left meanwhile: the slot goes unused)
                continue
            if waiter.chat is not None:
                self._last_bulk[waiter.chat] = self.clock()
                if len(self._last_bulk) > 4096:
                    self._forget_old_chats()
            self.granted += 1
            waiter.granted.set_result(None)

    async def _pause(self, seconds: float) -> None:
        """Sleep `seconds` (on the injected clock), or until another send comes to wait."""
        assert self._arrived is not None
        sleeper = asyncio.ensure_future(self.sleep(seconds))
        arrival = asyncio.ensure_future(self._arrived.wait())
        try:
            await asyncio.wait({sleeper, arrival}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, arrival):
                task.cancel()

    def _forget_old_chats(self) -> None:
        now = self.clock()
        self._last_bulk = {c: t for c, t in self._last_bulk.items() if t + self.per_chat_seconds > now}
