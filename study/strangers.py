"""People outside the study who write to the bot: they learn nothing and we keep only counts.

Wrong invite codes lock a chat out for a while (`WrongCodeLimit`): per chat, and for every chat
outside the study at once when many chats guess together. The count and the lock-outs are in the
database, so a restart lifts nothing and every process sees the same limit; the chat is written
only as a salted hash (HMAC-SHA256 under the deployment's salt, made by the migration), with the
time and nothing else, and those rows are deleted once they no longer count. Opening a valid
invite does not reset a chat's count: the lock-out stops noise and guessing, and guessing must
not be able to clear itself. The codes are 128-bit random, so guessing is hopeless anyway.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import OrderedDict
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from study.models import CodeLockout, HashSalt, LockoutScope, StrangerCount, WrongCode

SALT_PURPOSE = "strangers"


async def count(session: AsyncSession, kind: str, day: date) -> None:
    """Add one to the day's count, in one statement (INSERT ... ON CONFLICT DO UPDATE): with
    several processes answering strangers at once, a read-then-write would lose counts, or
    fail on the day's first two at the same moment."""
    from sqlalchemy.dialects import postgresql, sqlite
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = insert(StrangerCount).values(day=day, kind=kind, count=1)
    await session.execute(statement.on_conflict_do_update(
        index_elements=["day", "kind"], set_={"count": StrangerCount.count + 1}))


async def counts(session: AsyncSession) -> list[StrangerCount]:
    return list((await session.scalars(select(StrangerCount).order_by(StrangerCount.day, StrangerCount.kind))).all())


@dataclass(frozen=True)
class WrongCodeRules:
    """From study.toml [enrolment]: wrong codes within `window` before one chat is locked out
    (`per_chat`) and before every chat outside the study is (`all_chats`), for `lockout`."""

    per_chat: int
    all_chats: int
    window: timedelta
    lockout: timedelta


@dataclass(frozen=True)
class Lockout:
    scope: LockoutScope
    since: datetime
    until: datetime


class WrongCodeLimit:
    """The wrong-code lock-out, kept in the database. Holds only its rules and the salt once read."""

    def __init__(self, rules: WrongCodeRules) -> None:
        self.rules = rules
        self._salt: bytes | None = None

    async def _key(self, session: AsyncSession) -> bytes | None:
        if self._salt is None:
            salt = await session.scalar(select(HashSalt.salt).where(HashSalt.purpose == SALT_PURPOSE))
            self._salt = bytes.fromhex(salt) if salt else None
        return self._salt

    async def _hash(self, session: AsyncSession, value: str) -> str:
        salt = await self._key(session)
        if salt is None:
            raise RuntimeError("no salt for strangers' chats: the database is not migrated")
        return hmac.new(salt, value.encode(), hashlib.sha256).hexdigest()

    async def chat_hash(self, session: AsyncSession, chat_id: int) -> str:
        return await self._hash(session, f"chat:{chat_id}")

    async def locked(self, session: AsyncSession, chat_id: int, now: datetime) -> Lockout | None:
        """The lock-out that stops this chat now (its own, or the one over every chat), if any."""
        if await self._key(session) is None:
            return None
        key = await self.chat_hash(session, chat_id)
        row = await session.scalar(
            select(CodeLockout).where(CodeLockout.until > now,
                                      (CodeLockout.scope == LockoutScope.ALL) | (CodeLockout.chat_hash == key))
            .order_by(CodeLockout.until.desc()).limit(1))
        return None if row is None else Lockout(LockoutScope(row.scope), row.since, row.until)

    async def record_failure(self, session: AsyncSession, chat_id: int, now: datetime, *,
                             update: str) -> Lockout | None:
        """Count a wrong code from this chat (`update` names the update that carried it, so the
        same update delivered twice, to any process, counts once). Returns the lock-out this
        failure starts (the chat's, or the one over every chat), or None."""
        if session.get_bind().dialect.name == "postgresql":  # counting and locking, one process at a time
            await session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended("
                                       "'trialbot wrong codes|' || coalesce(current_schema(), ''), 0))"))
        key = await self.chat_hash(session, chat_id)
        update_hash = await self._hash(session, f"update:{update}")
        await forget_old(session, now=now, window=self.rules.window)
        if await session.scalar(select(WrongCode.id).where(WrongCode.update_hash == update_hash)) is not None:
            return None  # the same update again: counted when it first came
        session.add(WrongCode(chat_hash=key, tried_at=now, update_hash=update_hash))
        await session.flush()
        window_start = now - self.rules.window
        lock = await self._lock_if_over(session, now, LockoutScope.CHAT, key, window_start)
        every = await self._lock_if_over(session, now, LockoutScope.ALL, None, window_start)
        return every or lock

    async def _lock_if_over(self, session: AsyncSession, now: datetime, scope: LockoutScope, key: str | None,
                            window_start: datetime) -> Lockout | None:
        """Counted from the window's start, or from the scope's last lock-out if later (a lock-out
        starts the count anew, as the tries before it were answered by it)."""
        last = select(func.max(CodeLockout.since)).where(CodeLockout.scope == scope)
        tries = select(func.count(WrongCode.id)).where(WrongCode.tried_at > window_start)
        if key is not None:
            last = last.where(CodeLockout.chat_hash == key)
            tries = tries.where(WrongCode.chat_hash == key)
        since = await session.scalar(last)
        if since is not None:
            tries = tries.where(WrongCode.tried_at > since)
        limit = self.rules.per_chat if scope is LockoutScope.CHAT else self.rules.all_chats
        if (await session.scalar(tries) or 0) < limit:
            return None
        if since is not None and since >= now:  # locked at this very moment already
            return None
        row = CodeLockout(scope=scope, chat_hash=key, since=now, until=now + self.rules.lockout)
        session.add(row)
        await session.flush()
        return Lockout(scope, row.since, row.until)


async def forget_old(session: AsyncSession, *, now: datetime, window: timedelta) -> None:
    """Delete what no longer counts (with each wrong code, and at every tick): tries older than
    the window, lock-outs over and older than the window (kept that long, as the count starts
    anew from them)."""
    window_start = now - window
    await session.execute(delete(WrongCode).where(WrongCode.tried_at <= window_start))
    await session.execute(delete(CodeLockout).where(CodeLockout.until <= now, CodeLockout.since <= window_start))


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
