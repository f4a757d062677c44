"""`trialbot staff ...`: the study team's accounts (audited)."""

from __future__ import annotations

from typing import Annotated

import typer

from bot.cli.common import actor_for, fail, now, with_database
from bot.operator import AsOption
from study.audit import Actor

staff_app = typer.Typer(help="The study team's accounts.", no_args_is_help=True)


@staff_app.command("add")
def staff_add(
    telegram_id: Annotated[int, typer.Option(help="The staff member's Telegram user id.")],
    name: Annotated[str, typer.Option(help="Name, as colleagues know them.")],
    role: Annotated[str, typer.Option(help="coordinator, investigator or monitor.")],
    as_: AsOption = None,
) -> None:
    """Add a staff member, change the name or role of one, or give a deactivated member access
    again (audited). The first member of an empty team needs no --as: they are recorded as adding
    themselves. The investigator manages the team; until it has one, a coordinator may."""
    from study import staff

    if role not in staff.ROLES:
        raise fail(f"role must be one of {', '.join(staff.ROLES)}")

    async def add(db):
        async with db.transaction() as session:
            first = not await staff.all_staff(session)
            actor = None if first else await _staff_manager(session, as_, "add or change staff")
            return await staff.add_or_update(session, telegram_user_id=telegram_id, name=name, role=role,
                                             actor=actor, now=now())

    try:
        member = with_database(add)
    except staff.StaffError as exc:
        raise fail(str(exc)) from None
    typer.echo(f"Staff {member.id}: {member.name} ({member.role}).")


async def _staff_manager(session, as_: str | None, doing: str) -> Actor:
    """The member running a staff command, if they may change the team now (the investigator;
    a coordinator while the team has none: study/staff.py managing_permission)."""
    from study import staff

    return await actor_for(session, as_, await staff.managing_permission(session), doing)


async def _one_member(session, who: str):
    from bot.operator import find

    found = await find(session, who)
    if len(found) != 1:
        raise fail(f"{'More than one' if found else 'No'} staff member {who.strip()!r}; give the number from "
                    "`trialbot staff list`.")
    return found[0]


@staff_app.command("role")
def staff_role(
    who: Annotated[str, typer.Argument(help="The member's number or name (`trialbot staff list`).")],
    role: Annotated[str, typer.Argument(help="coordinator, investigator or monitor.")],
    reason: Annotated[str | None, typer.Option(help="Why, for the audit trail.")] = None,
    as_: AsOption = None,
) -> None:
    """Give an active member another role (audited, old and new). A monitor does not receive
    participants' messages or alerts."""
    from study import staff

    async def change(db):
        async with db.transaction() as session:
            actor = await _staff_manager(session, as_, "change staff roles")
            member = await _one_member(session, who)
            await staff.change_role(session, member, role, actor=actor, now=now(), reason=reason)
            return member

    try:
        member = with_database(change)
    except staff.StaffError as exc:
        raise fail(str(exc)) from None
    typer.echo(f"Staff {member.id}: {member.name} is now a {member.role}.")


@staff_app.command("deactivate")
def staff_deactivate(
    who: Annotated[str, typer.Argument(help="The member's number or name (`trialbot staff list`).")],
    reason: Annotated[str, typer.Option(help="Why their access ends, for the audit trail.")],
    as_: AsOption = None,
) -> None:
    """End a member's access (audited): from now on they receive nothing (alerts, escalations,
    digests, participants' messages, approval requests) and can do nothing; what they did stays on
    the record under their name. `staff add` with their Telegram id gives access back."""
    from study import staff

    async def end(db):
        async with db.transaction() as session:
            actor = await _staff_manager(session, as_, "deactivate staff")
            member = await _one_member(session, who)
            await staff.deactivate(session, member, actor=actor, now=now(), reason=reason)
            return member

    try:
        member = with_database(end)
    except staff.StaffError as exc:
        raise fail(str(exc)) from None
    typer.echo(f"Staff {member.id}: {member.name} deactivated; they receive nothing and can do nothing.")


@staff_app.command("list")
def staff_list() -> None:
    """List the study team."""
    from study import staff

    async def listing(db):
        async with db.transaction() as session:
            return await staff.all_staff(session)

    for member in with_database(listing):
        state = "active" if member.active else "inactive"
        typer.echo(f"{member.id:>4}  {member.name:<24} {member.role:<13} {state}")
