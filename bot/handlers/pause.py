"""/stop and /resume: a participant turns the bot's own messages off and on. Their data stays,
they can still log, and the study team is told either way."""

from __future__ import annotations

from telegram import Update

from bot.access import participant_only
from bot.exactly_once import effects
from bot.replies import render, show
from bot.runtime import TrialbotContext
from bot.services import services
from study import outbox, participants
from study.audit import Actor
from study.models import Participant


async def _switch(update: Update, context: TrialbotContext, participant: Participant, *, pause: bool) -> None:
    svc = services(context)
    now = svc.clock.now()
    actor = Actor.participant(participant.study_id)
    async with effects(update, context) as fx:
        session = fx.session
        current = await session.merge(participant)
        if pause:
            changed = await participants.pause_messages(session, current, actor=actor, now=now,
                                                        why="participant paused messages (/stop)")
        else:
            changed = await participants.resume(session, current, actor=actor, now=now)
            if changed:
                await outbox.notify_staff(session, event_key=f"resume:{participant.study_id}:{now.isoformat()}",
                                          template_id="staff_resumed", variables={"study_id": participant.study_id},
                                          now=now)
        template = ("paused" if changed else "already_paused") if pause else ("resumed" if changed else "already_active")
        fx.reply = render(context, template, participant.language)
    if changed:
        svc.outbox_ready.set()
    await show(update, context, fx.reply)


@participant_only
async def stop(update: Update, context: TrialbotContext, participant: Participant) -> None:
    await _switch(update, context, participant, pause=True)


@participant_only
async def resume(update: Update, context: TrialbotContext, participant: Participant) -> None:
    await _switch(update, context, participant, pause=False)
