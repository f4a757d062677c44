"""Words and media from participants to the study team, and the team's /reply.

Whatever state the conversation is in, what a participant sends reaches the study team and the
red-flag screening (study/conversation.py): typed outside any question, typed while a check-in
asks something it does not answer (the question is then asked again), or a photo, document,
voice note or video with its caption. A check-in question that takes words takes them as its
answer (bot/handlers/checkin.py `typed`).

What the participant sees at once: the safety instructions, when the screening found something
to act on (every action, most urgent first). That the message was passed on comes from the
outbox once it was: a message Telegram refused is never reported as passed on.
"""

from __future__ import annotations

from telegram import Message, Update

from bot.access import participant_only, staff_command
from bot.exactly_once import Effects, effects
from bot.handlers import checkin
from bot.replies import render, send_new, show
from bot.runtime import TrialbotContext
from bot.services import services
from study import checkins, conversation, outbox, participants, roles
from study.models import DraftState, MessageKind, OutboxKind, Participant, StaffMember

REPLY_MAX = 2000
# The Telegram message fields that carry media the study team should see as it is.
MEDIA_KINDS = (
    ("photo", MessageKind.PHOTO), ("video_note", MessageKind.VIDEO_NOTE), ("voice", MessageKind.VOICE),
    ("video", MessageKind.VIDEO), ("animation", MessageKind.ANIMATION), ("audio", MessageKind.AUDIO),
    ("document", MessageKind.DOCUMENT),
)


def media_kind(message: Message) -> MessageKind | None:
    for field, kind in MEDIA_KINDS:
        if getattr(message, field, None):
            return kind
    return None


@participant_only
async def participant_text(update: Update, context: TrialbotContext, participant: Participant) -> None:
    """Typed text: a check-in's answer, or words for the study team."""
    message = update.effective_message
    await _received(update, context, participant, message.text or "", MessageKind.TEXT, message.message_id)


@participant_only
async def participant_media(update: Update, context: TrialbotContext, participant: Participant) -> None:
    """A photo, document, voice note, audio, video or video note: passed on as it is, with its
    caption screened as words. In a dermatology trial the photo is often the message."""
    message = update.effective_message
    kind = media_kind(message) or MessageKind.DOCUMENT
    await _received(update, context, participant, message.caption or "", kind, message.message_id)


@participant_only(others_hear_nothing=True)
async def participant_edited(update: Update, context: TrialbotContext, participant: Participant) -> None:
    """A message the participant edited: the new words reach the team and the screening, like a
    new message. Never a command or a check-in answer again (an edited /undo undoes nothing)."""
    message = update.edited_message
    if message is None:
        return
    kind = media_kind(message) or MessageKind.TEXT
    text = message.text if kind == MessageKind.TEXT else message.caption
    if not text:
        return  # nothing new in words: the media itself was passed on when it was sent
    svc = services(context)
    async with effects(update, context) as fx:
        await _to_the_team(context, participant, fx, text, kind, message.message_id, where="edited")
    svc.outbox_ready.set()
    await _answer(update, context, fx)


@participant_only
async def sticker(update: Update, context: TrialbotContext, participant: Participant) -> None:
    """A sticker says nothing the team can act on: kindly ask for words or a photo."""
    await show(update, context, render(context, "sticker_reply", participant.language))


async def _received(update: Update, context: TrialbotContext, participant: Participant, text: str,
                    kind: MessageKind, message_id: int) -> None:
    svc = services(context)
    now = svc.clock.now()
    async with effects(update, context) as fx:
        draft = await checkins.draft_of(fx.session, participant, protocol=svc.protocol, now=now)
        answered = (kind == MessageKind.TEXT and checkins.takes_typed_answer(draft)
                    and await checkin.typed(update, context, participant, fx, draft, text))
        if not answered:
            asking = draft is not None and draft.state == DraftState.ASKING
            await _to_the_team(context, participant, fx, text, kind, message_id,
                               where=f"mid_checkin:{draft.step}" if asking else "free")
            if asking:
                # The question they were asked is asked again, below whatever was said.
                again = checkin.question(context, participant, draft,
                                         reask=draft.step in checkins.WORDS_ANSWERS and bool(text))
                if fx.reply is None:
                    fx.reply = again
                else:
                    fx.follow_up = again
    svc.outbox_ready.set()
    await _answer(update, context, fx)


async def _to_the_team(context: TrialbotContext, participant: Participant, fx: Effects, text: str,
                       kind: MessageKind, message_id: int, *, where: str) -> None:
    svc = services(context)
    person = await fx.session.get(Participant, participant.id)
    received = await conversation.from_participant(fx.session, svc.protocol, person, text, now=svc.clock.now(),
                                                   kind=kind, context=where, telegram_message_id=message_id)
    if received.screening.actions:
        fx.reply = checkin.safety_message(context, participant, received.screening.actions)


async def _answer(update: Update, context: TrialbotContext, fx: Effects) -> None:
    """The reply (if any; "passed on" comes from the outbox), then the question again."""
    if fx.reply is not None:
        await show(update, context, fx.reply)
    if fx.follow_up is not None:
        await send_new(update, context, fx.follow_up, answers_update=False)


@staff_command(roles.MESSAGE, "reply")
async def reply(update: Update, context: TrialbotContext, member: StaffMember) -> None:
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
    async with effects(update, context) as fx:
        person = await participants.by_study_id(fx.session, args[0])
        if person is None:
            fx.reply = render(context, "staff_reply_unknown", member.language, {"study_id": participants.normal_study_id(args[0])[:32]})
        else:
            try:
                record = await conversation.from_staff(fx.session, person, member, text, now=now)
            except conversation.ReplyRefused as refused:  # paused or left: told, not queued to be skipped
                fx.reply = render(context, "staff_reply_refused", member.language,
                                  {"study_id": person.study_id, "standing": refused.standing})
            else:
                await outbox.enqueue(fx.session, dedup_key=f"reply:{record.id}", template_id="message_from_team",
                                     variables={"text": text}, now=now, participant_id=person.id, kind=OutboxKind.REPLY)
                fx.reply = render(context, "staff_reply_sent", member.language, {"study_id": person.study_id})
    svc.outbox_ready.set()
    await show(update, context, fx.reply)
