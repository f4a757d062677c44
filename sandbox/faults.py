"""Injected failures, so tests can drill how the bot copes with an unreliable Telegram.

Why: Telegram sometimes answers 5xx, 429, stalls or drops connections. Tests queue such
faults here; the server consults `take(method)` before handling each call. Injected faults
are recorded as calls but never count as the bot's own mistakes (`rejected_calls`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Literal, Mapping, Sequence

from sandbox.errors import ApiError, too_many_requests

FaultMode = Literal["error", "timeout", "drop"]

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
    """What to do instead of answering a call: an error response, a stall, or a drop."""

    mode: FaultMode
    error: ApiError


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
        self._statuses: Sequence[int] = (500,)
        #: How long a "timeout" fault holds the response; longer than the client's timeout.
        self.hold_seconds: float = 30.0

    def fail_next(
        self,
        method: str | None,
        *,
        status: int = 500,
        retry_after: int | None = None,
        count: int = 1,
        mode: FaultMode = "error",
        chat_id: int | None = None,
    ) -> None:
        """Fail the next `count` calls of `method` (any method when None), only those to
        `chat_id` if given.

        status 429 (or any status with retry_after) answers with Telegram's flood-control
        shape; "timeout" holds the response for `hold_seconds`; "drop" closes the connection.
        """
        self._pending.append(_Pending(method, Fault(mode, _error(status, retry_after)), count, chat_id))

    def random_failures(self, rate: float, seed: int, statuses: Sequence[int] = (500, 502, 429)) -> None:
        """Fail each call with probability `rate` (reproducibly from `seed`); rate 0 stops it."""
        self._random = random.Random(seed)
        self._rate = rate
        self._statuses = tuple(statuses)

    def clear(self) -> None:
        """Forget every queued and random fault."""
        self._pending.clear()
        self._rate = 0.0

    def take(self, method: str, params: Mapping[str, Any] | None = None) -> Fault | None:
        """The fault to apply to this call of `method`, if any (consuming it)."""
        for pending in self._pending:
            if pending.matches(method, params or {}):
                pending.remaining -= 1
                if pending.remaining <= 0:
                    self._pending.remove(pending)
                return pending.fault
        if self._random is not None and self._rate > 0 and self._random.random() < self._rate:
            status = self._random.choice(list(self._statuses))
            return Fault("error", _error(status, 1 if status == 429 else None))
        return None


def _error(status: int, retry_after: int | None) -> ApiError:
    if status == 429:
        return too_many_requests(retry_after or 1)
    return ApiError(status, _DESCRIPTIONS.get(status, "Injected fault"), retry_after=retry_after)
