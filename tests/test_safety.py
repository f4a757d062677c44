"""Check-ins and safety escalation, end to end: the real bot, the stand-in, a moving clock."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from study import alerts
from study.models import Alert, CheckIn, CheckinDraft, OutboxMessage, ParticipantMessage
from tests.trial import Trial

pytestmark = pytest.mark.timeout(90)
RED_FLAGS = ["fever", "skin_infection", "breathing_chest", "leg_swelling", "weakness_speech", "blistering_rash",
             "pregnancy_positive"]


async def rows(trial: Trial, model) -> list:
    async with trial.db.transaction() as session:
        return list((await session.scalars(select(model).order_by(model.id))).all())


async def press(user, label: str) -> None:
    before = len(user.callback_answers)
    await user.press(label)
    await user.wait_for(lambda u: len(u.callback_answers) > before)


async def say(user, text: str) -> None:
    before = len(user.bot_messages)
    await user.send_text(text)
    await user.wait_for(lambda u: len(u.bot_messages) > before)


async def full_checkin(user, *, itch="3", pain="2", reaction="No reaction", severity=None, problem="No",
                       medicines="No changes", changed="ibuprofen since Monday", flags=(), save=True) -> None:
    await say(user, "/symptoms")
    await press(user, itch)
    await press(user, pain)
    await press(user, reaction)
    if severity:
        await press(user, severity)
    if problem == "No":
        await press(user, "No")
    else:
        await say(user, problem)  # warning signs in it: the safety advice, then the next question
        await user.wait_for(lambda u: "change any of your other medicines" in (u.last_bot_message.text or ""))
    await press(user, medicines)
    if medicines != "No changes":
        await say(user, changed)
    for flag in flags:
        await press(user, flag)
    await press(user, "Next ➡️" if flags else "None of these ➡️")
    if save:
        await press(user, "✅ Save my answers")


def alerts_in(chat) -> list:
    return [m for m in chat.bot_messages if "Safety alert" in (m.text or "")]


async def test_a_full_check_in_is_saved_only_after_review(trial: Trial) -> None:
    user = await trial.join()
    await full_checkin(user, problem="dry lips since Monday", save=False)
    review = user.last_bot_message
    assert "Worst itch: 3 of 10" in review.text and "dry lips since Monday" in review.text
    assert await rows(trial, CheckIn) == [], "nothing is saved before the participant confirms"
    await press(user, "✅ Save my answers")
    assert "Your check-in is saved" in user.last_bot_message.text
    [saved] = await rows(trial, CheckIn)
    assert (saved.itch, saved.pain, saved.reaction, saved.reaction_severity, saved.new_problem, saved.medicines,
            saved.red_flags) == (3, 2, "none", None, "dry lips since Monday", "no", [])
    assert await rows(trial, CheckinDraft) == [] and await rows(trial, Alert) == []


async def test_typed_scores_are_checked_and_kindly_asked_again(trial: Trial) -> None:
    user = await trial.join()
    await say(user, "/symptoms")
    for wrong in ("seven", "12", "-1", "7.5"):
        await say(user, wrong)
        assert "Please tap a number, or type a number from 0 to 10" in user.last_bot_message.text
    await say(user, " 7 ")
    assert "worst skin pain" in user.last_bot_message.text
    [draft] = await rows(trial, CheckinDraft)
    assert draft.answers == {"itch": 7} and draft.step == "pain"


@pytest.mark.parametrize("flag", RED_FLAGS)
async def test_each_red_flag_from_urgent_raises_exactly_one_alert(trial: Trial, flag: str) -> None:
    coordinator = await trial.add_staff(5005, name="Dana")
    user = await trial.join(wocbp=flag == "pregnancy_positive")  # offered only to those the protocol tests
    await say(user, "/urgent")
    label = next(lbl for row in user.last_bot_message.buttons for lbl, data in row if data == f"u:{flag}")
    await press(user, label)
    told = user.last_bot_message.text
    if flag == "pregnancy_positive":
        assert "stop applying the study cream" in told
    elif flag in ("fever", "skin_infection", "blistering_rash"):  # the screening file's call-today signs
        assert "call the study team today" in told and "216 445-8776" in told and "911 now" not in told
    else:
        assert "call 911 now" in told and "216 445-8776" in told
    await coordinator.wait_for(lambda c: len(alerts_in(c)) == 1)
    [alert] = await rows(trial, Alert)
    assert (alert.source, alert.triggers[0]["red_flag"], alert.status) == ("urgent", flag, "open")
    [message] = alerts_in(coordinator)
    assert "P001" in message.text and "Pat" not in message.text and message.button_labels == ["✅ Acknowledge"]


@pytest.mark.parametrize(
    ("answers", "alerted", "trigger", "told"),
    [
        ({"itch": "9"}, True, {"score": "itch", "value": 9}, "call the study team today"),
        ({"itch": "8"}, False, None, None),
        ({"pain": "10"}, True, {"score": "pain", "value": 10}, "call the study team today"),
        ({"reaction": "Burning or stinging", "severity": "Severe"}, True, {"reaction": "burning", "severity": "severe"},
         "call the study team today"),
        ({"reaction": "Burning or stinging", "severity": "Moderate"}, False, None, None),
        ({"flags": ["Fever or chills"]}, True, {"red_flag": "fever"}, "call the study team today"),
        ({"flags": ["Short of breath or chest pain"]}, True, {"red_flag": "breathing_chest"}, "call 911 now"),
    ],
    ids=["itch-9", "itch-8", "pain-10", "severe-reaction", "moderate-reaction", "red-flag", "emergency-flag"],
)
async def test_check_in_thresholds(trial: Trial, answers: dict, alerted: bool, trigger: dict | None,
                                   told: str | None) -> None:
    coordinator = await trial.add_staff(5005)
    user = await trial.join()
    await full_checkin(user, **answers)
    found = await rows(trial, Alert)
    if not alerted:
        assert found == [] and "Your check-in is saved" in user.last_bot_message.text
        return
    [alert] = found
    [got] = alert.triggers
    assert {k: got[k] for k in trigger} == trigger
    assert told in user.last_bot_message.text
    await coordinator.wait_for(lambda c: len(alerts_in(c)) == 1)
    [saved] = await rows(trial, CheckIn)
    assert alert.checkin_id == saved.id


async def test_warning_signs_in_a_check_in_answer_alert_when_typed_and_the_check_in_goes_on(trial: Trial) -> None:
    coordinator = await trial.add_staff(5005)
    user = await trial.join()
    await full_checkin(user, problem="I have had chest pain since yesterday")
    [alert] = await rows(trial, Alert)
    assert (alert.source, alert.triggers[0]["flags"]) == ("checkin", ["breathing_chest"])
    assert any("call 911 now" in (m.text or "") for m in user.bot_messages)
    assert "Your check-in is saved" in user.last_bot_message.text, "saved without a second alert"
    await coordinator.wait_for(lambda c: len(alerts_in(c)) == 1)
    [saved] = await rows(trial, CheckIn)
    assert saved.new_problem == "I have had chest pain since yesterday"


async def test_alerts_are_re_sent_every_30_minutes_and_escalated_after_2_hours_until_acknowledged(
        trial: Trial) -> None:
    coordinator = await trial.add_staff(5005, name="Dana", role="coordinator")
    investigator = await trial.add_staff(6006, name="Dr Gray", role="investigator")
    monitor = await trial.add_staff(7007, name="Mo", role="monitor")
    user = await trial.join()
    await say(user, "/urgent")
    await press(user, "Fever or chills")
    await coordinator.wait_for(lambda c: len(alerts_in(c)) == 1)
    await investigator.wait_for(lambda c: len(alerts_in(c)) == 1)

    await trial.advance(minutes=29)
    assert len(alerts_in(coordinator)) == 1
    await trial.advance(minutes=1)
    assert len(alerts_in(coordinator)) == 2 and "reminder 1" in alerts_in(coordinator)[-1].text
    for _ in range(3):
        await trial.advance(minutes=30)
    assert len(alerts_in(coordinator)) == 5
    assert [m for m in alerts_in(investigator) if "ESCALATED" in m.text], "escalated at 2 hours"
    assert not [m for m in alerts_in(coordinator) if "ESCALATED" in m.text and "reminder" not in m.text]
    assert alerts_in(monitor) == [], "monitors are read-only: alerts go to those who can act"

    await monitor.press_forged(monitor.last_bot_message.message_id, f"a:{(await rows(trial, Alert))[0].id}")
    await monitor.wait_for(lambda c: len(c.callback_answers) == 1)
    assert "cannot do this" in monitor.last_bot_message.text
    assert (await rows(trial, Alert))[0].status == "open"

    await coordinator.press("✅ Acknowledge", message_id=alerts_in(coordinator)[-1].message_id)
    await coordinator.wait_for(lambda c: "Acknowledged" in (c.last_bot_message.text or ""))
    [alert] = await rows(trial, Alert)
    assert alert.status == "acknowledged" and alert.acknowledged_at == trial.clock.now()
    sent_before = len(alerts_in(coordinator)) + len(alerts_in(investigator))
    for _ in range(4):
        await trial.advance(minutes=30)
    assert len(alerts_in(coordinator)) + len(alerts_in(investigator)) == sent_before, "acknowledged: no more"

    assert all(m.button_labels == [] and "Acknowledged by Dana" in m.text for m in alerts_in(investigator)), \
        "the other copies were edited: no live button (tests/test_correct_states.py)"
    first = alerts_in(investigator)[0].message_id
    await investigator.press_forged(first, f"a:{alert.id}")  # a client showing the button still
    await investigator.wait_for(lambda c: "Already acknowledged" in (c.message(first).text or ""))
    assert "by Dana" in investigator.message(first).text
    assert len([m for m in alerts_in(investigator) if "ESCALATED" in m.text]) == 1, "one escalation, not two"


async def test_open_alerts_are_listed_for_staff(trial: Trial) -> None:
    coordinator = await trial.add_staff(5005)
    await say(coordinator, "/alerts")
    assert "No open alerts" in coordinator.last_bot_message.text
    user = await trial.join()
    await say(user, "/urgent")
    await press(user, "A swollen or painful leg")
    await coordinator.wait_for(lambda c: len(alerts_in(c)) == 1)
    await say(coordinator, "/alerts")
    listed = coordinator.last_bot_message
    assert "swelling or pain" in listed.text and listed.button_labels == ["✅ Acknowledge"]


async def test_a_check_in_interrupted_by_a_restart_resumes_without_losing_answers(trial: Trial) -> None:
    user = await trial.join()
    await say(user, "/symptoms")
    await press(user, "6")
    await press(user, "4")
    await trial.restart()
    await say(user, "/symptoms")
    assert "Would you like to continue it" in user.last_bot_message.text
    await press(user, "▶️ Continue my check-in")
    assert "where you put the cream" in user.last_bot_message.text
    await press(user, "No reaction")
    await press(user, "No")
    await press(user, "No changes")
    await press(user, "None of these ➡️")
    await press(user, "✅ Save my answers")
    [saved] = await rows(trial, CheckIn)
    assert (saved.itch, saved.pain) == (6, 4)


async def test_an_alert_raised_just_before_a_crash_is_still_delivered(trial: Trial) -> None:
    coordinator = await trial.add_staff(5005)
    await trial.join()
    participant = await trial.participant()
    async with trial.db.transaction() as session:  # the report and its alert, committed; then the crash
        await alerts.raise_alert(session, participant, source="urgent", triggers=[{"red_flag": "fever"}],
                                 now=trial.clock.now())
    await trial.restart()
    await trial.deliver()
    await coordinator.wait_for(lambda c: len(alerts_in(c)) == 1)


async def test_nothing_of_a_participant_reaches_anyone_but_staff(trial: Trial) -> None:
    coordinator = await trial.add_staff(5005)
    other = await trial.join("P002", user_id=2002)
    stranger = trial.world.add_user(user_id=3003, first_name="Zed")
    await say(stranger, "hello")
    user = await trial.join("P001", user_id=1001)
    await say(user, "my chest pain is back and I feel awful")
    await say(user, "/urgent")
    await press(user, "Fever or chills")
    await trial.advance(minutes=31)
    await coordinator.wait_for(lambda c: len(alerts_in(c)) >= 2)
    for outsider in (other, stranger):
        assert not [m for m in outsider.bot_messages if "P001" in (m.text or "") or "chest" in (m.text or "")]
    async with trial.db.transaction() as session:
        recipients = (await session.scalars(select(OutboxMessage.staff_id).where(OutboxMessage.kind == "alert"))).all()
    assert recipients and all(r is not None for r in recipients)


async def test_free_text_goes_to_the_team_and_staff_replies_are_recorded(trial: Trial) -> None:
    coordinator = await trial.add_staff(5005, name="Dana")
    monitor = await trial.add_staff(7007, name="Mo", role="monitor")
    user = await trial.join()
    await say(user, "Can I come at 11 instead of 10 on Tuesday?")
    assert "passed to the study team" in user.last_bot_message.text
    await coordinator.wait_for(lambda c: any("11 instead of 10" in (m.text or "") for m in c.bot_messages))
    assert await rows(trial, Alert) == []

    await say(coordinator, "/reply P001 Yes, 11:00 is fine. See you Tuesday!")
    assert "Sent to P001" in coordinator.last_bot_message.text
    await trial.deliver()
    await user.wait_for(lambda u: "A message from your study team" in (u.last_bot_message.text or ""))
    assert "11:00 is fine" in user.last_bot_message.text
    await say(monitor, "/reply P001 hello")
    assert "cannot do this" in monitor.last_bot_message.text
    await say(coordinator, "/reply P999 hello")
    assert "no active participant P999" in coordinator.last_bot_message.text
    thread = await rows(trial, ParticipantMessage)
    assert [(m.direction, m.staff_id is not None) for m in thread] == [("in", False), ("out", True)]


async def test_red_flag_words_match_whatever_the_case_and_accents(trial: Trial) -> None:
    coordinator = await trial.add_staff(5005)
    user = await trial.join(language="es")
    await say(user, "Tengo FIÉBRE y escalofríos desde anoche")
    assert "llame hoy al equipo del estudio" in user.last_bot_message.text
    [alert] = await rows(trial, Alert)
    assert alert.source == "message" and alert.triggers[0]["flags"] == ["fever"]
    await coordinator.wait_for(lambda c: len(alerts_in(c)) == 1)


async def test_a_weekly_check_in_is_offered_and_started_from_its_button(trial: Trial) -> None:
    user = await trial.join()
    await trial.advance(days=6, hours=23)
    assert not [m for m in user.bot_messages if "Time for your check-in" in (m.text or "")]
    await trial.advance(hours=1)  # 10:00 local, seven days after joining
    [offer] = [m for m in user.bot_messages if "Time for your check-in" in (m.text or "")]
    await user.press("📝 Start the check-in", message_id=offer.message_id)
    await user.wait_for(lambda u: "worst itch" in (u.message(offer.message_id).text or ""))
    [draft] = await rows(trial, CheckinDraft)
    assert draft.source == "scheduled"
