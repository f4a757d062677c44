"""Broadcasts: one approved notice to many participants.

A staff member writes a draft (template, audience, optionally their own short text inside the
"notice from the study team" template), sees it exactly as participants will, and confirms. When
the protocol asks for it (`[broadcasts] require_second_approval`), a second, different staff
member must approve before anything is queued. Queueing writes one outbox row per recipient
(key `broadcast:<id>:<participant id>`) in one transaction, so a restart resumes the delivery and
can never queue anyone twice; the dispatcher does the sending, skipping, retrying and recording.
Every step is audited: who wrote it, who approved it, which approved template version, what text,
which audience and which recipients.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from study import audit, outbox
from study.audit import Actor
from study.models import Broadcast, OutboxMessage, Participant, StaffMember, Visit
from study.visits import OPEN_STATUSES

# The approved notice templates a broadcast may use, and whether they wrap the author's text.
TEMPLATES: dict[str, bool] = {"broadcast_team_notice": True, "broadcast_clinic_closure": False}
SHORT_NAMES = {"notice": "broadcast_team_notice", "closure": "broadcast_clinic_closure"}
TEXT_MAX = 500
MAX_VISIT_DAYS = 90


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
        return f"participant:{value}"
    raise BroadcastError("audience")


async def audience_members(session: AsyncSession, audience: str, *, now: datetime) -> list[Participant]:
    """The active participants the audience names, in study-id order."""
    query = select(Participant).where(Participant.status == "active", Participant.telegram_chat_id.is_not(None))
    if audience == "wocbp":
        query = query.where(Participant.wocbp.is_(True))
    elif audience.startswith("participant:"):
        query = query.where(Participant.study_id == audience.split(":", 1)[1])
    people = list((await session.scalars(query.order_by(Participant.study_id))).all())
    if audience.startswith("visits:"):
        days = int(audience.split(":", 1)[1])
        visits = (await session.execute(select(Visit.participant_id, Visit.scheduled_date).where(
            Visit.status.in_(OPEN_STATUSES)))).all()
        chosen = set()
        for pid, day in visits:
            person = next((p for p in people if p.id == pid), None)
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
    row = Broadcast(author_id=author.id, template_id=template_id, text=text, audience=audience, status="draft",
                    created_at=now)
    session.add(row)
    await session.flush()
    await audit.record(session, actor=Actor.staff(author.id), action="create", entity="broadcast", entity_id=row.id,
                       now=now, new={"template": template_id, "text": text, "audience": audience,
                                     "status": "draft"}, reason="broadcast drafted")
    return row


def variables(row: Broadcast) -> dict:
    return {"text": row.text} if row.text else {}


async def _set_status(session: AsyncSession, row: Broadcast, status: str, actor: Actor, now: datetime,
                      reason: str, **extra) -> None:
    old = {"status": row.status}
    row.status = status
    await audit.record(session, actor=actor, action="update", entity="broadcast", entity_id=row.id, now=now,
                       old=old, new={"status": status, **extra}, reason=reason)


async def confirm(session: AsyncSession, row: Broadcast, author: StaffMember, *, hashes: dict[str, str],
                  second_approval: bool, now: datetime) -> int:
    """The author confirms the preview. Returns how many were queued (0 while awaiting approval)."""
    if row.status != "draft" or row.author_id != author.id:
        raise BroadcastError("not_draft")
    row.template_hashes = hashes
    if second_approval:
        await _set_status(session, row, "awaiting_approval", Actor.staff(author.id), now,
                          "broadcast confirmed by its author; a second staff member must approve",
                          template_hashes=hashes)
        return 0
    return await _queue(session, row, Actor.staff(author.id), now, hashes)


async def approve(session: AsyncSession, row: Broadcast, approver: StaffMember, *, now: datetime) -> int:
    if row.status != "awaiting_approval":
        raise BroadcastError("not_awaiting")
    if row.author_id == approver.id:
        raise BroadcastError("own")
    row.approver_id, row.approved_at = approver.id, now
    return await _queue(session, row, Actor.staff(approver.id), now, row.template_hashes or {},
                        approver=approver.name)


async def cancel(session: AsyncSession, row: Broadcast, member: StaffMember, *, now: datetime) -> None:
    if row.status not in ("draft", "awaiting_approval"):
        raise BroadcastError("not_draft")
    await _set_status(session, row, "cancelled", Actor.staff(member.id), now, "broadcast cancelled")


async def _queue(session: AsyncSession, row: Broadcast, actor: Actor, now: datetime, hashes: dict,
                 **extra) -> int:
    people = await audience_members(session, row.audience, now=now)
    if not people:
        await _set_status(session, row, "cancelled", actor, now, "broadcast has no recipients")
        raise BroadcastError("no_recipients")
    row.recipients = [p.study_id for p in people]
    for person in people:
        await outbox.enqueue(session, dedup_key=f"broadcast:{row.id}:{person.id}", template_id=row.template_id,
                             variables=variables(row), now=now, participant_id=person.id, kind="broadcast")
    await _set_status(session, row, "sending", actor, now, "broadcast queued",
                      recipients=row.recipients, template=row.template_id, template_hashes=hashes,
                      text=row.text, audience=row.audience, **extra)
    return len(people)


@dataclass(frozen=True)
class Progress:
    total: int
    sent: int
    failed: int
    blocked: int
    skipped: int

    @property
    def pending(self) -> int:
        return self.total - self.sent - self.failed - self.blocked - self.skipped

    @property
    def done(self) -> bool:
        return self.pending == 0

    def key(self) -> str:
        return f"{self.sent}/{self.failed}/{self.blocked}/{self.skipped}/{self.total}"

    def as_variables(self) -> dict:
        return {"sent": self.sent, "failed": self.failed, "blocked": self.blocked, "skipped": self.skipped,
                "total": self.total}


async def progress(session: AsyncSession, row: Broadcast) -> Progress:
    query = (select(OutboxMessage.status, OutboxMessage.last_error, func.count())
             .where(OutboxMessage.dedup_key.like(f"broadcast:{row.id}:%"))
             .group_by(OutboxMessage.status, OutboxMessage.last_error))
    counts = {"sent": 0, "failed": 0, "blocked": 0, "skipped": 0}
    for status, error, n in (await session.execute(query)).all():
        if status == "failed" and error == "blocked by the user":
            counts["blocked"] += n
        elif status in counts:
            counts[status] += n
    return Progress(total=len(row.recipients or []), **counts)


async def sending(session: AsyncSession) -> list[Broadcast]:
    return list((await session.scalars(select(Broadcast).where(Broadcast.status == "sending")
                                       .order_by(Broadcast.id))).all())
