"""The record of what was sent: which approved version of which template each person received.

One row per message the bot sent or edited (replies, edits of the message a button was on, and
outbox deliveries). A message Telegram numbers (a reply, an outbox delivery) is written right after
Telegram accepted it, in a short transaction. The edit that answers a pressed button is written in
the transaction of the press's effects, before the edit (its message is the pressed one, so nothing
in it waits for Telegram): bot/exactly_once.py `effects(..., edits=True)`. A failure to record is
logged loudly but does not undo the send (the message is already out).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Table, select
from sqlalchemy import insert as sql_insert
from sqlalchemy.ext.asyncio import AsyncSession

from messages.renderer import RenderedMessage
from study.models import Participant, SentMessage, StaffMember
from study.participants import normal_study_id


@dataclass(frozen=True)
class Recipient:
    kind: str  # participant | staff | stranger
    participant_id: int | None = None
    staff_id: int | None = None

    @classmethod
    def participant(cls, participant_id: int) -> Recipient:
        return cls("participant", participant_id=participant_id)

    @classmethod
    def staff(cls, staff_id: int) -> Recipient:
        return cls("staff", staff_id=staff_id)


STRANGER = Recipient("stranger")


_INSERT = sql_insert(cast(Table, SentMessage.__table__))


async def insert(
    session: AsyncSession, rendered: RenderedMessage, *, recipient: Recipient, via: str,
    telegram_message_id: int | None, now: datetime,
) -> None:
    """The record of a message sent or edited: one prepared INSERT, in the caller's transaction."""
    await session.execute(_INSERT, {
        "sent_at": now, "template_id": rendered.template_id, "template_hash": rendered.template_hash,
        "language": rendered.language, "draft": rendered.draft, "recipient": recipient.kind,
        "participant_id": recipient.participant_id, "staff_id": recipient.staff_id, "via": via,
        "telegram_message_id": telegram_message_id,
    })


@dataclass(frozen=True)
class SentRow:
    sent_at: datetime
    template_id: str
    language: str
    template_hash: str
    draft: bool
    via: str
    telegram_message_id: int | None
    recipient: str


async def sent_to_participant(session: AsyncSession, study_id: str) -> list[SentRow] | None:
    """Everything sent to one participant, oldest first; None if there is no such participant."""
    participant = await session.scalar(select(Participant).where(Participant.study_id == normal_study_id(study_id)))
    if participant is None:
        return None
    rows = await session.scalars(
        select(SentMessage).where(SentMessage.participant_id == participant.id).order_by(SentMessage.id))
    return [_row(r, participant.study_id) for r in rows]


async def sent_all(session: AsyncSession, *, limit: int = 100) -> list[SentRow]:
    """The newest `limit` messages to anyone, oldest first, with the recipient's study id or staff id."""
    query = (select(SentMessage, Participant.study_id, StaffMember.id)
             .outerjoin(Participant, SentMessage.participant_id == Participant.id)
             .outerjoin(StaffMember, SentMessage.staff_id == StaffMember.id)
             .order_by(SentMessage.id.desc()).limit(limit))
    result = []
    for row, study_id, staff_id in (await session.execute(query)).all():
        who = study_id or (f"staff:{staff_id}" if staff_id else row.recipient)
        result.append(_row(row, who))
    return list(reversed(result))


def _row(row: SentMessage, who: str) -> SentRow:
    return SentRow(row.sent_at, row.template_id, row.language, row.template_hash, row.draft, row.via,
                   row.telegram_message_id, who)
