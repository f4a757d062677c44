"""The outbox: every message the bot starts (notices to staff now; reminders, alerts and
broadcasts later) is first a row here, written in the same transaction as the event that causes
it. The dispatcher delivers rows and records what happened; a crash loses nothing, and the
unique `dedup_key` means queueing the same thing twice queues it once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from study import staff as staff_members
from study.models import OutboxMessage


async def enqueue(
    session: AsyncSession,
    *,
    dedup_key: str,
    template_id: str,
    variables: dict[str, Any],
    now: datetime,
    participant_id: int | None = None,
    staff_id: int | None = None,
    not_before: datetime | None = None,
) -> OutboxMessage | None:
    """Queue a message; None if one with this key was queued before."""
    if (participant_id is None) == (staff_id is None):
        raise ValueError("an outbox message goes to exactly one participant or staff member")
    if await session.scalar(select(OutboxMessage.id).where(OutboxMessage.dedup_key == dedup_key)):
        return None
    row = OutboxMessage(
        dedup_key=dedup_key, participant_id=participant_id, staff_id=staff_id, template_id=template_id,
        variables=variables, status="pending", created_at=now, not_before=not_before or now, attempts=0,
    )
    try:
        async with session.begin_nested():
            session.add(row)
            await session.flush()
    except IntegrityError:
        return None
    return row


async def notify_staff(
    session: AsyncSession, *, event_key: str, template_id: str, variables: dict[str, Any], now: datetime
) -> int:
    """Queue one notice per on-duty staff member; returns how many were queued."""
    queued = 0
    for member in await staff_members.on_duty(session):
        row = await enqueue(session, dedup_key=f"{event_key}:staff{member.id}", template_id=template_id,
                            variables=variables, now=now, staff_id=member.id)
        queued += row is not None
    return queued


async def due(session: AsyncSession, *, now: datetime, limit: int = 50) -> list[OutboxMessage]:
    query = (
        select(OutboxMessage)
        .where(OutboxMessage.status == "pending", OutboxMessage.not_before <= now)
        .order_by(OutboxMessage.not_before, OutboxMessage.id)
        .limit(limit)
    )
    return list((await session.scalars(query)).all())


async def for_participant(session: AsyncSession, participant_id: int) -> list[OutboxMessage]:
    query = select(OutboxMessage).where(OutboxMessage.participant_id == participant_id).order_by(OutboxMessage.id)
    return list((await session.scalars(query)).all())
