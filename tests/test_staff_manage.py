"""The study team runs a participant's record from Telegram (issue 16, item 1): /visits P001 and its
buttons (plan from a baseline date, move, cancel, mark done), /pause, /end, /timezone, /deliveries
and a staff /help; each change shown back with Confirm and Cancel and carried out once, by the
same domain calls as the command line; a monitor may look, not change, and each refusal is on
the record."""

from __future__ import annotations

import re
from datetime import date, time, timedelta

import pytest
from sqlalchemy import select

from study import outbox, participants, visits
from study.models import AuditEntry, OutboxMessage, StaffRequest, Visit
from tests.redelivery import HandledUpdates, deliver_again, last_update_id
from tests.test_broadcasts import say
from tests.trial import COORDINATOR, Trial

pytestmark = pytest.mark.timeout(120)


async def rows(trial: Trial, model, *where) -> list:
    async with trial.db.transaction() as session:
        order = model.seq if model is AuditEntry else model.id
        return list((await session.scalars(select(model).where(*where).order_by(order))).all())


async def visit(trial: Trial, study_id: str, name: str) -> Visit:
    async with trial.db.transaction() as session:
        return await visits.by_name(session, await participants.by_study_id(session, study_id), name)


async def plan(trial: Trial, study_id: str = "P001", baseline: date = date(2026, 11, 26)) -> None:
    async with trial.db.transaction() as session:
        person = await participants.by_study_id(session, study_id)
        await visits.plan_schedule(session, trial.protocol, person, baseline=baseline, actor=COORDINATOR,
                                   now=trial.clock.now())


def text_of(user) -> str:
    return user.last_bot_message.text or ""


async def tap(user, label: str, *, message_id: int | None = None) -> None:
    before = len(user.callback_answers)
    await user.press(label, message_id=message_id)
    await user.wait_for(lambda u: len(u.callback_answers) > before)


async def test_a_coordinator_plans_visits_from_a_baseline_date_and_a_second_plan_is_refused(
        trial: Trial, handled: HandledUpdates) -> None:
    await trial.join("P001", user_id=2001)
    dana = await trial.add_staff(5005, name="Dana")
    await say(dana, "/visits P001")
    assert "No visits planned yet" in text_of(dana)
    assert dana.last_bot_message.button_labels == ["📅 Plan from a baseline date"]

    await tap(dana, "📅 Plan from a baseline date")
    question = dana.last_bot_message
    assert "What is the baseline date?" in question.text and question.button_labels == ["✖️ Cancel"]
    await say(dana, "26/11/2026")
    assert "“26/11/2026” is not a date I can read" in text_of(dana) and "baseline date" in text_of(dana)
    await say(dana, "2026-11-26")
    confirmation = dana.last_bot_message
    assert "plan the protocol's visits from the baseline date Thu 2026-11-26" in confirmation.text
    assert "Week 4 (week4): Thu 2026-12-24, ±3 days" in confirmation.text
    assert confirmation.button_labels == ["✅ Confirm", "✖️ Cancel"]
    assert await rows(trial, Visit) == [], "nothing is planned before Confirm"

    await tap(dana, "✅ Confirm")
    assert confirmation_text(dana, confirmation).startswith("✅ Done:")
    planned = await rows(trial, Visit)
    assert [(v.name, v.scheduled_date) for v in planned][:2] == [("baseline", date(2026, 11, 26)),
                                                                 ("week4", date(2026, 12, 24))]
    created = await rows(trial, AuditEntry, AuditEntry.entity == "visit")
    assert len(created) == len(planned) and {e.actor for e in created} == {"staff:1"}

    # Exactly once: a second tap on Confirm, and the press delivered again, plan nothing more.
    confirm_update = last_update_id(trial)
    await dana.press_forged(confirmation.message_id, confirmation_data(confirmation))
    await deliver_again(trial, handled, confirm_update)
    assert len(await rows(trial, Visit)) == len(planned)
    assert len(await rows(trial, AuditEntry, AuditEntry.entity == "visit")) == len(planned)

    await say(dana, "/visits P001")
    listing = dana.last_bot_message
    assert "Week 4 (week4): Thu 2026-12-24, scheduled; protocol window 2026-12-24 ±3 days" in listing.text
    assert "📅 Plan from a baseline date" not in listing.button_labels
    await say(dana, "/visits P001 plan 2026-11-30")
    assert "P001 already has a visit plan, so it is not planned again" in text_of(dana)
    assert len(await rows(trial, Visit)) == len(planned)


def confirmation_text(user, message) -> str:
    return user.message(message.message_id).text


def confirmation_data(message) -> str:
    return next(data for row in message.buttons for label, data in row if label == "✅ Confirm")


async def test_moving_a_visit_asks_which_the_date_and_why_and_warns_outside_the_window(
        trial: Trial, handled: HandledUpdates) -> None:
    await trial.join("P001", user_id=2001)
    await plan(trial)
    dana = await trial.add_staff(5005, name="Dana")
    await say(dana, "/visits P001")
    await tap(dana, "🔁 Move a visit")
    assert "Which visit?" in text_of(dana)
    await tap(dana, "week4: Thu 2026-12-24")
    assert "The Week 4 visit is on Thu 2026-12-24 (protocol window 2026-12-24 ±3 days)" in text_of(dana)
    await say(dana, "2027-01-10 25:00")
    assert "“25:00” is not a time I can read" in text_of(dana)
    await say(dana, "2027-01-10 10:30")
    assert "Why is the Week 4 visit moved?" in text_of(dana)
    await say(dana, "   ")  # Telegram does not send blank messages; a reason of one space is asked again
    await say(dana, "travelling over the holidays")
    confirmation = dana.last_bot_message
    answered = len(dana.bot_messages)
    await deliver_again(trial, handled, last_update_id(trial))  # the typed reason delivered again
    assert len(dana.bot_messages) == answered, "answered once; it is not taken as another answer"
    assert ("move the Week 4 visit from Thu 2026-12-24 to Sun 2027-01-10 at 10:30. "
            "Reason: travelling over the holidays") in confirmation.text
    assert "⚠️ 2027-01-10 is outside the protocol's window for this visit (2026-12-24 ±3 days)" in confirmation.text
    assert (await visit(trial, "P001", "week4")).scheduled_date == date(2026, 12, 24), "not before Confirm"

    await tap(dana, "✅ Confirm")
    moved = await visit(trial, "P001", "week4")
    assert (moved.scheduled_date, moved.scheduled_time, moved.revision) == (date(2027, 1, 10), time(10, 30), 2)
    assert "✅ Done:" in confirmation_text(dana, confirmation)
    assert "from Thu 2026-12-24 to Sun 2027-01-10" in confirmation_text(dana, confirmation)
    [change] = [e for e in await rows(trial, AuditEntry, AuditEntry.entity == "visit") if e.action == "update"]
    assert (change.actor, change.reason, change.timezone) == ("staff:1", "travelling over the holidays",
                                                             "America/New_York")
    await deliver_again(trial, handled, last_update_id(trial))
    assert (await visit(trial, "P001", "week4")).revision == 2, "the press delivered again moves nothing"


async def test_cancel_typed_in_one_line_then_cancelled_then_done(trial: Trial) -> None:
    await trial.join("P001", user_id=2001)
    await plan(trial)
    dana = await trial.add_staff(5005, name="Dana")
    await say(dana, "/visits P001 cancel week8 the site is closed that week")
    first = dana.last_bot_message
    assert "cancel the Week 8 visit of Thu 2027-01-21: no more reminders for it. Reason: the site is closed" \
           in first.text
    await tap(dana, "✖️ Cancel")
    assert confirmation_text(dana, first).startswith("✖️ Cancelled, nothing changed:")
    assert (await visit(trial, "P001", "week8")).status == "scheduled"
    await dana.press_forged(first.message_id, confirmation_data(first))  # Confirm after Cancel: nothing
    await dana.wait_for(lambda u: len(u.callback_answers) >= 2)
    assert (await visit(trial, "P001", "week8")).status == "scheduled"
    assert confirmation_text(dana, first).startswith("✖️ Cancelled")

    await say(dana, "/visits P001 cancel week8")
    assert "Why is the Week 8 visit cancelled?" in text_of(dana)
    await say(dana, "the site is closed that week")
    await tap(dana, "✅ Confirm")
    assert (await visit(trial, "P001", "week8")).status == "cancelled"

    await say(dana, "/visits P001 done baseline")
    assert "mark the Baseline visit of Thu 2026-11-26 as done" in text_of(dana)
    await tap(dana, "✅ Confirm")
    assert (await visit(trial, "P001", "baseline")).status == "done"
    await say(dana, "/visits P001 done baseline")
    assert "Nothing changed: the baseline visit is done already" in text_of(dana)
    await say(dana, "/visits P001 move week99 2027-01-10")
    assert "P001 has no visit named week99" in text_of(dana)


async def queue_later(trial: Trial, study_id: str = "P001") -> None:
    """A message queued for the participant, to go in an hour (a reply the team wrote, say)."""
    async with trial.db.transaction() as session:
        person = await participants.by_study_id(session, study_id)
        await outbox.enqueue(session, dedup_key=f"later:{study_id}", template_id="message_from_team",
                             variables={"text": "See you on Tuesday."}, now=trial.clock.now(), participant_id=person.id,
                             not_before=trial.clock.now() + timedelta(hours=1), kind="reply")


async def test_pause_stops_what_the_bot_starts_and_tells_the_team(trial: Trial) -> None:
    user = await trial.join("P001", user_id=2001)
    dana = await trial.add_staff(5005, name="Dana")
    gray = await trial.add_staff(6006, name="Dr Gray", role="investigator")
    await queue_later(trial)
    await say(dana, "/pause P001")
    confirmation = dana.last_bot_message
    assert "pause the bot's messages to them" in confirmation.text
    assert (await trial.participant()).status == "active", "nothing before Confirm"
    await tap(dana, "✅ Confirm")
    assert (await trial.participant()).status == "paused"
    queued = await rows(trial, OutboxMessage, OutboxMessage.participant_id.is_not(None))
    assert queued and all(r.status != "pending" for r in queued), "what was queued is not sent"
    await gray.wait_for(lambda u: "were paused by the study team" in (u.last_bot_message.text or ""))
    before = len(user.bot_messages)
    await trial.advance(hours=12)
    assert len(user.bot_messages) == before, "a paused participant gets nothing"
    await say(dana, "/pause P001")
    assert "messages to P001 are paused already" in text_of(dana)
    await say(user, "/resume")  # the participant turns them back on, as after their own /stop
    assert (await trial.participant()).status == "active"


async def test_end_withdrawn_or_completed_as_the_command_line_does(trial: Trial) -> None:
    await trial.join("P001", user_id=2001)
    await trial.join("P002", user_id=2002)
    dana = await trial.add_staff(5005, name="Dana")
    await queue_later(trial)
    await say(dana, "/end P001 withdrawn moved away")
    assert "end their participation: withdrawn. Reason: moved away" in text_of(dana)
    await tap(dana, "✅ Confirm")
    person = await trial.participant("P001")
    assert (person.status, person.treatment) == ("withdrawn", "withdrawn")
    queued = await rows(trial, OutboxMessage, OutboxMessage.participant_id == person.id)
    assert queued and {r.status for r in queued} == {"skipped"}
    await say(dana, "/end P001 completed")
    assert "P001 has withdrawn from the study" in text_of(dana)

    await say(dana, "/end P002 completed")
    assert "Why is P002 marked as having completed the study?" in text_of(dana)
    await say(dana, "finished week 16")
    await tap(dana, "✅ Confirm")
    assert (await trial.participant("P002")).status == "completed"
    await say(dana, "/end P002 finished")
    assert "How to use /end" in text_of(dana)
    [ended] = [e for e in await rows(trial, AuditEntry, AuditEntry.entity == "participant")
               if (e.new_values or {}).get("status") == "completed"]
    assert (ended.actor, ended.reason) == ("staff:1", "finished week 16")


async def test_timezone_is_validated_kindly_and_changed_once_confirmed(trial: Trial) -> None:
    await trial.join("P001", user_id=2001)
    dana = await trial.add_staff(5005, name="Dana")
    await say(dana, "/timezone P001 Europe/Londres")
    told = text_of(dana)
    assert "“Europe/Londres” is not a time zone I know" in told and "/timezone P001 Europe/London" in told
    assert await rows(trial, StaffRequest) == []
    await say(dana, "/timezone P001 America/New_York")
    assert "P001 is in America/New_York already" in text_of(dana)
    await say(dana, "/timezone P001 Europe/London")
    assert "move them from America/New_York to Europe/London" in text_of(dana)
    await tap(dana, "✅ Confirm")
    assert (await trial.participant()).timezone == "Europe/London"
    assert "✅ Done:" in text_of(dana) and "from America/New_York to Europe/London" in text_of(dana)


async def test_a_monitor_may_look_not_change_and_each_refusal_is_recorded(trial: Trial) -> None:
    await trial.join("P001", user_id=2001)
    await plan(trial)
    dana = await trial.add_staff(5005, name="Dana")
    mo = await trial.add_staff(7007, name="Mo", role="monitor")
    await say(mo, "/visits P001")
    assert "Week 4 (week4)" in text_of(mo) and mo.last_bot_message.button_labels == [], "no buttons to change"
    for command in ("/visits P001 move week4 2027-01-10 reason", "/pause P001", "/end P001 withdrawn x",
                    "/timezone P001 Europe/London"):
        await say(mo, command)
        assert "Sorry, your role (monitor) cannot do this" in text_of(mo), command
    await say(dana, "/pause P001")
    forged = confirmation_data(dana.last_bot_message)
    before = len(mo.callback_answers)
    await mo.press_forged(mo.last_bot_message.message_id, forged)  # someone else's Confirm, forged
    await mo.wait_for(lambda u: len(u.callback_answers) > before)
    assert (await trial.participant()).status == "active"
    refused = await rows(trial, AuditEntry, AuditEntry.action == "refused")
    assert [(e.entity_id, e.new_values["needs"]) for e in refused] == [
        ("visits_move", "enrol"), ("pause", "enrol"), ("end", "enrol"), ("timezone", "enrol"),
        ("staff_request", "enrol")]
    await say(mo, "/deliveries P001")
    assert "What the bot started for P001" in text_of(mo)


async def test_a_request_is_one_at_a_time_and_expires(trial: Trial) -> None:
    await trial.join("P001", user_id=2001)
    await plan(trial)
    dana = await trial.add_staff(5005, name="Dana")
    await say(dana, "/visits P001 move week4")
    first = dana.last_bot_message
    await say(dana, "/pause P001")  # a new request replaces the one asking for a date
    await say(dana, "2027-01-10 10:30")  # so these words are not an answer any more
    assert "you are registered as study staff" in text_of(dana)
    await tap(dana, "✖️ Cancel", message_id=first.message_id)
    assert confirmation_text(dana, first).startswith("That request was replaced by a newer one")
    pause = next(m for m in reversed(dana.bot_messages) if "pause the bot's messages" in (m.text or ""))
    trial.clock.advance(timedelta(minutes=31))
    await tap(dana, "✅ Confirm", message_id=pause.message_id)
    assert confirmation_text(dana, pause).startswith("Not confirmed in time, nothing changed")
    assert (await trial.participant()).status == "active"
    states = {r.action: r.state for r in await rows(trial, StaffRequest)}
    assert states == {"move_visit": "superseded", "pause": "expired"}


async def test_deliveries_show_each_message_s_life_in_utc_and_local_time_split_when_long(trial: Trial) -> None:
    user = await trial.join("P001", user_id=2001)
    dana = await trial.add_staff(5005, name="Dana")
    await trial.advance(hours=10)  # 20:00 New York: the evening reminder
    await tap(user, "✅ I put it on now", message_id=user.last_bot_message.message_id)
    await say(dana, "/deliveries P001")
    ledger = text_of(dana).replace("\u202f", " ")
    assert "reminder_application: sent; due 2026-11-25 1:00 AM UTC / 8:00 PM" in ledger, ledger
    assert ": queued" in ledger and ": sent (message" in ledger and ": answered" in ledger, user.dump()
    assert "The newest" in ledger and "America/New_York" in ledger

    for _day in range(40):  # weeks of reminders and nudges: more than one message can hold
        await trial.advance(hours=12)
    before = len(dana.bot_messages)
    await dana.send_text("/deliveries P001 30")
    await dana.wait_for(lambda u: any(re.search(r"\(part (\d+) of \1\)", m.text or "") for m in u.bot_messages[before:]))
    parts = [m for m in dana.bot_messages[before:] if "What the bot started for P001" in (m.text or "")]
    assert len(parts) > 1 and all(len(m.text) <= 4096 for m in parts)
    assert "(part 1 of" in parts[0].text and re.search(r"The newest 30 of 4\d message", parts[0].text)
    await say(dana, "/deliveries P404")
    assert "There is no participant P404" in text_of(dana)


async def test_staff_help_lists_what_the_role_may_do(trial: Trial) -> None:
    user = await trial.join("P001", user_id=2001)
    dana = await trial.add_staff(5005, name="Dana")
    mo = await trial.add_staff(7007, name="Mo", role="monitor")
    await say(dana, "/help")
    mine = text_of(dana)
    assert "your role: coordinator" in mine and "/pause P001" in mine and "/reply P001 text" in mine
    assert "/resume P001 your words" not in mine, "the investigator's alone"
    await say(mo, "/help")
    theirs = text_of(mo)
    assert "monitor (read-only)" in theirs and "/deliveries P001" in theirs and "/participants" in theirs
    assert "/pause" not in theirs and "/reply" not in theirs and "Acknowledge" not in theirs
    await say(user, "/help")
    assert "How this works" in text_of(user)


async def test_what_changed_meanwhile_refuses_the_confirmation_and_nothing_is_half_done(trial: Trial) -> None:
    await trial.join("P001", user_id=2001)
    await plan(trial)
    dana = await trial.add_staff(5005, name="Dana")
    await say(dana, "/visits P001 move week4 2026-12-23 09:30 asked by phone")
    move = dana.last_bot_message
    async with trial.db.transaction() as session:  # meanwhile, at the server: the visit is cancelled
        person = await participants.by_study_id(session, "P001")
        await visits.cancel(session, person, await visits.by_name(session, person, "week4"), actor=COORDINATOR,
                            now=trial.clock.now(), reason="site closed")
    await tap(dana, "✅ Confirm", message_id=move.message_id)
    assert confirmation_text(dana, move) == "Nothing changed: the week4 visit is cancelled already."
    week4 = await visit(trial, "P001", "week4")
    assert (week4.status, week4.scheduled_date, week4.revision) == ("cancelled", date(2026, 12, 24), 1)

    await say(dana, "/end P001 completed finished the study")
    end = dana.last_bot_message
    async with trial.db.transaction() as session:
        person = await participants.by_study_id(session, "P001")
        await participants.leave_study(session, person, "withdrawn", reason="called us", actor=COORDINATOR,
                                       now=trial.clock.now())
    await tap(dana, "✅ Confirm", message_id=end.message_id)
    assert "P001 has withdrawn from the study" in confirmation_text(dana, end)
    person = await trial.participant()
    assert (person.status, person.treatment) == ("withdrawn", "withdrawn")
    assert {r.action: r.state for r in await rows(trial, StaffRequest)} == {"move_visit": "refused", "end": "refused"}


def test_pause_and_end_at_the_server_refuse_kindly_what_the_record_does_not_allow(cli) -> None:
    """The command line's equivalents: `trialbot participant pause`, and `participant end`, which
    no longer ends a participation twice."""
    import asyncio
    import os

    from study.database import Database

    assert cli("enroll", "P001", "--timezone", "America/New_York", "--language", "en").exit_code == 0
    invited = cli("participant", "pause", "P001")
    assert invited.exit_code == 2 and "P001 has not joined the bot yet" in invited.output, invited.output

    async def joined() -> None:  # as if P001 had opened the invite and agreed
        db = Database(os.environ["DATABASE_URL"])
        try:
            async with db.transaction() as session:
                person = await participants.by_study_id(session, "P001")
                await participants.change(session, person, actor=COORDINATOR, now=person.enrolled_at,
                                          reason="consented to messaging", status="active",
                                          telegram_chat_id=2001, telegram_user_id=2001)
        finally:
            await db.dispose()

    asyncio.run(joined())
    paused = cli("participant", "pause", "P001")
    assert paused.exit_code == 0 and "Messages to P001 are paused" in paused.output
    again = cli("participant", "pause", "P001")
    assert again.exit_code == 2 and "P001 has paused messages already" in again.output
    assert cli("participant", "end", "P001", "withdrawn", "--reason", "moved away").exit_code == 0
    twice = cli("participant", "end", "P001", "completed", "--reason", "finished")
    assert twice.exit_code == 2 and twice.output.strip() == "P001 is withdrawn already"
