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

from bot import callback_data as cb
from bot.access import participant_only
from bot.exactly_once import effects
from bot.replies import render, show
from bot.runtime import TrialbotContext
from bot.services import services
from messages.renderer import Button
from scheduler.planner import pregnancy_reminder_key
from study import outbox, pregnancy_pathway, pregnancy_tests
from study.audit import Actor
from study.models import AlertSource, Participant, PregnancyResult, PregnancySource, PregnancyTest

REPLIES = {"negative": "pregnancy_negative_saved", "positive": "pregnancy_positive", "not_yet": "pregnancy_not_yet"}


@participant_only
async def pregnancy_answer(update: Update, context: TrialbotContext, participant: Participant) -> None:
    answer = cb.PregnancyAnswer.parse(update.callback_query.data)
    svc = services(context)
    rules = svc.protocol.pregnancy_tests
    now = svc.clock.now()
    entry, notice = None, False
    async with effects(update, context) as fx:
        session = fx.session
        person = await session.get(Participant, participant.id)
        today = now.astimezone(ZoneInfo(person.timezone)).date()
        if answer is not None and answer.participant_id == person.id:
            key = pregnancy_reminder_key(person.id, answer.due, answer.repeat)
            entry = await session.scalar(select(PregnancyTest).where(PregnancyTest.idempotency_key == key))
            if (entry is None and pregnancy_tests.apply_to(rules, person)
                    and _answerable(rules, answer, await pregnancy_tests.current_due(session, rules, person,
                                                                                   today=today), today)):
                recorded = await pregnancy_tests.record(session, person, answer.result, key=key, source=PregnancySource.REMINDER,
                                                        actor=Actor.participant(person.study_id), now=now)
                entry = recorded.entry
                if recorded.new and entry.result == PregnancyResult.POSITIVE:
                    # The pathway: treatment interrupted at once, the team alerted until someone acknowledges.
                    await pregnancy_pathway.positive(session, svc.protocol, person, source=AlertSource.PREGNANCY_TEST,
                                                     now=now, test_date=entry.local_date.isoformat())
                    notice = True
            if entry is not None:
                message = update.callback_query.message
                if message is not None:
                    await outbox.mark_answered(session, person.id, message.message_id, now=now)
        if entry is None:
            fx.reply = render(context, "pregnancy_expired", participant.language)
        else:
            next_date = await pregnancy_tests.current_due(session, rules, person, today=today)
            ask = rules.ask_contraception and entry.result == PregnancyResult.NEGATIVE and answer is not None
            variables = {"next_date": next_date, "repeat_days": rules.repeat_every_days, "where": rules.where,
                         "ask_contraception": ask}
            buttons = [[Button(f"contraception_{word}",
                               f"p:c:{person.id}:{answer.due:%Y%m%d}:{answer.repeat}:{word[0]}")
                        for word in ("yes", "no")]] if ask and answer is not None else []
            fx.reply = render(context, REPLIES[entry.result], participant.language, variables, buttons)
    if notice:
        svc.outbox_ready.set()
    await show(update, context, fx.reply)


def _answerable(rules, answer: cb.PregnancyAnswer, due, today) -> bool:
    """The reminder pressed is for the test due now, and was one that could have been sent."""
    sent_day = answer.due + timedelta(days=answer.repeat * rules.repeat_every_days)
    return answer.due == due and sent_day <= today


@participant_only
async def contraception_answer(update: Update, context: TrialbotContext, participant: Participant) -> None:
    """The protocol's contraception question, asked with a negative result: stored once per
    reminder; "no" tells the study team (a notice, not an alert)."""
    answer = cb.ContraceptionAnswer.parse(update.callback_query.data)
    svc = services(context)
    now = svc.clock.now()
    async with effects(update, context, once_per_message=True) as fx:  # a double tap: the first answer stands
        person = await fx.session.get(Participant, participant.id)
        if answer is None or answer.participant_id != person.id or not svc.protocol.pregnancy_tests.ask_contraception:
            fx.reply = render(context, "pregnancy_expired", participant.language)
        else:
            key = pregnancy_reminder_key(person.id, answer.due, answer.repeat)
            entry, new = await pregnancy_tests.record_contraception(
                fx.session, person, answer.uses, due=answer.due, key=key, actor=Actor.participant(person.study_id),
                now=now)
            if new and not entry.uses:
                await outbox.notify_staff(fx.session, event_key=f"contraception:{entry.id}",
                                          template_id="staff_contraception",
                                          variables={"study_id": person.study_id,
                                                     "due_date": entry.due_date.isoformat()}, now=now)
            fx.reply = render(context, "contraception_saved", participant.language, {"uses": entry.uses})
    svc.outbox_ready.set()
    await show(update, context, fx.reply)
