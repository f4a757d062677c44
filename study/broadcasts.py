"""Broadcasts: one approved notice to many participants.

A staff member writes a draft (template, audience, optionally their own short text inside the
"notice from the study team" template), sees it exactly as participants will, and confirms. When
the protocol asks for it (`[broadcasts] require_second_approval`), a second, different staff
member must approve before anything is queued. Queueing writes one outbox row per recipient
(key `broadcast:<id>:<participant id>`) in one transaction, so a restart resumes the delivery and
can never queue anyone twice; the dispatcher does the sending, skipping, retrying and recording.
Every step is audited: who wrote it, who approved it, which approved template version, what text,
which audience and which recipients.

Approvals expire (`[broadcasts] approval_valid_hours`, 24 by default):
- a broadcast awaiting the second approval can be approved until that long after its author
  confirmed it; an Approve pressed later is refused and the broadcast is marked expired
  (audited), so nothing of it is ever sent;
- a broadcast queued (by its author's confirmation, or by the second approval) is sent until that
  long after it was queued; a recipient's message still unsent then (the bot was down, Telegram
  slow) is not sent but recorded as skipped ("the broadcast's approval expired"), and the final
  report counts it apart;
- until it is approved, its author or the investigator may withdraw it (`withdraw`, audited).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from study import audit, outbox, participants
from study.audit import SYSTEM, Actor
from study.models import (
    Broadcast,
    BroadcastStatus,
    OutboxKind,
    OutboxMessage,
    OutboxStatus,
    Participant,
    ParticipantStatus,
    StaffMember,
    Visit,
)
from study.visits import OPEN_STATUSES

# The approved notice templates a broadcast may use, and whether they wrap the author's text.
TEMPLATES: dict[str, bool] = {"broadcast_team_notice": True, "broadcast_clinic_closure": False}
SHORT_NAMES = {"notice": "broadcast_team_notice", "closure": "broadcast_clinic_closure"}
TEXT_MAX = 500
MAX_VISIT_DAYS = 90
# Why a recipient's message was not sent: its approval ran out first (study/still_wanted.py).
EXPIRED_NOTE = "the broadcast's approval expired before it could be sent"


class BroadcastError(ValueError):
    """A draft that cannot be made; `code` names the staff-facing reason."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def parse_audience(value: str) -> str:
    """all | wocbp | P001 (one participant) | visits:N (a visit in the next N days)."""
    value = value.strip()
    if value.lower() in ("all", "wocbp"):
        return value.lower()
    if value.lower().startswith("visits:"):
        days = value.split(":", 1)[1]
        if not days.isdigit() or not 1 <= int(days) <= MAX_VISIT_DAYS:
            raise BroadcastError("audience")
        return f"visits:{int(days)}"
    if value and len(value) <= 20 and value.replace("-", "").replace("_", "").isalnum():
        return f"participant:{participants.normal_study_id(value)}"  # p001 is P001
    raise BroadcastError("audience")


class AudienceMember(NamedTuple):
    """What a broadcast needs of a recipient: who (the outbox row's participant, the recipients'
    study ids on record), the preview's language, and the zone a visit's day is judged in."""

    id: int
    study_id: str
    language: str
    timezone: str


async def audience_members(session: AsyncSession, audience: str, *, now: datetime) -> list[AudienceMember]:
    """The active participants the audience names, in study-id order. Four columns, not the
    participants' whole rows: a broadcast to everyone is read twice (the preview and the
    confirmation), and a thousand mapped objects took a fifth of a second to make at the
    Confirm, before anything could be sent."""
    query = select(Participant.id, Participant.study_id, Participant.language, Participant.timezone).where(
        Participant.status == ParticipantStatus.ACTIVE, Participant.telegram_chat_id.is_not(None))
    if audience == "wocbp":
        query = query.where(Participant.wocbp.is_(True))
    elif audience.startswith("participant:"):
        query = query.where(Participant.study_id == audience.split(":", 1)[1])
    people = [AudienceMember(*row) for row in (await session.execute(query.order_by(Participant.study_id))).all()]
    if audience.startswith("visits:"):
        days = int(audience.split(":", 1)[1])
        visits = (await session.execute(select(Visit.participant_id, Visit.scheduled_date).where(
            Visit.status.in_(OPEN_STATUSES)))).all()
        by_id = {person.id: person for person in people}
        chosen = set()
        for pid, day in visits:
            person = by_id.get(pid)
            if person is None:
                continue
            today = now.astimezone(ZoneInfo(person.timezone)).date()
            if today <= day <= today + timedelta(days=days):
                chosen.add(pid)
        people = [p for p in people if p.id in chosen]
    return people


async def create_draft(session: AsyncSession, author: StaffMember, *, template_id: str, audience: str,
                       text: str | None, now: datetime) -> Broadcast:
    if template_id not in TEMPLATES:
        raise BroadcastError("template")
    wraps = TEMPLATES[template_id]
    text = (text or "").strip() or None
    if wraps and not text:
        raise BroadcastError("text_missing")
    if not wraps:
        text = None
    if text and len(text) > TEXT_MAX:
        raise BroadcastError("text_too_long")
    row = Broadcast(author_id=author.id, template_id=template_id, text=text, audience=audience,
                    status=BroadcastStatus.DRAFT,
                    created_at=now)
    session.add(row)
    await session.flush()
    await audit.record(session, actor=Actor.staff(author.id), action="create", entity="broadcast", entity_id=row.id,
                       now=now, new={"template": template_id, "text": text, "audience": audience,
                                     "status": "draft"}, reason="broadcast drafted")
    return row


def variables(row: Broadcast) -> dict[str, str]:
    return {"text": row.text} if row.text else {}


async def _set_status(session: AsyncSession, row: Broadcast, status: str, actor: Actor, now: datetime,
                      reason: str, **extra: object) -> None:
    old = {"status": row.status}
    row.status = status
    await audit.record(session, actor=actor, action="update", entity="broadcast", entity_id=row.id, now=now,
                       old=old, new={"status": status, **extra}, reason=reason)


async def confirm(session: AsyncSession, row: Broadcast, author: StaffMember, *, hashes: dict[str, str],
                  second_approval: bool, valid: timedelta, now: datetime) -> int:
    """The author confirms the preview. Returns how many were queued (0 while awaiting approval)."""
    if row.status != BroadcastStatus.DRAFT or row.author_id != author.id:
        raise BroadcastError("not_draft")
    row.template_hashes = hashes
    row.confirmed_at = now
    if second_approval:
        await _set_status(session, row, BroadcastStatus.AWAITING_APPROVAL, Actor.staff(author.id), now,
                          "broadcast confirmed by its author; a second staff member must approve",
                          template_hashes=hashes, approval_expires_at=(now + valid).isoformat())
        return 0
    return await _queue(session, row, Actor.staff(author.id), now, hashes, valid)


def approval_expired(row: Broadcast, *, valid: timedelta, now: datetime) -> bool:
    """Has the time to approve this broadcast (awaiting approval) run out?"""
    return (row.status == BroadcastStatus.AWAITING_APPROVAL and row.confirmed_at is not None
            and now >= row.confirmed_at + valid)


async def expire(session: AsyncSession, row: Broadcast, *, valid: timedelta, now: datetime,
                 pressed_by: StaffMember | None = None) -> bool:
    """Mark a broadcast whose approval time ran out as expired (audited); False if it has not."""
    if not approval_expired(row, valid=valid, now=now):
        return False
    why = f"not approved within {valid} of its confirmation"
    if pressed_by is not None:
        why += f"; the approval of {pressed_by.name} came too late and was refused"
    await _set_status(session, row, BroadcastStatus.EXPIRED, SYSTEM, now, why)
    return True


async def approve(session: AsyncSession, row: Broadcast, approver: StaffMember, *, valid: timedelta,
                  now: datetime) -> int:
    if row.status == BroadcastStatus.EXPIRED or approval_expired(row, valid=valid, now=now):
        raise BroadcastError("expired")
    if row.status == BroadcastStatus.WITHDRAWN:
        raise BroadcastError("withdrawn")
    if row.status != BroadcastStatus.AWAITING_APPROVAL:
        raise BroadcastError("not_awaiting")
    if row.author_id == approver.id:
        raise BroadcastError("own")
    row.approver_id, row.approved_at = approver.id, now
    return await _queue(session, row, Actor.staff(approver.id), now, row.template_hashes or {}, valid,
                        approver=approver.name)


async def withdraw(session: AsyncSession, row: Broadcast, member: StaffMember, *, may_withdraw_others: bool,
                   valid: timedelta, now: datetime) -> None:
    """Withdraw a broadcast awaiting approval: its author may, and whoever may withdraw any
    (the investigator: study/roles.py WITHDRAW_ANY_BROADCAST). Nothing of it is sent."""
    if row.status == BroadcastStatus.EXPIRED or await expire(session, row, valid=valid, now=now):
        raise BroadcastError("expired")
    if row.status == BroadcastStatus.WITHDRAWN:
        raise BroadcastError("withdrawn")
    if row.status != BroadcastStatus.AWAITING_APPROVAL:
        raise BroadcastError("not_awaiting")
    if row.author_id != member.id and not may_withdraw_others:
        raise BroadcastError("not_yours")
    mine = row.author_id == member.id
    await _set_status(session, row, BroadcastStatus.WITHDRAWN, Actor.staff(member.id), now,
                      "broadcast withdrawn by its author before approval" if mine
                      else f"broadcast withdrawn by {member.name} ({member.role}) before approval",
                      withdrawn_by=member.name)


async def cancel(session: AsyncSession, row: Broadcast, member: StaffMember, *, now: datetime) -> None:
    if row.status != BroadcastStatus.DRAFT:
        raise BroadcastError("not_draft")
    await _set_status(session, row, BroadcastStatus.CANCELLED, Actor.staff(member.id), now, "broadcast cancelled")


async def _queue(session: AsyncSession, row: Broadcast, actor: Actor, now: datetime, hashes: dict[str, str],
                 valid: timedelta, **extra: object) -> int:
    people = await audience_members(session, row.audience, now=now)
    if not people:
        await _set_status(session, row, BroadcastStatus.CANCELLED, actor, now, "broadcast has no recipients")
        raise BroadcastError("no_recipients")
    row.recipients = [p.study_id for p in people]
    # One multi-row insert; not sent once the approval has run out (study/still_wanted.py: EXPIRED_NOTE).
    await outbox.enqueue_to_many(session, {f"broadcast:{row.id}:{person.id}": person.id for person in people},
                                 kind=OutboxKind.BROADCAST, template_id=row.template_id, variables=variables(row), now=now,
                                 stale_after=now + valid)
    await _set_status(session, row, BroadcastStatus.SENDING, actor, now, "broadcast queued",
                      recipients=row.recipients, template=row.template_id, template_hashes=hashes,
                      text=row.text, audience=row.audience, send_until=(now + valid).isoformat(), **extra)
    return len(people)


@dataclass(frozen=True)
class Progress:
    total: int
    sent: int
    failed: int
    blocked: int
    skipped: int
    expired: int = 0  # not sent: the approval ran out first

    @property
    def pending(self) -> int:
        return self.total - self.sent - self.failed - self.blocked - self.skipped - self.expired

    @property
    def done(self) -> bool:
        return self.pending == 0

    def key(self) -> str:
        return f"{self.sent}/{self.failed}/{self.blocked}/{self.skipped}/{self.expired}/{self.total}"

    def as_variables(self) -> dict[str, int]:
        return {"sent": self.sent, "failed": self.failed, "blocked": self.blocked, "skipped": self.skipped,
                "expired": self.expired, "total": self.total}


async def progress(session: AsyncSession, row: Broadcast) -> Progress:
    query = (select(OutboxMessage.status, OutboxMessage.last_error, func.count())
             .where(OutboxMessage.dedup_key.like(f"broadcast:{row.id}:%"))
             .group_by(OutboxMessage.status, OutboxMessage.last_error))
    counts = {"sent": 0, "failed": 0, "blocked": 0, "skipped": 0, "expired": 0}
    for status, error, n in (await session.execute(query)).all():
        if status == OutboxStatus.FAILED and error == "blocked by the user":
            counts["blocked"] += n
        elif status == OutboxStatus.SKIPPED and error == EXPIRED_NOTE:
            counts["expired"] += n
        elif status in counts:
            counts[status] += n
    return Progress(total=len(row.recipients or []), **counts)


async def sending(session: AsyncSession) -> list[Broadcast]:
    return list((await session.scalars(select(Broadcast).where(Broadcast.status == BroadcastStatus.SENDING)
                                       .order_by(Broadcast.id))).all())
