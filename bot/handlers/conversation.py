"""Free text between participants and the study team.

What a participant types outside a question goes to the study team as a message (study id and
text); if it holds red-flag words, it also raises an alert and the participant sees the safety
message. Staff answer with `/reply P001 text`, sent inside the approved "message from your study
team" template. Both directions are kept (participant_messages, append-only).
"""

from __future__ import annotations

from telegram import Update
from telegram.ext import CallbackContext

from bot.access import participant_only, staff_command
from bot.handlers import checkin
from bot.handlers.diary import diary_buttons
from bot.replies import render, show
from bot.services import services
from messages.renderer import Button
from study import alerts, checkins, conversation, outbox, participants, red_flags, roles
from study.models import Participant, StaffMember

TYPED_ANSWER_STEPS = ("itch", "pain", "new_problem")
REPLY_MAX = 2000


@participant_only
async def participant_text(update: Update, context: CallbackContext, participant: Participant) -> None:
    message = update.effective_message
    text = (message.text or "").strip() if message else ""
    if not text:  # a sticker, a photo, a voice note: kindly say what works
        await show(update, context, render(context, "unknown_input", participant.language, {}, diary_buttons()))
        return
    svc = services(context)
    now = svc.clock.now()
    async with svc.db.transaction() as session:
        draft = await checkins.draft_of(session, participant)
    if draft is not None and draft.step in TYPED_ANSWER_STEPS:
        await checkin.answer_text(update, context, participant, draft)
        return
    words = red_flags.matches(text, [w for ws in svc.protocol.safety.red_flag_words.values() for w in ws])
    async with svc.db.transaction() as session:
        person = await session.get(Participant, participant.id)
        record = await conversation.from_participant(session, person, text, now=now)
        await outbox.notify_staff(session, event_key=f"message:{record.id}", template_id="staff_participant_message",
                                  variables={"study_id": person.study_id, "text": text, "sent_at": now.isoformat(),
                                             "red_flag_words": words}, now=now)
        if words:
            await alerts.raise_alert(session, person, source="message", now=now, message_id=record.id,
                                     triggers=[{"words": words, "text": text[:300]}])
    svc.outbox_ready.set()
    if words:
        await show(update, context, checkin.safety_message(context, participant, []))
        return
    buttons = [[Button("checkin_resume", "k:resume")]] if draft is not None else []
    await show(update, context, render(context, "message_passed_on", participant.language,
                                       {"checkin_waiting": draft is not None}, buttons))


@staff_command(roles.MESSAGE, "reply")
async def reply(update: Update, context: CallbackContext, member: StaffMember) -> None:
    """/reply P001 text: a message to one participant, inside the approved template."""
    svc = services(context)
    now = svc.clock.now()
    args = context.args or []
    text = (update.effective_message.text or "").split(maxsplit=2)[2].strip() if len(args) >= 2 else ""
    if not args or not text:
        await show(update, context, render(context, "staff_reply_usage", member.language))
        return
    if len(text) > REPLY_MAX:
        await show(update, context, render(context, "staff_reply_too_long", member.language, {"limit": REPLY_MAX}))
        return
    record = None
    async with svc.db.transaction() as session:
        person = await participants.by_study_id(session, args[0])
        if person is not None and person.status in participants.SERVED_STATUSES and person.telegram_chat_id:
            record = await conversation.from_staff(session, person, member, text, now=now)
            await outbox.enqueue(session, dedup_key=f"reply:{record.id}", template_id="message_from_team",
                                 variables={"text": text}, now=now, participant_id=person.id, kind="reply")
    if record is None:
        await show(update, context, render(context, "staff_reply_unknown", member.language, {"study_id": args[0]}))
        return
    svc.outbox_ready.set()
    await show(update, context, render(context, "staff_reply_sent", member.language, {"study_id": person.study_id}))
