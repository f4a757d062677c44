"""One limiter per bot token: every message the bot sends or edits passes it.

Telegram answers 429 when a bot sends more than about 30 messages in a second (over all its
chats, and over every process that uses its token), or more than about one a second to one chat.
PTB's AIORateLimiter is a leaky bucket per process: after a quiet spell it lets a burst through
and then refills, so a one-second window can see twice its rate; and each process counts only
its own sends. This limiter instead keeps the times of the last `limit` sends (a ring): a send
may start only once the oldest of them is `period` seconds old, so no window of `period`
seconds ever holds more than `limit` sends (`SlotRing`). `period` is one second plus a
margin for the jitter between the moment a send is let through here and the moment Telegram
counts it.

- Where the ring is kept (`SlotStore`): in memory on SQLite (one process), in a table of
  `limit` rows on PostgreSQL (`bot/send_slots.py`), so every process of the bot shares it.
- Which calls count: those Telegram's flood control counts, messages sent, copied, forwarded
  or edited (anything with a `chat_id` but chat actions); a button's answer does not.
- Priority: `Pace(bulk=True)` (the outbox's reminders, broadcasts, digests) waits behind
  every other send waiting in this process, and on PostgreSQL behind a reply waiting in any
  process: a participant's reply goes first.
- One chat gets a burst of at most `CHAT_BURST` messages, then one a second (as Telegram paces
  a chat), and bulk sends at most one a second (`per_chat_seconds`); a send waiting for its
  chat does not hold up the others. On PostgreSQL each chat's pace is shared by every process
  too (a chat's updates may be answered by several).
- A 429 stops every send of the bot (every process) for its `retry_after`, and is retried
  up to `max_retries` times (0 in the tests: the outbox retries on the injected clock).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import heapq
import itertools
import logging
import math
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, NamedTuple, Protocol

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
#: A send's slot is not free while the send is under way; one that never ends frees it after this.
IN_FLIGHT_HOLD = 30.0
#: Until this many sends were answered, the quickest round trip seen may still be one slowed by
#: the start (connections opened, a burst queued at once): it counts only in proportion.
WARM_UP_SENDS = 60
#: The network's share of a round trip is the quickest of this many latest answers: recent, so
#: that a round trip that was once quicker (another network path, a quiet start) does not keep
#: every slot waiting out the difference for good (at 100 ms round trips a 2 ms one seen at the
#: start cost a tenth of the rate).
RECENT_ANSWERS = 60
#: Bulk messages (reminders, broadcasts) to one chat: at most one in this many seconds.
PER_CHAT_SECONDS = 1.0
#: Any messages to one chat: a burst of at most this many, then one a second (and the margin).
CHAT_BURST = 3


@dataclass(frozen=True)
class Pace:
    """What a send asks of the limiter (PTB's `rate_limit_args`)."""

    bulk: bool = False  # the outbox's scheduled and mass messages: behind replies, one a second per chat


BULK = Pace(bulk=True)


def counted(endpoint: str, data: dict[str, Any]) -> bool:
    """Does Telegram's flood control count this call? Messages sent, copied, forwarded, edited."""
    return (data.get("chat_id") is not None and endpoint.startswith(("send", "edit", "copy", "forward"))
            and endpoint != "sendChatAction")


class ChatPace:
    """One chat's sends, as Telegram paces a chat: a burst of `burst`, then one every `every`
    seconds (a bucket of `burst` tokens refilled at one per `every` seconds); and the time of the
    chat's last send (bulk messages keep a second from it)."""

    def __init__(self, burst: int = CHAT_BURST, every: float = SEND_WINDOW_SECONDS) -> None:
        self.burst = burst
        self.every = every
        self._tokens = float(burst)
        self._at = -float("inf")
        self.newest: float | None = None
        self.held_until = -float("inf")  # another process's sends to the chat (bot/send_slots.py)

    def _refilled(self, now: float) -> float:
        return min(float(self.burst), self._tokens + (now - self._at) / self.every)

    def wait(self, now: float) -> float:
        """Seconds until the chat may have another send (0: now)."""
        tokens = self._refilled(now)
        return max(0.0 if tokens >= 1 else (1 - tokens) * self.every, self.held_until - now)

    def take(self, now: float) -> None:
        self._tokens, self._at = self._refilled(now) - 1, now
        self.newest = now

    def quiet(self, now: float, for_bulk: float) -> bool:
        """Has the chat's burst come back, and its bulk second passed (then it may be forgotten)?"""
        return (self._refilled(now) >= self.burst and (self.newest or -float("inf")) + for_bulk <= now
                and self.held_until <= now)


class SlotRing:
    """`limit` slots, each the time of the last send made in it: no window of `period` seconds
    holds more than `limit` sends.

    A send takes a slot whose time is at least `period` old, so each slot's sends are `period`
    apart, and any window of `period` seconds holds at most one send per slot. While the send is
    under way its slot is not free (its time is set `IN_FLIGHT_HOLD` ahead); when Telegram has
    answered, the slot's time becomes the moment Telegram is taken to have counted the send
    (`settle`): not the moment it was let through here, but the answer's time less the quickest
    of the latest round trips. A send held up between the two (a busy event loop, the process paused by
    the OS, a slow connection) then counts from when it really reached Telegram, and the sends
    after it keep their distance from it."""

    def __init__(self, limit: int, period: float) -> None:
        self.limit = limit
        self.period = period
        self._slots = [-float("inf")] * limit

    def take(self, now: float) -> tuple[int | None, float]:
        """A slot taken at `now` (and 0), or None and the seconds until one is free."""
        slot = min(range(self.limit), key=self._slots.__getitem__)
        wait = self._slots[slot] + self.period - now
        if wait > 0:
            return None, wait
        self._slots[slot] = now + IN_FLIGHT_HOLD
        return slot, 0.0

    def settle(self, slot: int, counted_at: float) -> None:
        self._slots[slot] = counted_at

    def hold(self, until: float) -> None:
        """Nothing is let through before `until` (Telegram said to wait): every slot is taken then."""
        self._slots = [max(t, until - self.period) for t in self._slots]


class Taken(NamedTuple):
    """A send slot (`token`, for `settle`), or None and the seconds until one may be free
    (`wait`); or, where the store paces chats too, the seconds until the chat may have one
    (`chat_wait`: another process sent to it). A slot taken a moment before it frees (the shared
    ring's `TAKE_AHEAD`) comes with the seconds until it does (`wait`): the send waits them out."""

    token: Any
    wait: float = 0.0
    chat_wait: float = 0.0


class SlotStore(Protocol):
    """Where the ring is kept: this process's memory, or a table every process shares."""

    async def take(self, chat: str, *, gap: float = 0.0, bulk: bool = False) -> Taken:
        """Take a send slot now for a send to `chat`, which must be at least `gap` seconds after
        the chat's last send; `bulk`: it goes behind replies. A
        store in this process's memory leaves chats and priority to the limiter (one process sees
        every send); a shared one keeps them for every process."""
        ...

    async def settle(self, token: Any, lag: float) -> None:
        """The send made in the slot has been answered; Telegram is taken to have counted it
        `lag` seconds before now (the quickest round trip), and not before it was let through."""
        ...

    async def hold(self, seconds: float) -> None:
        """No slot for anyone for `seconds` (a 429's retry_after)."""
        ...

    async def close(self) -> None:
        """The limiter is shut down: let go of what the store holds (a connection)."""
        ...


class LocalSlots:
    """The ring in this process's memory (SQLite: one process sends)."""

    def __init__(self, limit: int = MESSAGES_PER_SECOND, period: float = SEND_WINDOW_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ring = SlotRing(limit, period)
        self.clock = clock

    async def take(self, chat: str, *, gap: float = 0.0, bulk: bool = False) -> Taken:
        now = self.clock()
        slot, wait = self.ring.take(now)
        return Taken(None if slot is None else (slot, now), wait)

    async def settle(self, token: Any, lag: float) -> None:
        slot, taken = token
        self.ring.settle(slot, max(taken, self.clock() - lag))

    async def hold(self, seconds: float) -> None:
        self.ring.hold(self.clock() + seconds)

    async def close(self) -> None:
        pass


class VirtualTime:
    """A clock that moves only when the limiter sleeps on it: the tests pace sends without waiting
    on the wall clock (the order and priority of sends are the same; no second really passes).
    Starts at the epoch's present, like the database's clock the shared ring otherwise reads."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        # (At the epoch's magnitude a float moves in steps of about 2e-7 s: always at least one.)
        self.now = max(self.now + max(seconds, 0.0), math.nextafter(self.now, math.inf))
        await asyncio.sleep(0)


@dataclass(order=True)
class _Waiter:
    priority: int
    seq: int
    chat: str = field(compare=False)
    granted: asyncio.Future = field(compare=False)


class SendLimiter(BaseRateLimiter[Pace]):
    """The limiter PTB's Application runs every Bot API request through (bot/app.py).

    Sends waiting here are let through one at a time, each as soon as the ring has a slot:
    replies first, then bulk messages, each class in the order it came; a send whose chat had
    its burst (or, for a bulk message, one less than `per_chat_seconds` ago) is passed over
    (not blocking the others) until its chat may have one again. `clock` and `sleep` are injectable (tests run on virtual time)."""

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
        self._chats: dict[str, ChatPace] = {}  # chat -> its recent sends
        # The latest round trips of sends Telegram answered, and how many it answered: the
        # network's share of a round trip (a lower bound on both ways, so never too much).
        self._recent: collections.deque[float] = collections.deque(maxlen=RECENT_ANSWERS)
        self._answered = 0
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
        await self.slots.close()

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
            token = await self.acquire(bulk=pace.bulk, chat=data["chat_id"])
            started, answered = time.monotonic(), False
            try:
                result = await callback(*args, **kwargs)
                answered = True
                return result
            except RetryAfter as exc:
                answered = True
                self.refused += 1
                wait = exc.retry_after
                seconds = wait.total_seconds() if isinstance(wait, timedelta) else float(wait)
                await self.slots.hold(seconds)
                if attempt == self.max_retries:
                    raise
                log.info("Telegram asked to wait %.0f s (429); trying again then", seconds)
            finally:
                if answered:
                    self.answered(time.monotonic() - started)
                await self._settle(token)
        raise AssertionError("unreachable")  # pragma: no cover

    def answered(self, round_trip: float) -> None:
        """Telegram answered a send after `round_trip` seconds (a failed connection says nothing)."""
        self._recent.append(round_trip)
        self._answered += 1

    @property
    def lag(self) -> float:
        """How long before its answer a send is taken to have reached Telegram."""
        if not self._answered:
            return 0.0
        return min(self._recent) * min(1.0, self._answered / WARM_UP_SENDS)

    async def _settle(self, token: Any) -> None:
        """The send is over: its slot counts it from its end less the quickest round trip."""
        try:
            await asyncio.shield(self.slots.settle(token, self.lag))
        except Exception as error:  # noqa: BLE001 - a slot left unsettled frees itself (IN_FLIGHT_HOLD)
            log.warning("send slot not settled (%s)", type(error).__name__)
        if self._arrived is not None:
            self._arrived.set()  # a slot may be free sooner than the limiter thought

    async def acquire(self, *, chat: int | str, bulk: bool = False) -> Any:
        """Wait for this send's turn and slot (a send to `chat`); the slot's token, to settle once
        the send is answered."""
        waiter = _Waiter(1 if bulk else 0, next(self._seq), str(chat),
                         asyncio.get_running_loop().create_future())
        heapq.heappush(self._waiting, waiter)
        if self._arrived is None:
            self._arrived = asyncio.Event()
        self._arrived.set()
        if self._pump is None or self._pump.done():
            self._pump = asyncio.get_running_loop().create_task(self._let_through(), name="send-limiter")
        try:
            return await waiter.granted
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
            wait = self._chat_wait(waiter, now)
            if wait <= 0:
                return waiter, 0.0
            soonest = min(soonest, wait)
        return None, soonest

    def _chat_wait(self, waiter: _Waiter, now: float) -> float:
        ring = self._chats.get(waiter.chat)
        if ring is None:
            return 0.0
        wait = ring.wait(now)
        if waiter.priority and ring.newest is not None:  # bulk: a second since the chat's last message
            wait = max(wait, ring.newest + self.per_chat_seconds - now)
        return wait

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
            # The slot is taken for this waiter's chat (a shared store paces the chat too).
            taken = await self.slots.take(waiter.chat, gap=self.per_chat_seconds if waiter.priority else 0.0,
                                          bulk=bool(waiter.priority))
            if taken.token is None and taken.chat_wait > 0:
                # Another process sent to this chat: it waits that long here too, and the
                # others go meanwhile.
                # (At least a moment: a chat refused on the edge of its turn reads as due now.)
                self._pace_of(waiter.chat).held_until = self.clock() + max(taken.chat_wait, 0.002)
                continue
            if taken.token is None:
                if taken.wait <= SEND_WINDOW_SECONDS:
                    # When the next slot is free is known: nothing that comes to wait or is
                    # answered meanwhile frees one sooner (an answer's slot is free a window on).
                    await self.sleep(taken.wait)
                else:  # every slot is under way: a send's answer frees one
                    self._arrived.clear()
                    await self._pause(0.02)
                continue
            if taken.wait > 0:  # taken a moment before it frees: it is this waiter's from then
                await self.sleep(taken.wait)
            if waiter.granted.done():  # (the waiter left meanwhile: the slot goes unused)
                await self.slots.settle(taken.token, 0.0)
                continue
            self._pace_of(waiter.chat).take(self.clock())
            self.granted += 1
            waiter.granted.set_result(taken.token)

    def _pace_of(self, chat: str) -> ChatPace:
        if chat not in self._chats:
            if len(self._chats) > 4096:
                self._forget_quiet_chats()
            self._chats[chat] = ChatPace()
        return self._chats[chat]

    async def _pause(self, seconds: float) -> None:
        """Sleep `seconds` (on the injected clock), or until another send comes to wait or one is answered."""
        assert self._arrived is not None
        sleeper = asyncio.ensure_future(self.sleep(seconds))
        arrival = asyncio.ensure_future(self._arrived.wait())
        try:
            await asyncio.wait({sleeper, arrival}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, arrival):
                task.cancel()

    def _forget_quiet_chats(self) -> None:
        now = self.clock()
        self._chats = {chat: pace for chat, pace in self._chats.items() if not pace.quiet(now, self.per_chat_seconds)}
