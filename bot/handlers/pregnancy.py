"""Answers to a pregnancy-test reminder: Done - negative, Done - positive, Not yet.

One answer per reminder message (a double tap stores one). The callback data is never trusted:
it must name the pressing participant and the test their own records make due now. A positive
answer is recorded, the participant is told to stop the cream and call the study team today,
and a safety alert goes to the study team at once and keeps going until someone acknowledges it.
"""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from telegram import Update
from telegram.ext import CallbackContext

from bot import callback_data as cb
from bot.access import participant_only
from bot.exactly_once import effects
from bot.replies import render, show
from bot.services import services
from scheduler.planner import pregnancy_reminder_key
from study import alerts, outbox, pregnancy_tests
from study.audit import Actor
from study.models import Participant, PregnancyTest

REPLIES = {"negative": "pregnancy_negative_saved", "positive": "pregnancy_positive", "not_yet": "pregnancy_not_yet"}


@participant_only
async def pregnancy_answer(update: Update, context: CallbackContext, participant: Participant) -> None:
    answer = cb.PregnancyAnswer.parse(update.callback_query.data)
    svc = services(context)
    rules = svc.protocol.pregnancy_tests
    now = svc.clock.now()
    entry, notice = None, False
    async with effects(update, context) as fx:
        session = fx.session
        person = await session.get(Participant, participant.id)
        if answer is not None and answer.participant_id == person.id and person.wocbp and rules.enabled:
            key = pregnancy_reminder_key(person.id, answer.due, answer.repeat)
            entry = await session.scalar(select(PregnancyTest).where(PregnancyTest.idempotency_key == key))
            if entry is None and _answerable(rules, person, answer, await pregnancy_tests.current_due(
                    session, rules, person), now):
                recorded = await pregnancy_tests.record(session, person, answer.result, key=key, source="reminder",
                                                        actor=Actor.participant(person.study_id), now=now)
                entry = recorded.entry
                if recorded.new and entry.result == "positive":
                    # A safety signal: an alert that is re-sent until someone acknowledges it.
                    await alerts.raise_alert(session, person, source="pregnancy_test", now=now,
                                             triggers=[{"red_flag": "pregnancy_positive",
                                                        "test_date": entry.local_date.isoformat()}])
                    notice = True
            if entry is not None:
                message = update.callback_query.message
                if message is not None:
                    await outbox.mark_answered(session, person.id, message.message_id, now=now)
        if entry is None:
            fx.reply = render(context, "pregnancy_expired", participant.language)
        else:
            variables = {"next_date": entry.local_date + timedelta(days=rules.every_days),
                         "repeat_days": rules.repeat_every_days, "where": rules.where}
            fx.reply = render(context, REPLIES[entry.result], participant.language, variables)
    if notice:
        svc.outbox_ready.set()
    await show(update, context, fx.reply)


def _answerable(rules, person: Participant, answer: cb.PregnancyAnswer, due, now) -> bool:
    """The reminder pressed is for the test due now, and was one that could have been sent."""
    today = now.astimezone(ZoneInfo(person.timezone)).date()
    sent_day = answer.due + timedelta(days=answer.repeat * rules.repeat_every_days)
    return answer.due == due and sent_day <= today
