"""The ledger of handled updates: what makes an update's effects happen once.

Telegram delivers an update at least once: a webhook it did not see acknowledged is sent again,
polling after a crash fetches what was not confirmed, two processes may both be given it. The
first thing the transaction that carries an update's effects does is claim the update here
(`claim`); a second delivery finds the claim, and the caller gives the stored answer again
instead of doing anything. Updates that change nothing are written down when they are answered
(`answered`), so even their reply is not sent twice.

Telegram-free: an update is named by the bot's id and its update id (and a pressed button's query
id); `action_key` names an action that may happen once whatever update carries it (a second tap
on a button that acts once per message).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Row, Select, Table, and_, bindparam, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from study.models import ProcessedUpdate

# Telegram keeps an update for redelivery for a day at most; after a week without updates it
# picks the next update id at random, which could meet an old one. A week it is, both ways.
KEPT_FOR = timedelta(days=7)


@dataclass(frozen=True)
class UpdateKey:
    bot_id: int
    update_id: int
    callback_query_id: str | None = None
    action_key: str | None = None
    participant_id: int | None = None
    staff_id: int | None = None


@dataclass(frozen=True)
class Handled:
    """What the ledger says of an update handled before (a plain copy: it outlives its session)."""

    bot_id: int
    update_id: int
    answer: dict[str, Any] | None
    answered_at: datetime | None

    @classmethod
    def of(cls, row: ProcessedUpdate | Row[int, int, dict[str, Any] | None, datetime | None]) -> Handled:
        return cls(row.bot_id, row.update_id, row.answer, row.answered_at)


class AlreadyHandled(Exception):
    """The update (or the action it asks for) was handled before: `row` holds what it was answered."""

    def __init__(self, row: Handled) -> None:
        super().__init__(f"update {row.update_id} handled before")
        self.row = row


def _matching(key: UpdateKey) -> Any:
    conditions: list[Any] = [(ProcessedUpdate.bot_id == key.bot_id) & (ProcessedUpdate.update_id == key.update_id)]
    if key.callback_query_id is not None:
        conditions.append(ProcessedUpdate.callback_query_id == key.callback_query_id)
    if key.action_key is not None:
        conditions.append(ProcessedUpdate.action_key == key.action_key)
    return or_(*conditions)


def _found(record: Any, by_query: bool, by_action: bool) -> Any:
    """The conditions of `find` on `record` (the table, or an alias of it)."""
    conditions: list[Any] = [(record.bot_id == bindparam("bot_id")) & (record.update_id == bindparam("update_id"))]
    if by_query:
        conditions.append(record.callback_query_id == bindparam("callback_query_id"))
    if by_action:
        conditions.append(record.action_key == bindparam("action_key"))
    return and_(or_(*conditions), record.handled_at > bindparam("since"))


# The columns a Handled copies, not the mapped row: no ORM object to build for every update.
_HANDLED = (ProcessedUpdate.bot_id, ProcessedUpdate.update_id, ProcessedUpdate.answer, ProcessedUpdate.answered_at)


@functools.cache
def _find_statement(by_query: bool, by_action: bool) -> Any:
    """`find`'s query for each shape of key, built once (every update looks itself up)."""
    return select(*_HANDLED).where(_found(ProcessedUpdate, by_query, by_action)).order_by(ProcessedUpdate.id).limit(1)


def _find_params(key: UpdateKey, now: datetime) -> dict[str, Any]:
    return {"bot_id": key.bot_id, "update_id": key.update_id, "since": now - KEPT_FOR,
            "callback_query_id": key.callback_query_id, "action_key": key.action_key}


async def find(session: AsyncSession, key: UpdateKey, *, now: datetime) -> Handled | None:
    """The record of this update (or of its action), if it was handled within `KEPT_FOR`."""
    query = _find_statement(key.callback_query_id is not None, key.action_key is not None)
    row = (await session.execute(query, _find_params(key, now))).first()
    return Handled.of(row) if row is not None else None


@functools.cache
def _beside_statement(lookup: Select[Any], by_query: bool, by_action: bool) -> Any:
    """`lookup` with `find`'s record joined on, when there is one (see `find_beside`)."""
    record = aliased(ProcessedUpdate)  # the subquery's own: not correlated with the joined table
    first = (select(record.id).where(_found(record, by_query, by_action)).order_by(record.id).limit(1)
             .scalar_subquery())
    return lookup.add_columns(*_HANDLED).outerjoin(ProcessedUpdate, ProcessedUpdate.id == first)


async def find_beside(session: AsyncSession, lookup: Select[Any], params: dict[str, Any], key: UpdateKey, *,
                      now: datetime) -> tuple[Any, Handled | None]:
    """Who is writing and `find`, in one statement (every update asks both, first thing):
    `lookup` selects one mapped row by its bind `params` (a module's constant: the joined
    statement is built once for each). Returns that row's object (None if there is none) and
    the update's record (None if it was not handled before, or no object was found)."""
    query = _beside_statement(lookup, key.callback_query_id is not None, key.action_key is not None)
    row = (await session.execute(query, {**params, **_find_params(key, now)})).first()
    if row is None:
        return None, None
    return row[0], (Handled(*row[1:]) if row.bot_id is not None else None)


async def claim(session: AsyncSession, key: UpdateKey, *, now: datetime) -> int:
    """Claim the update in the caller's transaction, before its effects; raises AlreadyHandled
    when it (or its action) was claimed already. On PostgreSQL a second process claiming the same
    update at the same moment waits here until the first commits, then finds its claim. Returns
    the claim's id (for `keep_answer`)."""
    values = {"bot_id": key.bot_id, "update_id": key.update_id, "callback_query_id": key.callback_query_id,
              "action_key": key.action_key, "participant_id": key.participant_id, "staff_id": key.staff_id,
              "handled_at": now}
    claimed = await _insert_new(session, values)
    if claimed is not None:
        return claimed
    row = await find(session, key, now=now)
    if row is not None:
        raise AlreadyHandled(row)
    # What stood in the way is older than KEPT_FOR: another time's update with the same id.
    await _forget_expired(session, key, now=now)
    claimed = await _insert_new(session, values)
    if claimed is None:
        raise AlreadyHandled(await find(session, key, now=now))  # type: ignore[arg-type]
    return claimed


_TABLE = cast(Table, ProcessedUpdate.__table__)
_KEEP_ANSWER = (update(_TABLE).where(_TABLE.c.id == bindparam("claim_id"))
                .values(answer=bindparam("answer"), answered_at=bindparam("answered_at")))


async def keep_answer(session: AsyncSession, claim_id: int, answer: dict[str, Any], *,
                      answered_at: datetime | None = None) -> None:
    """The reply the claimed update gets, written in the claim's transaction; `answered_at` when
    its record is written there too (an edit of the pressed message: bot/exactly_once.py)."""
    await session.execute(_KEEP_ANSWER, {"claim_id": claim_id, "answer": answer, "answered_at": answered_at})


async def answered(session: AsyncSession, key: UpdateKey, answer: dict[str, Any], *, now: datetime,
                   claimed: bool = True) -> None:
    """The update's reply went out: note it (and, for an update that changed nothing, write it
    down now, so that a second delivery is not answered again). One statement either way when the
    caller knows whether the update was claimed (`claimed=False`: it changed nothing, so it is
    written down at once; should a claim be there after all, it is noted as before)."""
    if not claimed:
        values = {"bot_id": key.bot_id, "update_id": key.update_id, "callback_query_id": key.callback_query_id,
                  "participant_id": key.participant_id, "staff_id": key.staff_id, "handled_at": now,
                  "answer": answer, "answered_at": now}
        if await _insert_new(session, values) is not None:
            return
    noted: Any = await session.execute(
        update(ProcessedUpdate)
        .where(ProcessedUpdate.bot_id == key.bot_id, ProcessedUpdate.update_id == key.update_id,
               ProcessedUpdate.answered_at.is_(None))
        .values(answered_at=now).execution_options(synchronize_session=False))
    if noted.rowcount:
        return
    values = {"bot_id": key.bot_id, "update_id": key.update_id, "callback_query_id": key.callback_query_id,
              "participant_id": key.participant_id, "staff_id": key.staff_id, "handled_at": now,
              "answer": answer, "answered_at": now}
    if await _insert_new(session, values) is None and await find(session, key, now=now) is None:
        # In the way: another time's record of the same update id (older than KEPT_FOR).
        await _forget_expired(session, key, now=now)
        await _insert_new(session, values)


async def forget_older_than(session: AsyncSession, *, now: datetime) -> int:
    """Housekeeping: drop records older than `KEPT_FOR` (no update can come again after that)."""
    result: Any = await session.execute(delete(ProcessedUpdate).where(ProcessedUpdate.handled_at <= now - KEPT_FOR))
    return int(result.rowcount or 0)


async def _forget_expired(session: AsyncSession, key: UpdateKey, *, now: datetime) -> None:
    """A record older than `KEPT_FOR` with the same ids is from another time (Telegram reuses
    update ids after a week of silence): it must not block this update."""
    await session.execute(delete(ProcessedUpdate).where(_matching(key), ProcessedUpdate.handled_at <= now - KEPT_FOR))


@functools.cache
def _insert_statement(dialect: str) -> Any:
    insert: Any
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(_TABLE).on_conflict_do_nothing().returning(_TABLE.c.id)


async def _insert_new(session: AsyncSession, values: dict[str, Any]) -> int | None:
    """INSERT ... ON CONFLICT DO NOTHING (any of the unique keys); the new row's id, or None."""
    found: int | None = await session.scalar(_insert_statement(session.get_bind().dialect.name), values)
    return found
