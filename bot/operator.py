"""Who acts at the server's command line: a named member of the study team, never an OS login.

Every `trialbot` command that changes the study record, approves a text or exports data names the
staff member doing it, with `--as` (their staff number or name, as `trialbot staff list` shows
them) or the `TRIALBOT_OPERATOR` variable. The name is checked against the staff list and the
role's permissions (study/roles.py) inside the command's own transaction, so the audit trail says
which person did it, as Part 11 asks, and a monitor cannot approve or enrol at the server any more
than in Telegram. Read-only commands (lists, status, verify) need no name.

The one exception is the very first staff member (`trialbot staff add` on an empty staff list):
there is no one to vouch for them, so they are recorded as adding themselves.
"""

from __future__ import annotations

from typing import Annotated

import typer
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from study import roles
from study.audit import Actor
from study.models import StaffMember

OPERATOR_ENV = "TRIALBOT_OPERATOR"

AsOption = Annotated[str | None, typer.Option(
    "--as", envvar=OPERATOR_ENV, show_envvar=True, metavar="STAFF",
    help="Who is doing this: a staff member's number or name (see `trialbot staff list`); "
         f"or set {OPERATOR_ENV}. Recorded in the audit trail.")]


class OperatorRefused(Exception):
    """The command does not say who runs it, names no active staff member, or names one whose role
    may not do this. Nothing is written."""


async def find(session: AsyncSession, named: str) -> list[StaffMember]:
    """Staff members matching a number or a name (case and surrounding spaces ignored)."""
    named = named.strip()
    if named.isdigit():
        query = select(StaffMember).where(StaffMember.id == int(named))
    else:
        query = select(StaffMember).where(func.lower(StaffMember.name) == named.lower())
    return list((await session.scalars(query)).all())


async def acting_as(session: AsyncSession, named: str | None, permission: str, *, doing: str) -> Actor:
    """The staff member named by --as / TRIALBOT_OPERATOR, if they may `permission` ("enrol
    participants" in `doing` words); otherwise OperatorRefused with one line saying what to do."""
    if named is None or not named.strip():
        raise OperatorRefused(
            f"Say who you are to {doing}: --as \"Your Name\" (a staff member, see `trialbot staff list`) "
            f"or set {OPERATOR_ENV}; the audit trail records a person, not a login.")
    found = await find(session, named)
    if len(found) > 1:
        raise OperatorRefused(f"--as: more than one staff member is called {named.strip()!r}; give the number "
                              "from `trialbot staff list`.")
    if not found or not found[0].active:
        raise OperatorRefused(f"--as: no active staff member {named.strip()!r} (see `trialbot staff list`).")
    member = found[0]
    if not roles.allowed(member, permission):
        raise OperatorRefused(f"--as: {member.name} is a {member.role}, who may not {doing}.")
    return Actor.staff(member.id)
