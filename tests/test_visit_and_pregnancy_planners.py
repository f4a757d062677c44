"""The visit and pregnancy-test planners as pure functions: any instant, no database, no bot."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest

from messages.renderer import demo_catalog
from scheduler.planner import (
    ParticipantView,
    VisitFact,
    plan_pregnancy_tests,
    plan_visits,
)
from study.pregnancy_tests import PregnancyFact
from study.protocol import Protocol

JOINED = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)  # 10:00 in New York
PERSON = ParticipantView(id=7, study_id="P007", timezone="America/New_York", reminder_times=(time(8), time(20)),
                         active_since=JOINED, wocbp=True, consented_at=JOINED)
WEEK4 = VisitFact(id=3, name="week4", local_date=date(2026, 12, 22), local_time=None, status="scheduled",
                  revision=1, changed_at=JOINED)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_visit_reminders_come_7_days_and_1_day_before_at_10_and_on_the_morning_at_8(protocol: Protocol) -> None:
    assert plan_visits(protocol, PERSON, [WEEK4], utc(2026, 12, 15, 14, 59)).messages == []
    assert plan_visits(protocol, PERSON, [WEEK4], utc(2026, 12, 15, 14, 59)).next_check == utc(2026, 12, 15, 15, 0)
    for now, which, next_check in (
        (utc(2026, 12, 15, 15, 0), "d7", utc(2026, 12, 21, 15, 0)),  # 10:00 EST
        (utc(2026, 12, 21, 15, 0), "d1", utc(2026, 12, 22, 13, 0)),
        (utc(2026, 12, 22, 13, 0), "day", None),  # 08:00 EST on the day
    ):
        plan = plan_visits(protocol, PERSON, [WEEK4], now)
        assert [m.key for m in plan.messages][-1] == f"visit:7:3:r1:20261222:{which}"
        assert plan.messages[-1].due_at == now and plan.next_check == next_check
    message = plan.messages[-1]
    assert message.variables["visit_date"] == "2026-12-22" and message.variables["days_before"] == 0
    assert [row[0][1] for row in message.buttons] == ["v:c:3:1", "v:r:3:1"]


def test_visit_reminders_follow_local_time_across_the_spring_change(protocol: Protocol) -> None:
    visit = VisitFact(3, "week16", date(2027, 3, 15), time(9, 30), "scheduled", 1, JOINED)
    seven = plan_visits(protocol, PERSON, [visit], utc(2027, 3, 8, 15, 0)).messages  # 10:00 EST
    morning = plan_visits(protocol, PERSON, [visit], utc(2027, 3, 15, 12, 0)).messages  # 08:00 EDT
    assert seven[-1].key.endswith(":d7") and morning[-1].key.endswith(":day")
    assert morning[-1].variables["visit_at"] == "2027-03-15T13:30:00+00:00"


def test_a_moved_visit_has_new_keys_and_a_cancelled_or_done_one_none(protocol: Protocol) -> None:
    moved = VisitFact(3, "week4", date(2026, 12, 29), None, "scheduled", 2, utc(2026, 12, 16, 15, 0))
    plan = plan_visits(protocol, PERSON, [moved], utc(2026, 12, 22, 15, 0))
    assert [m.key for m in plan.messages] == ["visit:7:3:r2:20261229:d7"]
    for status in ("cancelled", "done"):
        gone = VisitFact(3, "week4", date(2026, 12, 22), None, status, 1, JOINED)
        plan = plan_visits(protocol, PERSON, [gone], utc(2026, 12, 22, 13, 0))
        assert plan.messages == [] and plan.next_check is None


def test_nothing_from_before_a_visit_was_planned_and_no_buttons_once_confirmed(protocol: Protocol) -> None:
    late_plan = VisitFact(3, "extra", date(2026, 12, 22), None, "confirmed", 1, utc(2026, 12, 19, 15, 0))
    plan = plan_visits(protocol, PERSON, [late_plan], utc(2026, 12, 21, 15, 0))
    assert [m.key for m in plan.messages] == ["visit:7:3:r1:20261222:d1"]
    assert plan.messages[0].buttons == [] and plan.messages[0].variables["confirmed"] is True
    # Long past: left alone, not offered to the outbox again on every tick.
    assert plan_visits(protocol, PERSON, [WEEK4], utc(2026, 12, 26, 15, 0)).messages == []


def test_pregnancy_tests_are_never_planned_for_participants_who_are_not_wocbp(protocol: Protocol) -> None:
    other = ParticipantView(8, "P008", "America/New_York", (time(8), time(20)), JOINED, wocbp=False,
                            consented_at=JOINED)
    for days in range(0, 60, 3):
        plan = plan_pregnancy_tests(protocol, other, [], JOINED + timedelta(days=days))
        assert plan.messages == [] and plan.next_check is None
    disabled = protocol.model_copy(update={"pregnancy_tests": protocol.pregnancy_tests.model_copy(
        update={"enabled": False})})
    assert plan_pregnancy_tests(disabled, PERSON, [], utc(2026, 12, 22, 14, 0)).messages == []


def test_a_pregnancy_test_is_due_28_days_after_consent_and_repeats_every_2_days(protocol: Protocol) -> None:
    early = plan_pregnancy_tests(protocol, PERSON, [], utc(2026, 12, 22, 13, 59))
    assert early.messages == [] and early.next_check == utc(2026, 12, 22, 14, 0)  # 09:00 EST
    first = plan_pregnancy_tests(protocol, PERSON, [], utc(2026, 12, 22, 14, 0))
    assert [m.key for m in first.messages] == ["preg:7:20261222:0"]
    assert first.next_check == utc(2026, 12, 24, 14, 0)
    assert [row[0][1] for row in first.messages[0].buttons] == ["p:n:7:20261222:0", "p:p:7:20261222:0",
                                                                "p:w:7:20261222:0"]
    again = plan_pregnancy_tests(protocol, PERSON, [PregnancyFact("not_yet", date(2026, 12, 22))],
                                 utc(2026, 12, 24, 14, 0))
    assert [m.key for m in again.messages] == ["preg:7:20261222:1"], "not yet does not stop the repeats"


def test_a_late_result_does_not_move_the_test_calendar(protocol: Protocol) -> None:
    facts = [PregnancyFact("negative", date(2026, 12, 23))]  # the test due on the 22nd, answered a day late
    assert plan_pregnancy_tests(protocol, PERSON, facts, utc(2026, 12, 24, 14, 0)).messages == []
    plan = plan_pregnancy_tests(protocol, PERSON, facts, utc(2027, 1, 19, 14, 0))
    assert [m.key for m in plan.messages] == ["preg:7:20270119:0"], "28 days from day 0, not from the answer"


NEW_TEMPLATES = {
    "visit_reminder": {"days_before": 7, "visit_date": date(2026, 12, 22), "visit_at": None, "confirmed": False,
                       "late": True},
    "visit_confirmed": {"visit_date": date(2026, 12, 22), "visit_at": None},
    "visit_reschedule_thanks": {"visit_date": date(2026, 12, 22), "visit_at": None},
    "visit_changed": {},
    "pregnancy_reminder": {"where": "site", "repeat": 1, "late": False, "due_date": date(2026, 12, 22)},
    "pregnancy_negative_saved": {"next_date": date(2027, 1, 19), "repeat_days": 2, "where": "home",
                                 "ask_contraception": False},
    "pregnancy_positive": {"next_date": date(2027, 1, 19), "repeat_days": 2, "where": "home"},
    "pregnancy_not_yet": {"next_date": date(2027, 1, 19), "repeat_days": 2, "where": "home"},
    "pregnancy_expired": {},
    "staff_visit_reschedule": {"study_id": "P001", "visit_label": "Week 4", "visit_date": date(2026, 12, 22),
                               "visit_time": "09:30"},
}


@pytest.mark.parametrize("template_id", sorted(NEW_TEMPLATES))
def test_every_new_message_exists_in_english_and_spanish_with_the_same_blocks(template_id: str) -> None:
    catalog = demo_catalog({}, ["en", "es"])
    assert catalog.path(template_id, "es").exists()
    assert sorted(catalog.block_names(template_id, "en")) == sorted(catalog.block_names(template_id, "es"))
    study = {"study_name": "Skin Cream Study", "study_phone": "216 445-8776", "study_email": "x@example.org"}
    for language in ("en", "es"):
        rendered = catalog.render(template_id, language, {**study, **NEW_TEMPLATES[template_id]})
        assert rendered.language == language and rendered.text


def test_what_the_planners_put_on_buttons_the_handlers_read_back(protocol: Protocol) -> None:
    # One format for what buttons send back (bot/callback_data.py): the planners write it with its
    # builders, the handlers read it with its parsers, and the two agree on every value.
    from bot import callback_data as cb

    visit = plan_visits(protocol, PERSON, [WEEK4], utc(2026, 12, 15, 15, 0)).messages[-1]
    assert [cb.VisitAnswer.parse(row[0][1]) for row in visit.buttons] == [
        cb.VisitAnswer(cb.VISIT_CONFIRM, WEEK4.id, WEEK4.revision),
        cb.VisitAnswer(cb.VISIT_RESCHEDULE, WEEK4.id, WEEK4.revision)]
    test = plan_pregnancy_tests(protocol, PERSON, [], utc(2026, 12, 22, 14, 0)).messages[0]
    assert [cb.PregnancyAnswer.parse(row[0][1]) for row in test.buttons] == [
        cb.PregnancyAnswer(result, PERSON.id, date(2026, 12, 22), 0) for result in ("negative", "positive", "not_yet")]
    assert [row[0][0] for row in test.buttons] == ["pregnancy_negative", "pregnancy_positive", "pregnancy_not_yet"]
