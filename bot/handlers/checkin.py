"""The symptom check-in in Telegram: /symptoms (or the scheduled invitation), one question at a
time, the answers reviewed, then saved. A red flag, a severe reaction or a score at or above the
protocol's threshold shows the safety message at once and alerts the study team.

The draft is in the database (study/checkins.py): a press or a typed answer updates it in one
transaction, so a restart in the middle loses nothing and a stale button cannot skip ahead.
Typed words that are not an answer to the question being asked go to the study team
(bot/handlers/conversation.py); then the question is asked again.
"""

from __future__ import annotations

from telegram import Update

from bot.access import participant_only
from bot.exactly_once import Effects, effects
from bot.replies import render, show
from bot.runtime import TrialbotContext
from bot.services import services
from messages.renderer import Button, RenderedMessage
from study import alerts, checkins, conversation, pregnancy_pathway
from study.checkins import AnswerStatus
from study.models import CheckinDraft, CheckinKind, CheckinSource, Participant

SCORES = range(11)


def _rows(context: TrialbotContext, participant: Participant, draft: CheckinDraft) -> list[list[Button]]:
    """The buttons of the question the draft is on."""
    step = draft.step
    later = [Button("checkin_later", "k:later")]
    if step in ("itch", "pain"):
        buttons = [Button(f"score_{n}", f"k:{step}:{n}") for n in SCORES]
        return [buttons[:6], buttons[6:], later]
    if step == "reaction":
        return [[Button(f"reaction_{r}", f"k:reaction:{r}")] for r in checkins.REACTIONS] + [later]
    if step == "severity":
        return [[Button(f"severity_{s}", f"k:severity:{s}") for s in checkins.SEVERITIES], later]
    if step == "new_problem":
        return [[Button("no_new_problem", "k:new_problem:no")], later]
    if step == "medicines":
        return [[Button(f"medicines_{m}", f"k:medicines:{m}")] for m in checkins.MEDICINES] + [later]
    if step == "medicines_change":
        return [later]
    if step == "red_flags":
        chosen = draft.answers.get("red_flags", [])
        flags = pregnancy_pathway.flags_offered(services(context).protocol, participant)
        rows = [[Button(f"flag_{f}", f"k:red_flags:{f}", {"chosen": f in chosen})] for f in flags]
        return [*rows, [Button("flags_done", "k:red_flags:done", {"count": len(chosen)})], later]
    return [[Button("checkin_save", "k:save")], [Button("checkin_restart", "k:restart")], [later[0]]]


def question(context: TrialbotContext, participant: Participant, draft: CheckinDraft, *,
             reask: bool = False) -> RenderedMessage:
    """The message for the question the draft is on (or the review of all answers)."""
    variables = {"reask": reask, "answers": draft.answers, "kind": draft.kind}
    return render(context, f"checkin_{draft.step}", participant.language, variables,
                  _rows(context, participant, draft))


@participant_only
async def symptoms(update: Update, context: TrialbotContext, participant: Participant) -> None:
    """/symptoms: start a check-in, or offer to continue the one under way."""
    svc = services(context)
    async with effects(update, context) as fx:
        draft, new = await checkins.start(fx.session, svc.protocol, participant, kind=CheckinKind.FULL, source=CheckinSource.COMMAND,
                                          now=svc.clock.now())
        if not new:
            checkins.set_aside(draft, now=svc.clock.now())  # until they choose: continue or start over
        fx.reply = question(context, participant, draft) if new else render(
            context, "checkin_resume", participant.language, {},
            [[Button("checkin_resume", "k:resume")], [Button("checkin_restart", "k:restart")]])
    svc.outbox_ready.set()  # a draft found past its time was closed: its note goes out now
    await show(update, context, fx.reply)


@participant_only
async def control(update: Update, context: TrialbotContext, participant: Participant) -> None:
    """Start (from the scheduled invitation), resume, restart, pause for later, or save."""
    action = update.callback_query.data[2:]
    if action == "save":
        await _save(update, context, participant)
        return
    svc = services(context)
    now = svc.clock.now()
    async with effects(update, context) as fx:
        session = fx.session
        if action == "later":
            draft = await checkins.draft_of(session, participant, protocol=svc.protocol, now=now)
            if draft is not None:
                checkins.set_aside(draft, now=now)
            fx.reply = render(context, "checkin_later", participant.language)
        else:
            if action.startswith("start:"):
                draft, _ = await checkins.start(session, svc.protocol, participant, kind=action[6:],
                                                source=CheckinSource.SCHEDULED, now=now)
            else:
                draft, _ = await checkins.start(session, svc.protocol, participant, kind=CheckinKind.FULL, source=CheckinSource.COMMAND,
                                                now=now, fresh=action == "restart")
            fx.reply = question(context, participant, draft)
    svc.outbox_ready.set()  # a draft found past its time was closed: its note goes out now
    await show(update, context, fx.reply)


@participant_only
async def answer_button(update: Update, context: TrialbotContext, participant: Participant) -> None:
    _, step, value = update.callback_query.data.split(":", 2)
    svc = services(context)
    async with effects(update, context) as fx:
        draft = await checkins.draft_of(fx.session, participant, protocol=svc.protocol, now=svc.clock.now())
        if draft is None:
            fx.reply = render(context, "checkin_none", participant.language)
        else:
            offered = step != "red_flags" or value == "done" or value in pregnancy_pathway.flags_offered(
                svc.protocol, participant)
            status = (checkins.answer(svc.protocol, draft, step, value, now=svc.clock.now()) if offered
                      else AnswerStatus.INVALID)  # a flag not offered to them (a forged button)
            fx.reply = question(context, participant, draft, reask=status is AnswerStatus.INVALID)
    svc.outbox_ready.set()  # a draft found past its time was closed: its note goes out now
    await show(update, context, fx.reply)


async def typed(update: Update, context: TrialbotContext, participant: Participant, fx: Effects,
                draft: CheckinDraft, text: str) -> bool:
    """Typed words while the draft asks a question that takes words: an answer, or a failed
    try at one (asked again, kindly). False when the words are not meant as this answer: the
    caller passes them to the study team. Runs inside the update's `effects`."""
    svc = services(context)
    now = svc.clock.now()
    step = draft.step
    status = checkins.answer(svc.protocol, draft, step, text, now=now)
    if status is AnswerStatus.ACCEPTED:
        if step in checkins.WORDS_ANSWERS and draft.answers.get(step):
            await _tell_team(context, participant, fx, step, draft)
        fx.reply = fx.reply or question(context, participant, draft)
        return True
    if checkins.looks_like_an_answer(step, text):
        fx.reply = question(context, participant, draft, reask=True)
        return True
    return False


async def _tell_team(context: TrialbotContext, participant: Participant, fx: Effects, step: str,
                     draft: CheckinDraft) -> None:
    """A check-in answer in the participant's own words reaches the study team at once, and the
    screening: a new health problem as a message, a change of medicines as its own notice."""
    svc = services(context)
    now = svc.clock.now()
    person = await fx.session.get(Participant, participant.id)
    words = draft.answers[step]
    received = await conversation.from_participant(fx.session, svc.protocol, person, words, now=now,
                                                   context=f"answer:{step}", pass_on=step != "medicines_change")
    if step == "medicines_change":
        await checkins.notify_regimen_change(fx.session, person, draft, now=now)
    if received.screening.actions:
        # A warning sign in the answer: what to do comes first; the check-in goes on after it.
        fx.reply = safety_message(context, participant, received.screening.actions)
        fx.follow_up = question(context, participant, draft)
    svc.outbox_ready.set()


async def _save(update: Update, context: TrialbotContext, participant: Participant) -> None:
    svc = services(context)
    # A second tap on Save (sent before the first one's answer arrived) gets the first one's answer:
    # the safety instructions stay on screen.
    async with effects(update, context, once_per_message=True) as fx:
        draft = await checkins.draft_of(fx.session, participant, protocol=svc.protocol, now=svc.clock.now())
        if draft is None or draft.step != "review":
            fx.reply = render(context, "checkin_none", participant.language)
        else:
            person = await fx.session.get(Participant, participant.id)
            submitted = await checkins.submit(fx.session, svc.protocol, person, draft, now=svc.clock.now())
            actions = alerts.participant_actions(svc.protocol, submitted.triggers)
            fx.reply = (safety_message(context, participant, actions) if actions
                        else render(context, "checkin_saved", participant.language))
    svc.outbox_ready.set()
    await show(update, context, fx.reply)


def safety_message(context: TrialbotContext, participant: Participant, actions) -> RenderedMessage:
    """What to do right now: every action the report calls for, most urgent first (911 before
    "stop the cream and call today"). The study team has been alerted."""
    return render(context, "safety_message", participant.language, {"actions": [str(a) for a in actions]})
