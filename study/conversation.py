"""Messages between a participant and the study team, kept both ways (append-only)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from study import audit
from study.audit import Actor
from study.models import ParticipantMessage, Participant, StaffMember


async def from_participant(session: AsyncSession, participant: Participant, text: str, *,
                           now: datetime) -> ParticipantMessage:
    record = ParticipantMessage(participant_id=participant.id, direction="in", text=text, at=now,
                                timezone=participant.timezone)
    session.add(record)
    await session.flush()
    await audit.record(session, actor=Actor.participant(participant.study_id), action="create",
                       entity="participant_message", entity_id=record.id, now=now,
                       new={"direction": "in", "length": len(text)}, reason="message to the study team",
                       timezone=participant.timezone)
    return record


async def from_staff(session: AsyncSession, participant: Participant, member: StaffMember, text: str, *,
                     now: datetime) -> ParticipantMessage:
    record = ParticipantMessage(participant_id=participant.id, direction="out", text=text, staff_id=member.id,
                                at=now, timezone=participant.timezone)
    session.add(record)
    await session.flush()
    await audit.record(session, actor=Actor.staff(member.id), action="create", entity="participant_message",
                       entity_id=record.id, now=now, new={"direction": "out", "to": participant.study_id,
                                                           "length": len(text)},
                       reason="reply from the study team", timezone=participant.timezone)
    return record


async def thread(session: AsyncSession, participant_id: int) -> list[ParticipantMessage]:
    query = select(ParticipantMessage).where(ParticipantMessage.participant_id == participant_id)
    return list((await session.scalars(query.order_by(ParticipantMessage.id))).all())
