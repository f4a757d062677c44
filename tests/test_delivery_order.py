"""The order due messages go out in: a safety alert never waits behind a wave of reminders or a
broadcast queued before it (20,000 of them take eleven minutes at Telegram's pace; staff must hear
of a safety signal within a minute)."""

from __future__ import annotations

import pytest

from scheduler.dispatcher import BULK_KINDS
from study import alerts, outbox, participants
from study.models import URGENCY, OutboxKind, Urgency
from tests.test_outbox_claims import reminder_wave
from tests.trial import Trial
from tests.waiting import until

pytestmark = pytest.mark.timeout(120)


def test_every_kind_has_an_urgency_and_bulk_pacing_follows_it() -> None:
    assert set(URGENCY) == set(OutboxKind)
    assert URGENCY[OutboxKind.ALERT] == min(Urgency)
    assert URGENCY[OutboxKind.BROADCAST] == max(Urgency)
    assert {kind for kind, urgency in URGENCY.items() if urgency >= Urgency.SCHEDULED} == BULK_KINDS
    assert OutboxKind.ALERT not in BULK_KINDS and OutboxKind.REPLY not in BULK_KINDS


async def test_a_safety_alert_goes_ahead_of_reminders_queued_before_it(trial: Trial) -> None:
    users = await reminder_wave(trial, 6)  # six reminders due, queued first
    # (The coordinator joins after the wave: had they been on duty, each join would have queued
    # them a notice and woken the app's deliverer, which could then take the reminders first.)
    coordinator = await trial.add_staff(9001, "Dana")
    deliverer = trial.app.runtime.scheduler.dispatcher  # the app's own: whoever wakes it, one round at a time
    deliverer.in_flight = 1  # one send at a time: the order of sends is the order of claims
    before = len(trial.world.calls)  # what is sent from here on: the alert and the reminders
    async with trial.db.transaction() as session:
        participant = await participants.by_study_id(session, "P000")
        await alerts.raise_alert(session, participant, source="message", triggers=[{"red_flag": "fever"}],
                                 now=trial.clock.now())
        order = await outbox.due(session, now=trial.clock.now())
        kinds = {row.id: row.kind for row in await outbox.for_participant(session, participant.id)}
    assert len(order) == 7
    assert order[0] not in kinds, "the alert (to staff) is first in line, before the participants' reminders"

    await deliverer.deliver_due()
    chats = {coordinator.user_id, *(u.user_id for u in users)}
    await until(lambda: len(_sends_to(trial.world.calls[before:], chats)) >= 7)
    sends = _sends_to(trial.world.calls[before:], chats)
    assert sends[0] == coordinator.user_id, "the alert went first, before the six reminders"
    assert sorted(sends[1:]) == sorted(u.user_id for u in users)


def _sends_to(calls: list, chats: set[int]) -> list[int]:
    """The chats of the messages sent among `calls`, in the order sent."""
    return [int(call.params["chat_id"]) for call in calls
            if call.method == "sendMessage" and call.status == 200 and int(call.params["chat_id"]) in chats]
