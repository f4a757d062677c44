"""Telegram delivers at least once; effects happen exactly once.

Each test delivers an update again (same update id, as Telegram does after a lost answer, a
crash or to a second process) or taps a button twice before the first tap's answer arrives, and
checks that nothing happened twice and that the answer stayed the first one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from telegram import Update

from bot.app import build_application, demo_messages
from study.database import Database
from study.models import (
    Alert,
    CheckIn,
    DiaryEntry,
    ParticipantMessage,
    ProcessedUpdate,
    SentMessage,
    StrangerCount,
)
from tests.redelivery import deliver_again, last_update_id
from tests.test_safety import alerts_in, full_checkin, press, say
from tests.trial import Trial
from tests.waiting import until

pytestmark = pytest.mark.timeout(90)


@contextlib.asynccontextmanager
async def second_process(trial: Trial) -> AsyncIterator:
    """Another process of the same bot on the same database, given updates by hand (as a
    webhook behind a balancer would give it the copy Telegram sent again)."""
    db = Database(trial.db.url.render_as_string(hide_password=False), schema=trial.db.schema)
    app = build_application(token=trial.world.token, base_url=trial.server.base_url,
                            base_file_url=trial.server.base_file_url, protocol=trial.protocol, db=db,
                            clock=trial.clock, tick_seconds=None, rate_limit_retries=0,
                            messages=demo_messages(trial.protocol))
    await app.initialize()
    try:
        yield app
    finally:
        await app.shutdown()
        await db.dispose()


async def count(trial: Trial, model, *where) -> int:
    async with trial.db.read() as session:
        return await session.scalar(select(func.count()).select_from(model).where(*where))


async def test_undo_delivered_twice_withdraws_one_dose(trial: Trial, handled) -> None:
    user = await trial.join()
    await press(user, "✅ I put it on now")
    await say(user, "/log")
    await press(user, "✅ I put it on now")
    await say(user, "/undo")
    replies = len(user.bot_messages)
    await deliver_again(trial, handled, last_update_id(trial))
    kinds = [e.kind for e in await trial.diary()]
    assert kinds.count("withdrawal") == 1 and kinds.count("applied") == 2, kinds
    assert len(user.bot_messages) == replies, "the /undo was answered once"


async def test_a_tap_delivered_again_is_recorded_once_and_shown_as_saved(trial: Trial, handled) -> None:
    """The tap's edit is recorded with its effects (bot/exactly_once.py `effects(..., edits=True)`):
    one record, written before the edit; the copy delivered again makes the same edit (Telegram
    finds it made) and records nothing, stores nothing."""
    user = await trial.join()
    await say(user, "/log")
    before = await count(trial, SentMessage, SentMessage.via == "edit")
    await press(user, "✅ I put it on now")
    tap = last_update_id(trial)
    edits = await count(trial, SentMessage, SentMessage.via == "edit")
    assert edits == before + 1
    async with trial.db.read() as session:
        ledger = await session.scalar(select(ProcessedUpdate).where(ProcessedUpdate.update_id == tap))
    assert ledger.answered_at is not None and ledger.answer["edited"] == user.last_bot_message.message_id
    await deliver_again(trial, handled, tap)
    assert await count(trial, SentMessage, SentMessage.via == "edit") == edits
    assert [e.kind for e in await trial.diary()].count("applied") == 1
    assert "Saved" in user.last_bot_message.text


async def test_free_text_and_urgent_delivered_again_store_and_alert_once(trial: Trial, handled) -> None:
    coordinator = await trial.add_staff(5005)
    user = await trial.join()
    await say(user, "I have chest pains since this morning")
    first_text = last_update_id(trial)
    await coordinator.wait_for(lambda c: len(alerts_in(c)) == 1)
    await deliver_again(trial, handled, first_text)
    await say(user, "/urgent")
    await press(user, "Fever or chills")
    await deliver_again(trial, handled, last_update_id(trial))
    await coordinator.wait_for(lambda c: len(alerts_in(c)) == 2)
    assert await count(trial, Alert) == 2, "one alert for the message, one for /urgent"
    assert await count(trial, ParticipantMessage) == 1
    await trial.deliver()
    assert len(alerts_in(coordinator)) == 2
    assert len([m for m in coordinator.bot_messages if (m.text or "").startswith("💬")]) == 1


async def test_a_double_tap_on_save_keeps_the_safety_instructions(trial: Trial, handled) -> None:
    coordinator = await trial.add_staff(5005)
    user = await trial.join()
    await full_checkin(user, flags=["Fever or chills"], save=False)
    review = user.last_bot_message
    before = len(user.callback_answers)
    # Both taps leave the phone before the first one's answer arrives.
    await user.press("✅ Save my answers", message_id=review.message_id)
    await user.press("✅ Save my answers", message_id=review.message_id)
    await user.wait_for(lambda u: len(u.callback_answers) == before + 2)
    shown = user.message(review.message_id).text
    assert "This needs attention now" in shown and "already finished" not in shown
    assert await count(trial, CheckIn) == 1 and await count(trial, Alert) == 1
    await coordinator.wait_for(lambda c: len(alerts_in(c)) == 1)


async def test_a_double_tap_on_an_urgent_red_flag_raises_one_alert(trial: Trial) -> None:
    coordinator = await trial.add_staff(5005)
    user = await trial.join()
    await say(user, "/urgent")
    menu = user.last_bot_message
    before = len(user.callback_answers)
    await user.press("Fever or chills", message_id=menu.message_id)
    await user.press("Fever or chills", message_id=menu.message_id)
    await user.wait_for(lambda u: len(u.callback_answers) == before + 2)
    assert await count(trial, Alert) == 1
    assert "This needs attention now" in user.message(menu.message_id).text
    await coordinator.wait_for(lambda c: len(alerts_in(c)) == 1)


@pytest.mark.rejections_expected  # both processes answer the button; Telegram takes the first answer only
async def test_one_save_given_to_two_processes_saves_one_check_in(trial: Trial) -> None:
    """The same update handed to a second process (a webhook retried to another machine) while
    the first is still handling it: one check-in, one alert, and both answer as the first did."""
    user = await trial.join()
    await full_checkin(user, flags=["Fever or chills"], save=False)
    async with second_process(trial) as second:
        before = len(user.callback_answers)
        await user.press("✅ Save my answers")
        update = Update.de_json(trial.world.pending_updates[-1], second.bot)
        await second.process_update(update)  # meanwhile the first process handles its own delivery
        await user.wait_for(lambda u: len(u.callback_answers) >= before + 1)
        await until(lambda: not trial.world.pending_updates)
    assert await count(trial, CheckIn) == 1 and await count(trial, Alert) == 1
    assert "This needs attention now" in user.last_bot_message.text


async def test_a_strangers_update_delivered_again_is_counted_once(trial: Trial, handled) -> None:
    stranger = trial.world.add_user(user_id=9009, first_name="Sam")
    await say(stranger, "hello?")
    update_id = last_update_id(trial)
    trial.world.deliver_again(update_id)
    await say(stranger, "anyone?")
    async with trial.db.read() as session:
        counted = await session.scalar(select(StrangerCount.count).where(StrangerCount.kind == "message"))
        kept = await session.scalar(select(func.count()).select_from(ProcessedUpdate))
    assert counted == 2, "two messages, one of them delivered twice"
    assert kept == 0, "nothing about a stranger is written down"
    assert len(stranger.bot_messages) == 2


async def test_the_ledger_keeps_a_week_and_an_update_id_seen_long_ago_is_handled_anew(
        trial: Trial, handled) -> None:
    user = await trial.join()
    await say(user, "/today")
    assert await count(trial, ProcessedUpdate) > 0
    await trial.advance(days=7, minutes=1)
    assert await count(trial, ProcessedUpdate, ProcessedUpdate.handled_at <= trial.clock.now() - timedelta(days=7)) == 0


async def test_two_deliveries_racing_meet_at_the_claim(trial: Trial) -> None:
    """Two copies of one /undo handled at the same moment by two processes: one withdrawal."""
    user = await trial.join()
    await press(user, "✅ I put it on now")
    async with second_process(trial) as second:
        await user.send_text("/undo")
        raw = trial.world.pending_updates[-1]
        await asyncio.gather(*(second.process_update(Update.de_json(raw, second.bot)) for _ in range(3)))
        await user.wait_for(lambda u: any("taken back" in (m.text or "") for m in u.bot_messages))
        await until(lambda: not trial.world.pending_updates)
    assert [e.kind for e in await trial.diary()].count("withdrawal") == 1
    assert await count(trial, DiaryEntry, DiaryEntry.kind == "withdrawal") == 1
