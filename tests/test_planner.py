"""The planner as a pure function: sixteen weeks of one participant's reminders in four time
zones, across the daylight-saving changes of the year, with a clock that jumps from one planned
moment to the next (as the scheduler does) plus an hourly tick."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from scheduler.planner import DiaryFact, ParticipantView
from scheduler.tick import Records, plan_participant
from study.protocol import EXAMPLE_PROTOCOL, load_protocol

PROTOCOL = load_protocol(EXAMPLE_PROTOCOL)
ZONES = ["America/New_York", "Europe/London", "Australia/Sydney", "Asia/Kolkata"]
# Both halves of the year: Feb-May holds the spring changes of New York and London and Sydney's
# autumn one; Sep-Jan holds Sydney's spring change and the autumn ones of London and New York.
PERIODS = [date(2026, 2, 2), date(2026, 9, 14)]
WEEKS = 16


def simulate(zone: str, start: date, times: tuple[time, ...], answers, weeks: int = WEEKS) -> dict:
    """Run the planner over WEEKS weeks; the participant answers a reminder 10 minutes after it
    arrives when `answers(slot_key)` says so. Returns what was sent and recorded, by kind."""
    tz = ZoneInfo(zone)
    joined = datetime.combine(start, time(0, 5), tz).astimezone(UTC)
    person = ParticipantView(id=1, study_id="P001", timezone=zone, reminder_times=times, active_since=joined)
    end = joined + timedelta(weeks=weeks)
    facts: list[DiaryFact] = []
    sent: dict[str, datetime] = {}
    missing: list[str] = []
    now = joined
    while now < end:
        plan = plan_participant(PROTOCOL, person, Records(diary=facts[-12:]), now)  # recent entries, as the tick loads
        for message in plan.messages:
            if message.key in sent:
                continue  # queued before: the outbox's unique key absorbs it
            assert not message.is_stale(now), "a clock that visits every planned moment sends nothing stale"
            sent[message.key] = now
            slot_key = message.key.rsplit(":", 1)[-1]
            if message.kind == "reminder" and answers(slot_key):
                answered = now + timedelta(minutes=10)
                facts.append(DiaryFact("applied", answered.astimezone(tz).date(), answered))
        for dose in plan.missing:
            if dose.slot.key not in missing:
                missing.append(dose.slot.key)
                facts.append(DiaryFact("missing", dose.slot.local_date, dose.slot.at))
        hourly = (now + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
        now = min(plan.next_check or hourly, hourly)
    return {"sent": sent, "missing": missing, "tz": tz}


def skip_every_fifth(slot_key: str) -> bool:
    return int(slot_key[6:8]) % 5 != 0  # no answer on the 5th, 10th, 15th... of each month


@pytest.mark.parametrize("start", PERIODS, ids=["spring", "autumn"])
@pytest.mark.parametrize("zone", ZONES)
def test_sixteen_weeks_of_reminders_at_local_time_once_each(zone: str, start: date) -> None:
    result = simulate(zone, start, (time(8, 0), time(20, 0)), skip_every_fifth)
    tz = result["tz"]
    reminders = {k: v for k, v in result["sent"].items() if k.startswith("reminder:")}
    nudges = {k: v for k, v in result["sent"].items() if k.startswith("nudge:")}

    days = WEEKS * 7
    assert len(reminders) == 2 * days, "every slot of every day reminded, and once"
    for key, at in reminders.items():
        local = at.astimezone(tz)
        assert local.strftime("%Y%m%d%H%M") == key.rsplit(":", 1)[-1], f"{key} fired at {local}"
    per_day = Counter(k.rsplit(":", 1)[-1][:8] for k in reminders)
    assert set(per_day.values()) == {2}

    unanswered = {k.rsplit(":", 1)[-1] for k in reminders if not skip_every_fifth(k.rsplit(":", 1)[-1])}
    assert {k.rsplit(":", 1)[-1] for k in nudges} == unanswered, "one nudge for each unanswered slot, no other"
    for key, at in nudges.items():
        slot_at = reminders["reminder:" + key.split(":", 1)[1]]
        assert at - slot_at == timedelta(minutes=PROTOCOL.reminders.nudge_after_minutes)
    assert sorted(result["missing"]) == sorted(unanswered), "missing recorded exactly for unanswered slots"


@pytest.mark.parametrize(
    ("day", "times", "expected_local"),
    [
        # New York springs forward at 02:00 on 8 March: 02:30 does not exist that day.
        (date(2026, 3, 8), (time(2, 30), time(20, 0)), "03:30 EDT"),
        # ...and falls back at 02:00 on 1 November: 01:30 happens twice.
        (date(2026, 11, 1), (time(1, 30), time(20, 0)), "01:30 EDT"),
    ],
    ids=["skipped-hour", "repeated-hour"],
)
def test_a_reminder_in_the_changing_hour_fires_once(day: date, times: tuple[time, ...], expected_local: str) -> None:
    start = day - timedelta(days=2)
    result = simulate("America/New_York", start, times, lambda _: True, weeks=1)
    tz = result["tz"]
    on_the_day = [at for key, at in result["sent"].items()
                  if key.startswith("reminder:") and key.endswith(f"{day:%Y%m%d}{times[0]:%H%M}")]
    assert len(on_the_day) == 1
    assert on_the_day[0].astimezone(tz).strftime("%H:%M %Z") == expected_local
    per_day = Counter(k.rsplit(":", 1)[-1][:8] for k in result["sent"] if k.startswith("reminder:"))
    assert set(per_day.values()) == {2}


def test_nothing_is_planned_before_joining_and_next_check_is_the_next_reminder() -> None:
    tz = ZoneInfo("Asia/Kolkata")
    joined = datetime(2026, 11, 24, 9, 0, tzinfo=tz).astimezone(UTC)
    person = ParticipantView(id=7, study_id="P007", timezone="Asia/Kolkata",
                             reminder_times=(time(8, 0), time(20, 0)), active_since=joined)
    plan = plan_participant(PROTOCOL, person, Records(), joined)
    assert plan.messages == [] and plan.missing == []
    assert plan.next_check == datetime(2026, 11, 24, 20, 0, tzinfo=tz).astimezone(UTC)


def test_a_reminders_buttons_are_read_back_as_its_slot_by_the_diary_handlers() -> None:
    # The planner writes the diary's buttons with bot/callback_data.py's builder; the handlers'
    # parser reads each back as the reminder's own slot (its day, its key), whatever the button.
    from bot import callback_data as cb

    zone = ZoneInfo("America/New_York")
    joined = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
    person = ParticipantView(id=1, study_id="P001", timezone="America/New_York", reminder_times=(time(8), time(20)),
                             active_since=joined)
    evening = datetime.combine(date(2026, 11, 24), time(20), zone).astimezone(UTC)
    [reminder] = [m for m in plan_participant(PROTOCOL, person, Records(diary=[]), evening).messages
                  if m.kind == "reminder"]
    steps = [cb.DiaryStep.parse(row[0][1]) for row in reminder.buttons]
    assert [row[0][1].rsplit(":", 1)[0] for row in reminder.buttons] == [cb.DIARY_NOW, cb.DIARY_EARLIER, cb.DIARY_MISSED]
    assert all(step is not None and step.day is None for step in steps)
    assert {cb.slot_day(step.form) for step in steps if step} == {date(2026, 11, 24)}
    assert {cb.slot_key(step.form) for step in steps if step} == {reminder.key.rsplit(":", 1)[-1]}
