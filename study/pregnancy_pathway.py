"""The pregnancy pathway: what a positive pregnancy test starts, as the protocol requires.

A positive answer (to the test reminder, or the "positive pregnancy test" button of /urgent or a
check-in) interrupts treatment at once, for pregnancy (study/treatment.py): queued cream reminders
and further pregnancy-test reminders are set aside and none are planned; visits, check-ins and
safety alerts go on. The team is alerted urgently (coordinators and the investigator at once),
and asked to confirm; only the investigator resumes treatment, with a reason. The participant is
told to stop the cream and call today, in the reply to their answer. Telegram-free.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from study import alerts, pregnancy_tests, treatment
from study.audit import Actor
from study.models import Alert, JSONObject, Participant, TreatmentReason, TreatmentState
from study.protocol import Protocol

FLAG = "pregnancy_positive"


def flags_offered(protocol: Protocol, participant: Participant) -> list[str]:
    """The red flags a participant may pick (/urgent, a check-in): "a positive pregnancy test"
    only for those the protocol schedules tests for."""
    offered = list(protocol.safety.red_flags)
    if FLAG in offered and not pregnancy_tests.apply_to(protocol.pregnancy_tests, participant):
        offered.remove(FLAG)
    return offered


async def interrupt(session: AsyncSession, protocol: Protocol, participant: Participant, *, source: str,
                    now: datetime) -> JSONObject:
    """Interrupt treatment for pregnancy (unless it is ended, or changed for pregnancy already),
    in the caller's transaction. Returns what the alert's trigger says of it."""
    interrupted = False
    state = TreatmentState(participant.treatment)
    if state not in treatment.FINAL and participant.treatment_reason != TreatmentReason.PREGNANCY:
        target = TreatmentState.OFF_TREATMENT if state == TreatmentState.OFF_TREATMENT else TreatmentState.INTERRUPTED
        await treatment.change(session, protocol, participant, target, TreatmentReason.PREGNANCY,
                               actor=Actor.participant(participant.study_id), now=now,
                               text=f"positive pregnancy test reported by the participant ({source})",
                               tell_participant=False)  # their reply already says: stop the cream, call today
        interrupted = target == TreatmentState.INTERRUPTED
    return {"treatment": participant.treatment, "interrupted": interrupted}


async def positive(session: AsyncSession, protocol: Protocol, participant: Participant, *, source: str, now: datetime,
                   test_date: str | None = None) -> Alert:
    """The whole pathway in the caller's transaction: treatment interrupted, the team alerted."""
    trigger: JSONObject = {"red_flag": FLAG, **await interrupt(session, protocol, participant, source=source, now=now)}
    if test_date:
        trigger["test_date"] = test_date
    return await alerts.raise_alert(session, participant, source=source, now=now, triggers=[trigger])
