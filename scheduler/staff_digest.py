"""The staff digest: each morning, in the study's time zone, yesterday's adherence, what is
still missing, and today's visits, to every active staff member."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from scheduler.planner import PlannedMessage
from study import adherence, staff, visits
from study.models import OutboxKind, OutboxMessage, StaffMember
from study.protocol import Protocol, parse_hhmm
from study.slots import instant

STALE_AFTER = timedelta(hours=6)
# One Telegram message holds 4,096 characters: the digest names at most this many participants
# and visits (those needing attention first) and counts the rest. With the longest study ids and
# visit labels the catalog allows, in Spanish, that stays inside the limit (messages lint checks).
LISTED_PARTICIPANTS = 25
LISTED_VISITS = 12


async def not_yet_queued_today(session: AsyncSession, protocol: Protocol, now: datetime, members: list[StaffMember],
                               kind: str) -> tuple[datetime, date, dict[str, StaffMember]]:
    """For the team's daily messages: today's moment for them (study.toml reminders.staff_digest_time,
    in the study's zone), today, and, once that moment has come, the members whose `kind` message
    of today is not queued yet. Keyed `kind:<staff id>:<day>`, so each is queued once a day
    whatever the restarts, and whichever process plans."""
    zone = ZoneInfo(protocol.study.default_timezone)
    today = now.astimezone(zone).date()
    due_at = instant(today, parse_hhmm(protocol.reminders.staff_digest_time), zone)
    if now < due_at or not members:
        return due_at, today, {}
    keys = {f"{kind}:{m.id}:{today:%Y%m%d}": m for m in members}
    queued = set((await session.scalars(select(OutboxMessage.dedup_key)
                                        .where(OutboxMessage.dedup_key.in_(list(keys))))).all())
    return due_at, today, {key: member for key, member in keys.items() if key not in queued}


async def plan_digests(session: AsyncSession, protocol: Protocol, now: datetime) -> list[PlannedMessage]:
    due_at, today, waiting = await not_yet_queued_today(session, protocol, now, await staff.on_duty(session),
                                                        OutboxKind.DIGEST)
    if not waiting:
        return []
    yesterday = today - timedelta(days=1)
    rows = await adherence.on_day(session, protocol, yesterday)
    listed = _needing_attention_first(rows)[:LISTED_PARTICIPANTS]
    day_visits = await visits.on_day(session, today)
    summary = {
        "summary_date": yesterday.isoformat(),
        "participants": [
            {"study_id": r.study_id, "applied": r.applied, "expected": r.expected, "missed": r.missed,
             "missing": r.missing, "corrected": r.corrected}
            for r in listed
        ],
        "participants_not_listed": len(rows) - len(listed),
        "fully_adherent": sum(r.applied >= r.expected for r in rows),
        "total": len(rows),
        "visits": [
            {"study_id": study_id, "label": visit.label, "status": visit.status,
             "time": visit.scheduled_time.strftime("%H:%M") if visit.scheduled_time else ""}
            for study_id, visit in day_visits[:LISTED_VISITS]
        ],
        "visits_not_listed": max(len(day_visits) - LISTED_VISITS, 0),
    }
    return [
        PlannedMessage(key=key, kind=OutboxKind.DIGEST, template_id="staff_digest", due_at=due_at, variables=summary,
                       stale_after=due_at + STALE_AFTER, staff_id=member.id)
        for key, member in waiting.items()
    ]


def _needing_attention_first(rows: list[adherence.DayAdherence]) -> list[adherence.DayAdherence]:
    """Everyone in study-id order when all fit; otherwise who did not record every application
    comes first (in study-id order), then the rest."""
    if len(rows) <= LISTED_PARTICIPANTS:
        return list(rows)
    return sorted(rows, key=lambda r: r.applied >= r.expected)  # stable: study-id order within each
