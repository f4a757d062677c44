"""Answers to a visit reminder: Confirm, or Need to reschedule (which tells the study team).

The callback data names a visit and its revision; it is never trusted. The visit must be one of
the pressing participant's own, still open, and not moved since the reminder was sent.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from telegram import Update

from bot import callback_data as cb
from bot.access import participant_only
from bot.exactly_once import effects
from bot.replies import render, show
from bot.runtime import TrialbotContext
from bot.services import services
from study import outbox, visits
from study.audit import Actor
from study.models import Participant, Visit, VisitStatus
from study.slots import instant


def visit_variables(visit: Visit, participant: Participant) -> dict[str, object]:
    zone = ZoneInfo(participant.timezone)
    at = instant(visit.scheduled_date, visit.scheduled_time, zone).astimezone(zone) if visit.scheduled_time else None
    return {"visit_date": visit.scheduled_date, "visit_at": at}


@participant_only
async def visit_answer(update: Update, context: TrialbotContext, participant: Participant) -> None:
    answer = cb.VisitAnswer.parse(update.callback_query.data)
    svc = services(context)
    now = svc.clock.now()
    template, variables, notice = "visit_changed", {}, False
    async with effects(update, context) as fx:
        session = fx.session
        person = await session.get(Participant, participant.id)
        visit = await session.get(Visit, answer.visit_id) if answer else None
        if (visit is not None and visit.participant_id == person.id and visit.revision == answer.revision
                and visit.status in visits.OPEN_STATUSES):
            if answer.action == cb.VISIT_CONFIRM:
                await visits.set_status(session, person, visit, VisitStatus.CONFIRMED, actor=Actor.participant(person.study_id),
                                        now=now, reason="participant confirmed the visit (reminder button)")
                template = "visit_confirmed"
            else:
                notice = await _reschedule(session, person, visit, now)
                template = "visit_reschedule_thanks"
            variables = visit_variables(visit, person)
            await _note_answer(session, update, person, now)
        fx.reply = render(context, template, participant.language, variables)
    if notice:
        svc.outbox_ready.set()  # after the commit: the study team's notice goes out at once
    await show(update, context, fx.reply)


async def _reschedule(session, person: Participant, visit: Visit, now: datetime) -> bool:
    changed = await visits.set_status(session, person, visit, VisitStatus.RESCHEDULE_REQUESTED,
                                      actor=Actor.participant(person.study_id), now=now,
                                      reason="participant asked to reschedule (reminder button)")
    if changed:
        await outbox.notify_staff(
            session, event_key=f"visit_reschedule:{visit.id}:r{visit.revision}:{now:%Y%m%d%H%M%S}",
            template_id="staff_visit_reschedule",
            variables={"study_id": person.study_id, "visit_label": visit.label,
                       "visit_date": visit.scheduled_date.isoformat(),
                       "visit_time": visit.scheduled_time.strftime("%H:%M") if visit.scheduled_time else ""},
            now=now)
    return changed


async def _note_answer(session, update: Update, participant: Participant, now: datetime) -> None:
    message = update.callback_query.message if update.callback_query else None
    if message is not None:
        await outbox.mark_answered(session, participant.id, message.message_id, now=now)
