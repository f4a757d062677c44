"""Strangers' daily counts stay right when several processes count at the same moment."""

from __future__ import annotations

import asyncio
from datetime import date

from study import strangers
from study.database import Database


def another_process(db: Database) -> Database:
    if db.is_sqlite:
        return Database(str(db.url))
    return Database(db.url.render_as_string(hide_password=False), schema=db.schema)


async def test_counts_from_two_processes_at_once_add_up(db: Database) -> None:
    other = another_process(db)
    day = date(2026, 11, 24)

    async def count_on(database: Database) -> None:
        async with database.transaction() as session:
            await strangers.count(session, "message", day)

    try:
        await asyncio.gather(*(count_on(db if n % 2 else other) for n in range(20)))
    finally:
        await other.dispose()
    async with db.transaction() as session:
        [row] = await strangers.counts(session)
    assert (row.day, row.kind, row.count) == (day, "message", 20)
