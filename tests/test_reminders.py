"""Reminders end to end: the real bot, a moving clock, the stand-in playing Telegram.

The participant joins on Tuesday 24 November 2026 at 10:00 in New York (15:00 UTC); reminders
are at 08:00 and 20:00 local; the protocol nudges after 90 minutes, marks late after 15 and
stale after 180, and keeps 21:30-07:30 quiet.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from study import participants
from study.audit import Actor
from study.models import DiaryEntry, OutboxMessage
from study.protocol import EXAMPLE_PROTOCOL
from tests.trial import Trial

pytestmark = pytest.mark.timeout(90)
APPLIED_NOW = "✅ I put it on now"


def reminders(user) -> list:
    return [m for m in user.bot_messages if "Time for your study cream" in (m.edits[0].text if m.edits else m.text)]


async def outbox_rows(trial: Trial) -> list[OutboxMessage]:
    async with trial.db.transaction() as session:
        return list((await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))).all())


async def test_the_evening_reminder_arrives_once_at_local_time_and_edits_itself_when_answered(trial: Trial) -> None:
    user = await trial.join()
    await trial.advance(hours=9, minutes=59)  # 19:59 local: nothing yet
    assert reminders(user) == []
    await trial.advance(minutes=1)  # 20:00 local
    [reminder] = reminders(user)
    assert "8:00\u202fPM" in reminder.text and reminder.date == datetime(2026, 11, 25, 1, 0, tzinfo=UTC)
    assert reminder.button_labels == ["✅ I put it on now", "🕒 I put it on earlier", "✖️ I missed a dose"]
    assert "late" not in reminder.text and reminder.disable_notification is False

    await trial.tick()
    await trial.tick()  # planning the same minute again queues nothing
    assert len(reminders(user)) == 1

    await user.press(APPLIED_NOW, message_id=reminder.message_id)
    answered = await user.wait_for(lambda u: "Saved" in (u.message(reminder.message_id).text or ""))
    [entry] = await trial.diary()
    assert entry.source == "reminder"
    [row] = [r for r in await outbox_rows(trial) if r.kind == "reminder"]
    assert row.status == "sent" and row.telegram_message_id == reminder.message_id and row.answered_at is not None
    assert answered is None

    await trial.advance(hours=2)  # past the nudge time: the dose is logged, so no nudge
    assert [m.text for m in user.bot_messages if "Just checking" in (m.text or "")] == []


async def test_an_unanswered_slot_gets_one_quiet_nudge_then_is_recorded_missing(trial: Trial) -> None:
    user = await trial.join()
    await trial.advance(hours=10)  # 20:00 reminder
    await trial.advance(minutes=90)  # 21:30: the nudge, inside quiet hours
    nudges = [m for m in user.bot_messages if "Just checking" in (m.text or "")]
    assert len(nudges) == 1 and nudges[0].disable_notification is True
    await trial.advance(minutes=60)
    assert len([m for m in user.bot_messages if "Just checking" in (m.text or "")]) == 1

    await trial.advance(hours=2)  # past local midnight: the 20:00 slot's window closed
    missing = [e for e in await trial.diary() if e.kind == "missing"]
    assert [(e.local_date.isoformat(), e.source, e.recorded_by) for e in missing] == [
        ("2026-11-24", "system", "system")]
    await trial.tick()
    assert len([e for e in await trial.diary() if e.kind == "missing"]) == 1, "recorded once"


async def test_a_dose_logged_before_its_reminder_silences_it(trial: Trial) -> None:
    user = await trial.join()
    trial.clock.advance(timedelta(hours=9, minutes=45))  # 19:45 local
    await user.send_text("/log")
    await user.next_bot_event()
    await user.press(APPLIED_NOW)
    await user.next_bot_event()
    await trial.advance(minutes=15)
    await trial.advance(hours=2)
    assert reminders(user) == [] and not [e for e in await trial.diary() if e.kind == "missing"]


async def test_after_downtime_stale_reminders_are_recorded_not_sent_and_useful_ones_come_late(trial: Trial) -> None:
    user = await trial.join()
    await trial.advance(hours=10)  # the 20:00 reminder of day 1
    first = reminders(user)[0].message_id
    await user.press(APPLIED_NOW, message_id=first)
    await user.wait_for(lambda u: "Saved" in u.message(first).text)
    # The server is down from 20:05 until 15:00 the next day; then one tick.
    trial.clock.set(datetime(2026, 11, 25, 20, 0, tzinfo=UTC))  # 15:00 local
    await trial.tick()
    assert len(reminders(user)) == 1, "no burst of old reminders"
    stale = [r for r in await outbox_rows(trial) if r.dedup_key.endswith("202611250800")]
    assert [(r.kind, r.status) for r in stale] == [("reminder", "skipped")]
    assert "missed delivery" in stale[0].last_error
    # Down again until 20:20 local: the 20:00 reminder is still useful, so it comes, marked late.
    trial.clock.set(datetime(2026, 11, 26, 1, 20, tzinfo=UTC))
    await trial.tick()
    late = reminders(user)[-1]
    assert "this reminder is late" in late.text


async def test_paused_withdrawn_and_finished_participants_get_nothing(trial: Trial) -> None:
    paused = await trial.join("P001", user_id=1001)
    withdrawn = await trial.join("P002", user_id=1002)
    finished = await trial.join("P003", user_id=1003)
    await paused.send_text("/stop")
    await paused.next_bot_event()
    async with trial.db.transaction() as session:
        for study_id, status in (("P002", "withdrawn"), ("P003", "completed")):
            person = await participants.by_study_id(session, study_id)
            await participants.end_participation(session, person, status, reason="test", actor=Actor.cli("t"),
                                                 now=trial.clock.now())
    await trial.advance(hours=10)
    await trial.advance(hours=12)
    for user in (paused, withdrawn, finished):
        assert reminders(user) == []

    trial.clock.advance(timedelta(minutes=5))
    await paused.send_text("/resume")  # 08:05 the next day
    await paused.next_bot_event()
    await trial.advance(minutes=55)  # 09:00: the 08:00 reminder predates the resume
    assert reminders(paused) == []
    await trial.advance(hours=11)  # 20:00
    assert len(reminders(paused)) == 1


async def test_stop_cancels_what_was_queued(trial: Trial) -> None:
    user = await trial.join()
    trial.clock.advance(timedelta(hours=10))
    await trial.plan()  # queued, not yet delivered
    await user.send_text("/stop")
    await user.next_bot_event()
    await trial.deliver()
    assert reminders(user) == []
    [row] = [r for r in await outbox_rows(trial) if r.kind == "reminder"]
    assert row.status == "skipped" and "paused" in row.last_error


@pytest.mark.rejections_expected  # the 403 is the point
async def test_a_participant_who_blocked_the_bot_is_marked_unreachable_and_staff_are_told(trial: Trial) -> None:
    coordinator = await trial.add_staff(5005)
    user = await trial.join()
    user.block_bot()
    await trial.advance(hours=10)
    participant = await trial.participant()
    assert participant.unreachable_since == trial.clock.now()
    await trial.deliver()
    notices = [m.text for m in coordinator.bot_messages if "cannot be reached" in m.text]
    assert notices and "P001" in notices[0]
    [row] = [r for r in await outbox_rows(trial) if r.kind == "reminder"]
    assert (row.status, row.last_error) == ("failed", "blocked by the user")


@pytest.mark.rejections_expected
async def test_telegram_errors_are_retried_and_delivered_once(trial: Trial) -> None:
    user = await trial.join()
    trial.world.faults.fail_next("sendMessage", status=429, retry_after=7)
    await trial.advance(hours=10)
    assert reminders(user) == []
    [row] = [r for r in await outbox_rows(trial) if r.kind == "reminder"]
    assert row.status == "pending" and row.not_before == trial.clock.now() + timedelta(seconds=7)

    trial.world.faults.fail_next("sendMessage", status=500)
    await trial.advance(seconds=7)
    assert reminders(user) == []
    trial.world.faults.fail_next("sendMessage", mode="drop")
    await trial.advance(minutes=1)
    assert reminders(user) == []
    await trial.advance(minutes=5)
    assert len(reminders(user)) == 1
    await trial.advance(minutes=30)
    assert len(reminders(user)) == 1
    [row] = [r for r in await outbox_rows(trial) if r.kind == "reminder"]
    assert row.status == "sent" and row.attempts == 4


async def test_a_restart_in_the_middle_of_a_wave_sends_everyone_exactly_once(trial: Trial) -> None:
    users = [await trial.join(f"P{n:03d}", user_id=2000 + n) for n in range(12)]
    trial.clock.advance(timedelta(hours=10))
    await trial.plan()
    dispatcher = trial.app.runtime.scheduler.dispatcher
    rows = [r for r in await outbox_rows(trial) if r.kind == "reminder"]
    for row in rows[:5]:
        await dispatcher._deliver(row.id)
    async with trial.db.transaction() as session:  # the process died right after claiming one more
        await session.execute(update(OutboxMessage).where(OutboxMessage.id == rows[5].id).values(status="sending"))
    await trial.restart()
    await trial.tick()
    assert [len(reminders(u)) for u in users] == [1] * 12


async def test_changing_time_zone_moves_the_reminders_without_repeating_one(trial: Trial) -> None:
    user = await trial.join()
    await trial.advance(hours=10)  # 20:00 New York
    assert len(reminders(user)) == 1
    async with trial.db.transaction() as session:
        person = await participants.by_study_id(session, "P001")
        await participants.move_to_zone(session, person, "Europe/London", actor=Actor.cli("t"), now=trial.clock.now())
    await trial.advance(hours=6)  # 07:00 London on the 25th
    assert len(reminders(user)) == 1
    await trial.advance(hours=1)  # 08:00 London
    assert len(reminders(user)) == 2 and reminders(user)[-1].date == datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


async def test_times_command_moves_a_reminder(trial: Trial) -> None:
    user = await trial.join()
    await user.send_text("/times")
    shown = await user.next_bot_event()
    assert "8:00\u202fAM" in shown.text and "8:00\u202fPM" in shown.text
    await user.press("Change 8:00\u202fPM")
    await user.next_bot_event()
    await user.press("9:00\u202fPM")
    saved = await user.next_bot_event()
    assert "9:00\u202fPM" in saved.text
    assert (await trial.participant()).reminder_times == "08:00,21:00"
    await trial.advance(hours=10)  # 20:00
    assert reminders(user) == []
    await trial.advance(hours=1)  # 21:00
    assert len(reminders(user)) == 1


async def test_staff_get_a_morning_digest_of_yesterday(trial: Trial) -> None:
    coordinator = await trial.add_staff(5005)
    user = await trial.join()
    await user.press(APPLIED_NOW)
    await user.next_bot_event()
    trial.clock.set(datetime(2026, 11, 25, 12, 29, tzinfo=UTC))  # 07:29 New York
    await trial.tick()
    assert not [m for m in coordinator.bot_messages if "Daily summary" in m.text]
    await trial.advance(minutes=1)
    [digest] = [m for m in coordinator.bot_messages if "Daily summary" in m.text]
    assert "P001" in digest.text and "1/2 applied" in digest.text
    await trial.advance(minutes=30)
    assert len([m for m in coordinator.bot_messages if "Daily summary" in m.text]) == 1


async def test_at_hundreds_of_participants_the_digest_still_fits_one_message(trial: Trial) -> None:
    """Telegram takes 4,096 characters a message: past 25 participants the digest names those who
    did not record every application first, and counts the rest."""
    from study.models import Participant

    coordinator = await trial.add_staff(5005)
    adherent = await trial.join("P000")  # sorts first, but recorded everything: not named
    await adherent.press(APPLIED_NOW)
    await adherent.next_bot_event()
    await trial.advance(hours=10)  # 20:00: the evening reminder
    await adherent.press(APPLIED_NOW, message_id=adherent.last_bot_message.message_id)
    await adherent.next_bot_event()
    for n in range(1, 300):
        await trial.enroll(f"P{n:03d}")
    async with trial.db.transaction() as session:  # they all joined too (the digest counts the active)
        await session.execute(update(Participant).where(Participant.status == "invited").values(status="active"))
    trial.clock.set(datetime(2026, 11, 25, 12, 30, tzinfo=UTC))  # 07:30 New York
    await trial.tick()
    [digest] = [m for m in coordinator.bot_messages if "Daily summary" in m.text]
    assert "of 300 participants" in digest.text
    named = [line for line in digest.text.splitlines() if line.startswith("• P")]
    assert len(named) == 25 and "P000" not in digest.text and named[0].startswith("• P001")
    assert "…and 275 more not listed here" in digest.text
    assert len(digest.text) <= 4096


async def test_missing_entries_are_not_kept_for_slots_before_joining(trial: Trial) -> None:
    await trial.join()  # joined at 10:00, after the 08:00 slot's reminder
    await trial.advance(hours=5)  # 15:00, the morning window closed
    assert [e for e in await trial.diary() if e.kind == "missing"] == []
    async with trial.db.transaction() as session:
        rows = (await session.scalars(select(DiaryEntry))).all()
    assert rows == []


@pytest.mark.parametrize("zone", ["America/New_York", "Europe/London", "Australia/Sydney", "Asia/Kolkata"])
async def test_across_a_daylight_saving_change_reminders_keep_local_time(trial: Trial, zone: str) -> None:
    """Real bot, hourly ticks, three days around the zone's spring change (Kolkata has none)."""
    change = {"America/New_York": "2026-03-08", "Europe/London": "2026-03-29",
              "Australia/Sydney": "2026-04-05", "Asia/Kolkata": "2026-03-08"}[zone]
    from zoneinfo import ZoneInfo

    tz = ZoneInfo(zone)
    day = datetime.fromisoformat(change).date()
    trial.clock.set(datetime.combine(day - timedelta(days=1), datetime.min.time(), tz).astimezone(UTC))
    user = await trial.join(timezone=zone)
    for _ in range(3 * 24):
        await trial.advance(hours=1)
    local_times = [m.date.astimezone(tz).strftime("%m-%d %H:%M") for m in reminders(user)]
    expected = [f"{d:%m-%d} {t}" for d in (day - timedelta(days=1), day, day + timedelta(days=1))
                for t in ("08:00", "20:00")]
    assert local_times == expected


async def test_deliveries_shows_each_messages_life(trial: Trial, monkeypatch: pytest.MonkeyPatch) -> None:
    if not trial.db.is_sqlite:
        pytest.skip("the command line reads DATABASE_URL, which names no test schema")
    from typer.testing import CliRunner

    from bot.cli import app

    user = await trial.join()
    await trial.advance(hours=10)  # the 20:00 reminder
    await user.press(APPLIED_NOW, message_id=reminders(user)[0].message_id)
    await user.wait_for(lambda u: "Saved" in u.message(reminders(u)[0].message_id).text)
    trial.clock.set(datetime(2026, 11, 26, 20, 0, tzinfo=UTC))  # down for a day: a stale one
    await trial.tick()
    monkeypatch.setenv("DATABASE_URL", trial.db.url.render_as_string(hide_password=False))
    monkeypatch.setenv("STUDY_FILE", str(EXAMPLE_PROTOCOL))
    result = await asyncio.to_thread(CliRunner().invoke, app, ["deliveries", "P001"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any("reminder:" in line and "202611242000" in line and "[sent]" in line for line in lines)
    assert any("answered" in line for line in lines)
    assert any("[skipped]" in line for line in lines) and any("missed delivery" in line for line in lines)
    assert "20:00 EST" in result.output  # due time in the participant's zone, besides UTC
