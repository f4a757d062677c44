"""What a drill checks in the database after the fault: nothing half-written.

Every clinical record has the audit entry written in its transaction (the audit chain's own
check), a row marked sent has its "sent" event, and nothing skipped or failed is without its
reason. (Queueing writes no event of its own: a row's created_at says when it was queued.) A record without its companion is exactly
what a crash or an outage in the middle of a transaction would leave if transactions did not
hold.
"""

from __future__ import annotations

from sqlalchemy import func, select

from study import audit
from study.database import Database
from study.models import AuditEntry, CheckIn, DeliveryEvent, OutboxMessage


async def half_written(db: Database) -> list[str]:
    """Every inconsistency found; empty when every record is whole."""
    problems: list[str] = []
    async with db.transaction() as session:
        problems += (await audit.verify(session)).problems
        audited = set((await session.scalars(
            select(AuditEntry.entity_id).where(AuditEntry.entity == "checkin", AuditEntry.action == "create"))).all())
        for checkin_id in (await session.scalars(select(CheckIn.id))).all():
            if str(checkin_id) not in audited:
                problems.append(f"check-in {checkin_id} has no audit entry for its creation")
        events: dict[int, set[str]] = {}
        for outbox_id, event in (await session.execute(select(DeliveryEvent.outbox_id, DeliveryEvent.event))).all():
            events.setdefault(outbox_id, set()).add(event)
        for row_id, status, last_error in (await session.execute(
                select(OutboxMessage.id, OutboxMessage.status, OutboxMessage.last_error))).all():
            seen = events.get(row_id, set())
            if status == "sent" and "sent" not in seen:
                problems.append(f"outbox {row_id} is marked sent without a sent event")
            if status in ("skipped", "failed") and not last_error:
                problems.append(f"outbox {row_id} is {status} without a reason")
    return problems


async def outbox_statuses(db: Database) -> dict[str, int]:
    async with db.transaction() as session:
        rows = await session.execute(select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status))
        return dict(rows.all())


async def in_flight(db: Database) -> int:
    """Rows claimed for sending and not yet recorded: what a crash right now could repeat."""
    async with db.transaction() as session:
        return await session.scalar(select(func.count()).where(OutboxMessage.status == "sending")) or 0
