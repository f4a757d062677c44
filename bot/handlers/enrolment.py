"""/enroll P001 and /invite P001 in the staff chat: enrolment at the consent visit, from a phone.

/enroll asks one question at a time, with big buttons: the participant's time zone (the site's
common zones, or any zone typed), the language of their messages, whether pregnancy tests apply,
their reminder times (the protocol's, or typed); then a summary to Confirm or Cancel. Confirm
enrols and issues an invite (study/enrolment.py, the same domain calls as `trialbot enroll`), and
the reply is the invite link with its QR code as a photo, to show the participant's phone across
the desk. /invite P001 issues a new invite (earlier unused ones stop working) after a Confirm.

The conversation is a row in `enrolment_drafts`: a restart, or another process, takes the next
answer. Buttons carry `en:<draft>:<answer>` and every press is checked against the presser's own
draft and the question it is on. Each press acts once (a double tap on Confirm enrols once and
issues one invite; the second tap gets the first one's answer). Coordinators and the investigator
only (study/roles.py ENROL); a monitor is refused, and the refusal audited.

The invite code itself is never written down: it is in the photo's caption, sent after the commit;
the answer kept for a redelivered update says the link follows, and if it did not arrive,
/invite gives a new one.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from telegram import Update

from bot import callback_data as cb
from bot.access import staff_command, staff_only
from bot.exactly_once import effects
from bot.handlers import conversation
from bot.invite_link import invite_link, qr_png
from bot.replies import _record, answer_button, render, show
from bot.runtime import TrialbotContext
from bot.services import services
from messages.renderer import Button, RenderedMessage
from study import enrolment, invites, participants, roles, staff, zones
from study.enrolment import DraftProblem
from study.invites import IssuedInvite
from study.models import EnrolmentDraft, EnrolmentStep, Participant, StaffMember

# Which question each kind of answer button belongs to.
_STEP_OF = {"z": EnrolmentStep.TIMEZONE, "l": EnrolmentStep.LANGUAGE, "w": EnrolmentStep.WOCBP,
            "t": EnrolmentStep.TIMES, "c": EnrolmentStep.CONFIRM}
# The question templates, by step.
_TEMPLATES = {EnrolmentStep.TIMEZONE: "staff_enrol_timezone", EnrolmentStep.LANGUAGE: "staff_enrol_language",
              EnrolmentStep.WOCBP: "staff_enrol_wocbp", EnrolmentStep.TIMES: "staff_enrol_times",
              EnrolmentStep.CONFIRM: "staff_enrol_confirm"}


def _data(update: Update) -> str:
    query = update.callback_query
    return (query.data if query is not None else None) or ""


def _refused(context: TrialbotContext, member: StaffMember, reason: str, study_id: str = "") -> RenderedMessage:
    return render(context, "staff_enrol_refused", member.language, {"reason": reason, "study_id": study_id[:32]})


def question(context: TrialbotContext, member: StaffMember, draft: EnrolmentDraft, *, problem: str = "",
             typed: str = "", suggestions: tuple[str, ...] = (), zone_problem: str = "") -> RenderedMessage:
    """The question the draft is on, with its buttons (and what was wrong with the last answer)."""
    protocol = services(context).protocol
    step = enrolment.next_step(draft)
    cancel = [Button("enrol_cancel", cb.enrol(draft.id, "x"))]
    variables: dict = {"study_id": draft.study_id, "problem": problem}
    if step is EnrolmentStep.TIMEZONE:
        zones = suggestions or tuple(protocol.enrolment.common_timezones)
        rows = [[Button("enrol_zone", cb.enrol(draft.id, "z", zone), {"zone": zone})] for zone in zones]
        variables |= {"typed": typed, "suggested": bool(suggestions), "zone_problem": zone_problem}
    elif step is EnrolmentStep.LANGUAGE:
        rows = [[Button("enrol_language", cb.enrol(draft.id, "l", code), {"code": code})
                 for code in protocol.study.languages]]
    elif step is EnrolmentStep.WOCBP:
        rows = [[Button("enrol_wocbp_yes", cb.enrol(draft.id, "w", "y")),
                 Button("enrol_wocbp_no", cb.enrol(draft.id, "w", "n"))]]
    elif step is EnrolmentStep.TIMES:
        times = participants.format_times(protocol.default_reminder_times)
        rows = [[Button("enrol_times_default", cb.enrol(draft.id, "t", "d"), {"times": times})]]
        variables |= {"typed": typed, "count": protocol.treatment.applications_per_day, "times": times}
    else:
        rows = [[Button("enrol_confirm", cb.enrol(draft.id, "c"))]]
        variables |= {"timezone": draft.timezone, "language": draft.language, "wocbp": bool(draft.wocbp),
                      "times": draft.reminder_times,
                      "local_now": services(context).clock.now().astimezone(ZoneInfo(draft.timezone or "UTC"))}
    return render(context, _TEMPLATES[step], member.language, variables, [*rows, cancel])


@staff_command(roles.ENROL, "enroll")
async def enroll(update: Update, context: TrialbotContext, member: StaffMember) -> None:
    """/enroll P001: the first question (any enrolment the member had in progress is replaced)."""
    svc = services(context)
    args = context.args or []
    if len(args) != 1:
        await show(update, context, _refused(context, member, "usage_enroll"))
        return
    study_id = participants.normal_study_id(args[0])  # p001 is P001
    async with effects(update, context) as fx:
        try:
            draft = await enrolment.start(fx.session, svc.protocol, member, study_id, now=svc.clock.now())
        except DraftProblem as problem:
            fx.reply = _refused(context, member, problem.code, study_id)
        else:
            fx.reply = question(context, member, draft)
    await show(update, context, fx.reply)


@staff_command(roles.ENROL, "enroll")
async def answer(update: Update, context: TrialbotContext, member: StaffMember) -> None:
    """A button of /enroll: an answer, Confirm or Cancel. A button of a question answered already
    shows the question the enrolment is on; one of a finished enrolment changes nothing."""
    svc = services(context)
    now = svc.clock.now()
    pressed = cb.EnrolAnswer.parse(_data(update))
    enrolled: tuple[Participant, IssuedInvite] | None = None
    async with effects(update, context, once_per_message=True) as fx:
        draft = await enrolment.get(fx.session, pressed.draft_id, member, now=now) if pressed else None
        if draft is None or pressed is None:
            fx.reply = _refused(context, member, "stale")
        else:
            fx.reply, enrolled = await _apply(context, fx.session, member, draft, pressed, now)
    await show(update, context, fx.reply, answer=enrolled is None)
    if enrolled is not None:
        try:
            await _send_invite(update, context, member, *enrolled)
        finally:
            await answer_button(update)  # only now is the press fully handled


async def _apply(context: TrialbotContext, session: AsyncSession, member: StaffMember, draft: EnrolmentDraft,
                 pressed: cb.EnrolAnswer, now: datetime
                 ) -> tuple[RenderedMessage, tuple[Participant, IssuedInvite] | None]:
    protocol = services(context).protocol
    if pressed.action == "x":
        enrolment.cancel(draft, now=now)
        return render(context, "staff_enrol_cancelled", member.language,
                      {"study_id": draft.study_id, "invite": False}), None
    if _STEP_OF[pressed.action] is not enrolment.next_step(draft):
        return question(context, member, draft), None  # a button of another question
    try:
        if pressed.action == "z":
            enrolment.set_timezone(draft, pressed.value, now=now)
        elif pressed.action == "l":
            enrolment.set_language(draft, protocol, pressed.value, now=now)
        elif pressed.action == "w":
            enrolment.set_wocbp(draft, pressed.value == "y", now=now)
        elif pressed.action == "t":
            enrolment.set_times(draft, tuple(protocol.default_reminder_times), now=now)
        else:
            return await _confirm(context, session, member, draft, now)
    except DraftProblem:  # a forged answer (a zone or language the buttons never offered)
        return question(context, member, draft), None
    return question(context, member, draft), None


async def _confirm(context: TrialbotContext, session: AsyncSession, member: StaffMember, draft: EnrolmentDraft,
                   now: datetime) -> tuple[RenderedMessage, tuple[Participant, IssuedInvite] | None]:
    protocol = services(context).protocol
    try:
        async with session.begin_nested():  # a refusal undoes whatever the enrolment began
            person, issued = await enrolment.confirm(session, protocol, draft, member, now=now)
    except (DraftProblem, IntegrityError) as error:  # IntegrityError: enrolled this moment by someone else
        await session.refresh(draft)
        enrolment.cancel(draft, now=now)
        reason = error.code if isinstance(error, DraftProblem) else "exists"
        return _refused(context, member, reason, draft.study_id), None
    return render(context, "staff_enrol_done", member.language,
                  {"study_id": person.study_id, "enrolled": True}), (person, issued)


async def typed(update: Update, context: TrialbotContext) -> None:
    """Words typed in a private chat. A staff member's go to their enrolment in progress (an
    answer, or the question again); everyone else's to bot/handlers/conversation.py as before."""
    chat, user = update.effective_chat, update.effective_user
    if chat is not None and user is not None and chat.type == "private":
        async with services(context).db.read() as session:
            member = await staff.by_telegram_id(session, user.id)
            participant = await participants.by_chat(session, chat.id) if member is not None else None
        if member is not None and member.active and participant is None:
            await _staff_typed(update, context)
            return
    await conversation.participant_text(update, context)


@staff_only
async def _staff_typed(update: Update, context: TrialbotContext, member: StaffMember) -> None:
    svc = services(context)
    now = svc.clock.now()
    message = update.effective_message
    words = ((message.text if message is not None else None) or "").strip()
    async with effects(update, context) as fx:
        draft = (await enrolment.current(fx.session, member, now=now)
                 if roles.allowed(member, roles.ENROL) else None)
        if draft is None:  # no question pending: what staff were always told
            fx.reply = render(context, "staff_not_participant", member.language)
        else:
            fx.reply = _typed_answer(context, member, draft, words, now)
    await show(update, context, fx.reply)


def _typed_answer(context: TrialbotContext, member: StaffMember, draft: EnrolmentDraft, words: str,
                  now: datetime) -> RenderedMessage:
    step = enrolment.next_step(draft)
    shown = words[:enrolment.MAX_TYPED]
    if step is EnrolmentStep.TIMEZONE:
        zone = zones.read(words)
        if zone.zone is None:
            return question(context, member, draft, problem="unknown_zone", typed=shown, suggestions=zone.suggestions,
                            zone_problem=zone.problem)
        enrolment.set_timezone(draft, zone.zone, now=now)
    elif step is EnrolmentStep.TIMES:
        times = enrolment.read_times(words, services(context).protocol)
        if times.times is None:
            return question(context, member, draft, problem=times.problem, typed=shown)
        enrolment.set_times(draft, times.times, now=now)
    else:  # a question answered with buttons: asked again
        return question(context, member, draft, problem="buttons")
    return question(context, member, draft)


@staff_command(roles.ENROL, "invite")
async def invite(update: Update, context: TrialbotContext, member: StaffMember) -> None:
    """/invite P001: asks to confirm a new invite."""
    svc = services(context)
    args = context.args or []
    if len(args) != 1:
        await show(update, context, _refused(context, member, "usage_invite"))
        return
    async with svc.db.read() as session:
        person = await participants.by_study_id(session, args[0])
        newest = await enrolment.newest_invite_id(session, person) if person is not None else 0
    if person is None:
        reply = _refused(context, member, "unknown" if enrolment.valid_study_id(args[0]) else "invalid_id",
                         participants.normal_study_id(args[0]))
    elif person.status in participants.FINAL_STATUSES:
        reply = _refused(context, member, "ended", person.study_id)
    else:
        reply = render(context, "staff_invite_confirm", member.language,
                       {"study_id": person.study_id, "joined": person.telegram_chat_id is not None},
                       [[Button("invite_issue", cb.invite(True, person.id, newest))],
                        [Button("invite_cancel", cb.invite(False, person.id, newest))]])
    await show(update, context, reply)


@staff_command(roles.ENROL, "invite")
async def invite_answer(update: Update, context: TrialbotContext, member: StaffMember) -> None:
    """Confirm or Cancel of /invite. A confirmation pressed after another invite was issued
    (its data names the newest invite when it was asked) changes nothing."""
    svc = services(context)
    now = svc.clock.now()
    pressed = cb.InviteAnswer.parse(_data(update))
    issued: tuple[Participant, IssuedInvite] | None = None
    async with effects(update, context, once_per_message=True) as fx:
        person = await fx.session.get(Participant, pressed.participant_id) if pressed else None
        if person is None or pressed is None:
            fx.reply = _refused(context, member, "stale")
        elif await enrolment.newest_invite_id(fx.session, person) != pressed.newest_invite_id:
            fx.reply = _refused(context, member, "stale", person.study_id)
        elif not pressed.issue:
            fx.reply = render(context, "staff_enrol_cancelled", member.language,
                              {"study_id": person.study_id, "invite": True})
        else:
            try:
                issued = (person, await enrolment.reissue(fx.session, svc.protocol, person, member, now=now))
            except invites.InviteRefused:
                fx.reply = _refused(context, member, "ended", person.study_id)
            else:
                fx.reply = render(context, "staff_enrol_done", member.language,
                                  {"study_id": person.study_id, "enrolled": False})
    await show(update, context, fx.reply, answer=issued is None)
    if issued is not None:
        try:
            await _send_invite(update, context, member, *issued)
        finally:
            await answer_button(update)


async def _send_invite(update: Update, context: TrialbotContext, member: StaffMember, person: Participant,
                       issued: IssuedInvite) -> None:
    """The invite link and its QR code, as one photo with the link in its caption."""
    svc = services(context)
    link = invite_link(context.bot.username, issued.code)
    zone = ZoneInfo(svc.protocol.study.default_timezone)
    rendered = render(context, "staff_invite", member.language, {
        "study_id": person.study_id, "link": link, "expires_at": issued.invite.expires_at.astimezone(zone)})
    chat = update.effective_chat
    assert chat is not None  # a staff command's update always has its chat
    message = await context.bot.send_photo(chat.id, photo=qr_png(link), caption=rendered.text,
                                           filename=f"{person.study_id}-invite.png")
    # Recorded as sent (template, approved hash), not as the update's answer: the code stays unwritten.
    await _record(update, context, rendered, via="reply", message_id=message.message_id, answers_update=False)
