"""Single-use invite codes that link a participant's Telegram chat at the consent visit.

A code is 128 random bits in URL-safe base64 (22 characters of A-Z a-z 0-9 _ -), which fits
Telegram's /start payload rules. Only its SHA-256 is stored: a copy of the database does not
let anyone join as a participant. Issuing a new invite voids the old ones; an invite is void too
once its participant left the study or joined with another (`void_because`), and none is issued
for a participant who left.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from study import audit
from study.audit import Actor
from study.models import Invite, Participant
from study.participants import FINAL_STATUSES

START_PAYLOAD = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# A participant who left the study.
ENDED_STATUSES = FINAL_STATUSES


def hash_code(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def looks_like_code(text: str) -> bool:
    return bool(START_PAYLOAD.match(text))


@dataclass(frozen=True)
class IssuedInvite:
    code: str
    invite: Invite


class InviteRefused(ValueError):
    """No invite for this participant: they left the study (withdrawn or completed)."""


async def issue(
    session: AsyncSession, participant: Participant, *, valid_for: timedelta, actor: Actor, now: datetime
) -> IssuedInvite:
    if participant.status in ENDED_STATUSES:
        raise InviteRefused(f"{participant.study_id} is {participant.status}: an invite would not work")
    open_invites = (
        await session.scalars(
            select(Invite).where(
                Invite.participant_id == participant.id, Invite.used_at.is_(None), Invite.voided_at.is_(None)
            )
        )
    ).all()
    for old in open_invites:
        old.voided_at = now
        await audit.record(
            session, actor=actor, action="update", entity="invite", entity_id=old.id, now=now,
            old={"voided_at": None}, new={"voided_at": now}, reason="replaced by a new invite",
        )
    code = secrets.token_urlsafe(16)
    invite = Invite(participant_id=participant.id, code_hash=hash_code(code), issued_at=now, expires_at=now + valid_for)
    session.add(invite)
    await session.flush()
    await audit.record(
        session, actor=actor, action="create", entity="invite", entity_id=invite.id, now=now,
        new={"participant": participant.study_id, "expires_at": invite.expires_at}, reason="invite issued",
        timezone=participant.timezone,
    )
    return IssuedInvite(code=code, invite=invite)


class InviteState(Enum):
    VALID = "valid"
    UNKNOWN = "unknown"
    USED = "used"
    EXPIRED = "expired"


@dataclass(frozen=True)
class InviteLookup:
    state: InviteState
    invite: Invite | None = None
    participant: Participant | None = None


async def void_because(session: AsyncSession, invite: Invite, participant: Participant) -> str | None:
    """Why an invite no longer works, though nobody voided it: its participant left the study
    (withdrawn or completed), or joined with a later invite than this unused one. (An invite
    issued after they joined stays good: it moves them to another Telegram account.)"""
    if participant.status in ENDED_STATUSES:
        return f"participant {participant.status}"
    if invite.used_at is None and await session.scalar(
            select(Invite.id).where(Invite.participant_id == participant.id, Invite.used_at.is_not(None),
                                    Invite.id > invite.id).limit(1)) is not None:
        return "participant joined with a later invite"
    return None


async def look_up(session: AsyncSession, code: str, *, now: datetime, for_update: bool = False) -> InviteLookup:
    """What a code is worth right now. A voided code, or one void because of its participant
    (`void_because`), is reported as unknown: it was never given to anyone who should still be
    using it, and whoever holds it learns nothing (not even that it once was an invite)."""
    if not looks_like_code(code):
        return InviteLookup(InviteState.UNKNOWN)
    query = select(Invite).where(Invite.code_hash == hash_code(code))
    invite = await session.scalar(query.with_for_update() if for_update else query)
    if invite is None or invite.voided_at is not None:
        return InviteLookup(InviteState.UNKNOWN)
    participant = await session.get(Participant, invite.participant_id)
    if participant is None or await void_because(session, invite, participant) is not None:
        return InviteLookup(InviteState.UNKNOWN)
    if invite.used_at is not None:
        return InviteLookup(InviteState.USED, invite, participant)
    if now >= invite.expires_at:
        return InviteLookup(InviteState.EXPIRED, invite, participant)
    return InviteLookup(InviteState.VALID, invite, participant)
