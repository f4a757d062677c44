"""/times: a participant moves their own reminder times (one per daily application)."""

from __future__ import annotations

from datetime import datetime, time

from telegram import Update

from bot import callback_data as cb
from bot.access import participant_only
from bot.exactly_once import effects
from bot.replies import render, show
from bot.runtime import TrialbotContext
from bot.services import services
from messages.renderer import Button
from study import participants
from study.audit import Actor
from study.diary import zone_of
from study.models import Participant

PICKABLE_HOURS = range(5, 24)


def _local_times(participant: Participant, now: datetime) -> list[datetime]:
    """Reminder times as today's datetimes in the participant's zone, for rendering."""
    today = now.astimezone(zone_of(participant)).date()
    return [datetime.combine(today, t, zone_of(participant)) for t in participants.reminder_times(participant)]


@participant_only
async def show_times(update: Update, context: TrialbotContext, participant: Participant) -> None:
    times = _local_times(participant, services(context).clock.now())
    rows = [[Button("change", f"t:{i}", {"time": t})] for i, t in enumerate(times)]
    rows.append([Button("keep", cb.DIARY_MENU)])
    await show(update, context, render(context, "times", participant.language, {"times": times}, rows))


@participant_only
async def change_time(update: Update, context: TrialbotContext, participant: Participant) -> None:
    parts = update.callback_query.data.split(":")
    index = int(parts[1])
    current = participants.reminder_times(participant)
    if index >= len(current):
        await show(update, context, render(context, "button_expired", participant.language))
        return
    svc = services(context)
    now = svc.clock.now()
    if len(parts) == 2:
        today = now.astimezone(zone_of(participant)).date()
        hours = [Button("hour", f"t:{index}:{h:02d}00", {"hour": datetime.combine(today, time(h), zone_of(participant))})
                 for h in PICKABLE_HOURS]
        rows = [hours[i:i + 4] for i in range(0, len(hours), 4)]
        rows.append([Button("back", cb.TIMES_MENU)])
        await show(update, context, render(context, "times_pick", participant.language,
                                           {"time": _local_times(participant, now)[index]}, rows))
        return
    picked = cb.hhmm(parts[2])  # forged data may carry any four digits ("2599")
    new = time(*picked) if picked is not None else None
    if new is None or new.hour not in PICKABLE_HOURS or new.minute != 0:
        await show(update, context, render(context, "button_expired", participant.language))
        return
    if new in current and current.index(new) != index:
        await show(update, context, render(context, "times_taken", participant.language))
        return
    chosen = sorted({*(t for i, t in enumerate(current) if i != index), new})
    async with effects(update, context) as fx:
        person = await fx.session.merge(participant)
        await participants.change(fx.session, person, actor=Actor.participant(participant.study_id), now=now,
                                  reason="participant changed reminder times (/times)",
                                  reminder_times=participants.format_times(chosen))
        person.next_plan_at = None  # plan again with the new times
        fx.reply = render(context, "times_saved", participant.language, {"times": _local_times(person, now)})
    await show(update, context, fx.reply)
