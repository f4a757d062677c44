"""The study team's side of alerts: Acknowledge (which stops the re-sending) and /alerts."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from telegram import Update

from bot import callback_data as cb
from bot.access import staff_command
from bot.exactly_once import effects
from bot.replies import render, show
from bot.runtime import TrialbotContext
from bot.services import services
from messages.renderer import Button
from study import alerts, roles
from study.alerts import AckOutcome, AckResult
from study.models import Participant, StaffMember


def _in_study_zone(context: TrialbotContext, moment):
    return moment.astimezone(ZoneInfo(services(context).protocol.study.default_timezone)) if moment else None


@staff_command(roles.ACKNOWLEDGE, "acknowledge")
async def acknowledge(update: Update, context: TrialbotContext, member: StaffMember) -> None:
    svc = services(context)
    now = svc.clock.now()
    alert_id = cb.record_id(update.callback_query.data[2:])
    async with effects(update, context) as fx:
        pressed = update.callback_query.message if update.callback_query is not None else None
        result = (await alerts.acknowledge(fx.session, alert_id, member, now=now,
                                           pressed_message_id=pressed.message_id if pressed is not None else None)
                  if alert_id is not None else AckResult(AckOutcome.NOT_FOUND))
        participant = (await fx.session.get(Participant, result.alert.participant_id)) if result.alert else None
        if result.outcome is AckOutcome.NOT_ALLOWED:
            fx.reply = render(context, "staff_not_allowed", member.language, {"role": member.role})
        elif result.outcome is AckOutcome.NOT_FOUND:
            fx.reply = render(context, "staff_alert_unknown", member.language)
        else:
            fx.reply = render(context, "staff_alert_acknowledged", member.language, {
                **alerts.alert_variables(result.alert, participant), "by": result.by.name if result.by else "",
                "reported_at": _in_study_zone(context, result.alert.reported_at),
                "acknowledged_at": _in_study_zone(context, result.alert.acknowledged_at),
                "already": result.outcome is AckOutcome.ALREADY,
            })
    if result.outcome is AckOutcome.ACKNOWLEDGED:
        svc.outbox_ready.set()  # the other copies are edited
    await show(update, context, fx.reply)


@staff_command(roles.OVERSEE, "alerts")
async def list_open(update: Update, context: TrialbotContext, member: StaffMember) -> None:
    svc = services(context)
    async with svc.db.read() as session:
        open_now = await alerts.open_alerts(session)
    if not open_now:
        await show(update, context, render(context, "staff_no_open_alerts", member.language))
        return
    for alert, participant in open_now[:20]:
        variables = {**alerts.alert_variables(alert, participant), "round": 0, "escalated": False}
        variables["reported_at"] = _in_study_zone(context, alert.reported_at)
        await show(update, context, render(context, "staff_alert", member.language, variables,
                                           [[Button("acknowledge", f"a:{alert.id}")]]))
