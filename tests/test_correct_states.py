"""Correct states everywhere (issue 16, item 2): what the study team is told matches what the bot
does. A reply to a participant who paused or left is refused and says why; an acknowledged
alert's other copies stop asking to be acknowledged; the digest and the adherence figures count
only days on which the participant was active; an invited participant is "invited, not joined"."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from study import participants
from study.models import Alert, OutboxMessage, ParticipantMessage
from tests.redelivery import HandledUpdates, deliver_again, last_update_id
from tests.test_broadcasts import press, say
from tests.test_oversight import log_now, photo_after
from tests.trial import COORDINATOR, Trial

pytestmark = pytest.mark.timeout(120)


async def rows(trial: Trial, model) -> list:
    async with trial.db.transaction() as session:
        return list((await session.scalars(select(model).order_by(model.id))).all())


async def end(trial: Trial, study_id: str, status: str) -> None:
    async with trial.db.transaction() as session:
        person = await participants.by_study_id(session, study_id)
        await participants.end_participation(session, person, status, reason="test", actor=COORDINATOR,
                                             now=trial.clock.now())


# --- /reply to someone the bot does not write to ------------------------------------------------

async def test_a_reply_to_a_paused_or_ended_participant_is_refused_and_says_why(trial: Trial) -> None:
    coordinator = await trial.add_staff(5005, name="Dana")
    paused = await trial.join("P001", user_id=2001)
    await trial.join("P002", user_id=2002)
    await trial.join("P003", user_id=2003)
    await trial.enroll("P004")  # invited, never joined
    await say(paused, "/stop")
    await coordinator.wait_for(lambda c: "paused messages (/stop)" in (c.last_bot_message.text or ""))
    await end(trial, "P002", "withdrawn")
    await end(trial, "P003", "completed")

    await say(coordinator, "/reply P001 Your visit is at 10.")
    told = coordinator.last_bot_message.text
    assert "Not sent" in told and "P001 has paused messages" in told and "Sent to" not in told
    await say(coordinator, "/reply P002 Your visit is at 10.")
    assert "P002 has withdrawn from the study" in coordinator.last_bot_message.text
    await say(coordinator, "/reply P003 Your visit is at 10.")
    assert "P003 has completed the study" in coordinator.last_bot_message.text
    await say(coordinator, "/reply P004 Your visit is at 10.")
    assert "P004 was invited but has not joined the bot" in coordinator.last_bot_message.text
    await say(coordinator, "/reply P404 Your visit is at 10.")
    assert "no active participant P404" in coordinator.last_bot_message.text

    assert [r for r in await rows(trial, OutboxMessage) if r.kind == "reply"] == [], "nothing queued to skip"
    assert [m for m in await rows(trial, ParticipantMessage) if m.direction == "out"] == [], "nothing recorded as sent"


# --- an acknowledged alert, seen by the rest of the team ---------------------------------------

def alerts_in(chat) -> list:
    return [m for m in chat.bot_messages if "Safety alert" in (m.text or "")]


async def test_acknowledging_an_alert_edits_every_other_copy_once(trial: Trial, handled: HandledUpdates) -> None:
    coordinator = await trial.add_staff(5005, name="Dana", role="coordinator")
    investigator = await trial.add_staff(6006, name="Dr Gray", role="investigator")
    user = await trial.join()
    await say(user, "/urgent")
    await press(user, "Fever or chills")
    await coordinator.wait_for(lambda c: len(alerts_in(c)) == 1)
    await investigator.wait_for(lambda c: len(alerts_in(c)) == 1)
    await trial.advance(minutes=30)  # a re-send: a second copy each
    mine, pressed = [m.message_id for m in alerts_in(coordinator)]
    theirs = [m.message_id for m in alerts_in(investigator)]
    assert len(theirs) == 2
    trial.clock.advance(timedelta(minutes=4))  # 10:34

    await press(coordinator, "✅ Acknowledge")
    assert "Acknowledged" in coordinator.message(pressed).text
    ack_update = last_update_id(trial)
    await trial.deliver()
    copies = [investigator.message(i) for i in theirs] + [coordinator.message(mine)]
    for shown in copies:
        assert shown.button_labels == [], f"no live Acknowledge button: {shown.describe()}"
        assert "Acknowledged by Dana on" in shown.text and "10:34" in shown.text, shown.text
        assert "tap Acknowledge" not in shown.text
        assert "fever or chills" in shown.text.lower(), "what was reported stays readable"
        assert len(shown.edits) == 1
    assert len(coordinator.message(pressed).edits) == 1, "the pressed copy says what the press did, once"

    # Exactly once: the press delivered again, more ticks, another press: nothing is edited again.
    await deliver_again(trial, handled, ack_update)
    await trial.advance(minutes=30)
    await trial.deliver()
    assert [len(investigator.message(i).edits) for i in theirs] == [1, 1]
    assert len(coordinator.message(mine).edits) == 1
    before = len(investigator.callback_answers)
    await investigator.press_forged(theirs[0], f"a:{(await rows(trial, Alert))[0].id}")
    await investigator.wait_for(lambda c: len(c.callback_answers) > before)
    assert "Already acknowledged" in investigator.message(theirs[0]).text
    closing = [r for r in await rows(trial, OutboxMessage) if r.kind == "alert_closed"]
    assert sorted(r.status for r in closing) == ["sent", "sent", "sent"]


async def test_a_copy_in_flight_when_the_alert_is_acknowledged_is_edited_once_sent(trial: Trial) -> None:
    coordinator = await trial.add_staff(5005, name="Dana", role="coordinator")
    investigator = await trial.add_staff(6006, name="Dr Gray", role="investigator")
    user = await trial.join()
    await say(user, "/urgent")
    await press(user, "Fever or chills")
    await coordinator.wait_for(lambda c: len(alerts_in(c)) == 1)
    await investigator.wait_for(lambda c: len(alerts_in(c)) == 1)
    first = alerts_in(coordinator)[0].message_id
    trial.clock.advance(timedelta(minutes=30))
    await trial.plan()  # the re-sends are queued
    trial.world.latency_seconds = 1.0  # each send takes a second: the press comes while one is on its way
    delivering = asyncio.get_running_loop().create_task(trial.deliver())

    async def sending_to_investigator() -> bool:
        async with trial.db.read() as session:
            return await session.scalar(select(OutboxMessage.status).where(
                OutboxMessage.dedup_key.like("alert:%:r1:staff2"))) == "sending"

    while not await sending_to_investigator():
        await asyncio.sleep(0.01)
    before = len(coordinator.callback_answers)
    # On the first copy, while the investigator's re-send is on its way.
    await coordinator.press("✅ Acknowledge", message_id=first)
    await coordinator.wait_for(lambda c: len(c.callback_answers) > before)
    await delivering
    trial.world.latency_seconds = 0
    await trial.deliver()
    assert "Acknowledged" in coordinator.message(first).text
    assert len(alerts_in(investigator)) == 2, investigator.dump()
    for shown in alerts_in(investigator) + alerts_in(coordinator):
        assert shown.button_labels == [] and "Acknowledged by Dana" in shown.text, shown.describe()


# --- the digest and /adherence: only days the participant was active ----------------------------

async def test_the_digest_leaves_out_a_participant_who_joined_today(trial: Trial) -> None:
    coordinator = await trial.add_staff(5005)
    await trial.join("P001", user_id=2001)  # Tuesday 10:00
    trial.clock.set(datetime(2026, 11, 25, 11, 0, tzinfo=UTC))  # Wednesday 06:00 New York
    await trial.join("P002", user_id=2002)
    trial.clock.set(datetime(2026, 11, 25, 12, 30, tzinfo=UTC))  # 07:30: Tuesday's digest
    await trial.tick()
    [digest] = [m for m in coordinator.bot_messages if "Daily summary" in (m.text or "")]
    assert "P001" in digest.text and "P002" not in digest.text, digest.text
    assert "of 1 participants" in digest.text


async def test_the_digest_leaves_out_a_day_spent_paused(trial: Trial) -> None:
    coordinator = await trial.add_staff(5005)
    await trial.join("P001", user_id=2001)
    paused = await trial.join("P002", user_id=2002)
    await say(paused, "/stop")  # Tuesday 10:00, paused all of Wednesday
    trial.clock.set(datetime(2026, 11, 26, 12, 30, tzinfo=UTC))  # Thursday 07:30: Wednesday's digest
    await trial.tick()
    [digest] = [m for m in coordinator.bot_messages
                if "Daily summary" in (m.text or "") and "November 25" in m.text]
    assert "P001" in digest.text and "P002" not in digest.text, digest.text


async def test_adherence_counts_only_days_the_participant_was_active(trial: Trial) -> None:
    user = await trial.join("P001", user_id=2001)  # Tuesday 10:00
    await say(user, "/log")
    await log_now(user)
    await say(user, "/stop")  # paused from Tuesday on: Wednesday to Friday are not study days counted
    staff = await trial.add_staff(5005, name="Mo", role="monitor")  # after: no notices to wait for
    trial.clock.advance(timedelta(days=3))
    theirs = await photo_after(staff, "/adherence P001")
    assert "50% (7 days)" in theirs.caption, theirs.caption  # 1 of the 2 of Tuesday, not 1 of 8
    await say(staff, "/participants")
    assert "P001 paused: 50% / 50%" in staff.last_bot_message.text


async def test_adherence_stops_counting_when_participation_ends(trial: Trial) -> None:
    user = await trial.join("P001", user_id=2001)
    await say(user, "/log")
    await log_now(user)
    await end(trial, "P001", "completed")
    staff = await trial.add_staff(5005, name="Mo", role="monitor")
    trial.clock.advance(timedelta(days=5))
    await say(staff, "/participants")
    assert "P001 completed: 50% / 50%" in staff.last_bot_message.text


# --- /participants: invited is not "not reachable" ---------------------------------------------

async def test_an_invited_participant_is_invited_not_joined_not_unreachable(trial: Trial) -> None:
    await trial.join("P001", user_id=2001)
    await trial.enroll("P002")
    staff = await trial.add_staff(5005, name="Mo", role="monitor")
    await say(staff, "/participants")
    text = staff.last_bot_message.text
    line = next(line for line in text.splitlines() if "P002" in line)
    assert "invited, not joined" in line and "not reachable" not in line, line
    assert "not reachable" not in next(line for line in text.splitlines() if "P001" in line)
