"""Telegram's flood control, as token buckets over real (monotonic) time.

Why: Telegram answers 429 "Too Many Requests: retry after N" when a bot sends faster than
about 30 messages per second overall, about one per second to one chat (short bursts
allowed) or 20 per minute to one group. Off by default; tests of throughput turn it on.

The overall limit is a bucket by default (a full second's worth may go at once after a quiet
spell); with `strict_window` it is a sliding window instead: a message is refused when
`global_per_second` messages were already taken in the second before it, so no one-second
window, wherever it starts, holds more (the strictest reading of Telegram's limit).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from sandbox.errors import ApiError, too_many_requests


@dataclass(frozen=True)
class RateLimits:
    """The limits to enforce; defaults are Telegram's documented ones."""

    global_per_second: float = 30.0
    per_chat_per_second: float = 1.0
    per_chat_burst: int = 3
    group_per_minute: float = 20.0
    strict_window: bool = False  # overall: no one-second window may hold more than global_per_second


@dataclass
class _Bucket:
    capacity: float
    per_second: float
    tokens: float
    updated: float

    def wait_needed(self, now: float) -> float:
        """Refill, then seconds until a token is available (0 when one is there now)."""
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.per_second)
        self.updated = now
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.per_second


@dataclass
class RateLimiter:
    """Admits or refuses outgoing messages; one bucket for the bot and one per chat."""

    limits: RateLimits
    clock: Callable[[], float] = time.monotonic
    _global: _Bucket | None = None
    _chats: dict[int | str, _Bucket] = field(default_factory=dict)
    _window: deque[float] = field(default_factory=deque)  # strict_window: the times of the last messages

    def admit(self, chat_id: int | str | None) -> None:
        """Take a token from every bucket that applies, or raise the 429 Telegram sends."""
        now = self.clock()
        if self.limits.strict_window:
            self._admit_in_window(chat_id, now)
            return
        if self._global is None:
            rate = self.limits.global_per_second
            self._global = _Bucket(rate, rate, rate, now)
        buckets = [self._global]
        if chat_id is not None:
            buckets.append(self._chat_bucket(chat_id, now))
        wait = max(bucket.wait_needed(now) for bucket in buckets)
        if wait > 0:
            raise self._refusal(wait)
        for bucket in buckets:
            bucket.tokens -= 1

    def _admit_in_window(self, chat_id: int | str | None, now: float) -> None:
        limit = int(self.limits.global_per_second)
        while self._window and self._window[0] <= now - 1.0:
            self._window.popleft()
        wait = self._window[0] + 1.0 - now if len(self._window) >= limit else 0.0
        if chat_id is not None:
            wait = max(wait, self._chat_bucket(chat_id, now).wait_needed(now))
        if wait > 0:
            raise self._refusal(wait)
        self._window.append(now)
        if chat_id is not None:
            self._chats[chat_id].tokens -= 1

    def _chat_bucket(self, chat_id: int | str, now: float) -> _Bucket:
        bucket = self._chats.get(chat_id)
        if bucket is None:
            is_group = isinstance(chat_id, int) and chat_id < 0
            if is_group:
                per_second = self.limits.group_per_minute / 60
                capacity = float(self.limits.per_chat_burst)
            else:
                per_second = self.limits.per_chat_per_second
                capacity = float(self.limits.per_chat_burst)
            bucket = _Bucket(capacity, per_second, capacity, now)
            self._chats[chat_id] = bucket
        return bucket

    @staticmethod
    def _refusal(wait: float) -> ApiError:
        return too_many_requests(max(1, math.ceil(wait)))
