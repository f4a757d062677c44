"""The application diary in Telegram: a participant taps Applied now, Applied earlier, or
Missed a dose; sees today's entries; takes the last one back with /undo.

Each handler reads the press, makes one domain call in one transaction (the entry and its audit
entry together, and the record of the edit that will say so), and only after the commit edits the
message to say what was saved.
"""

from __future__ import annotations

from datetime import date, datetime, time

from sqlalchemy.ext.asyncio import AsyncSession
from telegram import Update

from bot import callback_data as cb
from bot.access import participant_only
from bot.exactly_once import effects
from bot.replies import render, show
from bot.runtime import TrialbotContext
from bot.services import services
from messages.renderer import Button, RenderedMessage
from study import diary, outbox
from study.corrections import EntryView
from study.diary import LogStatus, UndoStatus
from study.models import DiaryEntry, Participant


def diary_buttons(form: str | None = None) -> list[list[Button]]:
    form = form or cb.new_form()
    return [
        [Button("applied_now", cb.diary(cb.DIARY_NOW, form))],
        [Button("applied_earlier", cb.diary(cb.DIARY_EARLIER, form))],
        [Button("missed", cb.diary(cb.DIARY_MISSED, form))],
        [Button("today", cb.DIARY_TODAY)],
    ]


def _source(form: str) -> str:
    return "reminder" if cb.slot_day(form) is not None else "button"


async def _note_answer(session, update: Update, participant: Participant, now: datetime) -> None:
    """A press on a reminder answers it: its delivery record says so."""
    message = update.callback_query.message if update.callback_query else None
    if message is not None:
        step = cb.DiaryStep.parse(update.callback_query.data or "")
        slot = cb.slot_key(step.form) if step is not None else None
        await outbox.mark_answered(session, participant.id, message.message_id, now=now,
                                   slot_keys=outbox.slot_keys(participant.id, slot) if slot else ())


def _entry_key(update: Update, form: str) -> str:
    """The same keyboard pressed twice yields the same key, so only one entry is stored. A
    reminder's form is its slot, whatever message carries it: a reminder Telegram delivered
    twice (its first answer lost on the way back) is still one keyboard."""
    message = update.callback_query.message if update.callback_query else None
    chat_id = update.effective_chat.id if update.effective_chat else 0
    if cb.slot_day(form) is not None:
        return f"tg:{chat_id}:{form}"
    return f"tg:{chat_id}:{message.message_id if message else 0}:{form}"


def _entry_variables(entry: DiaryEntry | EntryView, participant: Participant) -> dict[str, object]:
    zone = diary.zone_of(participant)
    return {
        "occurred_at": entry.occurred_at.astimezone(zone) if entry.occurred_at else None,
        "day": entry.local_date,
        "late": entry.late,
        "reason": entry.missed_reason or "",
        "kind": entry.kind,
        "corrected": getattr(entry, "corrected", False),  # a view of the diary (study/corrections.py)
    }


def _refusal(context: TrialbotContext, participant: Participant, status: LogStatus) -> RenderedMessage:
    template = {
        LogStatus.TOO_OLD: "entry_too_old",
        LogStatus.IN_FUTURE: "entry_in_future",
        LogStatus.UNKNOWN_REASON: "button_expired",
    }[status]
    rules = services(context).protocol.diary
    return render(context, template, participant.language, {"backfill_days": rules.backfill_days}, diary_buttons())


async def _refuse(update: Update, context: TrialbotContext, participant: Participant, status: LogStatus) -> None:
    await show(update, context, _refusal(context, participant, status))


@participant_only
async def show_menu(update: Update, context: TrialbotContext, participant: Participant) -> None:
    await show(update, context, render(context, "diary_menu", participant.language, {}, diary_buttons()))


@participant_only
async def applied_now(update: Update, context: TrialbotContext, participant: Participant) -> None:
    step = cb.DiaryStep.parse(update.callback_query.data)
    svc = services(context)
    now = svc.clock.now()
    async with effects(update, context, edits=True) as fx:
        result = await diary.log_application(
            fx.session, participant, occurred_at=now, source=_source(step.form), key=_entry_key(update, step.form),
            rules=svc.protocol.diary, now=now,
        )
        await _note_answer(fx.session, update, participant, now)
        fx.reply = _logged(context, participant, result)
    await show(update, context, fx.reply)


def _logged(context: TrialbotContext, participant: Participant, result: diary.LogResult) -> RenderedMessage:
    """What the participant is told about an entry: saved (the same entry for a repeated tap), or why not."""
    if result.entry is None:
        return _refusal(context, participant, result.status)
    template = "applied_logged" if result.entry.kind == "applied" else "missed_logged"
    variables = _entry_variables(result.entry, participant)
    return render(context, template, participant.language, variables, [[Button("today", cb.DIARY_TODAY)]])


@participant_only
async def applied_earlier(update: Update, context: TrialbotContext, participant: Participant) -> None:
    """Three presses: Applied earlier -> which day -> about what time -> saved."""
    step = await _day_chosen(update, context, participant, cb.DIARY_EARLIER)
    if step is None:
        return
    svc = services(context)
    now = svc.clock.now()
    rules = svc.protocol.diary
    if step.detail is None:
        hours = _loggable_hours(participant, step.day, now)
        if not hours:
            await _refuse(update, context, participant, LogStatus.TOO_OLD)
            return
        zone = diary.zone_of(participant)
        buttons = [
            Button("hour", cb.diary(cb.DIARY_EARLIER, step.form, step.day, f"{h:02d}"),
                   {"hour": datetime.combine(step.day, time(h), zone)})
            for h in hours
        ]
        rows = [buttons[i:i + 4] for i in range(0, len(buttons), 4)]
        rows.append([Button("back", cb.diary(cb.DIARY_EARLIER, step.form))])
        await show(update, context, render(context, "pick_hour", participant.language, {"day": step.day,
                                           "is_today": step.day == diary.local_today(participant, now)}, rows))
        return
    if not step.detail.isdigit() or not 0 <= int(step.detail) <= 23:
        await stale_button(update, context)
        return
    occurred = datetime.combine(step.day, time(int(step.detail)), diary.zone_of(participant))
    async with effects(update, context, edits=True) as fx:
        result = await diary.log_application(
            fx.session, participant, occurred_at=occurred, source=_source(step.form),
            key=_entry_key(update, step.form), rules=rules, now=now,
        )
        await _note_answer(fx.session, update, participant, now)
        fx.reply = _logged(context, participant, result)
    await show(update, context, fx.reply)


def _loggable_hours(participant: Participant, day: date, now: datetime) -> list[int]:
    zone = diary.zone_of(participant)
    return [h for h in range(24) if datetime.combine(day, time(h), zone) <= now]


async def _day_chosen(
    update: Update, context: TrialbotContext, participant: Participant, action: str
) -> cb.DiaryStep | None:
    """The first step of a multi-press entry: until a day is chosen, show the days to choose
    from. Returns the step once it names a day; None when the press has been answered here."""
    step = cb.DiaryStep.parse(update.callback_query.data)
    if step is None:
        await stale_button(update, context)
        return None
    if step.day is None and cb.slot_day(step.form) is not None:
        step = cb.DiaryStep(step.form, cb.slot_day(step.form))  # from a reminder: the day is the reminder's
    if step.day is None:
        await show(update, context, _day_picker(context, participant, action, step.form, services(context).clock.now()))
        return None
    return step


def _day_picker(context: TrialbotContext, participant: Participant, action: str, form: str, now: datetime):
    days = diary.loggable_days(services(context).protocol.diary, participant, now)
    buttons = [[Button("day", cb.diary(action, form, day), {"day": day, "days_ago": n})] for n, day in enumerate(days)]
    buttons.append([Button("back", cb.DIARY_MENU)])
    template = "pick_day_applied" if action == cb.DIARY_EARLIER else "pick_day_missed"
    return render(context, template, participant.language, {}, buttons)


@participant_only
async def missed(update: Update, context: TrialbotContext, participant: Participant) -> None:
    """Missed a dose -> which day -> why (optional) -> saved."""
    step = await _day_chosen(update, context, participant, cb.DIARY_MISSED)
    if step is None:
        return
    svc = services(context)
    now = svc.clock.now()
    rules = svc.protocol.diary
    if step.detail is None:
        reasons = [*rules.missed_reasons, "none"]
        rows = [[Button(f"reason_{r}", cb.diary(cb.DIARY_MISSED, step.form, step.day, r))] for r in reasons]
        rows.append([Button("back", cb.diary(cb.DIARY_MISSED, step.form))])
        await show(update, context, render(context, "missed_reason", participant.language, {"day": step.day}, rows))
        return
    async with effects(update, context, edits=True) as fx:
        result = await diary.log_missed(
            fx.session, participant, day=step.day, reason=step.detail, source=_source(step.form),
            key=_entry_key(update, step.form), rules=rules, now=now,
        )
        await _note_answer(fx.session, update, participant, now)
        fx.reply = _logged(context, participant, result)
    await show(update, context, fx.reply)


async def _days_entries(session: AsyncSession, participant: Participant, now: datetime) -> tuple[date, list[EntryView]]:
    day = diary.local_today(participant, now)
    return day, await diary.entries_on(session, participant, day)


@participant_only(reading=_days_entries)  # read with who is writing: /today is one read, then the reply
async def today(update: Update, context: TrialbotContext, participant: Participant,
                todays: tuple[date, list[EntryView]]) -> None:
    svc = services(context)
    day, entries = todays
    applied = [_entry_variables(e, participant) for e in entries if e.kind == "applied"]
    missed_entries = [_entry_variables(e, participant) for e in entries if e.kind == "missed"]
    await show(update, context, render(context, "today", participant.language, {
        "day": day, "applied": applied, "missed": missed_entries,
        "per_day": svc.protocol.treatment.applications_per_day,
    }, diary_buttons()))


@participant_only
async def undo(update: Update, context: TrialbotContext, participant: Participant) -> None:
    svc = services(context)
    now = svc.clock.now()
    async with effects(update, context) as fx:
        result = await diary.withdraw_last(fx.session, participant, rules=svc.protocol.diary, now=now)
        template = {
            UndoStatus.WITHDRAWN: "undo_done",
            UndoStatus.NOTHING_TO_UNDO: "undo_nothing",
            UndoStatus.TOO_LATE: "undo_too_late",
        }[result.status]
        variables = {"undo_minutes": svc.protocol.diary.undo_minutes, "entry": None}
        if result.entry is not None:
            variables["entry"] = _entry_variables(result.entry, participant)
        fx.reply = render(context, template, participant.language, variables)
    await show(update, context, fx.reply)


@participant_only
async def stale_button(update: Update, context: TrialbotContext, participant: Participant) -> None:
    """A button from an old message, or one a client made up: say so kindly, change nothing."""
    await show(update, context, render(context, "button_expired", participant.language, {}, diary_buttons()))


@participant_only
async def free_text(update: Update, context: TrialbotContext, participant: Participant) -> None:
    await show(update, context, render(context, "unknown_input", participant.language, {}, diary_buttons()))


