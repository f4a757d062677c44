"""The daily anchor: each morning, with the staff digest, the audit chain's head (study/audit_anchor.py)
goes to every active investigator, so a copy of it sits in a chat the study's database cannot
reach. It is taken when planned; a message delivered late still names a true head, so it is
never stale. Queued once a day per investigator through the outbox, like the digest."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from scheduler.planner import PlannedMessage
from scheduler.staff_digest import not_yet_queued_today
from study import audit_anchor, staff
from study.models import OutboxKind
from study.protocol import Protocol

ROLE = "investigator"  # answerable for the study record


async def plan_anchors(session: AsyncSession, protocol: Protocol, now: datetime) -> list[PlannedMessage]:
    investigators = [m for m in await staff.on_duty(session) if m.role == ROLE]
    due_at, _, waiting = await not_yet_queued_today(session, protocol, now, investigators, OutboxKind.ANCHOR)
    if not waiting:
        return []
    anchor = await audit_anchor.take(session, now)
    variables = {"anchor": anchor.line(), "count": anchor.count}
    return [PlannedMessage(key=key, kind=OutboxKind.ANCHOR, template_id="staff_audit_anchor", due_at=due_at,
                           variables=variables, staff_id=member.id)
            for key, member in waiting.items()]
