"""The order due messages go out in: a safety alert never waits behind a wave of reminders or a
broadcast queued before it (20,000 of them take eleven minutes at Telegram's pace; staff must hear
of a safety signal within a minute)."""

from __future__ import annotations

import pytest

from scheduler.dispatcher import BULK_KINDS
from study import alerts, outbox, participants
from study.models import URGENCY, OutboxKind, Urgency
from tests.test_outbox_claims import dispatcher_on, reminder_wave
from tests.trial import Trial

pytestmark = pytest.mark.timeout(120)


def test_every_kind_has_an_urgency_and_bulk_pacing_follows_it() -> None:
    assert set(URGENCY) == set(OutboxKind)
    assert URGENCY[OutboxKind.ALERT] == min(Urgency)
    assert URGENCY[OutboxKind.BROADCAST] == max(Urgency)
    assert {kind for kind, urgency in URGENCY.items() if urgency >= Urgency.SCHEDULED} == BULK_KINDS
    assert OutboxKind.ALERT not in BULK_KINDS and OutboxKind.REPLY not in BULK_KINDS


async def test_a_safety_alert_goes_ahead_of_reminders_queued_before_it(trial: Trial) -> None:
    coordinator = await trial.add_staff(9001, "Dana")
    users = await reminder_wave(trial, 6)  # six reminders due, queued first
    async with trial.db.transaction() as session:
        participant = await participants.by_study_id(session, "P000")
        await alerts.raise_alert(session, participant, source="message", triggers=[{"red_flag": "fever"}],
                                 now=trial.clock.now())
        order = await outbox.due(session, now=trial.clock.now())
        kinds = {row.id: row.kind for row in await outbox.for_participant(session, participant.id)}
    assert len(order) == 7
    assert order[0] not in kinds, "the alert (to staff) is first in line, before the participants' reminders"

    deliverer = dispatcher_on(trial, trial.db)
    deliverer.in_flight = 1  # one send at a time: the order of sends is the order of claims
    assert await deliverer.deliver_due() == 7
    sends = [call.params["chat_id"] for call in trial.world.calls
             if call.method == "sendMessage" and call.status == 200
             and int(call.params["chat_id"]) in {coordinator.user_id, *(u.user_id for u in users)}]
    assert int(sends[-7]) == coordinator.user_id, "the alert went first, before the six reminders"
    assert sorted(int(chat) for chat in sends[-6:]) == sorted(u.user_id for u in users)
