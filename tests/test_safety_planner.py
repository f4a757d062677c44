"""The safety planners as pure functions: check-in cadence and alert follow-ups."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from scheduler.planner import ParticipantView
from scheduler.safety_planner import plan_alert_followups, plan_checkins
from study.protocol import EXAMPLE_PROTOCOL, load_protocol

PROTOCOL = load_protocol(EXAMPLE_PROTOCOL)
JOINED = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)  # 10:00 New York
PERSON = ParticipantView(id=1, study_id="P001", timezone="America/New_York",
                         reminder_times=(time(8), time(20)), active_since=JOINED)


def keys(plan) -> list[str]:
    return [m.key for m in plan.messages]


def test_weekly_check_ins_keep_their_rhythm_even_when_one_is_skipped() -> None:
    assert keys(plan_checkins(PROTOCOL, PERSON, None, JOINED + timedelta(days=6, hours=23))) == []
    assert keys(plan_checkins(PROTOCOL, PERSON, None, JOINED + timedelta(days=7))) == ["checkin:1:20261201"]
    # Never answered: the next week's still comes.
    assert keys(plan_checkins(PROTOCOL, PERSON, None, JOINED + timedelta(days=14))) == ["checkin:1:20261208"]
    # Answered on 3 December: the next is a week after that.
    done = datetime(2026, 12, 3, 18, 0, tzinfo=UTC)
    assert keys(plan_checkins(PROTOCOL, PERSON, done, JOINED + timedelta(days=14))) == []
    assert keys(plan_checkins(PROTOCOL, PERSON, done, datetime(2026, 12, 10, 15, 0, tzinfo=UTC))) == [
        "checkin:1:20261210"]


def test_daily_scores_when_the_protocol_asks_for_them() -> None:
    daily = PROTOCOL.model_copy(update={"checkins": PROTOCOL.checkins.model_copy(update={"daily_scores": True})})
    plan = plan_checkins(daily, PERSON, None, JOINED + timedelta(days=2))
    assert keys(plan) == ["scores:1:20261126"]
    assert plan.messages[0].buttons == [[["checkin_start", "k:start:scores", {}]]]
    assert keys(plan_checkins(PROTOCOL, PERSON, None, JOINED + timedelta(days=2))) == [], "off by default"


def test_alert_follow_ups_resend_every_half_hour_and_escalate_once() -> None:
    staff = [(1, "coordinator"), (2, "investigator")]
    reported = JOINED
    alert = [(9, reported, {"alert_id": 9})]
    assert plan_alert_followups(PROTOCOL, alert, staff, reported + timedelta(minutes=29)) == []
    at_30 = plan_alert_followups(PROTOCOL, alert, staff, reported + timedelta(minutes=30))
    assert sorted(m.key for m in at_30) == ["alert:9:r1:staff1", "alert:9:r1:staff2"]
    at_120 = plan_alert_followups(PROTOCOL, alert, staff, reported + timedelta(minutes=120))
    assert sorted(m.key for m in at_120) == ["alert:9:escalated:staff2", "alert:9:r4:staff1"]
    assert all(m.variables["escalated"] for m in at_120)
    after_downtime = plan_alert_followups(PROTOCOL, alert, staff, reported + timedelta(hours=5))
    assert len([m for m in after_downtime if m.staff_id == 1]) == 1, "only the latest round, no burst"
