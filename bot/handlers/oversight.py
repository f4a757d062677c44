"""Oversight for the study team (/participants, /visits, /adherence P001) and for participants
their own (/nextvisit, /mystats). Read-only; every role may look (study/roles.py OVERSEE)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from telegram import Update

from bot.access import participant_only, staff_command
from bot.replies import _record, render, show
from bot.runtime import TrialbotContext
from bot.services import services
from study import diary, oversight, participants, plots, roles
from study.models import Participant, StaffMember

PAGE = 20


def _study_zone(context: TrialbotContext) -> ZoneInfo:
    return ZoneInfo(services(context).protocol.study.default_timezone)


@staff_command(roles.OVERSEE, "participants")
async def participants_list(update: Update, context: TrialbotContext, member: StaffMember) -> None:
    svc = services(context)
    async with svc.db.read() as session:
        rows = await oversight.overview(session, svc.protocol, now=svc.clock.now())
    zone = _study_zone(context)
    shown = [{"study_id": r.study_id, "status": r.status, "a7": r.adherence_7, "a28": r.adherence_28,
              "last_entry": r.last_entry_at.astimezone(zone).strftime("%Y-%m-%d %H:%M") if r.last_entry_at else "",
              "open_alerts": r.open_alerts, "next_visit": r.next_visit.isoformat() if r.next_visit else "",
              "reachable": r.reachable, "joined": r.joined, "corrected": r.corrected_28} for r in rows]
    for start in range(0, max(len(shown), 1), PAGE):  # Telegram's 4096 characters: 20 a message
        await show(update, context, render(context, "staff_participants", member.language,
                                           {"rows": shown[start:start + PAGE]}))


@staff_command(roles.OVERSEE, "visits")
async def visits_week(update: Update, context: TrialbotContext, member: StaffMember) -> None:
    svc = services(context)
    first = svc.clock.now().astimezone(_study_zone(context)).date()
    last = first + timedelta(days=6)
    async with svc.db.read() as session:
        found = await oversight.visits_between(session, first, last)
    shown = [{"date": v.scheduled_date.isoformat(), "time": v.scheduled_time.strftime("%H:%M") if v.scheduled_time
              else "", "study_id": p.study_id, "label": v.label, "status": v.status} for v, p in found]
    for start in range(0, max(len(shown), 1), PAGE):
        await show(update, context, render(context, "staff_visits_week", member.language,
                                           {"first": first.isoformat(), "last": last.isoformat(),
                                            "visits": shown[start:start + PAGE]}))


@participant_only
async def nextvisit(update: Update, context: TrialbotContext, participant: Participant) -> None:
    svc = services(context)
    async with svc.db.read() as session:
        visit = await oversight.next_visit(session, participant, now=svc.clock.now())
    variables = {"has_visit": visit is not None, "visit_date": visit.scheduled_date if visit else None,
                 "visit_at": datetime.combine(visit.scheduled_date, visit.scheduled_time,
                                              tzinfo=ZoneInfo(participant.timezone))
                 if visit is not None and visit.scheduled_time else None}
    await show(update, context, render(context, "nextvisit", participant.language, variables))


async def _picture(context: TrialbotContext, participant: Participant, language: str) -> tuple[bytes, dict]:
    svc = services(context)
    now = svc.clock.now()
    async with svc.db.read() as session:
        record = await oversight.diary_record(session, participant.id)
        scores = await oversight.scores(session, participant.id)
        periods = (await participants.active_periods(session, [participant]))[participant.id]
    applied = record.applied
    first, today = oversight.start_day(participant), diary.local_today(participant, now)
    active = participants.active_days(periods, ZoneInfo(participant.timezone), today, 28)
    per_day = svc.protocol.treatment.applications_per_day
    labels = {name: svc.messages.render_block("plot_labels", language, f"label_{name}") for name in plots.LABELS}
    png = await asyncio.to_thread(plots.adherence_png, applied, scores, first=first, today=today, per_day=per_day,
                                  labels=labels)  # drawing takes a moment: not on the event loop
    days = (today - first).days + 1 if first else 0
    return png, {"days": days, "a7": oversight.adherence(applied, active, today, 7, per_day),
                 "a28": oversight.adherence(applied, active, today, 28, per_day),
                 "corrected": oversight.corrected_within(record, first, today)}


async def _send_photo(update: Update, context: TrialbotContext, png: bytes, rendered) -> None:
    message = await context.bot.send_photo(update.effective_chat.id, photo=png, caption=rendered.text)
    await _record(update, context, rendered, via="reply", message_id=message.message_id)


@staff_command(roles.OVERSEE, "adherence")
async def adherence_plot(update: Update, context: TrialbotContext, member: StaffMember) -> None:
    svc = services(context)
    study_id = participants.normal_study_id((context.args or [""])[0])[:32]
    async with svc.db.read() as session:
        person = await participants.by_study_id(session, study_id) if study_id else None
    base = {"study_id": study_id or "P001", "days": 0, "a7": None, "a28": None, "corrected": 0}
    if person is None:
        await show(update, context, render(context, "staff_adherence_plot", member.language, {**base, "found": False}))
        return
    png, numbers = await _picture(context, person, member.language)
    await _send_photo(update, context, png, render(context, "staff_adherence_plot", member.language,
                                                   {**base, **numbers, "study_id": person.study_id, "found": True}))


@participant_only
async def mystats(update: Update, context: TrialbotContext, participant: Participant) -> None:
    png, numbers = await _picture(context, participant, participant.language)
    await _send_photo(update, context, png, render(context, "mystats", participant.language,
                                                   {"days": numbers["days"]}))
