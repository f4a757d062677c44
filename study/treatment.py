"""Each participant's treatment course: on treatment, interrupted, off treatment (follow-up),
completed, withdrawn. Telegram-free.

The course decides what the scheduler plans (scheduler/planner.py, as an input like the clock):
cream reminders, nudges and "missing dose" records only on treatment; visit reminders, check-ins
and safety alerts through interruption and follow-up; pregnancy tests in the states the protocol
names (`[pregnancy_tests] during`), and never while treatment is interrupted for a pregnancy.
Nobody cancels jobs by hand: a change is a new row in `treatment_changes` (who, when, why) and
the participant's current state, in one transaction with its audit entry, the participant's
approved message, and the outbox's queued cream reminders set aside.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from study import audit, outbox
from study.audit import Actor
from study.models import (
    DeliveryStep,
    OutboxKind,
    OutboxMessage,
    OutboxStatus,
    Participant,
    TreatmentChange,
    TreatmentReason,
    TreatmentState,
)
from study.protocol import Protocol

ON, INTERRUPTED, OFF = TreatmentState.ON_TREATMENT, TreatmentState.INTERRUPTED, TreatmentState.OFF_TREATMENT
COMPLETED, WITHDRAWN = TreatmentState.COMPLETED, TreatmentState.WITHDRAWN
FINAL = (COMPLETED, WITHDRAWN)
# Which changes are allowed, from which state. Completed and withdrawn are final.
ALLOWED: dict[TreatmentState, tuple[TreatmentState, ...]] = {
    ON: (INTERRUPTED, OFF, COMPLETED, WITHDRAWN),
    INTERRUPTED: (ON, OFF, COMPLETED, WITHDRAWN),
    OFF: (COMPLETED, WITHDRAWN),
    COMPLETED: (),
    WITHDRAWN: (),
}
# States that may be entered again for another reason (a pregnancy during an interruption for an
# infection, or during follow-up: the reason decides what else stops).
RENEWABLE = (INTERRUPTED, OFF)
# What the participant is told, per new state (approved templates).
PARTICIPANT_MESSAGES = {INTERRUPTED: "treatment_interrupted", ON: "treatment_resumed", OFF: "treatment_off"}
# Outbox kinds that remind of the cream: set aside when the cream stops.
CREAM_KINDS = (OutboxKind.REMINDER, OutboxKind.NUDGE)
# Reasons a change may carry, per new state.
REASONS_FOR: dict[TreatmentState, tuple[TreatmentReason, ...]] = {
    INTERRUPTED: (TreatmentReason.PREGNANCY, TreatmentReason.INFECTION, TreatmentReason.ADVERSE_EVENT,
                  TreatmentReason.INVESTIGATOR_DECISION, TreatmentReason.OTHER),
    ON: (TreatmentReason.INVESTIGATOR_DECISION, TreatmentReason.OTHER),
    OFF: (TreatmentReason.END_OF_TREATMENT, TreatmentReason.INVESTIGATOR_DECISION, TreatmentReason.ADVERSE_EVENT,
          TreatmentReason.PREGNANCY, TreatmentReason.OTHER),
    COMPLETED: (TreatmentReason.END_OF_TREATMENT, TreatmentReason.OTHER),
    WITHDRAWN: tuple(TreatmentReason),
}


class TreatmentError(Exception):
    """A change the course does not allow; `code` names it for the message the person gets."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def pregnancy_tests_due(during: Sequence[str], state: str, reason: str | None) -> bool:
    """Are pregnancy tests due in this state? Never once the course changed for a pregnancy."""
    if reason == TreatmentReason.PREGNANCY:
        return False
    return state in during


@dataclass(frozen=True)
class Changed:
    change: TreatmentChange
    previous: TreatmentState


async def change(session: AsyncSession, protocol: Protocol, participant: Participant, state: TreatmentState,
                 reason: TreatmentReason, *, actor: Actor, now: datetime, text: str | None = None,
                 tell_participant: bool = True) -> Changed:
    """Move the participant's course to `state`, for `reason` (and `text`, the words of whoever
    changed it), in the caller's transaction: the history row, the audit entry, queued reminders
    the new state does not want set aside, and the participant's message."""
    previous = TreatmentState(participant.treatment)
    if state == previous and (state not in RENEWABLE or reason == participant.treatment_reason):
        raise TreatmentError("same", f"{participant.study_id} is {previous.value} already")
    if state not in ALLOWED[previous] and not (state == previous and state in RENEWABLE):
        raise TreatmentError("not_allowed", f"{participant.study_id} is {previous.value}: it cannot become {state.value}")
    if reason not in REASONS_FOR[state]:
        raise TreatmentError("reason", f"{reason.value} is not a reason to become {state.value}")
    zone = ZoneInfo(participant.timezone)
    row = TreatmentChange(participant_id=participant.id, state=state, previous=previous, reason=reason,
                          reason_text=(text or "").strip()[:1000] or None, changed_by=str(actor), changed_at=now,
                          local_date=now.astimezone(zone).date(), timezone=participant.timezone)
    session.add(row)
    participant.treatment, participant.treatment_reason, participant.treatment_since = state, reason, now
    participant.next_plan_at = None  # plan again, under the new state
    await session.flush()
    await audit.record(session, actor=actor, action="update", entity="treatment", entity_id=participant.study_id,
                       now=now, old={"treatment": previous.value},
                       new={"treatment": state.value, "reason": reason.value, "text": row.reason_text,
                            "treatment_change_id": row.id},
                       reason=f"treatment {state.value}: {reason.value}", timezone=participant.timezone)
    if state != ON:
        await set_aside(session, participant, CREAM_KINDS, now=now, why=f"treatment {state.value}")
    if not pregnancy_tests_due(protocol.pregnancy_tests.during, state, reason):
        await set_aside(session, participant, (OutboxKind.PREGNANCY_REMINDER,), now=now,
                        why=f"no pregnancy tests while treatment is {state.value} ({reason.value})")
    template = PARTICIPANT_MESSAGES.get(state)
    if tell_participant and template is not None and state != previous:
        await outbox.enqueue(session, dedup_key=f"treatment:{participant.id}:{row.id}", template_id=template,
                             variables={"reason": reason.value}, now=now, participant_id=participant.id,
                             kind=OutboxKind.TREATMENT)
    return Changed(row, previous)


async def set_aside(session: AsyncSession, participant: Participant, kinds: tuple[OutboxKind, ...], *, now: datetime,
                    why: str) -> int:
    """Queued messages of these kinds are not sent (the cream stopped; tests are not due)."""
    rows = (await session.scalars(select(OutboxMessage).where(
        OutboxMessage.participant_id == participant.id, OutboxMessage.status == OutboxStatus.PENDING,
        OutboxMessage.kind.in_(kinds)))).all()
    for row in rows:
        row.status, row.last_error = OutboxStatus.SKIPPED, why
        await outbox.record_event(session, row.id, DeliveryStep.SKIPPED, now=now, detail=why)
    return len(rows)


async def history(session: AsyncSession, participant: Participant) -> list[TreatmentChange]:
    query = select(TreatmentChange).where(TreatmentChange.participant_id == participant.id)
    return list((await session.scalars(query.order_by(TreatmentChange.id))).all())


async def leave_study(session: AsyncSession, participant: Participant, status: str, *, reason: str, actor: Actor,
                      now: datetime) -> None:
    """A participant withdrawn or completed leaves their treatment course with the study (the
    history says so; the participant gets no message: the bot writes to them no more)."""
    state = TreatmentState(status)
    if participant.treatment == state:
        return
    zone = ZoneInfo(participant.timezone)
    previous = participant.treatment
    row = TreatmentChange(participant_id=participant.id, state=state, previous=previous,
                          reason=TreatmentReason.OTHER, reason_text=reason[:1000], changed_by=str(actor),
                          changed_at=now, local_date=now.astimezone(zone).date(), timezone=participant.timezone)
    session.add(row)
    participant.treatment, participant.treatment_reason, participant.treatment_since = state, TreatmentReason.OTHER, now
    await session.flush()
    await audit.record(session, actor=actor, action="update", entity="treatment", entity_id=participant.study_id,
                       now=now, old={"treatment": previous}, new={"treatment": state.value, "reason": "other",
                                                                   "text": reason[:1000], "treatment_change_id": row.id},
                       reason=f"participant {status}", timezone=participant.timezone)
