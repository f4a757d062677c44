"""Who on the study team may do what. One table, used by every staff command and button.

- coordinator: everything but resuming a participant's interrupted treatment, managing the study
  team and withdrawing someone else's broadcast.
- investigator: everything, and receives escalations; alone resumes an interrupted treatment,
  manages the study team (/staff, `trialbot staff`: the delegation of the study's work is the
  investigator's) and withdraws any broadcast awaiting approval.
- monitor: read-only: oversight (participants, visits, alerts, plots, deliveries) and exports; no
  messaging, no acknowledging, no broadcasts, no corrections, no changes to a participant's record,
  and does not receive participants' messages.

Setting up: while the team has no active member who may manage it (no investigator yet), a
coordinator may add and change staff (SET_UP_TEAM), so a site can add its investigator; from
then on only the investigator may (study/staff.py `managing_permission`), at the server as in
Telegram.

A refusal is answered with the `staff_not_allowed` template and recorded in the audit trail
(action "refused"), so a monitor's attempt to write to participants is on the record.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from study import audit
from study.audit import Actor
from study.models import StaffMember

# What a staff member may do, by name.
OVERSEE = "oversee"          # /participants, /visits, /alerts, /adherence, /treatment, /deliveries, /visits P001
EXPORT = "export"            # trialbot export (a server command; listed for completeness)
MESSAGE = "message"          # /reply
ACKNOWLEDGE = "acknowledge"  # the Acknowledge button on alerts
BROADCAST = "broadcast"      # /broadcast: write and send
APPROVE_BROADCAST = "approve_broadcast"  # the second approval of someone else's broadcast
TREATMENT = "treatment"      # /interrupt, /offtreatment: a participant's treatment course
RESUME_TREATMENT = "resume_treatment"  # /resume P001 reason: the investigator's decision alone
CORRECT = "correct"          # /correct: correct a diary entry or a check-in (never overwriting it)
ENROL = "enrol"              # enrol and invite participants, their settings, visits, /pause, /end, /timezone
MANAGE_STAFF = "manage_staff"  # add staff members, change their role, deactivate them
SET_UP_TEAM = "set_up_team"    # the same, while the team has no active member who may MANAGE_STAFF
APPROVE_TEXT = "approve_text"  # trialbot messages approve: record the IRB's approval of a text
WITHDRAW_ANY_BROADCAST = "withdraw_any_broadcast"  # withdraw a broadcast awaiting approval that is not one's own
RECEIVE_PARTICIPANT_MESSAGES = "receive_participant_messages"  # what participants write, passed on to staff

EVERYTHING = frozenset({OVERSEE, EXPORT, MESSAGE, ACKNOWLEDGE, BROADCAST, APPROVE_BROADCAST, TREATMENT,
                        RESUME_TREATMENT, CORRECT, ENROL, MANAGE_STAFF, SET_UP_TEAM, APPROVE_TEXT,
                        WITHDRAW_ANY_BROADCAST, RECEIVE_PARTICIPANT_MESSAGES})
PERMISSIONS: dict[str, frozenset[str]] = {
    "coordinator": EVERYTHING - {RESUME_TREATMENT, MANAGE_STAFF, WITHDRAW_ANY_BROADCAST},
    "investigator": EVERYTHING,
    "monitor": frozenset({OVERSEE, EXPORT}),
}
# What a staff member is sent needs, by outbox kind, a permission when it is delivered (a member
# whose role changed since it was queued does not get it): study/still_wanted.py RULES (`needs`).

# The study team's commands and buttons in Telegram, each with the permission it needs, in the
# order a staff /help lists them (bot/handlers/manage.py staff_help; words: messages/*/staff_help).
STAFF_COMMANDS: tuple[tuple[str, str], ...] = (
    ("participants", OVERSEE), ("visits", OVERSEE), ("visits_participant", OVERSEE), ("adherence", OVERSEE),
    ("alerts", OVERSEE), ("treatment", OVERSEE), ("deliveries", OVERSEE),
    ("acknowledge", ACKNOWLEDGE), ("reply", MESSAGE), ("broadcast", BROADCAST),
    ("approve_broadcast", APPROVE_BROADCAST), ("visits_change", ENROL), ("pause", ENROL), ("end", ENROL),
    ("timezone", ENROL), ("interrupt", TREATMENT), ("offtreatment", TREATMENT),
    ("resume_treatment", RESUME_TREATMENT), ("correct", CORRECT), ("enroll", ENROL), ("invite", ENROL),
    ("staff", MANAGE_STAFF),
)
# Who receives escalated alerts (after escalation.escalate_after_minutes).
ESCALATION_ROLES = ("investigator",)


def may(role: str, permission: str) -> bool:
    return permission in PERMISSIONS.get(role, frozenset())


def commands_for(role: str) -> list[str]:
    """The staff commands (STAFF_COMMANDS) a role may use, in their order."""
    return [name for name, permission in STAFF_COMMANDS if may(role, permission)]


def roles_with(permission: str) -> tuple[str, ...]:
    return tuple(role for role, allowed in PERMISSIONS.items() if permission in allowed)


def allowed(member: StaffMember, permission: str) -> bool:
    return member.active and may(member.role, permission)


async def record_refusal(session: AsyncSession, member: StaffMember, *, what: str, permission: str,
                         now: datetime) -> None:
    """A staff member tried something their role may not do: on the record."""
    await audit.record(session, actor=Actor.staff(member.id), action="refused", entity="staff_command",
                       entity_id=what, now=now, new={"role": member.role, "needs": permission},
                       reason=f"role {member.role} may not {permission}")
