"""The tick's bookkeeping under concurrency: what a participant changes while a batch is being
planned is not overwritten by that batch."""

from __future__ import annotations

from sqlalchemy import select

from scheduler.tick import Tick, TickReport
from study import participants
from study.audit import Actor
from study.models import Participant
from tests.trial import Trial


async def _next_plan_at(trial: Trial, study_id: str):
    async with trial.db.read() as session:
        return await session.scalar(select(Participant.next_plan_at).where(Participant.study_id == study_id))


async def test_a_zone_change_made_while_a_batch_is_planned_keeps_its_fresh_look(trial: Trial) -> None:
    await trial.join("P001", user_id=1001)
    await trial.join("P002", user_id=1002)
    await trial.plan()  # both looked at: their next look is set
    await trial.advance(hours=12)
    tick = Tick(trial.db, trial.protocol, trial.clock)
    async with trial.db.read() as session:
        ids = list((await session.scalars(select(Participant.id).order_by(Participant.id))).all())
    batch = await tick._read_and_plan(ids, trial.clock.now())
    # Meanwhile P001 moves to London: the planner must look at them afresh (next_plan_at None).
    async with trial.db.transaction() as session:
        p001 = await participants.by_study_id(session, "P001")
        await participants.move_to_zone(session, p001, "Europe/London", actor=Actor.cli("test"),
                                        now=trial.clock.now())
    await tick._write(batch, trial.clock.now(), TickReport())
    assert await _next_plan_at(trial, "P001") is None  # the change stands
    assert await _next_plan_at(trial, "P002") is not None  # the batch's look was written
