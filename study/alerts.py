"""Safety alerts: a possible safety signal reaches the study team at once and keeps reaching
them until someone acknowledges it.

The bot does not judge seriousness, the investigator does. Raising an alert writes it, its audit
entry, and one outbox message per on-duty staff member in the same transaction as the report
that caused it, so an alert raised just before a crash is still delivered after the restart.
Re-sending and escalation are planned by the tick (`scheduler/planner.plan_alert_followups`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from study import audit, outbox, roles
from study.audit import Actor
from study.models import (
    Alert,
    AlertSource,
    AlertStatus,
    JSONObject,
    OutboxKind,
    OutboxMessage,
    OutboxStatus,
    Participant,
    StaffMember,
)
from study.protocol import Protocol
from study.screening import Action, most_urgent_first

ACKNOWLEDGERS = roles.roles_with(roles.ACKNOWLEDGE)
# What raised an alert, and where it stands.
SOURCES = tuple(AlertSource)
STATUSES = tuple(AlertStatus)
# The outbox kind of the edit that closes a copy of an acknowledged alert in a staff member's chat.
CLOSED_KIND = OutboxKind.ALERT_CLOSED
# What the participant is told to do for what they report that is not a red flag (a red flag's
# action is in the screening file, one source for the buttons and the words alike).
_TRIGGER_ACTIONS = {"severity": Action.CALL_TODAY, "score": Action.CALL_TODAY, "urgent": Action.EMERGENCY}


def participant_actions(protocol: Protocol, triggers: list[JSONObject]) -> tuple[Action, ...]:
    """Every action these reports call for, most urgent first; nothing for the participant to do
    (MESSAGE_TEAM) is left out."""
    found: list[Action] = []
    for trigger in triggers:
        if trigger.get("red_flag"):
            found += protocol.screener.actions_for([trigger["red_flag"]])
        elif trigger.get("flags"):
            found += protocol.screener.actions_for(trigger["flags"])
        else:
            found += [action for key, action in _TRIGGER_ACTIONS.items() if key in trigger]
    return most_urgent_first(action for action in found if action is not Action.MESSAGE_TEAM)


def alert_variables(alert: Alert, participant: Participant) -> JSONObject:
    return {"alert_id": alert.id, "study_id": participant.study_id, "triggers": alert.triggers,
            "source": alert.source, "reported_at": alert.reported_at.isoformat()}


async def raise_alert(
    session: AsyncSession, participant: Participant, *, source: str, triggers: list[JSONObject], now: datetime,
    checkin_id: int | None = None, message_id: int | None = None,
) -> Alert:
    """Record the alert and queue it to every on-duty staff member, in the caller's transaction.
    `triggers` say what was reported, e.g. {"red_flag": "fever"} or {"score": "itch", "value": 9}."""
    alert = Alert(participant_id=participant.id, source=source, triggers=triggers, reported_at=now, status=AlertStatus.OPEN,
                  checkin_id=checkin_id, message_id=message_id)
    session.add(alert)
    await session.flush()
    await audit.record(session, actor=Actor.participant(participant.study_id), action="create", entity="alert",
                       entity_id=alert.id, now=now, new={"source": source, "triggers": triggers},
                       reason="possible safety signal reported", timezone=participant.timezone)
    for member in await _on_duty(session):
        await outbox.enqueue(session, dedup_key=f"alert:{alert.id}:r0:staff{member.id}", template_id="staff_alert",
                             variables={**alert_variables(alert, participant), "round": 0, "escalated": False},
                             now=now, staff_id=member.id, kind=OutboxKind.ALERT,
                             buttons=[[["acknowledge", f"a:{alert.id}", {}]]])
    return alert


async def _on_duty(session: AsyncSession) -> list[StaffMember]:
    query = select(StaffMember).where(StaffMember.active.is_(True), StaffMember.role.in_(ACKNOWLEDGERS))
    return list((await session.scalars(query.order_by(StaffMember.id))).all())


class AckOutcome(Enum):
    ACKNOWLEDGED = "acknowledged"
    ALREADY = "already"  # someone did already: who and when are on the alert
    NOT_FOUND = "not_found"
    NOT_ALLOWED = "not_allowed"


@dataclass(frozen=True)
class AckResult:
    outcome: AckOutcome
    alert: Alert | None = None
    by: StaffMember | None = None


async def acknowledge(session: AsyncSession, alert_id: int, member: StaffMember, *, now: datetime,
                      pressed_message_id: int | None = None) -> AckResult:
    """Take the alert: who and when are recorded, its queued re-sends are not sent, and every copy
    already sent to the team is edited to say so (`close_copies`), but the one whose button was
    pressed (`pressed_message_id`, in the member's chat), which the member's answer replaces."""
    if member.role not in ACKNOWLEDGERS or not member.active:
        return AckResult(AckOutcome.NOT_ALLOWED)
    alert = await session.scalar(select(Alert).where(Alert.id == alert_id).with_for_update())
    if alert is None:
        return AckResult(AckOutcome.NOT_FOUND)
    if alert.status == AlertStatus.ACKNOWLEDGED:
        return AckResult(AckOutcome.ALREADY, alert, await session.get(StaffMember, alert.acknowledged_by))
    alert.status, alert.acknowledged_by, alert.acknowledged_at = AlertStatus.ACKNOWLEDGED, member.id, now
    await audit.record(session, actor=Actor.staff(member.id), action="update", entity="alert", entity_id=alert.id,
                       now=now, old={"status": AlertStatus.OPEN}, new={"status": AlertStatus.ACKNOWLEDGED, "by": member.name},
                       reason="alert acknowledged")
    await outbox.cancel_pending_alert(session, alert.id, now=now)
    await close_copies(session, alert, member, now=now, pressed=(member.id, pressed_message_id))
    return AckResult(AckOutcome.ACKNOWLEDGED, alert, member)


def _copies(alert_id: int) -> Any:
    """The outbox rows that are this alert's copies to the team (the first and every re-send)."""
    return OutboxMessage.dedup_key.like(f"alert:{alert_id}:%") & (OutboxMessage.kind == OutboxKind.ALERT)


async def close_copies(session: AsyncSession, alert: Alert, by: StaffMember, *, now: datetime,
                       pressed: tuple[int, int | None] = (0, None)) -> int:
    """Queue an edit of every copy of an acknowledged alert in the team's chats: no Acknowledge
    button any more, and who acknowledged it and when. One edit per copy, ever (its key); a copy
    still on its way now is edited once it is sent (`copy_sent`). Returns how many were queued."""
    query = select(OutboxMessage).where(_copies(alert.id), OutboxMessage.status == OutboxStatus.SENT,
                                        OutboxMessage.telegram_message_id.is_not(None)).order_by(OutboxMessage.id)
    queued = 0
    for copy in (await session.scalars(query)).all():
        if (copy.staff_id, copy.telegram_message_id) != pressed:
            queued += await _close(session, alert, by, copy, now=now)
    return queued


async def copy_sent(session: AsyncSession, copy: OutboxMessage, *, now: datetime) -> bool:
    """A copy of an alert has just been recorded sent (the outbox dispatcher): if the alert was
    acknowledged while it was on its way, it is edited at once like the others. The alert's row
    is locked first, so this and an acknowledgement never both miss the copy."""
    alert = await session.scalar(select(Alert).where(Alert.id == copy.variables.get("alert_id")).with_for_update())
    if alert is None or alert.status == AlertStatus.OPEN or alert.acknowledged_by is None:
        return False
    by = await session.get(StaffMember, alert.acknowledged_by)
    return by is not None and bool(await _close(session, alert, by, copy, now=now))


async def _close(session: AsyncSession, alert: Alert, by: StaffMember, copy: OutboxMessage, *, now: datetime) -> int:
    row = await outbox.enqueue(
        session, dedup_key=f"alert-closed:{alert.id}:{copy.id}", template_id=copy.template_id, now=now,
        variables={**copy.variables, "acknowledged_by": by.name,
                   "acknowledged_at": (alert.acknowledged_at or now).isoformat()},
        staff_id=copy.staff_id, kind=CLOSED_KIND, edit_message_id=copy.telegram_message_id)
    return row is not None


async def open_alerts(session: AsyncSession) -> list[tuple[Alert, Participant]]:
    query = (select(Alert, Participant).join(Participant, Participant.id == Alert.participant_id)
             .where(Alert.status == AlertStatus.OPEN).order_by(Alert.reported_at))
    return [(a, p) for a, p in (await session.execute(query)).all()]


async def acknowledgers(session: AsyncSession) -> list[StaffMember]:
    return await _on_duty(session)
