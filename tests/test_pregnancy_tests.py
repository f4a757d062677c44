"""Pregnancy-test reminders end to end, for women of childbearing potential only.

Participants consent on Tuesday 24 November 2026 at 10:00 in New York; with every_days = 28
the first test is due on Tuesday 22 December, reminded at 09:00 local (14:00 UTC) and again every
2 days until a result is recorded.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import DBAPIError

from study import audit, pregnancy_tests
from study.audit import Actor
from study.models import OutboxMessage, Participant, PregnancyTest
from tests.trial import Trial

pytestmark = pytest.mark.timeout(120)
NEGATIVE, POSITIVE, NOT_YET = "✅ Done — negative", "⚠️ Done — positive", "🕒 Not yet"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_reminders(user) -> list:
    # The reminder's own words: the consent text mentions pregnancy tests too.
    return [m for m in user.bot_messages
            if "time for your monthly pregnancy test" in (m.edits[0].text if m.edits else m.text or "")]


test_reminders.__test__ = False  # a helper, not a test


async def at(trial: Trial, moment: datetime) -> None:
    trial.clock.set(moment)
    await trial.tick()


async def recorded(trial: Trial, study_id: str = "P001") -> list[PregnancyTest]:
    person = await trial.participant(study_id)
    async with trial.db.transaction() as session:
        return list((await session.scalars(select(PregnancyTest).where(PregnancyTest.participant_id == person.id)
                                           .order_by(PregnancyTest.id))).all())


async def answer(user, label: str, message_id: int, expect: str) -> None:
    await user.press(label, message_id=message_id)
    await user.wait_for(lambda u: expect in (u.message(message_id).text or ""))


async def test_only_wocbp_participants_are_reminded_at_local_time_and_once(trial: Trial) -> None:
    woman = await trial.join("P001", user_id=1001, wocbp=True)
    other = await trial.join("P002", user_id=1002, wocbp=False)
    await at(trial, utc(2026, 12, 22, 13, 59))
    assert test_reminders(woman) == []
    await at(trial, utc(2026, 12, 22, 14, 0))
    await trial.tick()
    await trial.tick()
    [reminder] = test_reminders(woman)
    assert reminder.date == utc(2026, 12, 22, 14, 0) and "at home" in reminder.text
    assert reminder.button_labels == [NEGATIVE, POSITIVE, NOT_YET]
    for moment in (utc(2026, 12, 24, 14, 0), utc(2027, 1, 19, 14, 0), utc(2027, 2, 16, 14, 0)):
        await at(trial, moment)
    assert test_reminders(other) == []


async def test_the_reminder_repeats_every_2_days_until_answered_and_not_yet_does_not_stop_it(trial: Trial) -> None:
    user = await trial.join(wocbp=True)
    await at(trial, utc(2026, 12, 22, 14, 0))
    [first] = test_reminders(user)
    await answer(user, NOT_YET, first.message_id, "remind you again in 2 days")
    await at(trial, utc(2026, 12, 23, 14, 0))
    assert len(test_reminders(user)) == 1
    await at(trial, utc(2026, 12, 24, 14, 0))
    second = test_reminders(user)[-1]
    assert len(test_reminders(user)) == 2 and "gentle reminder" in second.text
    await at(trial, utc(2026, 12, 26, 14, 0))  # no answer to the second: a third
    assert len(test_reminders(user)) == 3
    assert [(t.result, t.source, t.recorded_by) for t in await recorded(trial)] == [
        ("not_yet", "reminder", "participant:P001")]


async def test_a_negative_result_resets_the_cycle(trial: Trial) -> None:
    user = await trial.join(wocbp=True)
    await at(trial, utc(2026, 12, 22, 14, 0))
    [first] = test_reminders(user)
    await answer(user, NEGATIVE, first.message_id, "We saved your result")
    assert "Tuesday, January 19" in user.message(first.message_id).text
    for moment in (utc(2026, 12, 24, 14, 0), utc(2026, 12, 26, 14, 0), utc(2027, 1, 19, 13, 59)):
        await at(trial, moment)
    assert len(test_reminders(user)) == 1
    await at(trial, utc(2027, 1, 19, 14, 0))
    assert len(test_reminders(user)) == 2
    [entry] = await recorded(trial)
    async with trial.db.transaction() as session:
        [created] = await audit.entries(session, entity="pregnancy_test", entity_ids=[str(entry.id)])
    assert (entry.result, entry.local_date.isoformat()) == ("negative", "2026-12-22")
    assert created.new_values == {"result": "negative", "local_date": "2026-12-22", "source": "reminder"}


@pytest.mark.rejections_expected  # the second tap's identical edit is refused ("message is not modified")
async def test_a_positive_result_is_recorded_once_gives_the_stop_message_and_tells_staff(trial: Trial) -> None:
    coordinator = await trial.add_staff(5005, name="Dana")
    user = await trial.join(wocbp=True)
    await at(trial, utc(2026, 12, 22, 14, 0))
    [reminder] = test_reminders(user)
    await user.press(POSITIVE, message_id=reminder.message_id)
    await user.press(POSITIVE, message_id=reminder.message_id)  # a double tap
    await user.wait_for(lambda u: len(u.callback_answers) == 2)
    reply = user.message(reminder.message_id).text
    assert "stop applying the study cream" in reply and "call the study team today" in reply
    assert "216 445-8776" in reply
    assert [t.result for t in await recorded(trial)] == ["positive"]
    await coordinator.wait_for(lambda c: any("positive pregnancy test" in (m.text or "").lower() for m in c.bot_messages))
    await trial.deliver()
    [notice] = [m for m in coordinator.bot_messages if "positive pregnancy test" in (m.text or "").lower()]
    assert notice.button_labels == ["✅ Acknowledge"], "a safety alert, re-sent until acknowledged"
    assert "P001" in notice.text and "Pat" not in notice.text


async def test_forged_answers_naming_another_participant_or_a_test_not_due_change_nothing(trial: Trial) -> None:
    victim = await trial.join("P001", user_id=1001, wocbp=True)
    forger = await trial.join("P002", user_id=1002, wocbp=True)
    await at(trial, utc(2026, 12, 22, 14, 0))
    victim_id = (await trial.participant("P001")).id
    forger_id = (await trial.participant("P002")).id
    mine = test_reminders(forger)[-1]
    async with trial.db.transaction() as session:
        before = await audit.count(session)
    for data in (f"p:p:{victim_id}:20261222:0",  # someone else's test
                 f"p:n:{forger_id}:20270119:0",  # not due yet
                 f"p:n:{forger_id}:20261222:9",  # a repeat that was never sent
                 "p:x:1:20261222:0"):  # not even well formed
        await forger.press_forged(mine.message_id, data)
        await forger.wait_for(lambda u: "no longer active" in (u.message(mine.message_id).text or ""))
    assert await recorded(trial, "P001") == [] and await recorded(trial, "P002") == []
    async with trial.db.transaction() as session:
        assert await audit.count(session) == before
    assert len(test_reminders(victim)) == 1


async def test_a_reminder_answered_before_delivery_is_not_sent_and_the_table_is_append_only(trial: Trial) -> None:
    user = await trial.join(wocbp=True)
    await at(trial, utc(2026, 12, 22, 14, 0))
    [first] = test_reminders(user)
    await answer(user, NOT_YET, first.message_id, "remind you again")
    trial.clock.set(utc(2026, 12, 24, 14, 0))
    await trial.plan()  # the repeat is queued, not yet delivered
    async with trial.db.transaction() as session:  # the result reaches the study team another way
        person = await session.get(Participant, first_id := (await trial.participant()).id)
        await pregnancy_tests.record(session, person, "negative", key=None, source="staff",
                                     actor=Actor.staff(1), now=trial.clock.now())
    await trial.deliver()
    assert len(test_reminders(user)) == 1
    async with trial.db.transaction() as session:
        [row] = (await session.scalars(select(OutboxMessage).where(
            OutboxMessage.participant_id == first_id, OutboxMessage.kind == "pregnancy_reminder",
            OutboxMessage.status == "skipped"))).all()
        assert row.last_error == "a test result was recorded before the reminder went out"
        with pytest.raises(DBAPIError):
            async with session.begin_nested():
                await session.execute(update(PregnancyTest).values(result="positive"))
        with pytest.raises(DBAPIError):
            async with session.begin_nested():
                await session.execute(text("DELETE FROM pregnancy_tests"))
    assert [t.result for t in await recorded(trial)] == ["not_yet", "negative"]
