"""The study team and a participant's treatment course: /treatment P001 (state and history),
/interrupt P001 <reason> [words], /offtreatment P001 [reason] [words], and /resume P001 <words>,
which only the investigator may use (a participant's own /resume turns their messages back on:
`resume_command` tells the two apart by who is writing).

Each is guarded by role (study/roles.py), audited, answered with approved texts; the change
itself, its history row and the participant's message are study/treatment.py's."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from telegram import Update

from bot.access import staff_command
from bot.exactly_once import effects
from bot.handlers import pause
from bot.replies import render, show
from bot.runtime import TrialbotContext
from bot.services import services
from messages.renderer import RenderedMessage
from study import participants, roles, staff, treatment
from study.audit import Actor
from study.models import Participant, StaffMember, TreatmentReason, TreatmentState
from study.treatment import TreatmentError

# The reasons staff type, as the team says them.
REASON_WORDS = {reason.value: reason for reason in TreatmentReason} | {
    "ae": TreatmentReason.ADVERSE_EVENT, "investigator": TreatmentReason.INVESTIGATOR_DECISION,
    "end": TreatmentReason.END_OF_TREATMENT}


async def _overview(context: TrialbotContext, member: StaffMember, session, person: Participant, *,
                    changed: bool = False) -> RenderedMessage:
    zone = ZoneInfo(services(context).protocol.study.default_timezone)
    names = {m.id: m.name for m in await staff.all_staff(session)}
    rows = [{"at": c.changed_at.astimezone(zone), "previous": c.previous, "state": c.state, "reason": c.reason,
             "text": c.reason_text or "", "by": _who(c.changed_by, names)}
            for c in (await treatment.history(session, person))[-10:]]
    return render(context, "staff_treatment", member.language, {
        "study_id": person.study_id, "state": person.treatment, "reason": person.treatment_reason or "",
        "since": person.treatment_since.astimezone(zone) if person.treatment_since else None,
        "history": rows, "changed": changed})


def _who(actor: str, names: dict[int, str]) -> str:
    kind, _, ident = actor.partition(":")
    if kind == "staff" and ident.isdigit():
        return names.get(int(ident), actor)
    return {"participant": "the participant", "operator": f"{ident} (server)"}.get(kind, actor)


def _usage(context: TrialbotContext, member: StaffMember, problem: str, **variables) -> RenderedMessage:
    return render(context, "staff_treatment_usage", member.language, {
        "problem": problem, "reasons": [r.value for r in treatment.REASONS_FOR[TreatmentState.INTERRUPTED]],
        "study_id": "", **variables})


@staff_command(roles.OVERSEE, "treatment")
async def show_course(update: Update, context: TrialbotContext, member: StaffMember) -> None:
    """/treatment P001: the participant's treatment course now, and its history."""
    args = context.args or []
    async with services(context).db.read() as session:
        person = await participants.by_study_id(session, args[0]) if args else None
        reply = (await _overview(context, member, session, person) if person is not None
                 else _usage(context, member, "unknown" if args else "usage", study_id=participants.normal_study_id(args[0])[:32] if args else ""))
    await show(update, context, reply)


@staff_command(roles.TREATMENT, "interrupt")
async def interrupt(update: Update, context: TrialbotContext, member: StaffMember) -> None:
    """/interrupt P001 <reason> [words]: the cream stops; visits, check-ins and safety go on."""
    await _change(update, context, member, TreatmentState.INTERRUPTED)


@staff_command(roles.TREATMENT, "offtreatment")
async def off_treatment(update: Update, context: TrialbotContext, member: StaffMember) -> None:
    """/offtreatment P001 [reason] [words]: the treatment period is over; follow-up goes on."""
    await _change(update, context, member, TreatmentState.OFF_TREATMENT, default=TreatmentReason.END_OF_TREATMENT)


@staff_command(roles.RESUME_TREATMENT, "resume_treatment")
async def resume_treatment(update: Update, context: TrialbotContext, member: StaffMember) -> None:
    """/resume P001 <words>: the investigator resumes an interrupted treatment, saying why."""
    await _change(update, context, member, TreatmentState.ON_TREATMENT,
                  default=TreatmentReason.INVESTIGATOR_DECISION, needs_words=True)


async def resume_command(update: Update, context: TrialbotContext) -> None:
    """/resume: a participant turning their messages back on, or the investigator resuming a
    participant's treatment. Who is writing decides."""
    user = update.effective_user
    svc = services(context)
    async with svc.db.read() as session:
        member = await staff.by_telegram_id(session, user.id) if user is not None else None
    if member is not None and member.active:
        await resume_treatment(update, context)
    else:
        await pause.resume(update, context)


async def _change(update: Update, context: TrialbotContext, member: StaffMember, state: TreatmentState, *,
                  default: TreatmentReason | None = None, needs_words: bool = False) -> None:
    svc = services(context)
    args = context.args or []
    if not args:
        await show(update, context, _usage(context, member, "usage"))
        return
    study_id = participants.normal_study_id(args[0])[:32]  # p001 is P001
    given = REASON_WORDS.get(args[1].lower()) if len(args) > 1 else None
    words = " ".join(args[2:] if given is not None else args[1:]).strip()
    reason = given or default
    if reason is None:
        await show(update, context, _usage(context, member, "reason", study_id=study_id))
        return
    if needs_words and not words:
        await show(update, context, _usage(context, member, "words", study_id=study_id))
        return
    async with effects(update, context) as fx:
        person = await participants.by_study_id(fx.session, args[0])
        if person is None:
            fx.reply = _usage(context, member, "unknown", study_id=study_id)
        else:
            try:
                await treatment.change(fx.session, svc.protocol, person, state, reason,
                                       actor=Actor.staff(member.id), now=svc.clock.now(), text=words or None)
            except TreatmentError as refused:
                fx.reply = _usage(context, member, refused.code, study_id=person.study_id, state=person.treatment)
            else:
                fx.reply = await _overview(context, member, fx.session, person, changed=True)
    svc.outbox_ready.set()
    await show(update, context, fx.reply)
