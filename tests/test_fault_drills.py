"""The fault drills of issue 8, sized to run in CI: the bot killed mid-wave, Telegram failing a
fifth of its calls, the database going away. Full-size runs are in bench/drills/ (see its
README); the drills themselves are in tests/drills/. Each drill reports what it counted; these
tests hold the counts to the bounds, so they fail the moment a message is missed, a record is
stored twice, or the bot stops.

Below them, the product fixes the drills led to, each pinned by a small test of its own.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from telegram.error import NetworkError

from sandbox.faults import EVERY_KIND
from sandbox.ratelimit import RateLimits
from scheduler.dispatcher import IN_FLIGHT
from study import outbox
from study.database import Database, is_unavailable
from study.models import OutboxMessage
from study.protocol import Protocol
from tests.conftest import PG_URL, REQUIRE_PG
from tests.drills.crash import CrashConfig, run_crash_drill
from tests.drills.outage import OutageConfig, run_outage_drill
from tests.drills.process import scratch_database
from tests.drills.traffic import TrafficConfig, run_traffic_drill
from tests.trial import Trial

APPLIED_NOW = "✅ I put it on now"
APOLOGY = "Sorry, something went wrong on our side"
# Above the bot's own pace (29/s), so the drill measures the crash, not flood control.
RELAXED = RateLimits(global_per_second=60, per_chat_per_second=1)


def _backend_or_skip(backend: str) -> None:
    if backend == "postgresql" and not PG_URL:
        if REQUIRE_PG:
            pytest.fail("TRIALBOT_REQUIRE_POSTGRES=1 but TRIALBOT_TEST_DATABASE_URL is not set")
        pytest.skip("PostgreSQL drills need TRIALBOT_TEST_DATABASE_URL")


# --- the drills -------------------------------------------------------------------------------


@pytest.mark.timeout(90)
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_kill_9_mid_broadcast_misses_nobody_and_repeats_only_what_was_in_flight(
        backend: str, tmp_path: Path) -> None:
    _backend_or_skip(backend)
    kills = 2 if backend == "sqlite" else 1  # a restart costs 2 s; once is enough to show PostgreSQL's side
    config = CrashConfig(wave="broadcast", recipients=60, kills=kills, kill_between=(0.15, 0.35), rate_limits=RELAXED)
    async with scratch_database(backend, tmp_path, PG_URL) as url:
        report = await run_crash_drill(url, tmp_path, config)
    assert report.failures() == [], report.summary()
    assert len(report.kills) == kills and all(0 < k.reached < 60 for k in report.kills), report.summary()
    assert all(k.in_flight <= IN_FLIGHT for k in report.kills), "at most IN_FLIGHT messages under way at once"
    assert report.rows == {"sent": 60} and report.missed == 0
    assert report.received == 60 + report.duplicates and report.duplicates <= report.bound
    assert report.duplicates == sum(k.delivered_unrecorded for k in report.kills)  # exactly those, no others


@pytest.mark.timeout(90)
async def test_kill_9_mid_reminder_wave_reminds_everyone_once_but_what_was_in_flight(tmp_path: Path) -> None:
    config = CrashConfig(wave="reminders", recipients=60, kills=1, rate_limits=RELAXED)
    async with scratch_database("sqlite", tmp_path) as url:
        report = await run_crash_drill(url, tmp_path, config)
    assert report.failures() == [], report.summary()
    assert report.rows == {"sent": 60} and report.missed == 0
    assert report.received == 60 + report.duplicates and report.duplicates <= report.bound <= IN_FLIGHT


@pytest.mark.timeout(120)
async def test_a_fifth_of_telegram_failing_loses_and_doubles_nothing(db: Database, protocol: Protocol) -> None:
    # getUpdates is spared here only to keep CI short (each failed poll pauses the bot a second
    # or more); bench/drills/random_faults.py fails it like every other call.
    config = TrafficConfig(participants=40, minutes=3, fault_rate=0.2, seed=8, checkin_share=0.2,
                           request_timeout=0.3, patience=1.5, minute_seconds=1.0, spare=("getUpdates",))
    report = await run_traffic_drill(db, protocol, config)
    assert report.failures() == [], report.summary()
    kinds = {kind for _, kind in report.faults}
    assert kinds == {str(k) for k in EVERY_KIND}, f"every kind of fault was drawn: {kinds}"
    assert sum(report.faults.values()) > 0.15 * report.calls_exposed
    assert report.diary_lost == report.diary_duplicates == report.checkins_lost == report.checkin_duplicates == 0
    assert report.diary_stored <= report.diary_intents and report.checkins_stored <= report.checkins_intended
    assert report.diary_confirmed >= 0.9 * report.diary_intents, report.summary()
    assert report.unsettled_reminders == report.unexplained_reminders == 0
    assert report.reminders_due == 40 and report.reminder_duplicates <= report.duplicate_bound
    assert all(report.alive.values()), report.alive


@pytest.mark.timeout(60)
@pytest.mark.parametrize("updates", ["polling", "webhook"])
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_the_database_away_mid_wave_degrades_clearly_and_recovers_by_itself(
        backend: str, updates: str, protocol: Protocol) -> None:
    if backend == "sqlite":
        pytest.skip("SQLite is a file the bot opens itself: there is no server to lose")
    _backend_or_skip(backend)
    report = await run_outage_drill(PG_URL, protocol, OutageConfig(participants=20, outage_seconds=3,
                                                                   cut_after_sends=5, webhook=updates == "webhook"))
    assert report.failures() == [], report.summary()
    # Whether by webhook or by polling (a leader cut off from the database steps down, but polls
    # on while nobody else can lead): every update gets the apology at once, never silence.
    assert not report.updates_held, report.summary()
    assert APOLOGY in report.tap_during and report.tap_kept_buttons and APOLOGY in report.command_during
    assert report.written_during == 0 and report.entries_after == 1
    assert report.reminders == {"sent": 20} and report.missed == 0 and report.duplicates == 0
    assert (report.outage_lines, report.recovery_lines, report.tracebacks) == (1, 1, 0)


# --- what the drills found ----------------------------------------------------------------------


async def _diary_menu(user):
    """A fresh diary menu, from /log."""
    before = len(user.bot_messages)
    await user.send_text("/log")
    await user.wait_for(lambda u: len(u.bot_messages) > before)
    return user.last_bot_message


@pytest.mark.rejections_expected
async def test_a_confirmation_whose_answer_was_lost_stays_and_the_apology_comes_as_an_alert(trial: Trial) -> None:
    user = await trial.join()
    trial.world.faults.fail_next("editMessageText", mode="drop", after=True)  # edited, answer lost
    menu = await _diary_menu(user)
    query = await user.press(APPLIED_NOW, message_id=menu.message_id)
    await user.wait_for(lambda u: u.callback_answers[-1][0] == query)
    assert "Saved" in user.message(menu.message_id).text  # not overwritten by the apology
    _, text, show_alert = user.callback_answers[-1]
    assert APOLOGY in text and show_alert is True
    assert len(await trial.diary()) == 1


async def test_a_failed_confirmation_keeps_the_buttons_and_the_same_tap_saves_once(trial: Trial) -> None:
    user = await trial.join()
    trial.world.faults.fail_next("editMessageText", status=500)
    menu = await _diary_menu(user)
    query = await user.press(APPLIED_NOW, message_id=menu.message_id)
    await user.wait_for(lambda u: u.callback_answers[-1][0] == query)
    assert APOLOGY in user.callback_answers[-1][1]
    assert APPLIED_NOW in user.message(menu.message_id).button_labels  # still there to press again
    await user.press(APPLIED_NOW, message_id=menu.message_id)
    await user.wait_for(lambda u: "Saved" in (u.message(menu.message_id).text or ""))
    assert len(await trial.diary()) == 1


async def test_a_lost_answer_to_the_button_itself_is_not_an_error(trial: Trial, caplog) -> None:
    user = await trial.join()
    trial.world.faults.fail_next("answerCallbackQuery", status=500)
    menu = await _diary_menu(user)
    with caplog.at_level(logging.WARNING):
        await user.press(APPLIED_NOW, message_id=menu.message_id)
        await user.wait_for(lambda u: "Saved" in (u.message(menu.message_id).text or ""))
        await user.send_text("/today")  # processed after the press: its handling is over
        await user.wait_for(lambda u: "today" in (u.last_bot_message.text or "").lower())
    assert "Saved" in user.message(menu.message_id).text and not any(r.levelno >= logging.ERROR for r in caplog.records)


async def test_two_copies_of_one_reminder_log_one_entry_whichever_is_pressed(trial: Trial) -> None:
    user = await trial.join()
    trial.world.faults.fail_next("sendMessage", mode="drop", after=True)  # delivered; the bot cannot know
    await trial.advance(hours=10)  # 20:00 in New York
    await trial.advance(minutes=1)  # the retry: a second copy
    copies = [m for m in user.bot_messages if "Time for your study cream" in (m.text or "")]
    assert len(copies) == 2
    for copy in copies:
        await user.press(APPLIED_NOW, message_id=copy.message_id)
        await user.wait_for(lambda u, m=copy.message_id: "Saved" in (u.message(m).text or ""))
    assert [e.kind for e in await trial.diary()] == ["applied"]


async def test_a_reminder_delivered_though_its_answer_was_lost_and_then_answered_is_recorded_sent(
        trial: Trial) -> None:
    """The answer to the send is lost, so the bot cannot know the reminder arrived; the participant
    answers it before the retry. The record says sent (with its message), not 'skipped because the
    dose was recorded before the reminder went out', and it is not sent again."""
    user = await trial.join()
    trial.world.faults.fail_next("sendMessage", mode="drop", after=True)
    await trial.advance(hours=10)  # 20:00 in New York: delivered, the answer lost, a retry queued
    [reminder] = [m for m in user.bot_messages if "Time for your study cream" in (m.text or "")]
    await user.press(APPLIED_NOW, message_id=reminder.message_id)
    await user.wait_for(lambda u: "Saved" in (u.message(reminder.message_id).text or ""))
    shown = len(user.bot_messages)
    await trial.advance(minutes=5)  # the retry's time
    assert len(user.bot_messages) == shown, "not sent again"
    async with trial.db.transaction() as session:
        [row] = (await session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "reminder"))).all()
        events = [(e.event, e.detail or "") for e in await outbox.events_for(session, [row.id])]
    assert (row.status, row.telegram_message_id, row.answered_at is not None) == ("sent", reminder.message_id, True)
    assert [kind for kind, _ in events] == ["retry", "answered", "sent"]
    assert "earlier try whose answer was lost" in events[-1][1]


def test_only_the_database_being_away_counts_as_an_outage() -> None:
    assert is_unavailable(ConnectionRefusedError(111, "refused"))  # asyncpg, connecting
    dropped = DBAPIError("SELECT 1", None, Exception("connection reset"), connection_invalidated=True)
    assert is_unavailable(dropped)
    assert not is_unavailable(DBAPIError("SELECT 1", None, Exception("syntax error")))
    try:  # Telegram's network errors carry an OSError inside, and are not the database
        try:
            raise ConnectionResetError("peer reset")
        except ConnectionResetError as inner:
            raise NetworkError("httpx.ReadError") from inner
    except NetworkError as telegram_error:
        assert not is_unavailable(telegram_error)
