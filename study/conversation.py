"""What a participant tells the study team, and the team's replies (both kept, append-only).

Every word a participant sends reaches the team and the red-flag screening, whatever the
conversation was doing: a message typed outside any question, text typed while a check-in asked
something else, the words of a check-in answer, the caption of a photo. `from_participant` is that
one path:

1. the text is cleaned (control characters out, the length as received kept: participant_text.py)
   and screened (screening.py); flags whose action calls for it raise a safety alert;
2. the message is stored with what the screening found;
3. it is queued to every active staff member whose role receives participants' messages
   (study/roles.py RECEIVE_PARTICIPANT_MESSAGES: coordinators and the investigator), in parts that each fit one Telegram message, with
   the media itself copied after the notice (never the participant's Telegram name: the study id);
4. the participant is told it was passed on only once it was (`after_delivery`, run by the
   dispatcher each time one of its parts is settled), or told it could not be, with the phone
   number, when nobody could receive it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from study import alerts, audit, outbox, participant_text, roles
from study import staff as staff_members
from study.audit import Actor
from study.models import (
    Alert,
    AlertSource,
    CheckinDraft,
    Direction,
    MessageKind,
    OutboxKind,
    OutboxMessage,
    OutboxStatus,
    Participant,
    ParticipantMessage,
    ParticipantStatus,
    StaffMember,
)
from study.protocol import Protocol
from study.screening import Screening

# The participant's words per staff notice, in UTF-16 units as Telegram counts: with the notice's
# own lines (study id, time, flags) it stays well inside Telegram's 4,096.
PART_LENGTH = 3000
# The outbox row that copies a participant's photo or voice note to a staff member's chat.
COPY_KIND = OutboxKind.MEDIA_COPY
COPY_TEMPLATE = "(copy of the participant's message)"
NOTICE_KIND = OutboxKind.PARTICIPANT_MESSAGE
SETTLED = OutboxStatus.SETTLED
DIRECTIONS = tuple(Direction)  # from the participant, or a reply from the study team


def is_answer(context: str | None) -> bool:
    """A check-in answer in the participant's words (`answer:<question>`), not a message: the
    team is told, the participant is not thanked for a message."""
    return bool(context and context.startswith("answer:"))


@dataclass
class Received:
    message: ParticipantMessage
    screening: Screening
    alert: Alert | None
    notices: int  # staff members it was queued to


async def from_participant(session: AsyncSession, protocol: Protocol, participant: Participant, text: str, *,
                           now: datetime, kind: MessageKind = MessageKind.TEXT, context: str = "free",
                           telegram_message_id: int | None = None, pass_on: bool = True) -> Received:
    """Keep, screen and pass on what a participant sent (see the module's docstring).
    `pass_on=False` when the caller tells the team in a notice of its own (a change of medicines)."""
    cleaned = participant_text.clean(text)
    screening = protocol.screener.screen(cleaned.text)
    found = {"flags": list(screening.flags), "negated": list(screening.negated)}
    record = ParticipantMessage(participant_id=participant.id, direction=Direction.IN, text=cleaned.text, at=now,
                                timezone=participant.timezone, kind=kind, original_length=cleaned.original_length,
                                context=context, screening=found, telegram_message_id=telegram_message_id)
    session.add(record)
    await session.flush()
    await audit.record(session, actor=Actor.participant(participant.study_id), action="create",
                       entity="participant_message", entity_id=record.id, now=now,
                       new={"direction": Direction.IN, "kind": kind, "length": len(cleaned.text),
                            "original_length": cleaned.original_length, "context": context, **found},
                       reason="check-in answer in the participant's words" if is_answer(context)
                       else "message to the study team", timezone=participant.timezone)
    alert = None
    if screening.alert:
        alert = await alerts.raise_alert(
            session, participant, source=AlertSource.CHECKIN if is_answer(context) else AlertSource.MESSAGE, now=now,
            message_id=record.id,
            triggers=[{"flags": list(screening.flags), "negated": list(screening.negated),
                       "text": cleaned.text[:300], "kind": kind}])
    notices = await _pass_on(session, protocol, participant, record, now=now) if pass_on else 0
    if pass_on and not notices and not is_answer(context):
        await _tell_participant(session, participant, record, passed_on=False, now=now)
    return Received(record, screening, alert, notices)


async def _pass_on(session: AsyncSession, protocol: Protocol, participant: Participant, record: ParticipantMessage,
                   *, now: datetime) -> int:
    """Queue the message to every active member whose role receives participants' messages: its
    parts, then (media) its copy."""
    screener = protocol.screener
    pieces = participant_text.split(record.text, PART_LENGTH) if record.text else [""]
    found = record.screening or {}
    flags = [screener.label(code) for code in found.get("flags", [])]
    negated = [screener.label(code) for code in found.get("negated", [])]
    members = await staff_members.receiving(session, roles.RECEIVE_PARTICIPANT_MESSAGES)
    for member in members:
        for number, piece in enumerate(pieces, start=1):
            await outbox.enqueue(
                session, dedup_key=_notice_key(record.id, number, member), template_id="staff_participant_message",
                variables={"study_id": participant.study_id, "text": piece, "part": number, "parts": len(pieces),
                           "sent_at": record.at.isoformat(), "kind": record.kind, "context": record.context,
                           "flags": flags, "negated": negated},
                now=now, staff_id=member.id, kind=NOTICE_KIND, participant_message_id=record.id)
        if record.kind != MessageKind.TEXT:
            await outbox.enqueue(
                session, dedup_key=f"message:{record.id}:copy:staff{member.id}", template_id=COPY_TEMPLATE,
                variables={"reply_to_key": _notice_key(record.id, 1, member)}, now=now, staff_id=member.id,
                kind=COPY_KIND, participant_message_id=record.id)
    return len(members)


def _notice_key(message_id: int, part: int, member: StaffMember) -> str:
    return f"message:{message_id}:part{part}:staff{member.id}"


async def after_delivery(session: AsyncSession, message_id: int, *, now: datetime) -> None:
    """One of the message's outbox rows was settled. Once every part (and the copy) has reached
    one staff member, the participant is told it was passed on; once every row is settled and
    nobody got it all, they are told it could not be. Once, either way (the outbox's keys)."""
    record = await session.get(ParticipantMessage, message_id)
    if record is None or is_answer(record.context):
        return
    rows = (await session.execute(select(OutboxMessage.staff_id, OutboxMessage.status)
                                  .where(OutboxMessage.participant_message_id == message_id))).all()
    by_member: dict[int | None, list[str]] = {}
    for staff_id, status in rows:
        by_member.setdefault(staff_id, []).append(status)
    if any(all(status == OutboxStatus.SENT for status in statuses) for statuses in by_member.values()):
        passed_on = True
    elif all(status in SETTLED for statuses in by_member.values() for status in statuses):
        passed_on = False
    else:
        return  # parts still on their way
    participant = await session.get(Participant, record.participant_id)
    if participant is not None:
        await _tell_participant(session, participant, record, passed_on=passed_on, now=now)


async def _tell_participant(session: AsyncSession, participant: Participant, record: ParticipantMessage, *,
                            passed_on: bool, now: datetime) -> None:
    keys = (f"passed_on:{record.id}", f"not_passed_on:{record.id}")
    if await session.scalar(select(OutboxMessage.id).where(OutboxMessage.dedup_key.in_(keys))):
        return  # told already
    if not passed_on:
        await outbox.enqueue(session, dedup_key=keys[1], template_id="message_not_passed_on", variables={},
                             now=now, participant_id=participant.id, kind=OutboxKind.MESSAGE_RECEIPT)
        return
    draft = await session.scalar(select(CheckinDraft).where(CheckinDraft.participant_id == participant.id))
    waiting = draft is not None
    await outbox.enqueue(session, dedup_key=keys[0], template_id="message_passed_on",
                         variables={"checkin_waiting": waiting, "kind": record.kind}, now=now,
                         participant_id=participant.id, kind=OutboxKind.MESSAGE_RECEIPT,
                         buttons=[[["checkin_resume", "k:resume", {}]]] if waiting else None)


class ReplyRefused(ValueError):
    """The bot does not write to this participant now, so a reply is not taken. `standing` says
    why: "paused" (they paused messages), "withdrawn", "completed", or "not_joined" (invited only).

    Refused rather than held: a participant who paused asked for silence, and words held until
    they resume could arrive days later, out of their context; the staff member is told at once
    and can call instead."""

    def __init__(self, standing: str) -> None:
        super().__init__(f"the bot does not write to this participant now ({standing})")
        self.standing = standing


def reply_refusal(participant: Participant) -> str | None:
    """Why a reply from the study team would not reach this participant now; None if it would
    (the dispatcher sends a reply only to an active participant with a chat)."""
    if participant.status == ParticipantStatus.INVITED or participant.telegram_chat_id is None:
        return "not_joined"
    if participant.status != ParticipantStatus.ACTIVE:
        return participant.status
    return None


async def from_staff(session: AsyncSession, participant: Participant, member: StaffMember, text: str, *,
                     now: datetime) -> ParticipantMessage:
    """A reply from the study team, kept; raises ReplyRefused (and keeps nothing) when the bot
    does not write to the participant now."""
    refusal = reply_refusal(participant)
    if refusal is not None:
        raise ReplyRefused(refusal)
    record = ParticipantMessage(participant_id=participant.id, direction=Direction.OUT, text=text, staff_id=member.id,
                                at=now, timezone=participant.timezone, kind=MessageKind.TEXT,
                                original_length=len(text), context="reply")
    session.add(record)
    await session.flush()
    await audit.record(session, actor=Actor.staff(member.id), action="create", entity="participant_message",
                       entity_id=record.id, now=now, new={"direction": Direction.OUT, "to": participant.study_id,
                                                           "length": len(text)},
                       reason="reply from the study team", timezone=participant.timezone)
    return record
