"""People outside the study who write to the bot: they learn nothing and we keep only counts.

The lock-out for repeated wrong invite codes lives in memory, keyed by a salted hash of the chat,
so that nothing about a stranger is ever written to disk; a restart forgets it, which is fine
since the codes are 128-bit random and guessing is hopeless anyway: the lock-out only stops noise.
"""

from __future__ import annotations

import hashlib
import secrets
from collections import OrderedDict, deque
from datetime import date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from study.models import StrangerCount


async def count(session: AsyncSession, kind: str, day: date) -> None:
    """Add one to the day's count, in one statement (INSERT ... ON CONFLICT DO UPDATE): with
    several processes answering strangers at once, a read-then-write would lose counts, or
    fail on the day's first two at the same moment."""
    if session.bind.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    statement = insert(StrangerCount).values(day=day, kind=kind, count=1)
    await session.execute(statement.on_conflict_do_update(
        index_elements=["day", "kind"], set_={"count": StrangerCount.count + 1}))


async def counts(session: AsyncSession) -> list[StrangerCount]:
    return list((await session.scalars(select(StrangerCount).order_by(StrangerCount.day, StrangerCount.kind))).all())


class WrongCodeLockout:
    def __init__(self, *, max_failures: int, window: timedelta, lockout: timedelta) -> None:
        self._max = max_failures
        self._window = window
        self._lockout = lockout
        self._salt = secrets.token_bytes(16)
        self._failures: dict[str, deque[datetime]] = {}
        self._locked_until: dict[str, datetime] = {}

    def _key(self, chat_id: int) -> str:
        return hashlib.blake2s(str(chat_id).encode(), key=self._salt).hexdigest()

    def is_locked(self, chat_id: int, now: datetime) -> bool:
        until = self._locked_until.get(self._key(chat_id))
        return until is not None and now < until

    def record_failure(self, chat_id: int, now: datetime) -> bool:
        """Count a wrong code; True when this failure locks the chat out."""
        key = self._key(chat_id)
        failures = self._failures.setdefault(key, deque())
        failures.append(now)
        while failures and now - failures[0] > self._window:
            failures.popleft()
        if len(failures) >= self._max:
            self._locked_until[key] = now + self._lockout
            failures.clear()
            return True
        return False

    def clear(self, chat_id: int) -> None:
        key = self._key(chat_id)
        self._failures.pop(key, None)
        self._locked_until.pop(key, None)


class RecentUpdates:
    """The last few thousand update ids seen from strangers, in this process only: a stranger's
    update delivered twice is counted once, and nothing about them is written down."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._seen: OrderedDict[int, None] = OrderedDict()

    def first_time(self, update_id: int) -> bool:
        if update_id in self._seen:
            return False
        self._seen[update_id] = None
        if len(self._seen) > self._size:
            self._seen.popitem(last=False)
        return True
