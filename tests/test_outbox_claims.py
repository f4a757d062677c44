"""Claiming the outbox: two deliverers over the same rows (two processes at a change of scheduler
leader) send each message once; a deliverer whose leader lock is gone claims nothing.

Each `Database` stands for one process: its own pool, its own connections."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import literal, select

from scheduler.dispatcher import OutboxDispatcher
from study import outbox
from study.database import Database
from study.models import DeliveryEvent, OutboxMessage
from tests.trial import Trial

pytestmark = pytest.mark.timeout(120)


def second_process(trial: Trial) -> Database:
    if trial.db.is_sqlite:
        return Database(str(trial.db.url))
    return Database(str(trial.db.url.render_as_string(hide_password=False)), schema=trial.db.schema)


def dispatcher_on(trial: Trial, db: Database) -> OutboxDispatcher:
    svc = trial.app.runtime.services
    return OutboxDispatcher(trial.app.bot, db, svc.messages, svc.clock, svc.protocol, svc.study_variables())


async def reminder_wave(trial: Trial, people: int) -> list:
    users = [await trial.join(f"P{n:03d}", user_id=2000 + n) for n in range(people)]
    trial.clock.advance(timedelta(hours=10))  # 20:00 in New York: everyone's evening reminder
    await trial.plan()
    return users


async def rows(trial: Trial, model) -> list:
    async with trial.db.transaction() as session:
        return list((await session.scalars(select(model).order_by(model.id))).all())


async def test_two_deliverers_racing_over_the_same_rows_send_each_message_once(trial: Trial) -> None:
    users = await reminder_wave(trial, 10)
    other = second_process(trial)
    try:
        mine, theirs = dispatcher_on(trial, trial.db), dispatcher_on(trial, other)
        # Two under way each (ten by default, and the first to look would claim all ten at once).
        mine.in_flight = theirs.in_flight = 2
        handled = await asyncio.gather(mine.deliver_due(), theirs.deliver_due())
    finally:
        await other.dispose()
    reminders = [r for r in await rows(trial, OutboxMessage) if r.kind == "reminder"]
    assert len(reminders) == 10 and {r.status for r in reminders} == {"sent"}
    assert sum(handled) == 10, "each row handled by exactly one of them"
    if not trial.db.is_sqlite:  # (on SQLite one writer at a time: the first may well take all)
        assert min(handled) > 0, f"both deliverers took part: {handled}"
    sent_events = Counter(e.outbox_id for e in await rows(trial, DeliveryEvent) if e.event == "sent")
    assert set(sent_events.values()) == {1}
    for user in users:
        assert len([m for m in user.bot_messages if "Time for your study cream" in (m.text or "")]) == 1
    sends = Counter(c.params["chat_id"] for c in trial.world.calls if c.method == "sendMessage" and c.status == 200
                    and "Time for your study cream" in c.params.get("text", ""))
    assert sorted(sends.values()) == [1] * 10


async def test_a_deliverer_whose_leader_lock_is_gone_claims_nothing(trial: Trial) -> None:
    if trial.db.is_sqlite:
        pytest.skip("on SQLite there is one process and no leader lock to lose")
    await reminder_wave(trial, 2)
    leadership = trial.app.runtime.scheduler.leadership
    assert leadership.is_leader
    fence = leadership.fence()  # what this term's dispatcher claims under
    leadership._connection.terminate()  # the lock connection is cut (the process may lead again later)
    await asyncio.wait_for(_until_released(trial.db, fence), 10)
    # Something is left to claim (the app's own dispatcher may have taken one before the cut, and
    # the process may lead again under a new fence and deliver the rest: that is its next term).
    assert any(r.status == "pending" for r in await rows(trial, OutboxMessage) if r.kind == "reminder")
    # Under the old term's fence nothing can be claimed: this deliverer handles nothing.
    assert await dispatcher_on(trial, trial.db).deliver_due(fence=fence) == 0


async def _until_released(db: Database, fence) -> None:
    while True:
        async with db.transaction() as session:
            if not await session.scalar(select(literal(True)).where(fence)):
                return
        await asyncio.sleep(0.05)


async def test_a_claim_passes_over_a_row_another_deliverer_is_claiming_instead_of_waiting(trial: Trial) -> None:
    if trial.db.is_sqlite:
        pytest.skip("SQLite has one writer at a time (BEGIN IMMEDIATE): there is nothing to pass over")
    await reminder_wave(trial, 2)
    other = second_process(trial)
    try:
        async with trial.db.transaction() as first:
            first_id, second_id = await outbox.due(first, now=trial.clock.now())
            assert await outbox.claim(first, first_id) is not None  # claimed, not yet committed
            async with other.transaction() as second:
                # Without SKIP LOCKED this would wait for `first` to commit, which never comes here.
                assert await asyncio.wait_for(outbox.claim(second, first_id), 5) is None
                taken = await asyncio.wait_for(outbox.claim(second, second_id), 5)
                assert taken is not None and taken.status == "sending"
        async with trial.db.transaction() as session:
            assert await outbox.claim(session, first_id) is None, "claimed once, by `first`"
            assert await outbox.due(session, now=trial.clock.now()) == []
    finally:
        await other.dispose()
