"""Joining: invite links good and bad, consent and decline, strangers who learn nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from study.models import ConsentDecision, Participant
from tests.trial import Trial


async def test_good_invite_shows_consent_and_agree_links_the_chat(trial: Trial) -> None:
    code = await trial.enroll("P001")
    user = trial.world.add_user(user_id=1001, first_name="Pat")
    await user.send_text(f"/start {code}")
    consent = await user.next_bot_event()
    assert "not fully private" in consent.text and "not end-to-end encrypted" in consent.text
    assert consent.button_labels == ["✅ Yes, I agree", "No, thank you"]

    await user.press("✅ Yes, I agree")
    agreed = await user.next_bot_event()
    assert agreed.message_id == consent.message_id, "the consent message is edited, not followed"
    assert "You are all set" in agreed.text
    assert "✅ I put it on now" in agreed.button_labels

    participant = await trial.participant("P001")
    assert participant.status == "active"
    assert participant.telegram_chat_id == 1001 and participant.telegram_user_id == 1001
    assert participant.consented_at == trial.clock.now()


async def test_agree_pressed_twice_answers_the_same_and_records_once(trial: Trial) -> None:
    code = await trial.enroll("P001")
    user = trial.world.add_user(user_id=1001, first_name="Pat")
    await user.send_text(f"/start {code}")
    consent = await user.next_bot_event()
    await user.press(data=f"c:a:{code}")
    await user.press_forged(consent.message_id, f"c:a:{code}")  # the same callback delivered again
    await user.wait_for(lambda u: len(u.callback_answers) == 2)
    assert "You are all set" in user.last_bot_message.text
    async with trial.db.transaction() as session:
        decisions = (await session.scalars(select(ConsentDecision))).all()
    assert [d.decision for d in decisions] == ["agreed"]


async def test_used_invite_is_refused_for_another_chat(trial: Trial) -> None:
    await trial.join("P001", user_id=1001)
    code_again = None
    # The code is single-use: find it is refused when someone else opens the same link.
    code = await trial.enroll("P002")
    other = trial.world.add_user(user_id=2002, first_name="Pat")
    await other.send_text(f"/start {code}")
    await other.next_bot_event()
    await other.press(data=f"c:a:{code}")
    await other.next_bot_event()
    intruder = trial.world.add_user(user_id=3003, first_name="Pat")
    await intruder.send_text(f"/start {code}")
    reply = await intruder.next_bot_event()
    assert "already been used" in reply.text
    assert code_again is None
    assert (await trial.participant("P002")).telegram_chat_id == 2002


async def test_expired_invite_explains_and_reissue_voids_the_old_code(trial: Trial) -> None:
    old_code = await trial.enroll("P001")
    trial.clock.advance(timedelta(days=15))
    user = trial.world.add_user(user_id=1001, first_name="Pat")
    await user.send_text(f"/start {old_code}")
    assert "too old" in (await user.next_bot_event()).text

    new_code = await trial.reissue("P001")
    await user.send_text(f"/start {old_code}")
    assert "does not work" in (await user.next_bot_event()).text, "a replaced code is void"
    await user.send_text(f"/start {new_code}")
    assert (await user.next_bot_event()).button_labels == ["✅ Yes, I agree", "No, thank you"]


async def test_wrong_codes_lock_the_chat_out_for_a_while(trial: Trial) -> None:
    code = await trial.enroll("P001")
    guesser = trial.world.add_user(user_id=4004, first_name="Pat")
    for attempt in range(trial.protocol.enrolment.max_wrong_codes - 1):
        await guesser.send_text(f"/start wrongcode{attempt}")
        assert "does not work" in (await guesser.next_bot_event()).text
    await guesser.send_text("/start wrongcode-last")
    assert "too many tries" in (await guesser.next_bot_event()).text.lower()

    await guesser.send_text(f"/start {code}")  # even the right code waits out the lock-out
    assert "too many tries" in (await guesser.next_bot_event()).text.lower()

    trial.clock.advance(timedelta(minutes=trial.protocol.enrolment.lockout_minutes + 1))
    await guesser.send_text(f"/start {code}")
    assert (await guesser.next_bot_event()).button_labels == ["✅ Yes, I agree", "No, thank you"]


async def test_forged_consent_buttons_count_as_wrong_codes(trial: Trial) -> None:
    await trial.enroll("P001")
    guesser = trial.world.add_user(user_id=4004, first_name="Pat")
    await guesser.send_text("hello")
    hello = await guesser.next_bot_event()
    for attempt in range(trial.protocol.enrolment.max_wrong_codes):
        await guesser.press_forged(hello.message_id, f"c:a:guess{attempt}")
        await guesser.wait_for(lambda u, n=attempt + 1: len(u.callback_answers) == n)
    assert "too many tries" in guesser.last_bot_message.text.lower()
    async with trial.db.transaction() as session:
        linked = (await session.scalars(select(Participant).where(Participant.telegram_chat_id == 4004))).all()
    assert linked == []


async def test_decline_stores_only_the_refusal(trial: Trial) -> None:
    code = await trial.enroll("P001")
    user = trial.world.add_user(user_id=1001, first_name="Pat")
    await user.send_text(f"/start {code}")
    await user.next_bot_event()
    await user.press("No, thank you")
    assert "We will not send you messages" in (await user.next_bot_event()).text

    participant = await trial.participant("P001")
    assert participant.status == "invited"
    assert participant.telegram_chat_id is None and participant.telegram_user_id is None
    async with trial.db.transaction() as session:
        decisions = (await session.scalars(select(ConsentDecision))).all()
    assert [(d.decision, d.participant_id) for d in decisions] == [("declined", participant.id)]

    # Changing one's mind later works with the same, still unused, link.
    await user.send_text(f"/start {code}")
    await user.next_bot_event()
    await user.press("✅ Yes, I agree")
    assert "You are all set" in (await user.next_bot_event()).text


async def test_stranger_learns_nothing_and_nothing_about_them_is_stored(trial: Trial) -> None:
    await trial.join("P001", user_id=1001)
    stranger = trial.world.add_user(user_id=777_000_111, first_name="Zelda-Unique")
    for text in ("/start", "hello, what is this?", "/today", "/undo", "/start notacode"):
        await stranger.send_text(text)
        reply = await stranger.next_bot_event()
        assert "private bot" in reply.text or "does not work" in reply.text
        assert reply.buttons == []

    dump = await _whole_database_as_text(trial)
    assert "777000111" not in dump and "Zelda-Unique" not in dump and "notacode" not in dump
    assert "message" in dump  # only the stranger counts


async def test_staff_start_is_greeted_as_staff(trial: Trial) -> None:
    coordinator = await trial.add_staff(5005, name="Dana")
    await coordinator.send_text("/start")
    assert "registered as study staff" in (await coordinator.next_bot_event()).text


async def _whole_database_as_text(trial: Trial) -> str:
    from study.models import Base

    chunks = []
    async with trial.db.transaction() as session:
        for table in Base.metadata.sorted_tables:
            for row in (await session.execute(select(table))).all():
                chunks.append(repr(tuple(row)))
    return "\n".join(chunks)


pytestmark = pytest.mark.timeout(60)
