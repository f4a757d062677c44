"""The outbox: every message the bot starts (notices to staff now; reminders, alerts and
broadcasts later) is first a row here, written in the same transaction as the event that causes
it. The dispatcher delivers rows and records what happened; a crash loses nothing, and the
unique `dedup_key` means queueing the same thing twice queues it once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Row, Table, bindparam, case, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from study import staff as staff_members
from study.database import insert_new, insert_new_counted
from study.models import (
    URGENCY,
    ButtonRows,
    DeliveryEvent,
    DeliveryStep,
    JSONObject,
    OutboxKind,
    OutboxMessage,
    OutboxStatus,
)

if TYPE_CHECKING:
    from scheduler.planner import PlannedMessage

# Why a message past its `stale_after` is not sent (study/still_wanted.py; a broadcast's says more).
STALE_NOTE = "stale: past its useful time when it could be sent (missed delivery)"


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
    kind: str = OutboxKind.NOTICE,
    buttons: ButtonRows | None = None,
    participant_message_id: int | None = None,
    stale_after: datetime | None = None,
    edit_message_id: int | None = None,
) -> OutboxMessage | None:
    """Queue a message; None if one with this key was queued before. `participant_message_id`:
    the participant's message this passes on to the study team (study/conversation.py);
    `stale_after`: not sent from then on (recorded as skipped by the dispatcher: study/still_wanted.py);
    `edit_message_id`: edit that earlier message of the recipient's chat instead of sending one."""
    if (participant_id is None) == (staff_id is None):
        raise ValueError("an outbox message goes to exactly one participant or staff member")
    if await session.scalar(select(OutboxMessage.id).where(OutboxMessage.dedup_key == dedup_key)):
        return None
    row = OutboxMessage(
        dedup_key=dedup_key, kind=kind, participant_id=participant_id, staff_id=staff_id,
        template_id=template_id, variables=variables, buttons=buttons, status=OutboxStatus.PENDING, created_at=now,
        not_before=not_before or now, due_at=not_before or now, attempts=0,
        participant_message_id=participant_message_id, stale_after=stale_after, edit_message_id=edit_message_id,
    )
    try:
        async with session.begin_nested():
            session.add(row)
            await session.flush()
    except IntegrityError:
        return None
    return row  # queued: its created_at says when


async def enqueue_to_many(session: AsyncSession, recipients: dict[str, int], *, kind: str, template_id: str,
                          variables: JSONObject, now: datetime, stale_after: datetime | None = None) -> int:
    """Queue one message to each participant of `recipients` (dedup key -> participant id) in one
    multi-row insert, skipping keys queued before (a broadcast to everyone is a thousand rows:
    one statement, not a look-up and an insert each). Returns how many were queued."""
    rows = [{"dedup_key": key, "kind": kind, "participant_id": participant_id, "staff_id": None,
             "template_id": template_id, "variables": variables, "buttons": None, "status": OutboxStatus.PENDING,
             "created_at": now, "not_before": now, "due_at": now, "stale_after": stale_after, "attempts": 0,
             "disable_notification": False}
            for key, participant_id in recipients.items()]
    return await insert_new_counted(session, cast(Table, OutboxMessage.__table__), rows, unique="dedup_key")


async def enqueue_planned(session: AsyncSession, planned: Sequence[PlannedMessage], *, now: datetime) -> tuple[int, int]:
    """Queue what a planner found due, skipping keys already queued. Messages already stale are
    written straight away as skipped, so a missed delivery is on record rather than silently
    dropped. Returns (queued, recorded as stale)."""
    if not planned:
        return 0, 0
    rows = [
        dict(dedup_key=p.key, kind=p.kind, participant_id=p.participant_id, staff_id=p.staff_id,
             template_id=p.template_id, variables=p.variables, buttons=p.buttons,
             status=OutboxStatus.SKIPPED if p.is_stale(now) else OutboxStatus.PENDING, created_at=now,
             not_before=now if p.is_stale(now) else max(p.due_at, now), due_at=p.due_at, late_after=p.late_after,
             stale_after=p.stale_after, attempts=0, disable_notification=False,
             last_error=STALE_NOTE if p.is_stale(now) else None)
        for p in {p.key: p for p in planned}.values()
    ]
    # One multi-row insert that skips keys queued before: a time zone's morning wave is
    # thousands of rows, and most ticks re-plan things already queued.
    table = OutboxMessage.__table__
    queued = await insert_new_counted(session, table, [r for r in rows if r["status"] == OutboxStatus.PENDING],
                                      unique="dedup_key")
    # A row's created_at is when it was queued (its first event); only what is not plain queueing,
    # a message stale before it could be sent, gets an event, so a wave of thousands writes one table.
    stale = await insert_new(session, table, [r for r in rows if r["status"] == OutboxStatus.SKIPPED], unique="dedup_key",
                             returning=(table.c.id, table.c.last_error))
    if stale:
        await session.execute(insert(DeliveryEvent), [dict(outbox_id=row_id, at=now, event=DeliveryStep.SKIPPED, detail=detail)
                                                       for row_id, detail in stale])
    return queued, len(stale)


_EVENT = insert(cast(Table, DeliveryEvent.__table__))


async def record_event(session: AsyncSession, outbox_id: int, event: str, *, now: datetime,
                       detail: str | None = None) -> None:
    """A step of a message's life, written now: one INSERT, not the unit of work's (every message
    sent writes one, and every tap on a reminder)."""
    await session.execute(_EVENT, {"outbox_id": outbox_id, "at": now, "event": event,
                                   "detail": detail[:256] if detail else None})


async def cancel_pending(session: AsyncSession, participant_id: int, *, reason: str, now: datetime) -> int:
    """Skip everything still queued for a participant (they paused, withdrew or finished)."""
    rows = (await session.scalars(select(OutboxMessage).where(
        OutboxMessage.participant_id == participant_id, OutboxMessage.status == OutboxStatus.PENDING))).all()
    for row in rows:
        row.status, row.last_error = OutboxStatus.SKIPPED, reason
        await record_event(session, row.id, DeliveryStep.SKIPPED, now=now, detail=reason)
    return len(rows)


async def cancel_pending_alert(session: AsyncSession, alert_id: int, *, now: datetime) -> int:
    """An acknowledged alert's queued re-sends are not sent."""
    rows = (await session.scalars(select(OutboxMessage).where(
        OutboxMessage.dedup_key.like(f"alert:{alert_id}:%"), OutboxMessage.status == OutboxStatus.PENDING))).all()
    for row in rows:
        row.status, row.last_error = OutboxStatus.SKIPPED, "alert acknowledged"
        await record_event(session, row.id, DeliveryStep.SKIPPED, now=now, detail="alert acknowledged")
    return len(rows)


# The kinds of message that remind of one diary slot; their keys end with the slot's key.
SLOT_KINDS = (OutboxKind.REMINDER, OutboxKind.NUDGE)


def slot_keys(participant_id: int, slot_key: str) -> tuple[str, ...]:
    """The outbox keys of every message planned for one of a participant's slots."""
    return tuple(f"{kind}:{participant_id}:{slot_key}" for kind in SLOT_KINDS)


_OUTBOX = cast(Table, OutboxMessage.__table__)
_MARK_ANSWERED = (update(_OUTBOX)
                  .where(_OUTBOX.c.participant_id == bindparam("answering"),
                         _OUTBOX.c.telegram_message_id == bindparam("message_id"),
                         _OUTBOX.c.answered_at.is_(None))
                  .values(answered_at=bindparam("now"))
                  .returning(_OUTBOX.c.id))


_MARK_SENT = (update(_OUTBOX).where(_OUTBOX.c.id == bindparam("row_id"))
              .values(status=OutboxStatus.SENT, sent_at=bindparam("sent_at"),
                      telegram_message_id=bindparam("telegram_message_id"), language=bindparam("language"),
                      template_hash=bindparam("template_hash"), disable_notification=bindparam("quiet"),
                      attempts=_OUTBOX.c.attempts + bindparam("tries"))
              .returning(_OUTBOX.c.participant_id, _OUTBOX.c.staff_id, _OUTBOX.c.late_after, _OUTBOX.c.kind,
                         _OUTBOX.c.participant_message_id))


async def mark_sent(session: AsyncSession, row_id: int, *, at: datetime, message_id: int, language: str,
                    template_hash: str, quiet: bool, tries: int) -> Row[Any]:
    """Telegram took the message (`tries`: 1, or 0 when an earlier try's answer was lost): its row
    marked sent in one statement, no unit of work (once for every message sent). Returns what the
    record and events need: participant_id, staff_id, late_after, kind, participant_message_id."""
    result = await session.execute(_MARK_SENT, {"row_id": row_id, "sent_at": at, "telegram_message_id": message_id,
                                                "language": language, "template_hash": template_hash,
                                                "quiet": quiet, "tries": tries})
    return result.one()


async def mark_answered(session: AsyncSession, participant_id: int, telegram_message_id: int, *,
                        now: datetime, slot_keys: tuple[str, ...] = ()) -> int | None:
    """If the message a participant answered was one the bot started (a reminder), note it, the
    first time only. Returns the outbox row's id, if one was marked.

    `slot_keys`: the outbox keys of the reminder slot the pressed buttons belong to. A message
    none of whose rows knows its id was sent by a try whose answer from Telegram was lost: the
    earliest such try of the slot (tried, no message id) is the one that reached the participant,
    and learns its message id here; the dispatcher then records it sent instead of trying again."""
    # Core statements built once (every tap on a reminder comes here), not the ORM's bulk update and
    # unit of work; what the caller added or changed is written first, as the ORM's autoflush did.
    await session.flush()
    marked: int | None = await session.scalar(_MARK_ANSWERED, {"answering": participant_id,
                                                               "message_id": telegram_message_id, "now": now})
    if marked is not None:
        await record_event(session, marked, DeliveryStep.ANSWERED, now=now)
        return marked
    if not slot_keys:
        return None
    delivered = await session.scalar(
        select(OutboxMessage.id)
        .where(OutboxMessage.participant_id == participant_id, OutboxMessage.dedup_key.in_(slot_keys),
               OutboxMessage.telegram_message_id.is_(None), OutboxMessage.attempts > 0,
               OutboxMessage.answered_at.is_(None))
        .order_by(OutboxMessage.id).limit(1))
    if delivered is None:
        return None
    marked = await session.scalar(
        update(OutboxMessage)
        .where(OutboxMessage.id == delivered, OutboxMessage.telegram_message_id.is_(None))
        .values(answered_at=now, telegram_message_id=telegram_message_id)
        .returning(OutboxMessage.id)
        .execution_options(synchronize_session=False))
    if marked is not None:
        await record_event(session, marked, DeliveryStep.ANSWERED, now=now,
                           detail=f"message {telegram_message_id}: an earlier try reached the participant, "
                                  "though Telegram's answer to it was lost")
    return marked


async def events_for(session: AsyncSession, outbox_ids: list[int]) -> list[DeliveryEvent]:
    query = select(DeliveryEvent).where(DeliveryEvent.outbox_id.in_(outbox_ids)).order_by(DeliveryEvent.id)
    return list((await session.scalars(query)).all())


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


#: The order due messages go in: the most urgent kind first (models.URGENCY), then oldest first.
#: (A kind missing from the table sorts as the most urgent: a new kind is never left behind.)
DELIVERY_ORDER = (case({kind.value: urgency.value for kind, urgency in URGENCY.items()},
                       value=OutboxMessage.kind, else_=0),
                  OutboxMessage.not_before, OutboxMessage.id)


async def due(session: AsyncSession, *, now: datetime, limit: int = 50) -> list[int]:
    """The ids of the next messages due, in `DELIVERY_ORDER`: candidates to `claim`, not claimed."""
    query = (select(OutboxMessage.id)
             .where(OutboxMessage.status == OutboxStatus.PENDING, OutboxMessage.not_before <= now)
             .order_by(*DELIVERY_ORDER)
             .limit(limit))
    return list((await session.scalars(query)).all())


async def due_to(session: AsyncSession, *, now: datetime, limit: int = 50,
                 exclude: list[int] | tuple[int, ...] = ()) -> list[tuple[int, tuple[int | None, int | None]]]:
    """`due`, each id with its recipient (participant id, staff id), leaving out `exclude` (the
    rows a deliverer has under way or waiting already)."""
    query = (select(OutboxMessage.id, OutboxMessage.participant_id, OutboxMessage.staff_id)
             .where(OutboxMessage.status == OutboxStatus.PENDING, OutboxMessage.not_before <= now)
             .order_by(*DELIVERY_ORDER)
             .limit(limit))
    if exclude:
        query = query.where(OutboxMessage.id.not_in(list(exclude)))
    return [(row_id, (participant_id, staff_id)) for row_id, participant_id, staff_id in await session.execute(query)]


async def claim(session: AsyncSession, row_id: int, *, only_if: Any = None) -> OutboxMessage | None:
    """Claim one message (pending -> sending) for the caller to deliver; None if it is no longer
    pending, or if another deliverer is claiming it this moment.

    On PostgreSQL the row is read `FOR UPDATE SKIP LOCKED`: a second deliverer (a new scheduler
    leader beside an old one that has not stopped yet) passes over a row being claimed instead of
    waiting for it, and finds it claimed when it looks again. On SQLite, BEGIN IMMEDIATE already
    lets one writer in at a time. `only_if`, a SQL condition, fences the claim: the scheduler
    leader's "I still hold the lock"."""
    pending = (select(OutboxMessage.id).where(OutboxMessage.id == row_id, OutboxMessage.status == OutboxStatus.PENDING)
               .with_for_update(skip_locked=True))
    if only_if is not None:
        pending = pending.where(only_if)
    # One statement, the row as claimed returned as the session's object: every message delivered
    # is claimed, and a read, then the change flushed by the session, was two statements and the
    # ORM's unit of work beside.
    claimed = (update(OutboxMessage).where(OutboxMessage.id == pending.scalar_subquery())
               .values(status=OutboxStatus.SENDING).returning(OutboxMessage)
               .execution_options(populate_existing=True))
    return (await session.scalars(claimed)).one_or_none()


async def for_participant(session: AsyncSession, participant_id: int) -> list[OutboxMessage]:
    query = select(OutboxMessage).where(OutboxMessage.participant_id == participant_id).order_by(OutboxMessage.id)
    return list((await session.scalars(query)).all())


@dataclass(frozen=True)
class Delivery:
    """One message the bot started for a participant and the life it had: queued (`row.created_at`),
    then each event (sent with its message id, answered, retried, skipped or failed, and why)."""

    row: OutboxMessage
    events: list[DeliveryEvent]


async def ledger(session: AsyncSession, participant_id: int, *, limit: int) -> tuple[list[Delivery], int]:
    """The newest `limit` messages started for a participant (oldest of them first), each with its
    events; and how many there are in all. `trialbot deliveries P001` and /deliveries P001."""
    total = await session.scalar(select(func.count()).select_from(OutboxMessage)
                                 .where(OutboxMessage.participant_id == participant_id)) or 0
    rows = list((await session.scalars(select(OutboxMessage).where(OutboxMessage.participant_id == participant_id)
                                       .order_by(OutboxMessage.id.desc()).limit(max(limit, 0)))).all())[::-1]
    events = await events_for(session, [r.id for r in rows]) if rows else []
    return [Delivery(row, [e for e in events if e.outbox_id == row.id]) for row in rows], total
