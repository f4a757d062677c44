"""Nothing a participant tells us is swallowed, missed or doubled: text typed at any moment of a
check-in, negations, several warning signs at once, media and their captions, long messages and
control characters, staff notices Telegram refuses, and check-ins left unfinished."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from sandbox.media import png
from study import outbox
from study.models import (
    Alert,
    CheckIn,
    CheckinDraft,
    IncompleteCheckin,
    OutboxMessage,
    ParticipantMessage,
)
from tests.test_safety import alerts_in, full_checkin, press, rows, say
from tests.trial import Trial

pytestmark = pytest.mark.timeout(90)
RECEIPT = "was passed to the study team"
SAFETY = "This needs attention now"


def notices_in(chat) -> list:
    """The study team's notices of what participants sent (not safety alerts)."""
    return [m for m in chat.bot_messages if (m.text or "").startswith("💬")]


def receipts(user) -> list:
    return [m for m in user.bot_messages if RECEIPT in (m.text or "")]


async def test_words_typed_after_finish_later_reach_the_team_and_the_screening(trial: Trial) -> None:
    coordinator = await trial.add_staff(5005)
    user = await trial.join()
    await say(user, "/symptoms")
    await press(user, "⏸ Finish later")
    await trial.advance(days=0, hours=2)
    await say(user, "I have a fever and chills")
    told = user.last_bot_message.text
    assert SAFETY in told and "call the study team today" in told and "Sorry, I did not understand" not in told
    await coordinator.wait_for(lambda c: alerts_in(c) and notices_in(c))
    assert "fever" in alerts_in(coordinator)[0].text
    [notice] = notices_in(coordinator)
    assert "I have a fever and chills" in notice.text and "P001" in notice.text and "Pat" not in notice.text
    await user.wait_for(lambda u: receipts(u))
    assert receipts(user)[0].button_labels == ["▶️ Continue my check-in"], "the check-in set aside is offered"
    await say(user, "3")  # set aside, the check-in takes nothing typed as its answer, not even a number
    [draft] = await rows(trial, CheckinDraft)
    assert draft.answers == {} and draft.step == "itch", "the draft did not take the words as an answer"
    assert [m.text for m in await rows(trial, ParticipantMessage)] == ["I have a fever and chills", "3"]


async def test_words_that_do_not_answer_the_question_go_to_the_team_and_it_is_asked_again(trial: Trial) -> None:
    coordinator = await trial.add_staff(5005)
    user = await trial.join()
    await say(user, "/symptoms")
    await say(user, "Can I come at 11 instead of 10 on Tuesday?")
    assert "worst itch" in user.last_bot_message.text, "the question is asked again"
    await coordinator.wait_for(lambda c: notices_in(c))
    await user.wait_for(lambda u: receipts(u))
    assert "not an answer to it" in notices_in(coordinator)[0].text
    for attempt in ("seven", "12", "7.5"):
        await say(user, attempt)
        assert "Please tap a number, or type a number from 0 to 10" in user.last_bot_message.text
    [message] = await rows(trial, ParticipantMessage)
    assert message.context == "mid_checkin:itch", "tries at a number are not messages; the question was"
    await press(user, "4")
    assert "worst skin pain" in user.last_bot_message.text


async def test_a_negated_mention_is_passed_on_marked_and_shows_no_emergency(trial: Trial) -> None:
    coordinator = await trial.add_staff(5005)
    user = await trial.join()
    await say(user, "no fever, no infection, everything is fine")
    await user.wait_for(lambda u: receipts(u))
    assert not [m for m in user.bot_messages if "911" in (m.text or "") and SAFETY in (m.text or "")]
    assert await rows(trial, Alert) == []
    await coordinator.wait_for(lambda c: notices_in(c))
    assert "negated mention" in notices_in(coordinator)[0].text


async def test_every_emergency_instruction_is_shown_most_urgent_first(trial: Trial) -> None:
    coordinator = await trial.add_staff(5005)
    user = await trial.join(wocbp=True)
    await full_checkin(user, flags=["A positive pregnancy test", "Short of breath or chest pain"])
    told = user.last_bot_message.text
    assert "call 911 now" in told and "stop applying the study cream" in told
    assert told.index("911 now") < told.index("stop applying the study cream")
    await coordinator.wait_for(lambda c: len(alerts_in(c)) == 1)
    assert "POSITIVE PREGNANCY TEST" in alerts_in(coordinator)[0].text


async def test_thoughts_of_self_harm_give_the_crisis_line_and_an_urgent_alert(trial: Trial) -> None:
    coordinator = await trial.add_staff(5005)
    user = await trial.join()
    await say(user, "I want to end my life")
    told = user.last_bot_message.text
    assert "988" in told and "911" in told
    await coordinator.wait_for(lambda c: len(alerts_in(c)) == 1)


async def test_a_change_of_medicines_asks_what_changed_and_tells_the_team(trial: Trial) -> None:
    coordinator = await trial.add_staff(5005)
    user = await trial.join()
    await say(user, "/symptoms")
    await press(user, "3")
    await press(user, "2")
    await press(user, "No reaction")
    await press(user, "No")
    await press(user, "Yes, I used another cream there")
    assert "what changed" in user.last_bot_message.text
    await say(user, "hydrocortisone on my arms since Friday")
    assert "any of these now" in user.last_bot_message.text, "on to the warning signs"
    await coordinator.wait_for(lambda c: any("💊" in (m.text or "") for m in c.bot_messages))
    notice = next(m for m in coordinator.bot_messages if "💊" in (m.text or ""))
    assert "P001" in notice.text and "hydrocortisone on my arms since Friday" in notice.text
    assert "another cream" in notice.text
    assert await rows(trial, Alert) == [], "a notice, not an emergency alert"
    await press(user, "None of these ➡️")
    await press(user, "✅ Save my answers")
    [saved] = await rows(trial, CheckIn)
    assert (saved.medicines, saved.medicines_change) == ("other_cream", "hydrocortisone on my arms since Friday")


async def test_a_photo_with_a_worrying_caption_reaches_the_team_as_it_is(trial: Trial) -> None:
    coordinator = await trial.add_staff(5005)
    user = await trial.join()
    await user.send_photo(png(), caption="the patch is infected, pus everywhere")
    await user.wait_for(lambda u: u.bot_messages and SAFETY in (u.last_bot_message.text or ""))
    await coordinator.wait_for(lambda c: alerts_in(c) and notices_in(c)
                               and any(m.photo is not None for m in c.bot_messages))
    [notice] = notices_in(coordinator)
    copy = next(m for m in coordinator.bot_messages if m.photo is not None)
    assert "sent a photo" in notice.text and "P001" in notice.text
    assert copy.reply_to_message_id == notice.message_id, "the photo answers the notice that says whose it is"
    assert "Pat" not in (copy.caption or "") + notice.text
    assert "pus everywhere" in alerts_in(coordinator)[0].text
    await user.wait_for(lambda u: any("Your photo was passed" in (m.text or "") for m in u.bot_messages))
    [stored] = await rows(trial, ParticipantMessage)
    assert (stored.kind, stored.text) == ("photo", "the patch is infected, pus everywhere")


@pytest.mark.parametrize("kind", ["document", "voice", "video_note", "video"])
async def test_documents_voice_notes_and_videos_are_passed_on(trial: Trial, kind: str) -> None:
    coordinator = await trial.add_staff(5005)
    user = await trial.join()
    sends = {
        "document": lambda: user.send_document(b"%PDF-1.4 lab results", "results.pdf", "application/pdf"),
        "voice": lambda: user.send_voice(b"OggS voice", 4),
        "video_note": lambda: user.send_video_note(b"video note", 240, 3),
        "video": lambda: user.send_video(b"video", 640, 480, 5, caption="how it looks today"),
    }
    await sends[kind]()
    await user.wait_for(lambda u: receipts(u))
    await coordinator.wait_for(lambda c: len(c.bot_messages) >= 3)  # welcome, notice, the copy
    [stored] = await rows(trial, ParticipantMessage)
    assert stored.kind == kind
    copies = [m for m in coordinator.bot_messages if m.reply_to_message_id is not None]
    assert len(copies) == 1


async def test_a_sticker_gets_a_gentle_word_and_nothing_is_kept(trial: Trial) -> None:
    user = await trial.join()
    await user.send_sticker()
    await user.wait_for(lambda u: "text or photo" in (u.last_bot_message.text or "").replace("words or photos",
                                                                                           "text or photo"))
    assert await rows(trial, ParticipantMessage) == []


async def test_a_message_at_telegrams_limit_reaches_the_team_whole_in_parts(trial: Trial) -> None:
    coordinator = await trial.add_staff(5005)
    user = await trial.join()
    words = ("My skin has been bad this week. " * 200)[:4096]
    await say(user, words)
    await user.wait_for(lambda u: receipts(u))
    parts = notices_in(coordinator)
    assert len(parts) == 2 and "part 1 of 2" in parts[0].text and "part 2 of 2" in parts[1].text
    [stored] = await rows(trial, ParticipantMessage)
    assert stored.text == words.strip() and stored.original_length == 4096


async def test_control_characters_are_stripped_and_the_length_kept(trial: Trial) -> None:
    coordinator = await trial.add_staff(5005)
    user = await trial.join()
    await say(user, "my arm\x00 is red\x07 and sore")
    await user.wait_for(lambda u: receipts(u))
    [stored] = await rows(trial, ParticipantMessage)
    assert (stored.text, stored.original_length) == ("my arm is red and sore", 24)
    await coordinator.wait_for(lambda c: notices_in(c))


async def test_a_notice_telegram_refuses_is_sent_again_as_plain_text(trial: Trial) -> None:
    coordinator = await trial.add_staff(5005)
    user = await trial.join()
    await trial.deliver()  # the consent notice is out before Telegram starts refusing
    trial.world.faults.fail_next("sendMessage", status=400, chat_id=coordinator.chat_id)
    await say(user, "Is it fine to shower after applying?")
    await user.wait_for(lambda u: receipts(u))
    await coordinator.wait_for(lambda c: any("shower after applying" in (m.text or "") for m in c.bot_messages))
    notice = next(m for m in coordinator.bot_messages if "shower after applying" in (m.text or ""))
    assert notice.entities == [] and "P001" in notice.text, "sent again without formatting"
    [row] = [r for r in await rows(trial, OutboxMessage) if r.kind == "participant_message"]
    assert row.status == "sent"
    async with trial.db.read() as session:
        events = await outbox.events_for(session, [row.id])
    assert "sent as plain text" in events[-1].detail


@pytest.mark.rejections_expected  # the coordinator blocked the bot: 403
async def test_nobody_told_means_the_participant_is_not_told_passed_on(trial: Trial) -> None:
    coordinator = await trial.add_staff(5005)
    user = await trial.join()
    coordinator.block_bot()
    await say(user, "Can someone call me back?")
    await trial.deliver()
    await user.wait_for(lambda u: any("could not pass your message" in (m.text or "") for m in u.bot_messages))
    assert receipts(user) == []


async def test_with_nobody_on_duty_the_participant_is_asked_to_call(trial: Trial) -> None:
    user = await trial.join()
    await say(user, "Hello, is anyone there?")
    await user.wait_for(lambda u: any("could not pass your message" in (m.text or "") for m in u.bot_messages))
    assert receipts(user) == []


async def test_an_unfinished_check_in_expires_at_midnight_and_is_kept_as_incomplete(trial: Trial) -> None:
    user = await trial.join()
    await say(user, "/symptoms")
    await press(user, "6")
    await trial.advance(hours=13, minutes=59)  # 23:59 in New York
    assert len(await rows(trial, CheckinDraft)) == 1
    await trial.advance(minutes=2)
    assert await rows(trial, CheckinDraft) == []
    [kept] = await rows(trial, IncompleteCheckin)
    assert (kept.reason, kept.step, kept.answers) == ("expired", "pain", {"itch": 6})
    assert await rows(trial, CheckIn) == [], "never half-saved"
    assert "not finished, so it is now closed" in user.last_bot_message.text
    await say(user, "/symptoms")
    assert "worst itch" in user.last_bot_message.text, "a new one starts"


async def test_a_typed_answer_after_expiry_starts_nothing_half_way(trial: Trial) -> None:
    """Past its time but before the tick: the draft is expired when the participant writes."""
    coordinator = await trial.add_staff(5005)
    user = await trial.join()
    await say(user, "/symptoms")
    trial.clock.advance(timedelta(days=1))
    await say(user, "5")
    await coordinator.wait_for(lambda c: notices_in(c))
    assert await rows(trial, CheckinDraft) == [] and len(await rows(trial, IncompleteCheckin)) == 1
    async with trial.db.read() as session:
        [message] = (await session.scalars(select(ParticipantMessage))).all()
    assert message.text == "5" and message.context == "free"


async def test_an_edited_message_reaches_the_team_and_an_edited_command_does_nothing(trial: Trial) -> None:
    coordinator = await trial.add_staff(5005)
    user = await trial.join()
    said = await user.send_text("my arm is a bit red")
    await user.wait_for(lambda u: len(receipts(u)) == 1)
    await user.edit_text(said, "my arm is red and I have a fever now")
    await user.wait_for(lambda u: any(SAFETY in (m.text or "") for m in u.bot_messages))
    await coordinator.wait_for(lambda c: alerts_in(c) and len(notices_in(c)) == 2)
    assert "edited an earlier message" in notices_in(coordinator)[1].text
    await press(user, "✅ I put it on now")
    undo = await user.send_text("/undo")
    await user.wait_for(lambda u: "taken back" in (u.last_bot_message.text or ""))
    await user.edit_text(undo, "/undo ")
    await user.wait_for(lambda u: len(receipts(u)) == 3)
    assert [e.kind for e in await trial.diary()].count("withdrawal") == 1, "an edited /undo undoes nothing"
