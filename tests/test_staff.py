"""The study team managed from Telegram (/staff, the investigator) and at the server (`trialbot
staff`): adding by a shared contact or by id, changing a role, ending a member's access. A member
whose access has ended receives nothing further and can do nothing; a monitor does not receive
participants' messages (issue 16, item 1)."""

from __future__ import annotations

import json
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from study import staff
from study.audit import Actor
from study.models import AuditEntry, OutboxMessage, StaffChange, StaffMember
from tests.redelivery import deliver_again, last_update_id
from tests.test_broadcasts import press, say
from tests.trial import Trial

pytestmark = pytest.mark.timeout(180)
ENDED = "Your access to the study's bot has ended"


async def staff_trail(trial: Trial) -> list[AuditEntry]:
    async with trial.db.transaction() as session:
        return [e for e in (await session.scalars(select(AuditEntry).order_by(AuditEntry.seq))).all()
                if e.entity == "staff"]


async def refusals(trial: Trial) -> list[AuditEntry]:
    async with trial.db.transaction() as session:
        return list((await session.scalars(select(AuditEntry).where(AuditEntry.action == "refused")
                                           .order_by(AuditEntry.seq))).all())


async def member(trial: Trial, name: str) -> StaffMember:
    async with trial.db.transaction() as session:
        return await session.scalar(select(StaffMember).where(StaffMember.name == name))


def texts(user) -> list[str]:
    return [m.text or "" for m in user.bot_messages]


async def answer(user, query_id: str) -> None:
    await user.wait_for(lambda u: any(a[0] == query_id for a in u.callback_answers))


async def test_the_investigator_adds_changes_and_ends_access_and_the_member_then_gets_nothing(
        trial: Trial, handled) -> None:
    person = await trial.join("P001", user_id=2001)
    dana = await trial.add_staff(5005, name="Dana Lee", role="coordinator")
    ivan = await trial.add_staff(5006, name="Ivan Gray", role="investigator")
    sam = trial.world.add_user(user_id=5010, first_name="Sam", last_name="Ortiz")
    await say(sam, "/start")  # opens the bot once: a stranger still
    assert "private bot" in sam.last_bot_message.text

    # Added by the contact card Ivan forwards (it carries Sam's user id), with a role, confirmed.
    await say(ivan, "/staff")
    assert "1. Dana Lee, coordinator" in ivan.last_bot_message.text
    assert ivan.last_bot_message.button_labels == ["Dana Lee", "Ivan Gray"]
    before = len(ivan.bot_messages)
    await ivan.send_contact("+1 216 555 0101", "Sam", "Ortiz", user_id=5010)
    await ivan.wait_for(lambda u: len(u.bot_messages) > before)
    assert "Add Sam Ortiz (Telegram id 5010) to the study team" in ivan.last_bot_message.text
    await press(ivan, "Coordinator")
    assert "Add Sam Ortiz (Telegram id 5010) as coordinator?" in ivan.last_bot_message.text
    question = ivan.last_bot_message
    await press(ivan, "✅ Confirm")
    assert "Done: Sam Ortiz is on the study team as coordinator" in ivan.message(question.message_id).text
    second = await ivan.press_forged(question.message_id, "s:y:1:c")  # a double tap changes nothing more
    await answer(ivan, second)
    await say(sam, "/start")
    assert "registered as study staff" in sam.last_bot_message.text

    # Dana becomes a monitor, from her card.
    await say(ivan, "/staff")
    await press(ivan, "Dana Lee")
    assert ivan.last_bot_message.button_labels == ["Investigator", "Monitor (read only)", "⛔ End their access",
                                                   "⬅️ The team"]
    await press(ivan, "Monitor (read only)")
    assert "Change Dana Lee from coordinator to monitor?" in ivan.last_bot_message.text
    await press(ivan, "✅ Confirm")
    assert "Done: Dana Lee is now monitor" in ivan.last_bot_message.text

    # A message to the team that Telegram holds up for Sam (so it is still queued to him)...
    trial.world.faults.fail_next("sendMessage", status=500, chat_id=5010)
    await person.send_text("Is the clinic open on Monday?")
    await ivan.wait_for(lambda u: any("clinic open on Monday" in t for t in texts(u)))

    # ...when Sam's access ends, typed with a reason; the update delivered again proposes nothing twice.
    await say(ivan, "/staff deactivate 3 left the study team")
    await deliver_again(trial, handled, last_update_id(trial))
    assert "End Sam Ortiz's access?" in ivan.last_bot_message.text and "Reason: left the study team" in \
        ivan.last_bot_message.text
    await press(ivan, "✅ Confirm")
    assert "Done: Sam Ortiz can no longer use the study's bot" in ivan.last_bot_message.text
    async with trial.db.transaction() as session:
        changes = (await session.scalars(select(StaffChange).order_by(StaffChange.id))).all()
    assert [(c.kind, c.state) for c in changes] == [("add", "confirmed"), ("role", "confirmed"),
                                                   ("deactivate", "confirmed")]

    trail = await staff_trail(trial)
    assert [(e.action, e.entity_id, e.old_values, e.new_values, e.reason) for e in trail[-3:]] == [
        ("create", "3", None, {"name": "Sam Ortiz", "role": "coordinator", "active": True}, "staff added"),
        ("update", "1", {"role": "coordinator"}, {"role": "monitor"},
         "staff role changed in Telegram (/staff) by Ivan Gray"),
        ("update", "3", {"active": True, "role": "coordinator"}, {"active": False, "role": "coordinator"},
         "left the study team"),
    ]
    assert {e.actor for e in trail[-3:]} == {"staff:2"}

    # Now: a participant's message, a safety alert, its escalation, the morning digest. Ivan gets
    # them all; Dana (a monitor) the digest only; Sam nothing.
    seen = {user.user_id: len(user.bot_messages) for user in (dana, ivan, sam)}
    await person.send_text("Can I come at 11 on Tuesday?")
    await ivan.wait_for(lambda u: any("Can I come at 11" in t for t in texts(u)))
    await person.send_text("I have a fever and chills since last night")
    await ivan.wait_for(lambda u: any("Safety alert: P001" in t for t in texts(u)))
    await trial.advance(hours=3)  # re-sent, then escalated to the investigator
    await trial.advance(hours=17)  # 07:30 next morning in the study's zone: the digest
    await trial.deliver()
    ivan_got = texts(ivan)[seen[5006]:]
    assert any("ESCALATED" in t for t in ivan_got) and any("Daily summary" in t for t in ivan_got)
    dana_got = texts(dana)[seen[5005]:]
    assert any("Daily summary" in t for t in dana_got), "a monitor oversees"
    assert not any("Can I come at 11" in t or "Safety alert" in t for t in dana_got), \
        "a monitor receives neither participants' messages nor alerts"
    assert texts(sam)[seen[5010]:] == [], "nothing reaches a member whose access has ended"

    # And Sam can do nothing: a command, a message, a button; each answered kindly and recorded.
    await say(sam, "/alerts")
    assert ENDED in sam.last_bot_message.text
    await say(sam, "hello?")
    assert ENDED in sam.last_bot_message.text
    query = await sam.press_forged(sam.last_bot_message.message_id, "a:1")
    await answer(sam, query)
    assert ENDED in next(a for a in sam.callback_answers if a[0] == query)[1]
    ended = [(e.actor, e.entity_id, e.reason) for e in await refusals(trial)]
    assert ended == [("staff:3", "alerts", "the staff member's access has ended"),
                     ("staff:3", "message", "the staff member's access has ended"),
                     ("staff:3", "button", "the staff member's access has ended")]
    async with trial.db.transaction() as session:
        to_sam = (await session.scalars(select(OutboxMessage).where(OutboxMessage.staff_id == 3))).all()
    assert [(row.kind, row.status, row.last_error) for row in to_sam] == [
        ("participant_message", "skipped", "staff member inactive")], "only what was queued before, and not sent"


async def test_coordinators_and_monitors_may_not_manage_the_team_once_it_has_an_investigator(trial: Trial) -> None:
    dana = await trial.add_staff(5005, name="Dana Lee", role="coordinator")
    await say(dana, "/staff")  # no investigator yet: a coordinator sets the team up
    assert "The study team" in dana.last_bot_message.text
    await say(dana, "/staff add 5006 Ivan Gray")
    await press(dana, "Investigator")
    await press(dana, "✅ Confirm")
    assert "Done: Ivan Gray is on the study team as investigator" in dana.last_bot_message.text
    mo = await trial.add_staff(5007, name="Mo Park", role="monitor")
    for who in (dana, mo):
        await say(who, "/staff")
        assert "cannot do this" in who.last_bot_message.text
    await say(dana, "/staff deactivate 2 no")
    assert "cannot do this" in dana.last_bot_message.text
    assert (await member(trial, "Ivan Gray")).active
    assert [(e.actor, e.entity_id, e.new_values["needs"]) for e in await refusals(trial)] == [
        ("staff:1", "staff", "manage_staff"), ("staff:3", "staff", "manage_staff"),
        ("staff:1", "staff", "manage_staff")]


async def test_refusals_of_what_cannot_be_done(trial: Trial) -> None:
    ivan = await trial.add_staff(5006, name="Ivan Gray", role="investigator")
    await trial.add_staff(5005, name="Dana Lee", role="coordinator")
    for typed, says in (("/staff deactivate 1 tired", "cannot change your own role or end your own access"),
                        ("/staff deactivate 99 gone", "No staff member has that number"),
                        ("/staff role 2 coordinator", "has this role already"),
                        ("/staff add 5005 Dana Again", "on the study team already"),
                        ("/staff fire 2", "To see the team, type /staff")):
        await say(ivan, typed)
        assert says in ivan.last_bot_message.text, typed
    before = len(ivan.bot_messages)
    await ivan.send_contact("+1 216 555 0199", "Nobody")  # a contact card without a Telegram account
    await ivan.wait_for(lambda u: len(u.bot_messages) > before)
    assert "no Telegram account the bot can write to" in ivan.last_bot_message.text
    # A proposal overtaken by events: Dana's access ended at the server meanwhile.
    await say(ivan, "/staff role 2 monitor")
    async with trial.db.transaction() as session:
        dana = await session.scalar(select(StaffMember).where(StaffMember.name == "Dana Lee"))
        await staff.deactivate(session, dana, actor=Actor.staff(1), now=trial.clock.now(), reason="left")
    await press(ivan, "✅ Confirm")
    assert "The team changed since this was proposed" in ivan.last_bot_message.text
    assert not (await member(trial, "Dana Lee")).active and (await member(trial, "Dana Lee")).role == "coordinator"


async def test_a_participant_sending_a_contact_card_is_answered_as_before(trial: Trial) -> None:
    person = await trial.join()
    before = len(person.bot_messages)
    await person.send_contact("+1 216 555 0101", "Pat", user_id=2001)
    await person.wait_for(lambda u: len(u.bot_messages) > before)
    assert "Sorry, I cannot use that here" in person.last_bot_message.text  # the unknown_input answer


async def test_a_monitor_receives_no_participant_messages_even_queued_before_the_change(trial: Trial) -> None:
    """The defect: demoted to monitor, a member still received every participant's free text."""
    person = await trial.join()
    dana = await trial.add_staff(5005, name="Dana Lee", role="coordinator")
    ivan = await trial.add_staff(5006, name="Ivan Gray", role="investigator")
    async with trial.db.transaction() as session:
        await staff.change_role(session, await session.get(StaffMember, 1), "monitor", actor=Actor.staff(2),
                                now=trial.clock.now())
    await person.send_text("Is it fine to shower after the cream?")
    await ivan.wait_for(lambda u: any("shower" in t for t in texts(u)))
    await trial.deliver()
    assert not any("shower" in t for t in texts(dana))
    # Queued while Dana was a coordinator, delivered after she became a monitor: not delivered.
    async with trial.db.transaction() as session:
        await staff.change_role(session, await session.get(StaffMember, 1), "coordinator", actor=Actor.staff(2),
                                now=trial.clock.now())
    trial.world.faults.fail_next("sendMessage", status=500, chat_id=5005)
    await person.send_text("And before sleeping?")
    await ivan.wait_for(lambda u: any("before sleeping" in t for t in texts(u)))
    async with trial.db.transaction() as session:
        await staff.change_role(session, await session.get(StaffMember, 1), "monitor", actor=Actor.staff(2),
                                now=trial.clock.now())
    trial.clock.advance(timedelta(minutes=5))
    await trial.deliver()
    assert not any("before sleeping" in t for t in texts(dana))
    async with trial.db.transaction() as session:
        rows = (await session.scalars(select(OutboxMessage).where(OutboxMessage.staff_id == 1,
                                                                   OutboxMessage.kind == "participant_message"))).all()
    assert [r.status for r in rows] == ["skipped"]
    assert rows[0].last_error == "a monitor does not receive this (receive_participant_messages)"


# -- At the server ---------------------------------------------------------------------------------

def audit_rows(path: Path) -> list[tuple]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT actor, action, entity_id, old_values, new_values, reason FROM audit_entries "
                          "WHERE entity = 'staff' ORDER BY seq").fetchall()


def test_trialbot_staff_role_and_deactivate(cli, tmp_path: Path) -> None:
    """Dana Lee (a coordinator) sets the team up until it has an investigator; then only the
    investigator changes it, as in Telegram."""
    assert cli("staff", "add", "--telegram-id", "7003", "--name", "Mo", "--role", "coordinator").exit_code == 0
    assert cli("staff", "add", "--telegram-id", "7002", "--name", "Dr Gray", "--role", "investigator").exit_code == 0
    refused = cli("staff", "deactivate", "Mo", "--reason", "left")
    assert refused.exit_code == 2 and "Dana Lee is a coordinator, who may not deactivate staff" in refused.output
    refused = cli("staff", "add", "--telegram-id", "7004", "--name", "Al", "--role", "monitor")
    assert "may not add or change staff" in refused.output
    done = cli("staff", "role", "Mo", "monitor", "--reason", "moved to monitoring", "--as", "Dr Gray")
    assert done.exit_code == 0 and "Mo is now a monitor" in done.output
    done = cli("staff", "deactivate", "2", "--reason", "left the site", "--as", "Dr Gray")
    assert done.exit_code == 0, done.output
    assert "Mo" in done.output and "deactivated" in done.output
    again = cli("staff", "deactivate", "Mo", "--reason", "left the site", "--as", "Dr Gray")
    assert again.exit_code == 2 and "not active already" in again.output
    itself = cli("staff", "deactivate", "Dr Gray", "--reason", "bye", "--as", "Dr Gray")
    assert itself.exit_code == 2 and "cannot end your own access" in itself.output
    listing = cli("staff", "list").output
    assert "Mo" in listing and "inactive" in listing
    assert "--as: no active staff member 'Mo'" in cli("export", "--format", "csv", "--out", str(tmp_path / "x"),
                                                     "--as", "Mo").output
    back = cli("staff", "add", "--telegram-id", "7003", "--name", "Mo", "--role", "monitor", "--as", "Dr Gray")
    assert back.exit_code == 0
    rows = audit_rows(tmp_path / "cli.db")[-3:]
    assert [(actor, action, entity_id, json.loads(old) if old else None, json.loads(new), reason)
            for actor, action, entity_id, old, new, reason in rows] == [
        ("staff:3", "update", "2", {"role": "coordinator"}, {"role": "monitor"}, "moved to monitoring"),
        ("staff:3", "update", "2", {"active": True, "role": "monitor"}, {"active": False, "role": "monitor"},
         "left the site"),
        ("staff:3", "update", "2", {"name": "Mo", "role": "monitor", "active": False},
         {"name": "Mo", "role": "monitor", "active": True}, "staff member added again: access given back"),
    ]
