"""Each participant's treatment course, end to end through the real bot with a moving clock:
the pregnancy pathway, interruptions by role, follow-up, and what the scheduler plans in each
state. Participants join on Tuesday 24 November 2026 at 10:00 in New York; the baseline visit is
that day, so with every_days = 28 the first pregnancy test falls due on Tuesday 22 December."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select

from study import treatment, visits
from study.models import Alert, DiaryEntry, OutboxMessage, Participant, TreatmentChange
from tests.test_pregnancy_tests import POSITIVE, answer, test_reminders
from tests.test_safety import alerts_in, press, say
from tests.trial import COORDINATOR, Trial

pytestmark = pytest.mark.timeout(180)
CREAM = "Time for your study cream"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


async def baseline_today(trial: Trial, study_id: str = "P001") -> None:
    async with trial.db.transaction() as session:
        person = await trial_participant(session, study_id)
        await visits.plan_schedule(session, trial.protocol, person, baseline=date(2026, 11, 24), actor=COORDINATOR,
                                   now=trial.clock.now())


async def trial_participant(session, study_id: str) -> Participant:
    return await session.scalar(select(Participant).where(Participant.study_id == study_id))


async def run_until(trial: Trial, end: datetime) -> None:
    """Let time pass as the minute tick would see it: to every moment something is planned
    (a participant's next look, a queued message), then to `end`."""
    await trial.tick()  # whoever was never looked at is planned now, and has a next look
    while True:
        async with trial.db.read() as session:
            planned = await session.scalar(select(func.min(Participant.next_plan_at)).where(
                Participant.next_plan_at > trial.clock.now()))
            queued = await session.scalar(select(func.min(OutboxMessage.not_before)).where(
                OutboxMessage.status == "pending", OutboxMessage.not_before > trial.clock.now()))
        upcoming = [m for m in (planned, queued) if m is not None and m <= end]
        if not upcoming:
            break
        trial.clock.set(min(upcoming))
        await trial.tick()
    trial.clock.set(end)
    await trial.tick()


async def sent(trial: Trial, kind: str, *, since: datetime) -> list[OutboxMessage]:
    async with trial.db.read() as session:
        return list((await session.scalars(select(OutboxMessage).where(
            OutboxMessage.kind == kind, OutboxMessage.status == "sent", OutboxMessage.sent_at > since))).all())


async def missing_since(trial: Trial, since: datetime) -> int:
    async with trial.db.read() as session:
        return await session.scalar(select(func.count()).select_from(DiaryEntry).where(
            DiaryEntry.kind == "missing", DiaryEntry.recorded_at >= since))


async def test_a_positive_test_stops_cream_and_test_reminders_for_60_days_while_visits_go_on(trial: Trial) -> None:
    coordinator = await trial.add_staff(5005, name="Dana")
    investigator = await trial.add_staff(6006, name="Dr Gray", role="investigator")
    user = await trial.join(wocbp=True)
    await baseline_today(trial)
    await run_until(trial, utc(2026, 12, 22, 14, 0))  # 09:00 in New York: the first test is due
    assert await sent(trial, "reminder", since=utc(2026, 12, 21)), "cream reminders came until now"
    [reminder] = test_reminders(user)
    await answer(user, POSITIVE, reminder.message_id, "stop applying the study cream")
    positive_at = trial.clock.now()
    person = await trial.participant()
    assert (person.treatment, person.treatment_reason) == ("interrupted", "pregnancy")
    for member in (coordinator, investigator):
        await member.wait_for(lambda c: any("interrupted automatically" in (m.text or "") for m in alerts_in(c)))

    await run_until(trial, positive_at + timedelta(days=60))
    assert await sent(trial, "reminder", since=positive_at) == []
    assert await sent(trial, "nudge", since=positive_at) == []
    assert await missing_since(trial, positive_at) == 0
    assert await sent(trial, "pregnancy_reminder", since=positive_at) == []
    assert len(test_reminders(user)) == 1
    visit_reminders = await sent(trial, "visit_reminder", since=positive_at)
    assert len(visit_reminders) >= 4, "the week-8 and week-12 visits are still reminded"
    assert [m for m in user.bot_messages if CREAM in (m.text or "") and m.date >= positive_at] == []


async def test_interrupt_and_resume_by_role_with_who_when_and_why(trial: Trial) -> None:
    coordinator = await trial.add_staff(5005, name="Dana", role="coordinator")
    investigator = await trial.add_staff(6006, name="Dr Gray", role="investigator")
    monitor = await trial.add_staff(7007, name="Mo", role="monitor")
    user = await trial.join()
    await trial.deliver()  # the consent notices are out before the team's commands
    await say(monitor, "/interrupt P001 infection shingles")
    assert "cannot do this" in monitor.last_bot_message.text
    await say(coordinator, "/interrupt P001 infection shingles on the left arm")
    assert "Changed." in coordinator.last_bot_message.text and "INTERRUPTED" in coordinator.last_bot_message.text
    await user.wait_for(lambda u: any("do not apply the study cream" in (m.text or "") for m in u.bot_messages))

    await trial.advance(days=1)
    assert [m for m in user.bot_messages if CREAM in (m.text or "")] == [], "no cream reminders while interrupted"

    await say(coordinator, "/resume P001 infection treated")
    assert "cannot do this" in coordinator.last_bot_message.text, "only the investigator resumes"
    await say(monitor, "/resume P001 infection treated")
    assert "cannot do this" in monitor.last_bot_message.text
    await say(investigator, "/resume P001")
    assert "say why" in investigator.last_bot_message.text
    await say(investigator, "/resume P001 shingles healed, cleared at the visit")
    assert "on treatment" in investigator.last_bot_message.text
    await user.wait_for(lambda u: any("start applying the study cream again" in (m.text or "")
                                      for m in u.bot_messages))
    await trial.advance(hours=23)  # 09:00 the next morning: past 08:00
    assert any(CREAM in (m.text or "") for m in user.bot_messages), "reminders come back after resuming"

    await say(monitor, "/treatment P001")
    overview = monitor.last_bot_message.text
    assert "by Dana" in overview and "by Dr Gray" in overview and "shingles healed" in overview
    async with trial.db.read() as session:
        changes = (await session.scalars(select(TreatmentChange).order_by(TreatmentChange.id))).all()
    assert [(c.previous, c.state, c.reason) for c in changes] == [
        ("on_treatment", "interrupted", "infection"), ("interrupted", "on_treatment", "investigator_decision")]
    assert changes[0].timezone == "America/New_York" and changes[0].local_date == date(2026, 11, 24)


async def test_an_interruption_for_infection_keeps_pregnancy_tests_and_visits(trial: Trial) -> None:
    coordinator = await trial.add_staff(5005)
    user = await trial.join(wocbp=True)
    await baseline_today(trial)
    await trial.deliver()
    await say(coordinator, "/interrupt P001 infection")
    await run_until(trial, utc(2026, 12, 22, 14, 0))
    assert len(test_reminders(user)) == 1, "the test is still due while interrupted for an infection"
    assert [m for m in user.bot_messages if CREAM in (m.text or "")] == []
    assert await sent(trial, "visit_reminder", since=utc(2026, 11, 24)), "the week-4 visit is reminded"


async def test_off_treatment_ends_cream_reminders_and_follow_up_goes_on(trial: Trial) -> None:
    coordinator = await trial.add_staff(5005)
    user = await trial.join()
    await trial.deliver()  # the consent notice is out before the team's commands
    await say(coordinator, "/offtreatment P001")
    assert "off treatment (follow-up)" in coordinator.last_bot_message.text
    await user.wait_for(lambda u: any("treatment with the study cream has ended" in (m.text or "")
                                      for m in u.bot_messages))
    await trial.advance(days=7)
    assert [m for m in user.bot_messages if CREAM in (m.text or "")] == []
    assert any("Time for your check-in" in (m.text or "") for m in user.bot_messages), "check-ins go on"
    await say(coordinator, "/interrupt P001 infection")
    assert "cannot go there" in coordinator.last_bot_message.text


async def test_the_positive_button_is_offered_only_to_those_tested(trial: Trial) -> None:
    coordinator = await trial.add_staff(5005)
    man = await trial.join("P001", user_id=1001)
    woman = await trial.join("P002", user_id=1002, wocbp=True)
    await say(man, "/urgent")
    assert "A positive pregnancy test" not in man.last_bot_message.button_labels
    await man.press_forged(man.last_bot_message.message_id, "u:pregnancy_positive")
    await man.wait_for(lambda u: "does not work" in (u.last_bot_message.text or "")
                       or "nothing was changed" in (u.last_bot_message.text or ""))
    assert (await trial.participant("P001")).treatment == "on_treatment"
    await say(woman, "/urgent")
    await press(woman, "A positive pregnancy test")
    assert "stop applying the study cream" in woman.last_bot_message.text
    assert (await trial.participant("P002")).treatment == "interrupted"
    await coordinator.wait_for(lambda c: any("interrupted automatically" in (m.text or "") for m in alerts_in(c)))
    async with trial.db.read() as session:
        assert await session.scalar(select(func.count()).select_from(Alert)) == 1


def test_the_test_calendar_is_anchored_and_does_not_drift(protocol) -> None:
    from study.pregnancy_tests import PregnancyFact, due_date

    rules = protocol.pregnancy_tests
    day0 = date(2026, 11, 24)
    assert due_date(rules, day0, [], date(2026, 12, 1)) == date(2026, 12, 22)
    late = [PregnancyFact("negative", date(2026, 12, 27))]  # answered five days late
    assert due_date(rules, day0, late, date(2026, 12, 28)) == date(2027, 1, 19), "not 28 days after the answer"
    assert due_date(rules, day0, [PregnancyFact("not_yet", date(2026, 12, 23))], date(2026, 12, 24)) == date(2026, 12, 22)
    # A test never answered is not chased once the next one falls due.
    assert due_date(rules, day0, [], date(2027, 1, 20)) == date(2027, 1, 19)


def test_pregnancy_tests_stop_for_good_once_the_course_changed_for_pregnancy() -> None:
    during = ["on_treatment", "interrupted", "off_treatment"]
    assert treatment.pregnancy_tests_due(during, "interrupted", "infection")
    assert not treatment.pregnancy_tests_due(during, "interrupted", "pregnancy")
    assert not treatment.pregnancy_tests_due(during, "off_treatment", "pregnancy")
    assert not treatment.pregnancy_tests_due(["on_treatment"], "off_treatment", "end_of_treatment")
