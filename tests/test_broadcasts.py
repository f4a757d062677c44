"""Broadcasts end to end: preview, confirmation, progress in one edited message, blocked
recipients, a restart mid-broadcast, and the record of every broadcast."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import select

from study.models import AuditEntry, Broadcast, OutboxMessage
from tests.trial import Trial
from tests.waiting import until

pytestmark = pytest.mark.timeout(120)


async def rows(trial: Trial, model) -> list:
    async with trial.db.transaction() as session:
        return list((await session.scalars(select(model).order_by(model.id if hasattr(model, "id") else model.seq)))
                    .all())


async def say(user, text: str, count: int = 1) -> None:
    before = len(user.bot_messages)
    await user.send_text(text)
    await user.wait_for(lambda u: len(u.bot_messages) >= before + count)


async def press(user, label: str) -> None:
    before = len(user.callback_answers)
    await user.press(label)
    await user.wait_for(lambda u: len(u.callback_answers) > before)


async def participants(trial: Trial, n: int, *, spanish: tuple[int, ...] = ()) -> list:
    return [await trial.join(f"P{i:03d}", user_id=2000 + i, language="es" if i in spanish else "en")
            for i in range(1, n + 1)]


def notices(user) -> list:
    return [m for m in user.bot_messages if "📣" in (m.text or "")]


async def test_preview_shows_each_language_exactly_as_participants_get_it(trial: Trial) -> None:
    people = await participants(trial, 3, spanish=(2,))
    coordinator = await trial.add_staff(5005, name="Dana")
    # preview header + notice per language (2 languages) + the confirmation
    await say(coordinator, "/broadcast notice all Clinic opens at 9 on Monday.", count=5)
    texts = [m.text for m in coordinator.bot_messages[-5:]]
    assert "2 participant(s) reading English" in texts[0]
    assert texts[1].startswith("📣 A notice from your study team:") and "Clinic opens at 9 on Monday." in texts[1]
    assert "1 participant(s) reading Spanish" in texts[2]
    assert texts[3].startswith("📣 Un aviso de su equipo del estudio:")
    assert "Broadcast #1" in texts[4] and coordinator.last_bot_message.button_labels == ["✅ Confirm", "✖️ Cancel"]
    assert all(notices(p) == [] for p in people), "nothing is sent before confirmation"
    await press(coordinator, "✅ Confirm")
    await trial.deliver()
    for person, lang_text in zip(people, (texts[1], texts[3], texts[1]), strict=True):
        [got] = notices(person)
        assert got.text == lang_text, "participants get exactly the preview"
    status = coordinator.last_bot_message
    await coordinator.wait_for(lambda c: "Finished: 3 sent, 0 failed, 0 blocked the bot, of 3" in c.last_bot_message.text)
    assert coordinator.last_bot_message.message_id == status.message_id, "one status message, edited in place"
    [row] = await rows(trial, Broadcast)
    assert (row.status, row.recipients, row.text, row.audience) == ("done", ["P001", "P002", "P003"],
                                                                     "Clinic opens at 9 on Monday.", "all")
    assert set(row.template_hashes) == {"en", "es"}
    audit = [e for e in await rows(trial, AuditEntry) if e.entity == "broadcast"]
    assert [e.new_values["status"] for e in audit] == ["draft", "sending", "done"]
    assert audit[1].new_values["recipients"] == ["P001", "P002", "P003"]


async def test_audiences_wocbp_one_participant_and_cancel(trial: Trial) -> None:
    await trial.join("P001", user_id=2001, wocbp=True)
    second = await trial.join("P002", user_id=2002)
    coordinator = await trial.add_staff(5005, name="Dana")
    await say(coordinator, "/broadcast closure wocbp", count=3)
    assert "participants who can become pregnant (1 now)" in coordinator.last_bot_message.text
    await press(coordinator, "✖️ Cancel")
    assert "Cancelled" in coordinator.last_bot_message.text
    await say(coordinator, "/broadcast closure P002", count=3)
    await press(coordinator, "✅ Confirm")
    await trial.deliver()
    [got] = notices(second)
    assert "The study clinic is closed" in got.text
    [cancelled, sent] = await rows(trial, Broadcast)
    assert (cancelled.status, sent.status, sent.recipients) == ("cancelled", "done", ["P002"])
    await say(coordinator, "/broadcast notice P009 hello")
    assert "No active participant is in that audience" in coordinator.last_bot_message.text
    await say(coordinator, "/broadcast notice all")
    assert "needs your text" in coordinator.last_bot_message.text


async def test_the_notices_go_out_while_telegram_is_still_taking_the_confirm_buttons_answer(
        trial: Trial, caplog: pytest.LogCaptureFixture) -> None:
    """The dispatcher is woken as soon as the notices are queued, not once the answer to the press
    of Confirm is over: Telegram holding that answer (until the bot gives up on it, its read
    timeout) holds up no notice."""
    people = await participants(trial, 3)
    coordinator = await trial.add_staff(5005, name="Dana")
    await say(coordinator, "/broadcast closure all", count=3)
    trial.world.faults.fail_next("answerCallbackQuery", mode="timeout")  # held until released
    caplog.set_level(logging.INFO, logger="bot.replies")
    await coordinator.press("✅ Confirm")
    await until(lambda: all(notices(p) for p in people))
    gave_up = [r for r in caplog.records if "callback query not answered" in r.getMessage()]
    assert gave_up == [], "the notices went out while the answer was still under way, not after the bot gave up on it"
    trial.world.faults.released.set()  # the answer is lost on the way: the press is done all the same
    await coordinator.wait_for(lambda c: "Finished: 3 sent" in c.last_bot_message.text)
    assert all(len(notices(p)) == 1 for p in people) and coordinator.callback_answers == []


@pytest.mark.rejections_expected  # the blocked participant's 403
async def test_blocked_recipients_are_counted_and_progress_is_throttled(trial: Trial) -> None:
    people = await participants(trial, 4)
    coordinator = await trial.add_staff(5005, name="Dana")
    people[1].block_bot()
    await say(coordinator, "/broadcast closure all", count=3)
    dispatcher = trial.app.runtime.scheduler.dispatcher
    progress = trial.app.runtime.scheduler.broadcast_progress
    hook, dispatcher.after_batch = dispatcher.after_batch, None  # deliver by hand, one by one
    original = dispatcher.deliver_due

    async def nothing(**_: object) -> int:  # (as the dispatcher's loop calls it, woken by the Confirm)
        return 0

    dispatcher.deliver_due = nothing
    await press(coordinator, "✅ Confirm")
    status_id = coordinator.last_bot_message.message_id
    async with trial.db.transaction() as session:
        queued = list((await session.scalars(select(OutboxMessage.id).where(
            OutboxMessage.kind == "broadcast").order_by(OutboxMessage.id))).all())
    await dispatcher._deliver(queued[0])
    assert await progress.run_once() == 1
    await dispatcher._deliver(queued[1])
    assert await progress.run_once() == 0, "no second edit within a few seconds"
    trial.clock.advance(__import__("datetime").timedelta(seconds=6))
    assert await progress.run_once() == 1
    dispatcher.after_batch, dispatcher.deliver_due = hook, original
    await trial.deliver()
    message = coordinator.message(status_id)
    assert message.text.endswith("Finished: 3 sent, 0 failed, 1 blocked the bot, of 4.")
    assert [e.text for e in message.edits][-1].startswith("📣 Broadcast #1\nSending: 1 sent")
    assert (await trial.participant("P002")).unreachable_since is not None


async def test_restart_mid_broadcast_sends_to_everyone_exactly_once(trial: Trial) -> None:
    people = await participants(trial, 5)
    coordinator = await trial.add_staff(5005, name="Dana")
    await say(coordinator, "/broadcast notice all Supplies are in.", count=3)
    dispatcher = trial.app.runtime.scheduler.dispatcher
    original = dispatcher.deliver_due

    async def nothing(**_: object) -> int:  # (as the dispatcher's loop calls it, woken by the Confirm)
        return 0

    dispatcher.deliver_due = nothing  # the bot stops before its dispatcher delivers everything
    await press(coordinator, "✅ Confirm")
    async with trial.db.transaction() as session:
        queued = list((await session.scalars(select(OutboxMessage).where(
            OutboxMessage.kind == "broadcast").order_by(OutboxMessage.id))).all())
        assert len(queued) == 5
    await dispatcher._deliver(queued[0].id)
    await dispatcher._deliver(queued[1].id)
    async with trial.db.transaction() as session:  # one was being sent when the process died
        (await session.get(OutboxMessage, queued[2].id)).status = "sending"
    dispatcher.deliver_due = original
    await trial.restart()  # the new process puts the message in flight back in the queue first
    await trial.deliver()
    assert [len(notices(p)) for p in people] == [1, 1, 1, 1, 1]
    [row] = await rows(trial, Broadcast)
    assert row.status == "done"
    await coordinator.wait_for(lambda c: "Finished: 5 sent" in (c.message(row.status_message_id).text or ""))


async def test_audience_with_a_visit_in_the_next_days(trial: Trial) -> None:
    from datetime import date

    from study import participants as people_of
    from study import visits
    from tests.trial import COORDINATOR

    people = await participants(trial, 3)
    async with trial.db.transaction() as session:
        for study_id, baseline in (("P001", date(2026, 11, 26)), ("P002", date(2026, 12, 20))):
            person = await people_of.by_study_id(session, study_id)
            await visits.plan_schedule(session, trial.protocol, person, baseline=baseline, actor=COORDINATOR,
                                       now=trial.clock.now())
    coordinator = await trial.add_staff(5005, name="Dana")
    await say(coordinator, "/broadcast closure visits:7", count=3)
    assert "participants with a visit in the next 7 days (1 now)" in coordinator.last_bot_message.text
    await press(coordinator, "✅ Confirm")
    await trial.deliver()
    assert [len(notices(p)) for p in people] == [1, 0, 0]


async def test_a_broadcast_can_be_picked_with_buttons_from_a_phone(trial: Trial) -> None:
    people = await participants(trial, 2)
    coordinator = await trial.add_staff(5005, name="Dana")
    await say(coordinator, "/broadcast")
    assert coordinator.last_bot_message.button_labels == ["💬 Notice from the study team (your own short text)",
                                                          "🏥 Clinic closure notice"]
    await press(coordinator, "🏥 Clinic closure notice")
    assert coordinator.last_bot_message.button_labels == [
        "Everyone active", "Women who take pregnancy tests", "Everyone with a visit in the next 7 days"]
    before = len(coordinator.bot_messages)
    await press(coordinator, "Everyone active")
    await coordinator.wait_for(lambda c: c.last_bot_message.button_labels == ["✅ Confirm", "✖️ Cancel"])
    assert len(coordinator.bot_messages) == before + 3  # preview header, the notice itself, the confirmation
    await press(coordinator, "✅ Confirm")
    await trial.deliver()
    assert all(len(notices(p)) == 1 for p in people)

    await say(coordinator, "/broadcast")
    await press(coordinator, "💬 Notice from the study team (your own short text)")
    await press(coordinator, "Everyone with a visit in the next 7 days")
    assert "/broadcast notice visits:7 your text" in coordinator.last_bot_message.text
