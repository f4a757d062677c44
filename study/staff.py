"""The study team: coordinators, the investigator and monitors, known by their Telegram user id."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from study import audit, roles
from study.audit import Actor
from study.models import StaffMember

ROLES = ("coordinator", "investigator", "monitor")


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
    if actor is None and not roles.may(role, roles.MANAGE_STAFF):
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
        await audit.record(session, actor=actor, action="update", entity="staff", entity_id=member.id, now=now,
                           old=old, new=new, reason="staff role changed")
    return member


async def by_telegram_id(session: AsyncSession, telegram_user_id: int) -> StaffMember | None:
    return await session.scalar(select(StaffMember).where(StaffMember.telegram_user_id == telegram_user_id))


async def on_duty(session: AsyncSession) -> list[StaffMember]:
    query = select(StaffMember).where(StaffMember.active.is_(True)).order_by(StaffMember.id)
    return list((await session.scalars(query)).all())


async def all_staff(session: AsyncSession) -> list[StaffMember]:
    return list((await session.scalars(select(StaffMember).order_by(StaffMember.id))).all())
