"""Consent to be messaged: the participant's Agree or Decline on the consent text.

Agreeing links the chat to the participant and activates them; declining records the refusal
and nothing else (no chat id, no name). Pressing Agree again on the same chat answers the same
way and changes nothing, so a repeated callback is harmless. Once a participant has joined, a
Decline changes nothing for them: pressed in their own chat it is answered as they are (in the
study); pressed anywhere else (someone holding a newer invite of theirs) nothing is recorded
and nobody is told (`IGNORED`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from sqlalchemy.ext.asyncio import AsyncSession

from study import audit, participants
from study.audit import Actor
from study.invites import InviteState, look_up
from study.models import Consent, ConsentDecision, Participant, ParticipantStatus


class ConsentOutcome(Enum):
    AGREED = "agreed"
    ALREADY_AGREED = "already_agreed"
    DECLINED = "declined"
    INVITE_UNKNOWN = "invite_unknown"
    INVITE_USED = "invite_used"
    INVITE_EXPIRED = "invite_expired"
    CHAT_IN_USE = "chat_in_use"
    NOT_ELIGIBLE = "not_eligible"
    # A Decline from a chat that is not the participant's, when the participant has joined: the
    # chat is told it will get no messages (true), and nothing else happens.
    IGNORED = "ignored"


_INVITE_PROBLEMS = {
    InviteState.UNKNOWN: ConsentOutcome.INVITE_UNKNOWN,
    InviteState.USED: ConsentOutcome.INVITE_USED,
    InviteState.EXPIRED: ConsentOutcome.INVITE_EXPIRED,
}


@dataclass(frozen=True)
class ConsentResult:
    outcome: ConsentOutcome
    participant: Participant | None = None


async def agree(session: AsyncSession, code: str, *, chat_id: int, user_id: int, now: datetime) -> ConsentResult:
    holder = await participants.by_chat(session, chat_id)
    if holder is not None and holder.status in participants.FINAL_STATUSES:
        return ConsentResult(ConsentOutcome.NOT_ELIGIBLE)  # a participant who left, on an old consent message
    found = await look_up(session, code, now=now, for_update=True)
    participant = found.participant
    if found.state is InviteState.USED and participant is not None and participant.telegram_chat_id == chat_id:
        return ConsentResult(ConsentOutcome.ALREADY_AGREED, participant)
    if found.state is not InviteState.VALID:
        return ConsentResult(_INVITE_PROBLEMS[found.state])
    assert participant is not None and found.invite is not None
    if participant.status in ParticipantStatus.LEFT:
        return ConsentResult(ConsentOutcome.NOT_ELIGIBLE)
    if holder is not None and holder.id != participant.id:
        return ConsentResult(ConsentOutcome.CHAT_IN_USE)

    actor = Actor.participant(participant.study_id)
    found.invite.used_at = now
    await audit.record(
        session, actor=actor, action="update", entity="invite", entity_id=found.invite.id, now=now,
        old={"used_at": None}, new={"used_at": now}, reason="invite used to consent", timezone=participant.timezone,
    )
    await _record_decision(session, participant, found.invite.id, Consent.AGREED, actor=actor, now=now)
    await participants.change(
        session, participant, actor=actor, now=now, reason="consented to messaging",
        telegram_chat_id=chat_id, telegram_user_id=user_id,
        status=ParticipantStatus.ACTIVE if participant.status == ParticipantStatus.INVITED else participant.status,
        consented_at=now, active_since=now,
    )
    participant.next_plan_at = None
    return ConsentResult(ConsentOutcome.AGREED, participant)


async def decline(session: AsyncSession, code: str, *, chat_id: int, now: datetime) -> ConsentResult:
    holder = await participants.by_chat(session, chat_id)
    if holder is not None and holder.status in participants.FINAL_STATUSES:
        return ConsentResult(ConsentOutcome.NOT_ELIGIBLE)
    found = await look_up(session, code, now=now, for_update=True)
    if found.state is not InviteState.VALID:
        return ConsentResult(_INVITE_PROBLEMS[found.state])
    assert found.participant is not None and found.invite is not None
    joined = found.participant.telegram_chat_id
    if joined is not None:  # a participant in the study: their consent stands
        if joined == chat_id:
            return ConsentResult(ConsentOutcome.ALREADY_AGREED, found.participant)
        return ConsentResult(ConsentOutcome.IGNORED)
    actor = Actor.participant(found.participant.study_id)
    await _record_decision(session, found.participant, found.invite.id, Consent.DECLINED, actor=actor, now=now)
    return ConsentResult(ConsentOutcome.DECLINED, found.participant)


async def _record_decision(
    session: AsyncSession, participant: Participant, invite_id: int, decision: str, *, actor: Actor, now: datetime
) -> None:
    row = ConsentDecision(
        participant_id=participant.id, invite_id=invite_id, decision=decision, decided_at=now,
        timezone=participant.timezone,
    )
    session.add(row)
    await session.flush()
    await audit.record(
        session, actor=actor, action="create", entity="consent_decision", entity_id=row.id, now=now,
        new={"participant": participant.study_id, "decision": decision}, reason="messaging consent",
        timezone=participant.timezone,
    )
