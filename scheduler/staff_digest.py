"""The staff digest: each morning, in the study's time zone, yesterday's adherence, what is
still missing, and today's visits, to every active staff member."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from scheduler.planner import PlannedMessage
from study import adherence, staff, visits
from study.models import OutboxMessage
from study.protocol import Protocol, parse_hhmm
from study.slots import instant

STALE_AFTER = timedelta(hours=6)


async def plan_digests(session: AsyncSession, protocol: Protocol, now: datetime) -> list[PlannedMessage]:
    zone = ZoneInfo(protocol.study.default_timezone)
    today = now.astimezone(zone).date()
    due_at = instant(today, parse_hhmm(protocol.reminders.staff_digest_time), zone)
    if now < due_at:
        return []
    members = await staff.on_duty(session)
    keys = {f"digest:{m.id}:{today:%Y%m%d}": m for m in members}
    queued = set((await session.scalars(select(OutboxMessage.dedup_key)
                                        .where(OutboxMessage.dedup_key.in_(list(keys))))).all())
    waiting = {key: member for key, member in keys.items() if key not in queued}
    if not waiting:
        return []
    yesterday = today - timedelta(days=1)
    rows = await adherence.on_day(session, protocol, yesterday)
    summary = {
        "summary_date": yesterday.isoformat(),
        "participants": [
            {"study_id": r.study_id, "applied": r.applied, "expected": r.expected, "missed": r.missed,
             "missing": r.missing}
            for r in rows
        ],
        "fully_adherent": sum(r.applied >= r.expected for r in rows),
        "total": len(rows),
        "visits": [
            {"study_id": study_id, "label": visit.label, "status": visit.status,
             "time": visit.scheduled_time.strftime("%H:%M") if visit.scheduled_time else ""}
            for study_id, visit in await visits.on_day(session, today)
        ],
    }
    return [
        PlannedMessage(key=key, kind="digest", template_id="staff_digest", due_at=due_at, variables=summary,
                       stale_after=due_at + STALE_AFTER, staff_id=member.id)
        for key, member in waiting.items()
    ]
