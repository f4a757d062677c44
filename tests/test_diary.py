"""The application diary over real HTTP: every path a participant can take, and every way to
get it wrong (late, too old, in the future, forged, double taps), with the record checked."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from tests.trial import Trial

NY = ZoneInfo("America/New_York")
APPLIED_NOW = "✅ I put it on now"
APPLIED_EARLIER = "🕒 I put it on earlier"
MISSED = "✖️ I missed a dose"
pytestmark = pytest.mark.timeout(60)


def t(clock_time: str) -> str:
    """A time as Babel writes it for English: with a narrow no-break space before AM/PM."""
    return clock_time.replace(" ", "\u202f")


async def test_applied_now_is_saved_with_its_times_and_audit(trial: Trial) -> None:
    user = await trial.join()
    trial.clock.advance(timedelta(minutes=3))
    await user.press(APPLIED_NOW)
    saved = await user.next_bot_event()
    assert "Saved" in saved.text and "10:03" in saved.text  # participant-local time, New York
    [entry] = await trial.diary()
    assert entry.kind == "applied"
    assert entry.occurred_at == entry.recorded_at == trial.clock.now()
    assert entry.timezone == "America/New_York" and entry.local_date.isoformat() == "2026-11-24"
    assert entry.source == "button" and entry.late is False and entry.recorded_by == "participant:P001"

    from study import audit
    async with trial.db.transaction() as session:
        trail = await audit.entries(session, entity="diary_entry", entity_ids=[str(entry.id)])
    assert [(e.action, e.actor, e.timezone) for e in trail] == [("create", "participant:P001", "America/New_York")]


# Two taps in flight carry the same old message; the second identical edit is refused by
# Telegram ("message is not modified") and the bot shrugs it off, as it must in production.
@pytest.mark.rejections_expected
async def test_double_tap_and_repeated_callback_store_one_entry(trial: Trial) -> None:
    user = await trial.join()
    menu = user.last_bot_message
    data = next(d for row in menu.buttons for label, d in row if label == APPLIED_NOW)
    await user.press(APPLIED_NOW)
    await user.press(APPLIED_NOW)  # the second tap before the bot has answered the first
    await user.wait_for(lambda u: len(u.callback_answers) == 2)
    await user.press_forged(menu.message_id, data)  # Telegram re-delivering the same callback
    await user.wait_for(lambda u: len(u.callback_answers) == 3)
    assert len(await trial.diary()) == 1
    assert "Saved" in user.last_bot_message.text
    assert {c.description for c in trial.world.rejected_calls} <= {
        "Bad Request: message is not modified: specified new message content and reply markup are exactly the "
        "same as a current content and reply markup of the message"}


async def test_applied_earlier_today_is_flagged_late_after_the_window(trial: Trial) -> None:
    user = await trial.join()
    await user.press(APPLIED_EARLIER)
    days = await user.next_bot_event()
    assert days.button_labels == ["Today", "Yesterday", "⬅️ Back"]
    await user.press("Today")
    hours = await user.next_bot_event()
    # 10:00 in New York: the hours up to now are offered, none later.
    assert t("7:00 AM") in hours.button_labels and t("10:00 AM") in hours.button_labels
    assert t("11:00 AM") not in hours.button_labels
    await user.press(t("7:00 AM"))
    saved = await user.next_bot_event()
    assert "7:00" in saved.text and "recorded a while after" in saved.text
    [entry] = await trial.diary()
    assert entry.occurred_at == datetime(2026, 11, 24, 7, 0, tzinfo=NY)
    assert entry.late is True, "3 hours after is later than the protocol's 2-hour window"


async def test_applied_earlier_within_the_window_is_not_late(trial: Trial) -> None:
    user = await trial.join()
    await user.press(APPLIED_EARLIER)
    await user.next_bot_event()
    await user.press("Today")
    await user.next_bot_event()
    await user.press(t("9:00 AM"))
    await user.next_bot_event()
    [entry] = await trial.diary()
    assert entry.late is False


async def test_yesterday_can_be_logged_but_older_days_are_refused_kindly(trial: Trial) -> None:
    user = await trial.join()
    await user.press(APPLIED_EARLIER)
    await user.next_bot_event()
    await user.press("Yesterday")
    hours = await user.next_bot_event()
    assert len(hours.button_labels) == 24 + 1  # every hour of yesterday, and Back
    await user.press(t("8:00 PM"))
    await user.next_bot_event()
    [entry] = await trial.diary()
    assert entry.local_date.isoformat() == "2026-11-23" and entry.late is True

    # A forged press for three days ago, or for tomorrow, is refused and changes nothing.
    form = hours.buttons[0][0][1].split(":")[2]
    await user.press_forged(hours.message_id, f"d:e:{form}x:20261121:08")
    refused = await user.next_bot_event()
    assert "too long ago" in refused.text
    await user.press_forged(hours.message_id, f"d:e:{form}y:20261125:08")
    assert "has not come yet" in (await user.next_bot_event()).text
    await user.press_forged(hours.message_id, f"d:e:{form}z:20261124:23")  # later today
    assert "has not come yet" in (await user.next_bot_event()).text
    assert len(await trial.diary()) == 1


async def test_missed_dose_with_a_reason(trial: Trial) -> None:
    user = await trial.join()
    await user.press(MISSED)
    await user.next_bot_event()
    await user.press("Today")
    reasons = await user.next_bot_event()
    assert "I forgot" in reasons.button_labels and "I'd rather not say" in reasons.button_labels
    await user.press("My skin was too sore")
    assert "missed a dose" in (await user.next_bot_event()).text
    [entry] = await trial.diary()
    assert (entry.kind, entry.missed_reason, entry.occurred_at) == ("missed", "skin_sore", None)


async def test_today_lists_what_was_recorded(trial: Trial) -> None:
    user = await trial.join()
    await user.press(APPLIED_NOW)
    await user.next_bot_event()
    await user.send_text("/today")
    today = await user.next_bot_event()
    assert "1 of 2 times" in today.text and t("10:00 AM") in today.text
    assert APPLIED_NOW in today.button_labels


async def test_undo_withdraws_the_last_entry_without_deleting_it(trial: Trial) -> None:
    user = await trial.join()
    await user.press(APPLIED_NOW)
    await user.next_bot_event()
    trial.clock.advance(timedelta(minutes=10))
    await user.send_text("/undo")
    assert "taken back" in (await user.next_bot_event()).text
    rows = await trial.diary()
    assert [r.kind for r in rows] == ["applied", "withdrawal"]
    assert rows[1].supersedes_id == rows[0].id
    await user.send_text("/today")
    assert "Nothing recorded yet today" in (await user.next_bot_event()).text
    await user.send_text("/undo")
    assert "nothing to take back" in (await user.next_bot_event()).text


async def test_undo_after_the_window_is_refused(trial: Trial) -> None:
    user = await trial.join()
    await user.press(APPLIED_NOW)
    await user.next_bot_event()
    trial.clock.advance(timedelta(minutes=trial.protocol.diary.undo_minutes + 1))
    await user.send_text("/undo")
    assert "can no longer be taken back" in (await user.next_bot_event()).text
    assert [r.kind for r in await trial.diary()] == ["applied"]


async def test_stop_pauses_tells_staff_and_resume_turns_back_on(trial: Trial) -> None:
    coordinator = await trial.add_staff(5005)
    user = await trial.join()
    await coordinator.next_bot_event()  # the "P001 joined" notice
    await user.send_text("/stop")
    assert "Messages are paused" in (await user.next_bot_event()).text
    assert (await trial.participant()).status == "paused"
    notice = await coordinator.next_bot_event()
    assert "P001" in notice.text and "paused" in notice.text

    await user.send_text("/stop")
    assert "already paused" in (await user.next_bot_event()).text
    await user.send_text("/log")  # a paused participant can still record
    await user.next_bot_event()
    await user.press(APPLIED_NOW)
    assert "Saved" in (await user.next_bot_event()).text

    await user.send_text("/resume")
    assert "Messages are on again" in (await user.next_bot_event()).text
    assert (await trial.participant()).status == "active"
    assert "P001" in (await coordinator.next_bot_event()).text


async def test_forged_and_unknown_input_changes_nothing(trial: Trial) -> None:
    other = await trial.join("P002", user_id=2002)
    await other.press(APPLIED_NOW)
    await other.next_bot_event()
    user = await trial.join("P001", user_id=1001)
    menu = user.last_bot_message
    for data in ("d:e:abcd:notadate", "d:e:abcd:20261399", "d:m:abcd:20261124:bribe", "zz", "d:e:abcd:20261124:99",
                 "c:x:y"):
        await user.press_forged(menu.message_id, data)
        await user.next_bot_event()
        assert "nothing was changed" in user.last_bot_message.text or "does not work" in user.last_bot_message.text
    await user.send_text("/nosuchcommand")
    assert "I cannot use that here" in (await user.next_bot_event()).text
    await user.send_text("I put the cream on my arm, is that ok?")  # a question: for the team
    # Nobody is on the study team in this test: the participant is not told it was passed on.
    assert "could not pass your message to the study team" in (await user.next_bot_event()).text
    assert await trial.diary("P001") == []
    assert len(await trial.diary("P002")) == 1


async def test_help_and_contact_give_the_study_team(trial: Trial) -> None:
    user = await trial.join()
    await user.send_text("/contact")
    contact = await user.next_bot_event()
    assert "216 445-8776" in contact.text and "dermatologyresearch@ccf.org" in contact.text
    await user.send_text("/help")
    assert "/undo" in (await user.next_bot_event()).text
    commands = trial.world.commands_for()
    assert [c["command"] for c in commands] == ["log", "today", "undo", "symptoms", "urgent", "times", "nextvisit",
                                                 "mystats", "help", "contact", "stop", "resume"]
