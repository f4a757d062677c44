"""The symptom check-in in Telegram: /symptoms (or the scheduled invitation), one question at a
time, the answers reviewed, then saved. A red flag, a severe reaction or a score at or above the
protocol's threshold shows the safety message at once and alerts the study team.

The draft is in the database (study/checkins.py): a press or a typed answer updates it in one
transaction, so a restart in the middle loses nothing and a stale button cannot skip ahead.
"""

from __future__ import annotations

from telegram import Update
from telegram.ext import CallbackContext

from bot.access import participant_only
from bot.replies import render, show
from bot.services import services
from messages.renderer import Button, RenderedMessage
from study import checkins
from study.checkins import AnswerStatus
from study.models import CheckinDraft, Participant

SCORES = range(11)


def question(context: CallbackContext, participant: Participant, draft: CheckinDraft, *,
             reask: bool = False) -> RenderedMessage:
    """The message for the question the draft is on (or the review of all answers)."""
    step = draft.step
    later = [Button("checkin_later", "k:later")]
    variables = {"reask": reask, "answers": draft.answers, "kind": draft.kind}
    if step in ("itch", "pain"):
        buttons = [Button(f"score_{n}", f"k:{step}:{n}") for n in SCORES]
        rows = [buttons[:6], buttons[6:], later]
    elif step == "reaction":
        rows = [[Button(f"reaction_{r}", f"k:reaction:{r}")] for r in checkins.REACTIONS] + [later]
    elif step == "severity":
        rows = [[Button(f"severity_{s}", f"k:severity:{s}") for s in checkins.SEVERITIES], later]
    elif step == "new_problem":
        rows = [[Button("no_new_problem", "k:new_problem:no")], later]
    elif step == "medicines":
        rows = [[Button(f"medicines_{m}", f"k:medicines:{m}")] for m in checkins.MEDICINES] + [later]
    elif step == "red_flags":
        chosen = draft.answers.get("red_flags", [])
        flags = services(context).protocol.safety.red_flags
        rows = [[Button(f"flag_{f}", f"k:red_flags:{f}", {"chosen": f in chosen})] for f in flags]
        rows += [[Button("flags_done", "k:red_flags:done", {"count": len(chosen)})], later]
    else:  # review
        rows = [[Button("checkin_save", "k:save")], [Button("checkin_restart", "k:restart")], [later[0]]]
    return render(context, f"checkin_{step}", participant.language, variables, rows)


@participant_only
async def symptoms(update: Update, context: CallbackContext, participant: Participant) -> None:
    """/symptoms: start a check-in, or offer to continue the one under way."""
    svc = services(context)
    async with svc.db.transaction() as session:
        draft, new = await checkins.start(session, participant, kind="full", source="command", now=svc.clock.now())
    if new:
        await show(update, context, question(context, participant, draft))
        return
    await show(update, context, render(context, "checkin_resume", participant.language, {},
                                       [[Button("checkin_resume", "k:resume")], [Button("checkin_restart", "k:restart")]]))


@participant_only
async def control(update: Update, context: CallbackContext, participant: Participant) -> None:
    """Start (from the scheduled invitation), resume, restart, pause for later, or save."""
    action = update.callback_query.data[2:]
    svc = services(context)
    now = svc.clock.now()
    if action == "save":
        await _save(update, context, participant)
        return
    async with svc.db.transaction() as session:
        if action == "later":
            draft = None
        elif action.startswith("start:"):
            draft, _ = await checkins.start(session, participant, kind=action[6:], source="scheduled", now=now)
        else:
            draft, _ = await checkins.start(session, participant, kind="full", source="command", now=now,
                                            fresh=action == "restart")
    if draft is None:
        await show(update, context, render(context, "checkin_later", participant.language))
        return
    await show(update, context, question(context, participant, draft))


@participant_only
async def answer_button(update: Update, context: CallbackContext, participant: Participant) -> None:
    _, step, value = update.callback_query.data.split(":", 2)
    await _answer(update, context, participant, step, value)


async def answer_text(update: Update, context: CallbackContext, participant: Participant, draft: CheckinDraft) -> None:
    """A typed answer to the question the draft is on (a score, or the new health problem)."""
    await _answer(update, context, participant, draft.step, update.effective_message.text or "")


async def _answer(update: Update, context: CallbackContext, participant: Participant, step: str, value: str) -> None:
    svc = services(context)
    async with svc.db.transaction() as session:
        draft = await checkins.draft_of(session, participant)
        status = checkins.answer(svc.protocol, draft, step, value, now=svc.clock.now()) if draft else None
    if draft is None:
        await show(update, context, render(context, "checkin_none", participant.language))
        return
    await show(update, context, question(context, participant, draft, reask=status is AnswerStatus.INVALID))


async def _save(update: Update, context: CallbackContext, participant: Participant) -> None:
    svc = services(context)
    async with svc.db.transaction() as session:
        draft = await checkins.draft_of(session, participant)
        if draft is None or draft.step != "review":
            submitted = None
        else:
            person = await session.get(Participant, participant.id)
            submitted = await checkins.submit(session, svc.protocol, person, draft, now=svc.clock.now())
    if submitted is None:
        await show(update, context, render(context, "checkin_none", participant.language))
        return
    if submitted.alert is not None:
        svc.outbox_ready.set()
        await show(update, context, safety_message(context, participant, submitted.triggers))
        return
    await show(update, context, render(context, "checkin_saved", participant.language))


def safety_message(context: CallbackContext, participant: Participant, triggers: list[dict]) -> RenderedMessage:
    """What to do right now: for a positive pregnancy test, stop the cream and call today;
    otherwise 911 in an emergency, else the study team now."""
    pregnancy = any(t.get("red_flag") == "pregnancy_positive" for t in triggers)
    return render(context, "pregnancy_positive" if pregnancy else "safety_message", participant.language)
