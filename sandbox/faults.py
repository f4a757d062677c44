"""Injected failures, so tests can drill how the bot copes with an unreliable Telegram.

Why: Telegram sometimes answers 5xx, 429, stalls or drops connections. Tests queue such
faults here; the server consults `take(method)` before handling each call. Injected faults
are recorded as calls but never count as the bot's own mistakes (`rejected_calls`).

A stall or a drop can happen on either side of Telegram's work: before it (the call never took
effect) or after it (Telegram did it, and only the answer was lost on the way back: the case
that makes a retried sendMessage arrive twice). `after=True` says which.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sandbox.errors import ApiError, too_many_requests

FaultMode = Literal["error", "timeout", "drop"]
#: What `random_failures` may pick: an HTTP status (429 comes with retry_after), "timeout",
#: "drop", or "timeout-after" / "drop-after" (the call took effect, its answer was lost).
FaultKind = int | Literal["timeout", "drop", "timeout-after", "drop-after"]
EVERY_KIND: tuple[FaultKind, ...] = (429, 500, "timeout", "drop", "timeout-after", "drop-after")

_DESCRIPTIONS = {
    400: "Bad Request: injected fault",
    403: "Forbidden: injected fault",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


@dataclass(frozen=True)
class Fault:
    """What to do instead of answering a call: an error response, a stall, or a drop; with
    `after`, the call is carried out first and only its answer is lost."""

    mode: FaultMode
    error: ApiError
    after: bool = False

    @property
    def kind(self) -> str:
        """A short name for reports: "429", "500", "timeout", "drop-after"..."""
        if self.mode == "error":
            return str(self.error.status)
        return f"{self.mode}-after" if self.after else self.mode


@dataclass
class _Pending:
    method: str | None
    fault: Fault
    remaining: int
    chat_id: int | None = None

    def matches(self, method: str, params: Mapping[str, Any]) -> bool:
        if self.method is not None and self.method.lower() != method.lower():
            return False
        return self.chat_id is None or str(params.get("chat_id")) == str(self.chat_id)


class Faults:
    """The queue of faults to inject, plus an optional random failure rate."""

    def __init__(self) -> None:
        self._pending: list[_Pending] = []
        self._random: random.Random | None = None
        self._rate = 0.0
        self._kinds: Sequence[FaultKind] = (500,)
        self._spared: frozenset[str] = frozenset()
        self._max_retry_after = 1
        #: How long a "timeout" fault holds the response; longer than the client's timeout.
        self.hold_seconds: float = 30.0
        #: Set to end every hold at once (a test that looks at the world while a call is held).
        self.released = asyncio.Event()
        #: Every fault handed out, by (method, kind): what a drill reports and bounds against.
        self.injected: Counter[tuple[str, str]] = Counter()

    def fail_next(
        self,
        method: str | None,
        *,
        status: int = 500,
        retry_after: int | None = None,
        count: int = 1,
        mode: FaultMode = "error",
        chat_id: int | None = None,
        after: bool = False,
    ) -> None:
        """Fail the next `count` calls of `method` (any method when None), only those to
        `chat_id` if given.

        status 429 (or any status with retry_after) answers with Telegram's flood-control
        shape; "timeout" holds the response for `hold_seconds`; "drop" closes the connection;
        `after` (timeout or drop only) carries the call out before losing its answer.
        """
        if after and mode == "error":
            raise ValueError("only a timeout or a drop can lose the answer of a call carried out")
        self._pending.append(_Pending(method, Fault(mode, _error(status, retry_after), after), count, chat_id))

    def random_failures(self, rate: float, seed: int, kinds: Sequence[FaultKind] = (500, 502, 429), *,
                        spare: Sequence[str] = (), max_retry_after: int = 1) -> None:
        """Fail each call with probability `rate`, picking one of `kinds` at random, reproducibly
        from `seed`; rate 0 stops it. Methods in `spare` are never failed at random. A 429
        carries a retry_after of 1 to `max_retry_after` seconds."""
        self._random = random.Random(seed)
        self._rate = rate
        self._kinds = tuple(kinds)
        self._spared = frozenset(m.lower() for m in spare)
        self._max_retry_after = max(1, max_retry_after)

    def clear(self) -> None:
        """Forget every queued and random fault."""
        self._pending.clear()
        self._rate = 0.0

    def take(self, method: str, params: Mapping[str, Any] | None = None) -> Fault | None:
        """The fault to apply to this call of `method`, if any (consuming it)."""
        fault = self._queued(method, params or {}) or self._at_random(method)
        if fault is not None:
            self.injected[(method, fault.kind)] += 1
        return fault

    def _queued(self, method: str, params: Mapping[str, Any]) -> Fault | None:
        for pending in self._pending:
            if pending.matches(method, params):
                pending.remaining -= 1
                if pending.remaining <= 0:
                    self._pending.remove(pending)
                return pending.fault
        return None

    def _at_random(self, method: str) -> Fault | None:
        if self._random is None or self._rate <= 0 or method.lower() in self._spared:
            return None
        if self._random.random() >= self._rate:
            return None
        kind = self._random.choice(list(self._kinds))
        if isinstance(kind, int):
            retry_after = self._random.randint(1, self._max_retry_after) if kind == 429 else None
            return Fault("error", _error(kind, retry_after))
        mode, _, after = kind.partition("-")
        return Fault(mode, _error(500, None), after=bool(after))  # type: ignore[arg-type]


def _error(status: int, retry_after: int | None) -> ApiError:
    if status == 429:
        return too_many_requests(retry_after or 1)
    return ApiError(status, _DESCRIPTIONS.get(status, "Injected fault"), retry_after=retry_after)
