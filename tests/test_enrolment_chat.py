"""/enroll and /invite in the staff chat: a coordinator enrols a participant at the consent visit
with buttons (and a typed zone and times), gets the invite link and its QR code as a photo, and
the participant joins with it; a monitor may not; Confirm acts once; /invite voids the old code."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from bot.invite_link import qr_png
from sandbox import media
from study.models import AuditEntry, EnrolmentDraft, Invite, Participant
from tests.redelivery import deliver_again, last_update_id
from tests.trial import Trial

pytestmark = pytest.mark.timeout(120)
CONSENT_BUTTONS = ["✅ Yes, I agree", "No, thank you"]


async def say(user, text: str) -> None:
    before = len(user.bot_messages)
    await user.send_text(text)
    await user.wait_for(lambda u: len(u.bot_messages) > before)


async def press(user, label: str) -> None:
    before = len(user.callback_answers)
    await user.press(label)
    await user.wait_for(lambda u: len(u.callback_answers) > before)


def photos(user) -> list:
    return [m for m in user.bot_messages if m.kind == "photo"]


def code_of(photo) -> str:
    link = next(word for word in photo.caption.split() if word.startswith("https://t.me/"))
    return link.split("?start=", 1)[1]


async def count(trial: Trial, model) -> int:
    async with trial.db.read() as session:
        return await session.scalar(select(func.count()).select_from(model))


async def walk_to_the_summary(coordinator, study_id: str = "P001") -> None:
    """With buttons only: the first common zone, English, no pregnancy tests, the protocol's times."""
    await say(coordinator, f"/enroll {study_id}")
    await press(coordinator, "🕒 America/New_York")
    await press(coordinator, "English")
    await press(coordinator, "No")
    await press(coordinator, "⏰ 08:00,20:00 (the protocol's times)")
    assert f"Enrol {study_id}?" in coordinator.last_bot_message.text


async def test_a_coordinator_enrols_with_buttons_and_the_participant_joins_with_the_qr_link(trial: Trial) -> None:
    coordinator = await trial.add_staff(5005, name="Dana")
    await say(coordinator, "/enroll P001")
    question = coordinator.last_bot_message
    assert "Which time zone does P001 live in?" in question.text
    assert question.button_labels == ["🕒 America/New_York", "🕒 America/Chicago", "🕒 America/Denver",
                                      "🕒 America/Los_Angeles", "🕒 America/Puerto_Rico", "✖️ Cancel"]

    # A zone it does not know: said kindly, with what it may mean; then typed as anyone would.
    await say(coordinator, "Madird")
    assert "“Madird” is not a time zone I know. Did you mean one of these?" in coordinator.last_bot_message.text
    assert "🕒 Europe/Madrid" in coordinator.last_bot_message.button_labels
    await say(coordinator, "europe/madrid")
    assert "In which language should P001 get the bot's messages?" in coordinator.last_bot_message.text

    await say(coordinator, "Spanish please")  # words, where a button is the answer: the question again
    assert coordinator.last_bot_message.text.startswith("🆕 Enrolling P001\nPlease answer with one of the buttons.")
    await press(coordinator, "Spanish (Español)")
    assert "pregnancy tests apply to P001" in coordinator.last_bot_message.text
    await press(coordinator, "Yes, pregnancy tests")

    await say(coordinator, "8:00 8:00")
    assert "A time is there twice" in coordinator.last_bot_message.text
    await say(coordinator, "19:30, 7:30")
    summary = coordinator.last_bot_message
    assert "Enrol P001?" in summary.text and "Time zone: Europe/Madrid (it is 4:00\u202fPM there now)" in summary.text
    assert "Language: Spanish" in summary.text and "Pregnancy tests: yes" in summary.text
    assert "Reminders: 07:30,19:30" in summary.text
    assert await count(trial, Participant) == 0, "nothing is enrolled before Confirm"

    await press(coordinator, "✅ Confirm")
    await coordinator.wait_for(lambda c: len(photos(c)) == 1)
    assert "✅ P001 is enrolled. The invite link and its QR code follow." in coordinator.message(summary.message_id).text
    [photo] = photos(coordinator)
    link = f"https://t.me/{trial.world.bot_username}?start={code_of(photo)}"
    assert link in photo.caption and "Invite for P001" in photo.caption and "Single use" in photo.caption
    assert photo.photo == qr_png(link), "the photo is the QR code of the link in its caption"
    assert media.image_size(photo.photo) == (328, 328)
    assert [c.method for c in trial.world.calls if c.method == "sendPhoto"] == ["sendPhoto"]

    person = await trial.participant("P001")
    assert (person.status, person.timezone, person.language, person.wocbp, person.reminder_times) == (
        "invited", "Europe/Madrid", "es", True, "07:30,19:30")
    async with trial.db.read() as session:
        trail = (await session.scalars(select(AuditEntry).where(AuditEntry.entity.in_(("participant", "invite")))
                                       .order_by(AuditEntry.seq))).all()
        drafts = (await session.scalars(select(EnrolmentDraft))).all()
    assert [(e.entity, e.action, e.actor) for e in trail] == [("participant", "create", "staff:1"),
                                                              ("invite", "create", "staff:1")]
    assert [(d.state, d.participant_id) for d in drafts] == [("enrolled", person.id)]
    dump = " ".join(repr(tuple(row)) for row in await _every_row(trial))
    assert code_of(photo) not in dump, "the invite code is written nowhere"

    # The participant's phone opens the link: /start with the code, the consent text, Agree.
    phone = trial.world.add_user(user_id=1001, first_name="Lucía", language_code="es")
    await phone.send_text(f"/start {code_of(photo)}")
    consent = await phone.next_bot_event()
    assert len(consent.button_labels) == 2 and "Sí" in consent.button_labels[0]
    await phone.press(consent.button_labels[0])
    await phone.next_bot_event()
    person = await trial.participant("P001")
    assert (person.status, person.telegram_chat_id) == ("active", 1001)


async def test_a_monitor_may_not_enrol_or_invite_and_the_refusal_is_on_the_record(trial: Trial) -> None:
    monitor = await trial.add_staff(5006, name="Morgan", role="monitor")
    await trial.enroll("P002")
    await say(monitor, "/enroll P001")
    assert "your role (monitor) cannot do this" in monitor.last_bot_message.text
    await say(monitor, "/invite P002")
    assert "your role (monitor) cannot do this" in monitor.last_bot_message.text
    await monitor.press_forged(monitor.last_bot_message.message_id, "en:1:c")
    await monitor.wait_for(lambda m: len(m.callback_answers) == 1)
    await say(monitor, "America/Chicago")  # a monitor's words are not an enrolment's answer
    assert "you are registered as study staff" in monitor.last_bot_message.text
    async with trial.db.read() as session:
        refusals = (await session.scalars(select(AuditEntry).where(AuditEntry.action == "refused")
                                          .order_by(AuditEntry.seq))).all()
    assert [(e.entity_id, e.new_values["role"]) for e in refusals] == [("enroll", "monitor"), ("invite", "monitor"),
                                                                        ("enroll", "monitor")]
    assert await count(trial, EnrolmentDraft) == 0
    assert await count(trial, Participant) == 1 and await count(trial, Invite) == 1


async def test_confirm_tapped_twice_or_delivered_twice_enrols_once_with_one_invite(trial: Trial, handled) -> None:
    coordinator = await trial.add_staff(5005, name="Dana")
    await walk_to_the_summary(coordinator)
    answers = len(coordinator.callback_answers)
    await coordinator.press("✅ Confirm")
    await coordinator.press("✅ Confirm")  # the second tap leaves before the first one's answer arrives
    await coordinator.wait_for(lambda c: len(c.callback_answers) == answers + 2)
    await deliver_again(trial, handled, last_update_id(trial) - 1)  # the first tap, delivered again
    assert await count(trial, Participant) == 1 and await count(trial, Invite) == 1
    assert len(photos(coordinator)) == 1

    # Enrolling the same study id again is refused kindly, at once.
    await say(coordinator, "/enroll P001")
    assert "P001 is already enrolled; nothing was changed" in coordinator.last_bot_message.text
    await say(coordinator, "/enroll P 001")
    assert "Write /enroll P001" in coordinator.last_bot_message.text
    await say(coordinator, "/enroll P001!")
    assert "“P001!” cannot be a study id" in coordinator.last_bot_message.text


async def test_the_conversation_survives_a_restart_and_cancel_records_nothing(trial: Trial) -> None:
    coordinator = await trial.add_staff(5005, name="Dana")
    await say(coordinator, "/enroll P003")
    await press(coordinator, "🕒 America/Chicago")
    await trial.restart()
    await press(coordinator, "English")
    await press(coordinator, "No")
    await say(coordinator, "09:00,21:00")
    assert "Reminders: 09:00,21:00" in coordinator.last_bot_message.text
    await press(coordinator, "✖️ Cancel")
    assert "Enrolment of P003 cancelled; nothing was recorded." in coordinator.last_bot_message.text
    assert await count(trial, Participant) == 0
    await say(coordinator, "09:00,21:00")  # no question pending: staff words are not an answer
    assert "you are registered as study staff" in coordinator.last_bot_message.text
    # A button of the cancelled enrolment changes nothing.
    summary = [m for m in coordinator.bot_messages if "Enrolment of P003 cancelled" in (m.text or "")][-1]
    answers = len(coordinator.callback_answers)
    await coordinator.press_forged(summary.message_id, "en:1:c")
    await coordinator.wait_for(lambda c: len(c.callback_answers) > answers)
    assert "finished, or was replaced" in coordinator.message(summary.message_id).text
    assert await count(trial, Participant) == 0


async def test_invite_reissues_and_voids_the_old_code(trial: Trial) -> None:
    old_code = await trial.enroll("P001")
    coordinator = await trial.add_staff(5005, name="Dana")
    await say(coordinator, "/invite P001")
    earlier_ask = coordinator.last_bot_message
    await say(coordinator, "/invite P001")
    ask = coordinator.last_bot_message
    assert "A new invite for P001?" in ask.text and ask.button_labels == ["✅ Issue a new invite", "✖️ Cancel"]
    await coordinator.press("✅ Issue a new invite", message_id=ask.message_id)
    await coordinator.wait_for(lambda c: len(photos(c)) == 1)
    new_code = code_of(photos(coordinator)[0])
    assert "A new invite for P001 is ready" in coordinator.message(ask.message_id).text

    phone = trial.world.add_user(user_id=1001, first_name="Pat")
    await phone.send_text(f"/start {old_code}")
    assert "does not work" in (await phone.next_bot_event()).text, "the old code is void"
    await phone.send_text(f"/start {new_code}")
    assert (await phone.next_bot_event()).button_labels == CONSENT_BUTTONS

    # The earlier confirmation, pressed after the new invite was issued: nothing more.
    answers = len(coordinator.callback_answers)
    await coordinator.press("✅ Issue a new invite", message_id=earlier_ask.message_id)
    await coordinator.wait_for(lambda c: len(c.callback_answers) > answers)
    assert "finished, or was replaced" in coordinator.message(earlier_ask.message_id).text
    assert await count(trial, Invite) == 2 and len(photos(coordinator)) == 1
    await say(coordinator, "/invite P404")
    assert "There is no participant P404" in coordinator.last_bot_message.text


async def _every_row(trial: Trial) -> list:
    from study.models import Base

    rows = []
    async with trial.db.read() as session:
        for table in Base.metadata.sorted_tables:
            rows.extend((await session.execute(select(table))).all())
    return rows


@pytest.mark.parametrize("language", ["en", "es"])
def test_the_invite_caption_fits_a_photo_caption_with_the_longest_values(language: str) -> None:
    """Telegram takes 1024 characters under a photo (the stand-in refuses more); lint checks 4096."""
    from messages.catalog import Catalog
    from messages.renderer import MessageCatalog
    from messages.telegram_html import MAX_CAPTION_LENGTH, parse_html, utf16_len
    from messages.variants import values_for

    catalog = Catalog.load(None)
    text = MessageCatalog(None, allow_drafts=True).render(
        "staff_invite", language, values_for(catalog, catalog.templates["staff_invite"], None, "longest")).text
    assert utf16_len(parse_html(text)[0]) <= MAX_CAPTION_LENGTH


async def test_enrolled_meanwhile_or_forged_answers_change_nothing(trial: Trial) -> None:
    coordinator = await trial.add_staff(5005, name="Dana")
    await say(coordinator, "/enroll P001")
    question = coordinator.last_bot_message
    answers = len(coordinator.callback_answers)
    await coordinator.press_forged(question.message_id, "en:1:z:Mars/Olympus_Mons")  # no such zone
    await coordinator.wait_for(lambda c: len(c.callback_answers) > answers)
    assert "Which time zone does P001 live in?" in coordinator.message(question.message_id).text
    greeting = coordinator.bot_messages[0]
    await coordinator.press_forged(greeting.message_id, "en:1:c")  # Confirm before the questions
    await coordinator.wait_for(lambda c: len(c.callback_answers) > answers + 1)
    assert "Which time zone does P001 live in?" in coordinator.message(greeting.message_id).text
    assert await count(trial, Participant) == 0
    await press(coordinator, "🕒 America/New_York")
    await press(coordinator, "English")
    await press(coordinator, "No")
    await press(coordinator, "⏰ 08:00,20:00 (the protocol's times)")
    await trial.enroll("P001")  # meanwhile, at the server
    await press(coordinator, "✅ Confirm")
    assert "P001 is already enrolled; nothing was changed" in coordinator.message(question.message_id).text
    assert await count(trial, Participant) == 1 and await count(trial, Invite) == 1 and photos(coordinator) == []
    async with trial.db.read() as session:
        assert (await session.scalars(select(EnrolmentDraft.state))).all() == ["cancelled"]
