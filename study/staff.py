"""The study team: coordinators, the investigator and monitors, known by their Telegram user id.

A member's role and whether they are active are their current state; every change (added, role
changed, deactivated, access given again) is an audit entry with old and new values, who and why.
A deactivated member receives nothing further (every sender asks for active members, and the
outbox dispatcher skips anything queued to them before) and can do nothing (bot/access.py answers
them that their access has ended). Who may change the team: `managing_permission`.

Changes proposed in Telegram (/staff) wait for their Confirm as `StaffChange` rows (`propose`,
`confirm`, `cancel`); the CLI (`trialbot staff ...`) changes the team at once.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from study import audit, roles
from study.audit import Actor
from study.models import StaffChange, StaffChangeKind, StaffChangeState, StaffMember, StaffRole

ROLES = tuple(StaffRole)
NAME_MAX = 128


class StaffError(ValueError):
    pass


async def add_or_update(
    session: AsyncSession, *, telegram_user_id: int, name: str, role: str, actor: Actor | None, now: datetime,
    language: str = "en",
) -> StaffMember:
    """Add a staff member, or change the name or role of one already known (both audited).

    `actor=None` only for the first member of an empty team: no one can vouch for them, so the
    record says they added themselves."""
    if role not in ROLES:
        raise StaffError(f"role must be one of {', '.join(ROLES)}")
    if not name.strip():
        raise StaffError("name must not be empty")
    if len(name.strip()) > NAME_MAX:
        raise StaffError(f"name must be at most {NAME_MAX} characters")
    if actor is None and not roles.may(role, roles.SET_UP_TEAM):
        raise StaffError(f"the first member of the team must be able to add the others, so not a {role}")
    member = await by_telegram_id(session, telegram_user_id)
    if member is None:
        member = StaffMember(telegram_user_id=telegram_user_id, name=name.strip(), role=role, active=True,
                             language=language, added_at=now)
        session.add(member)
        await session.flush()
        reason = "staff added" if actor is not None else "first member of the study team, added themselves"
        await audit.record(session, actor=actor or Actor.staff(member.id), action="create", entity="staff",
                           entity_id=member.id, now=now, new={"name": member.name, "role": role, "active": True},
                           reason=reason)
        return member
    if actor is None:
        raise StaffError("only the first member of an empty team may be added without --as")
    old = {"name": member.name, "role": member.role, "active": member.active}
    member.name, member.role, member.active = name.strip(), role, True
    new = {"name": member.name, "role": member.role, "active": True}
    if old != new:
        reason = "staff member added again: access given back" if not old["active"] else "staff role changed"
        await audit.record(session, actor=actor, action="update", entity="staff", entity_id=member.id, now=now,
                           old=old, new=new, reason=reason)
    return member


async def change_role(session: AsyncSession, member: StaffMember, role: str, *, actor: Actor, now: datetime,
                      reason: str | None = None) -> None:
    """Give an active member another role (audited, old and new)."""
    if role not in ROLES:
        raise StaffError(f"role must be one of {', '.join(ROLES)}")
    if not member.active:
        raise StaffError(f"{member.name} is not active; add them again to give them access")
    if _is(actor, member):
        raise StaffError("you cannot change your own role; another member who manages the team can")
    if member.role == role:
        raise StaffError(f"{member.name} is a {role} already")
    old = {"role": member.role}
    member.role = role
    await audit.record(session, actor=actor, action="update", entity="staff", entity_id=member.id, now=now,
                       old=old, new={"role": role}, reason=reason or "staff role changed")


async def deactivate(session: AsyncSession, member: StaffMember, *, actor: Actor, now: datetime, reason: str) -> None:
    """End a member's access (audited, old and new): from now on they receive nothing and can do
    nothing. Their records stay, under their name."""
    if not reason.strip():
        raise StaffError("say why the member's access ends (--reason)")
    if not member.active:
        raise StaffError(f"{member.name} is not active already")
    if _is(actor, member):
        raise StaffError("you cannot end your own access; another member who manages the team can")
    await audit.record(session, actor=actor, action="update", entity="staff", entity_id=member.id, now=now,
                       old={"active": True, "role": member.role}, new={"active": False, "role": member.role},
                       reason=reason.strip())
    member.active = False


def _is(actor: Actor, member: StaffMember) -> bool:
    return actor == Actor.staff(member.id)


async def managing_permission(session: AsyncSession) -> str:
    """The permission that lets a member change the team now: MANAGE_STAFF (the investigator)
    once the team has an active member with it; until then SET_UP_TEAM (a coordinator too), so a
    site can add its investigator (study/roles.py)."""
    managers = select(StaffMember.id).where(StaffMember.active.is_(True),
                                            StaffMember.role.in_(roles.roles_with(roles.MANAGE_STAFF)))
    return roles.MANAGE_STAFF if await session.scalar(managers.limit(1)) is not None else roles.SET_UP_TEAM


async def by_id(session: AsyncSession, staff_id: int) -> StaffMember | None:
    return await session.get(StaffMember, staff_id)


async def receiving(session: AsyncSession, permission: str) -> list[StaffMember]:
    """The active members whose role lets them receive what `permission` names."""
    query = select(StaffMember).where(StaffMember.active.is_(True),
                                      StaffMember.role.in_(roles.roles_with(permission)))
    return list((await session.scalars(query.order_by(StaffMember.id))).all())


# -- Changes proposed in Telegram, made when confirmed ------------------------------------------

async def propose(session: AsyncSession, by: StaffMember, kind: StaffChangeKind, *, now: datetime,
                  member: StaffMember | None = None, telegram_user_id: int | None = None, name: str | None = None,
                  role: str | None = None, reason: str | None = None) -> StaffChange:
    """A change shown with Confirm / Cancel; checked now as it will be at Confirm (StaffError)."""
    if kind == StaffChangeKind.ADD:
        name = (name or "").strip()
        if telegram_user_id is None or telegram_user_id <= 0 or not name:
            raise StaffError("a Telegram user id and a name are needed")
        if len(name) > NAME_MAX:
            raise StaffError(f"name must be at most {NAME_MAX} characters")
        known = await by_telegram_id(session, telegram_user_id)
        if known is not None and known.active:
            raise StaffError(f"{known.name} is on the team already, as {known.role}")
    else:
        assert member is not None
        _check(kind, member, role, Actor.staff(by.id))
    name = name if member is None else member.name  # kept with the proposal, shown in its question
    change = StaffChange(kind=kind, state=StaffChangeState.PROPOSED, proposed_by=by.id, proposed_at=now,
                         staff_id=member.id if member else None, telegram_user_id=telegram_user_id, name=name,
                         role=role, reason=(reason or "").strip() or None)
    session.add(change)
    await session.flush()
    return change


def _check(kind: str, member: StaffMember, role: str | None, actor: Actor) -> None:
    if not member.active:
        raise StaffError(f"{member.name} is not active")
    if _is(actor, member):
        raise StaffError("not yourself")
    if kind == StaffChangeKind.ROLE and (role not in ROLES or role == member.role):
        raise StaffError(f"{member.name} is a {member.role} already")


async def confirm(session: AsyncSession, change: StaffChange, by: StaffMember, *, now: datetime,
                  role: str | None = None) -> StaffMember:
    """Make a proposed change (once: a change no longer proposed raises StaffError). `role`: an
    addition's role, chosen with its buttons."""
    if change.state != StaffChangeState.PROPOSED:
        raise StaffError("this change was confirmed or cancelled already")
    actor = Actor.staff(by.id)
    proposer = await session.get(StaffMember, change.proposed_by)
    who = proposer.name if proposer else "?"
    if change.kind == StaffChangeKind.ADD:
        assert change.telegram_user_id is not None and change.name is not None  # the table's CHECK
        if role not in ROLES:
            raise StaffError("pick a role")
        known = await by_telegram_id(session, change.telegram_user_id)
        if known is not None and known.active:
            raise StaffError(f"{known.name} is on the team already, as {known.role}")
        member = await add_or_update(session, telegram_user_id=change.telegram_user_id, name=change.name,
                                     role=role, actor=actor, now=now)
        change.role, change.staff_id = role, member.id
    else:
        found = await session.get(StaffMember, change.staff_id)
        if found is None:
            raise StaffError("no such staff member")
        member = found
        if change.kind == StaffChangeKind.ROLE:
            await change_role(session, member, change.role or "", actor=actor, now=now,
                              reason=change.reason or f"staff role changed in Telegram (/staff) by {who}")
        else:
            await deactivate(session, member, actor=actor, now=now,
                             reason=change.reason or f"access ended in Telegram (/staff) by {who}")
    change.state, change.decided_at = StaffChangeState.CONFIRMED, now
    return member


async def cancel(session: AsyncSession, change: StaffChange, *, now: datetime) -> bool:
    """False if it was no longer proposed (confirmed or cancelled before)."""
    if change.state != StaffChangeState.PROPOSED:
        return False
    change.state, change.decided_at = StaffChangeState.CANCELLED, now
    return True


# Built once, as participants.BY_CHAT (and asked beside the ledger the same way).
BY_TELEGRAM_ID = select(StaffMember).where(StaffMember.telegram_user_id == bindparam("user_id"))


async def by_telegram_id(session: AsyncSession, telegram_user_id: int) -> StaffMember | None:
    return await session.scalar(BY_TELEGRAM_ID, {"user_id": telegram_user_id})


async def on_duty(session: AsyncSession) -> list[StaffMember]:
    query = select(StaffMember).where(StaffMember.active.is_(True)).order_by(StaffMember.id)
    return list((await session.scalars(query)).all())


async def all_staff(session: AsyncSession) -> list[StaffMember]:
    return list((await session.scalars(select(StaffMember).order_by(StaffMember.id))).all())
