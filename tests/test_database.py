"""The database layer's own promises: reads never wait for a writer."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from study.database import Database
from study.models import Participant


async def test_a_read_goes_on_while_a_write_transaction_is_open(db: Database) -> None:
    """Every update starts with a read (who is writing?); it must not queue behind the dispatcher's
    or the scheduler's write transaction. On SQLite a write transaction holds the write lock
    from BEGIN IMMEDIATE; a read begun the same way would wait for it (here: time out)."""
    async with db.transaction() as writer:
        await writer.execute(select(Participant.id).limit(1))  # the write transaction has begun
        async def read() -> list[int]:
            async with db.read() as session:
                return list((await session.scalars(select(Participant.id))).all())

        assert await asyncio.wait_for(read(), timeout=5) == []
