"""Study visits end to end: the schedule from the protocol, reminders at local times, Confirm and
Need to reschedule, moves and cancellations, the staff digest, and the CLI.

The participant joins on Tuesday 24 November 2026 at 10:00 in New York; baseline that day puts
the week 4 visit on Tuesday 22 December. Reminders: 10:00 local 7 days and 1 day before
(15:00 UTC, standard time), and 08:00 local on the day (13:00 UTC).
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from study import audit, participants, visits
from study.models import OutboxMessage, Visit
from tests.trial import COORDINATOR, Trial

pytestmark = pytest.mark.timeout(120)
REPO = Path(__file__).resolve().parent.parent
CONFIRM = "✅ Confirm: I will come"
RESCHEDULE = "📅 I need to reschedule"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def visit_reminders(user) -> list:
    return [m for m in user.bot_messages if "Your study visit" in (m.edits[0].text if m.edits else m.text or "")]


async def plan(trial: Trial, study_id: str = "P001", baseline: date = date(2026, 11, 24)) -> dict[str, Visit]:
    async with trial.db.transaction() as session:
        person = await participants.by_study_id(session, study_id)
        created = await visits.plan_schedule(session, trial.protocol, person, baseline=baseline, actor=COORDINATOR,
                                             now=trial.clock.now())
    return {v.name: v for v in created}


async def visit(trial: Trial, visit_id: int) -> Visit:
    async with trial.db.transaction() as session:
        return await session.get(Visit, visit_id)


async def at(trial: Trial, moment: datetime) -> None:
    trial.clock.set(moment)
    await trial.tick()


async def test_the_plan_follows_the_protocol_from_the_baseline_and_is_audited(trial: Trial) -> None:
    await trial.join()
    planned = await plan(trial)
    assert {name: v.scheduled_date.isoformat() for name, v in planned.items()} == {
        "baseline": "2026-11-24", "week4": "2026-12-22", "week8": "2027-01-19", "week12": "2027-02-16",
        "week16": "2027-03-16"}
    assert all(v.status == "scheduled" and v.window_days == 3 for v in planned.values())
    async with trial.db.transaction() as session:
        created = await audit.entries(session, entity="visit")
        person = await participants.by_study_id(session, "P001")
        with pytest.raises(visits.VisitError, match="already has a visit plan"):
            await visits.plan_schedule(session, trial.protocol, person, baseline=date(2026, 12, 1),
                                       actor=COORDINATOR, now=trial.clock.now())
    assert [(e.action, e.new_values["name"]) for e in created] == [("create", n) for n in planned]


async def test_reminders_come_7_days_before_1_day_before_and_on_the_morning_each_once(trial: Trial) -> None:
    user = await trial.join()
    await plan(trial)
    for before, moment, heading in (
        (utc(2026, 12, 15, 14, 59), utc(2026, 12, 15, 15, 0), "is in 7 days"),
        (utc(2026, 12, 21, 14, 59), utc(2026, 12, 21, 15, 0), "is tomorrow"),
        (utc(2026, 12, 22, 12, 59), utc(2026, 12, 22, 13, 0), "is today"),
    ):
        count = len(visit_reminders(user))
        await at(trial, before)
        assert len(visit_reminders(user)) == count, f"nothing before {moment}"
        await at(trial, moment)
        await trial.tick()
        await trial.tick()  # planning again sends nothing again
        assert len(visit_reminders(user)) == count + 1
        reminder = visit_reminders(user)[-1]
        assert heading in reminder.text and "Tuesday, December 22" in reminder.text
        assert reminder.date == moment and reminder.button_labels == [CONFIRM, RESCHEDULE]
    await at(trial, utc(2026, 12, 23, 15, 0))
    assert len(visit_reminders(user)) == 3


async def test_confirm_records_it_edits_the_message_and_later_reminders_carry_no_buttons(trial: Trial) -> None:
    user = await trial.join()
    week4 = (await plan(trial))["week4"]
    await at(trial, utc(2026, 12, 15, 15, 0))
    [reminder] = visit_reminders(user)
    await user.press(CONFIRM, message_id=reminder.message_id)
    await user.wait_for(lambda u: "Thank you!" in (u.message(reminder.message_id).text or ""))
    assert user.message(reminder.message_id).buttons == []
    assert (await visit(trial, week4.id)).status == "confirmed"
    async with trial.db.transaction() as session:
        changes = [e for e in await audit.entries(session, entity="visit", entity_ids=[str(week4.id)])
                   if e.action == "update"]
        row = await session.scalar(select(OutboxMessage).where(OutboxMessage.kind == "visit_reminder"))
    assert [(e.actor, e.old_values, e.new_values) for e in changes] == [
        ("participant:P001", {"status": "scheduled"}, {"status": "confirmed"})]
    assert row.answered_at is not None
    await at(trial, utc(2026, 12, 21, 15, 0))
    tomorrow = visit_reminders(user)[-1]
    assert "Thank you for confirming" in tomorrow.text and tomorrow.buttons == []


# Two taps in flight carry the same old message; Telegram refuses the second identical edit
# ("message is not modified") and the bot shrugs it off.
@pytest.mark.rejections_expected
async def test_need_to_reschedule_thanks_the_participant_and_alerts_staff_once(trial: Trial) -> None:
    coordinator = await trial.add_staff(5005, name="Dana")
    user = await trial.join()
    week4 = (await plan(trial))["week4"]
    await at(trial, utc(2026, 12, 15, 15, 0))
    [reminder] = visit_reminders(user)
    await user.press(RESCHEDULE, message_id=reminder.message_id)
    await user.press(RESCHEDULE, message_id=reminder.message_id)  # a double tap before the edit lands
    await user.wait_for(lambda u: len(u.callback_answers) == 2)
    assert "find a new day" in user.message(reminder.message_id).text
    assert {c.description for c in trial.world.rejected_calls} <= {
        "Bad Request: message is not modified: specified new message content and reply markup are exactly the "
        "same as a current content and reply markup of the message"}
    await coordinator.wait_for(lambda c: any("reschedule" in (m.text or "") for m in c.bot_messages))
    await trial.deliver()
    [notice] = [m for m in coordinator.bot_messages if "reschedule" in (m.text or "")]
    assert "P001" in notice.text and "Week 4" in notice.text and "December 22" in notice.text
    assert "Pat" not in notice.text, "staff notices name the study id, never the person"
    assert (await visit(trial, week4.id)).status == "reschedule_requested"
    async with trial.db.transaction() as session:
        changes = [e for e in await audit.entries(session, entity="visit", entity_ids=[str(week4.id)])
                   if e.action == "update"]
    assert [(e.actor, e.new_values) for e in changes] == [("participant:P001", {"status": "reschedule_requested"})]


async def test_a_moved_visit_gets_fresh_reminders_and_the_old_ones_are_not_sent(trial: Trial) -> None:
    user = await trial.join()
    week4 = (await plan(trial))["week4"]
    await at(trial, utc(2026, 12, 15, 15, 0))
    [old] = visit_reminders(user)

    trial.clock.set(utc(2026, 12, 16, 15, 0))
    async with trial.db.transaction() as session:
        person = await participants.by_study_id(session, "P001")
        moved = await visits.move(session, person, await session.get(Visit, week4.id), day=date(2026, 12, 29),
                                  at=None, actor=COORDINATOR, now=trial.clock.now(), reason="participant away")
    assert moved.outside_window is True  # 22 Dec ± 3 days
    await user.press(CONFIRM, message_id=old.message_id)  # the old reminder's button: changes nothing
    await user.wait_for(lambda u: "has changed" in (u.message(old.message_id).text or ""))
    assert (await visit(trial, week4.id)).status == "scheduled"

    await at(trial, utc(2026, 12, 21, 15, 0))  # the old day-before reminder
    await at(trial, utc(2026, 12, 22, 13, 0))  # the old morning-of reminder
    assert len(visit_reminders(user)) == 1
    await at(trial, utc(2026, 12, 22, 15, 0))  # 7 days before the new day
    new = visit_reminders(user)[-1]
    assert len(visit_reminders(user)) == 2 and "December 29" in new.text
    await user.press(CONFIRM, message_id=new.message_id)
    await user.wait_for(lambda u: "Thank you!" in (u.message(new.message_id).text or ""))
    assert (await visit(trial, week4.id)).status == "confirmed"


async def test_a_reminder_queued_before_a_move_or_cancel_is_skipped_at_delivery(trial: Trial) -> None:
    user = await trial.join("P001", user_id=1001)
    other = await trial.join("P002", user_id=1002)
    week4 = (await plan(trial, "P001"))["week4"]
    other_week4 = (await plan(trial, "P002"))["week4"]
    trial.clock.set(utc(2026, 12, 15, 15, 0))
    await trial.plan()  # queued, not yet delivered
    async with trial.db.transaction() as session:
        for study_id, visit_id in (("P001", week4.id), ("P002", other_week4.id)):
            person = await participants.by_study_id(session, study_id)
            row = await session.get(Visit, visit_id)
            if study_id == "P001":
                await visits.move(session, person, row, day=date(2026, 12, 23), at=None, actor=COORDINATOR,
                                  now=trial.clock.now())
            else:
                await visits.cancel(session, person, row, actor=COORDINATOR, now=trial.clock.now(), reason="test")
    await trial.deliver()
    assert visit_reminders(user) == [] and visit_reminders(other) == []
    async with trial.db.transaction() as session:
        rows = (await session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "visit_reminder")
                                      .order_by(OutboxMessage.id))).all()
    assert [(r.status, r.last_error) for r in rows] == [
        ("skipped", "the visit was moved after the reminder was queued"),
        ("skipped", "the visit was cancelled after the reminder was queued")]


async def test_a_cancelled_visit_gets_no_reminders(trial: Trial) -> None:
    user = await trial.join()
    week4 = (await plan(trial))["week4"]
    async with trial.db.transaction() as session:
        person = await participants.by_study_id(session, "P001")
        await visits.cancel(session, person, await session.get(Visit, week4.id), actor=COORDINATOR,
                            now=trial.clock.now(), reason="participant cannot come")
        [entry] = [e for e in await audit.entries(session, entity="visit", entity_ids=[str(week4.id)])
                   if e.action == "update"]
    assert (entry.old_values, entry.new_values, entry.reason) == (
        {"status": "scheduled"}, {"status": "cancelled"}, "participant cannot come")
    for moment in (utc(2026, 12, 15, 15, 0), utc(2026, 12, 21, 15, 0), utc(2026, 12, 22, 13, 0)):
        await at(trial, moment)
    assert visit_reminders(user) == []


async def test_forged_callback_data_naming_another_participants_visit_changes_nothing(trial: Trial) -> None:
    victim = await trial.join("P001", user_id=1001)
    forger = await trial.join("P002", user_id=1002)
    week4 = (await plan(trial, "P001"))["week4"]
    await plan(trial, "P002")
    await at(trial, utc(2026, 12, 15, 15, 0))
    async with trial.db.transaction() as session:
        before = await audit.count(session)
    mine = visit_reminders(forger)[-1]
    for data in (f"v:c:{week4.id}:1", f"v:r:{week4.id}:1", "v:c:999999:1"):
        await forger.press_forged(mine.message_id, data)
        await forger.wait_for(lambda u: "has changed" in (u.message(mine.message_id).text or ""))
    assert (await visit(trial, week4.id)).status == "scheduled"
    async with trial.db.transaction() as session:
        assert await audit.count(session) == before
    assert len(visit_reminders(victim)) == 1


async def test_the_staff_digest_lists_todays_visits(trial: Trial) -> None:
    coordinator = await trial.add_staff(5005)
    await trial.join()
    await plan(trial)
    await at(trial, utc(2026, 12, 22, 12, 30))  # 07:30 in New York, the digest time
    digest = [m for m in coordinator.bot_messages if "Daily summary" in (m.text or "")][-1]
    assert "Visits today" in digest.text and "P001: Week 4" in digest.text
    await at(trial, utc(2026, 12, 23, 12, 30))
    digest = [m for m in coordinator.bot_messages if "Daily summary" in (m.text or "")][-1]
    assert "P001: Week 4" not in digest.text and "None." in digest.text


def test_cli_plans_lists_moves_adds_and_cancels_visits(cli, tmp_path: Path) -> None:
    assert cli("enroll", "P001", "--timezone", "America/New_York", "--language", "en").exit_code == 0
    planned = cli("visits", "plan", "P001", "--baseline", "2026-11-24")
    assert planned.exit_code == 0, planned.output
    assert "Planned 5 visits" in planned.output and "2026-12-22" in planned.output
    again = cli("visits", "plan", "P001", "--baseline", "2026-11-24")
    assert again.exit_code == 2 and "already has a visit plan" in again.output

    inside = cli("visits", "move", "P001", "week4", "--date", "2026-12-24", "--time", "09:30", "--reason", "asked")
    assert inside.exit_code == 0 and "Warning" not in inside.output
    outside = cli("visits", "move", "P001", "week8", "--date", "2027-01-25")
    assert outside.exit_code == 0 and "outside the protocol's window" in outside.output

    added = cli("visits", "add", "P001", "--name", "extra1", "--date", "2026-12-02", "--time", "14:00",
                "--label", "Skin check")
    assert added.exit_code == 0, added.output
    cancelled = cli("visits", "cancel", "P001", "week12", "--reason", "site closed")
    assert cancelled.exit_code == 0 and "cancelled" in cancelled.output

    listing = cli("visits", "list", "P001").output.splitlines()
    assert [line.split()[0] for line in listing] == ["baseline", "extra1", "week4", "week8", "week12", "week16"]
    assert "2026-12-24 09:30" in listing[2] and "cancelled" in listing[4]

    for args, message in (
        (("visits", "move", "P001", "week99", "--date", "2026-12-24"), "no visit named week99"),
        (("visits", "move", "P001", "week4", "--date", "24/12/2026"), "not a date"),
        (("visits", "add", "P001", "--name", "extra1", "--date", "2026-12-02"), "already has a visit named"),
        (("visits", "list", "P999"), "No participant P999"),
        (("visits", "cancel", "P001", "week12", "--reason", "again"), "already cancelled"),
    ):
        result = cli(*args)
        assert result.exit_code == 2 and message in result.output, result.output
        assert "Traceback" not in result.output
    with sqlite3.connect(tmp_path / "cli.db") as db:
        actions = db.execute("SELECT action, COUNT(*) FROM audit_entries WHERE entity = 'visit' GROUP BY action")
        assert dict(actions.fetchall()) == {"create": 6, "update": 3}
