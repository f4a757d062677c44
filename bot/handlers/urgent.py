"""/urgent: at any moment, a participant picks what is wrong from the red-flag list; the safety
message shows at once and the study team is alerted."""

from __future__ import annotations

from telegram import Update

from bot.access import participant_only
from bot.exactly_once import effects
from bot.handlers.checkin import safety_message
from bot.replies import render, show
from bot.runtime import TrialbotContext
from bot.services import services
from messages.renderer import Button
from study import alerts, pregnancy_pathway
from study.models import AlertSource, Participant


@participant_only
async def urgent(update: Update, context: TrialbotContext, participant: Participant) -> None:
    flags = pregnancy_pathway.flags_offered(services(context).protocol, participant)
    rows = [[Button(f"flag_{f}", f"u:{f}", {"chosen": False})] for f in flags]
    rows.append([Button("urgent_other", "u:other")])
    await show(update, context, render(context, "urgent", participant.language, {}, rows))


@participant_only
async def urgent_report(update: Update, context: TrialbotContext, participant: Participant) -> None:
    code = update.callback_query.data[2:]
    svc = services(context)
    if code != "other" and code not in pregnancy_pathway.flags_offered(svc.protocol, participant):
        await show(update, context, render(context, "button_expired", participant.language))
        return
    triggers = [{"red_flag": code} if code != "other" else {"urgent": "other"}]
    # One alert per button: a second tap on it (sent before the first one's answer arrived) gets
    # the first one's answer and raises nothing more.
    async with effects(update, context, once_per_message=True) as fx:
        person = await fx.session.get(Participant, participant.id)
        if code == pregnancy_pathway.FLAG:  # the pathway: treatment interrupted at once, the team alerted
            await pregnancy_pathway.positive(fx.session, svc.protocol, person, source=AlertSource.URGENT, now=svc.clock.now())
        else:
            await alerts.raise_alert(fx.session, person, source=AlertSource.URGENT, triggers=triggers, now=svc.clock.now())
        fx.reply = safety_message(context, participant, alerts.participant_actions(svc.protocol, triggers))
    svc.outbox_ready.set()
    await show(update, context, fx.reply)
