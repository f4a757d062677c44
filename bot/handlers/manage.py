"""The study team runs a participant's record from Telegram: /visits P001 (the list, and buttons to
plan from a baseline date, move, cancel or mark a visit done), /pause P001, /end P001
withdrawn|completed <reason>, /timezone P001 <zone>, /deliveries P001, and a staff /help of what
the member's role may do.

What changes something is a request (study/staff_requests.py): the bot asks for what is missing,
one thing at a time, then shows it back with Confirm and Cancel; Confirm carries it out with the
same domain calls as `trialbot visits ...` and `trialbot participant ...`, once. Everyone on the
team may look (roles.OVERSEE); coordinators and the investigator may change (roles.ENROL); a
monitor's attempt is refused with the approved text and recorded in the audit trail.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from telegram import Update
from telegram.ext import ApplicationHandlerStop

from bot import exactly_once
from bot.access import refuse_role, staff_command, staff_only
from bot.exactly_once import effects
from bot.handlers import info, oversight
from bot.replies import render, send_new, show
from bot.runtime import TrialbotContext
from bot.services import services
from messages.renderer import Button, RenderedMessage
from study import outbox, participants, roles, staff, staff_requests, visits
from study.models import (
    Participant,
    RequestAction,
    RequestState,
    RequestStep,
    StaffMember,
    StaffRequest,
    Visit,
)
from study.staff_requests import RequestRefused

# `/visits P001 <word> ...` and the buttons under the list: which request each starts.
VISIT_WORDS = {"plan": RequestAction.PLAN_VISITS, "move": RequestAction.MOVE_VISIT,
               "cancel": RequestAction.CANCEL_VISIT, "done": RequestAction.VISIT_DONE}
VISIT_BUTTONS = {"p": RequestAction.PLAN_VISITS, "m": RequestAction.MOVE_VISIT, "c": RequestAction.CANCEL_VISIT,
                 "d": RequestAction.VISIT_DONE}
END_WORDS = {"withdrawn": "withdrawn", "withdraw": "withdrawn", "completed": "completed", "complete": "completed"}
DELIVERIES_SHOWN = 10  # /deliveries P001 [N]: the newest N messages, at most DELIVERIES_MAX
DELIVERIES_MAX = 50
MESSAGE_BUDGET = 3800  # characters of one message's text (Telegram takes 4,096), the rest for markup
TYPED_STEPS = (RequestStep.BASELINE, RequestStep.DATE, RequestStep.REASON)


# --- what staff type ---------------------------------------------------------------------------

async def visits_command(update: Update, context: TrialbotContext) -> None:
    """/visits: the coming week's visits (bot/handlers/oversight.py); /visits P001 [...]: one
    participant's visits, and the changes to them."""
    if context.args:
        await participant_visits(update, context)
    else:
        await oversight.visits_week(update, context)


@staff_command(roles.OVERSEE, "visits")
async def participant_visits(update: Update, context: TrialbotContext, member: StaffMember) -> None:
    """/visits P001: the list (with buttons for those who may change it); /visits P001 plan DATE,
    move VISIT DATE [HH:MM] [reason], cancel VISIT [reason], done VISIT: the same, typed."""
    args = context.args or []
    if len(args) == 1:
        await _show_visits(update, context, member, args[0])
        return
    action = VISIT_WORDS.get(args[1].lower())
    if action is None:
        await show(update, context, _refused(context, member, "usage", args[0], command="visits"))
        return
    if not roles.allowed(member, roles.ENROL):
        await refuse_role(update, context, member, what=f"visits_{args[1].lower()}", permission=roles.ENROL)
        return
    rest = args[2:]
    visit_name = rest.pop(0).lower() if action != RequestAction.PLAN_VISITS and rest else None
    await _start(update, context, member, args[0], action, visit_name=visit_name, text=" ".join(rest))


@staff_command(roles.ENROL, "pause")
async def pause_command(update: Update, context: TrialbotContext, member: StaffMember) -> None:
    """/pause P001: the bot's messages to the participant stop, as with their own /stop."""
    args = context.args or []
    if len(args) != 1:
        await show(update, context, _refused(context, member, "usage", args[0] if args else "P001", command="pause"))
        return
    await _start(update, context, member, args[0], RequestAction.PAUSE)


@staff_command(roles.ENROL, "end")
async def end_command(update: Update, context: TrialbotContext, member: StaffMember) -> None:
    """/end P001 withdrawn|completed <reason>: as `trialbot participant end`."""
    args = context.args or []
    status = END_WORDS.get(args[1].lower()) if len(args) > 1 else None
    if status is None:
        await show(update, context, _refused(context, member, "usage", args[0] if args else "P001", command="end"))
        return
    await _start(update, context, member, args[0], RequestAction.END, details={"status": status},
                 text=" ".join(args[2:]))


@staff_command(roles.ENROL, "timezone")
async def timezone_command(update: Update, context: TrialbotContext, member: StaffMember) -> None:
    """/timezone P001 Europe/London: as `trialbot participant timezone`; a zone not known is
    answered with the nearest known ones."""
    args = context.args or []
    if len(args) < 2:
        await show(update, context, _refused(context, member, "usage", args[0] if args else "P001",
                                             command="timezone"))
        return
    await _start(update, context, member, args[0], RequestAction.TIMEZONE,
                 details={"timezone": " ".join(args[1:])[:64]})


@staff_command(roles.OVERSEE, "deliveries")
async def deliveries_command(update: Update, context: TrialbotContext, member: StaffMember) -> None:
    """/deliveries P001 [N]: the life of the newest N messages the bot started for the participant,
    the ledger `trialbot deliveries P001` prints, in as many messages as it takes."""
    args = context.args or []
    if not args or len(args) > 2 or (len(args) == 2 and not args[1].isdigit()):
        await show(update, context, _refused(context, member, "usage", args[0] if args else "P001",
                                             command="deliveries"))
        return
    wanted = min(int(args[1]), DELIVERIES_MAX) if len(args) == 2 else DELIVERIES_SHOWN
    svc = services(context)
    async with svc.db.read() as session:
        person = await participants.by_study_id(session, args[0])
        found, total = await outbox.ledger(session, person.id, limit=max(wanted, 1)) if person else ([], 0)
    if person is None:
        await show(update, context, _refused(context, member, "unknown", args[0]))
        return
    zone = ZoneInfo(person.timezone)
    entries = [_delivery(d, zone) for d in found]
    pages = _pages(context, member, entries, {"study_id": person.study_id, "timezone": person.timezone,
                                               "shown": len(entries), "total": total})
    for number, page in enumerate(pages, start=1):
        rendered = render(context, "staff_deliveries", member.language, {
            "study_id": person.study_id, "timezone": person.timezone, "shown": len(entries), "total": total,
            "deliveries": page, "part": number, "parts": len(pages)})
        if number == len(pages):
            await show(update, context, rendered)  # the last part answers the command
        else:
            await send_new(update, context, rendered, answers_update=False)


async def help_command(update: Update, context: TrialbotContext) -> None:
    """/help: a participant's help, or, for a member of the study team, what their role may do."""
    user = update.effective_user
    async with services(context).db.read() as session:
        member = await staff.by_telegram_id(session, user.id) if user is not None else None
    if member is not None and member.active:
        await staff_help(update, context)
    else:
        await info.help_command(update, context)


@staff_only
async def staff_help(update: Update, context: TrialbotContext, member: StaffMember) -> None:
    """What the member's role may do, from the permissions table (study/roles.py STAFF_COMMANDS)."""
    await show(update, context, render(context, "staff_help", member.language, {
        "role": member.role, "commands": roles.commands_for(member.role)}))


async def typed_answer(update: Update, context: TrialbotContext) -> None:
    """Words a staff member types while a request of theirs asks for something (a date, a reason)
    answer it; everything else goes on to the handlers after this one (run first, in group -1)."""
    user, chat = update.effective_user, update.effective_chat
    if user is None or chat is None or chat.type != "private" or update.message is None:
        return
    svc = services(context)
    async with svc.db.read() as session:
        member = await staff.by_telegram_id(session, user.id)
        if member is None or not member.active:
            return
        asking = await staff_requests.open_question(session, member, now=svc.clock.now()) is not None
        # Delivered again after it answered a question: answered from the ledger, here too.
        seen = await exactly_once.seen_before(
            session, exactly_once.key_of(update, context, staff_id=member.id), context) is not None
    if not asking and not seen:
        return
    await _typed(update, context)
    raise ApplicationHandlerStop


@staff_command(roles.ENROL, "staff_request")
async def _typed(update: Update, context: TrialbotContext, member: StaffMember) -> None:
    svc = services(context)
    now = svc.clock.now()
    async with effects(update, context) as fx:
        request = await staff_requests.open_question(fx.session, member, now=now)
        if request is None:  # it expired, or was answered a moment ago
            fx.reply = _refused(context, member, "expired", "")
        else:
            message = update.effective_message
            fx.reply = await _answering(context, fx.session, member, request, message.text or "" if message else "")
    await show(update, context, fx.reply)


# --- what staff press ----------------------------------------------------------------------------

@staff_command(roles.ENROL, "visits")
async def visits_button(update: Update, context: TrialbotContext, member: StaffMember) -> None:
    """q:<p|m|c|d>:<participant id>, under /visits P001: plan from a baseline date, move, cancel,
    mark done; the request asks what it needs (the message becomes the question)."""
    _, code, participant_id = _data(update).split(":")
    svc = services(context)
    async with svc.db.read() as session:
        person = await session.get(Participant, int(participant_id))
    if person is None:
        await show(update, context, _refused(context, member, "stale", ""))
        return
    await _start(update, context, member, person.study_id, VISIT_BUTTONS[code])


@staff_command(roles.ENROL, "staff_request")
async def choose_visit(update: Update, context: TrialbotContext, member: StaffMember) -> None:
    """q:v:<request>:<visit>: the visit a request is about (checked: the member's own request, the
    participant's own open visit)."""
    _, _, request_id, visit_id = _data(update).split(":")
    svc = services(context)
    now = svc.clock.now()
    async with effects(update, context, once_per_message=True) as fx:
        try:
            request = await staff_requests.mine(fx.session, int(request_id), member, now=now)
            await staff_requests.answer_visit(fx.session, svc.protocol, request, member, int(visit_id), now=now)
        except RequestRefused as refused:
            fx.reply = await _refusal_view(context, fx.session, member, int(request_id), refused)
        else:
            fx.reply = await _view(context, fx.session, member, request)
    await show(update, context, fx.reply)


@staff_command(roles.ENROL, "staff_request")
async def decide(update: Update, context: TrialbotContext, member: StaffMember) -> None:
    """q:y:<request> (Confirm) or q:n:<request> (Cancel). Once: a second tap gets the first tap's
    answer; a Cancel after Confirm (or the other way) finds the request decided and shows it so."""
    _, step, request_id = _data(update).split(":")
    svc = services(context)
    now = svc.clock.now()
    async with effects(update, context, once_per_message=True) as fx:
        try:
            request = await staff_requests.mine(fx.session, int(request_id), member, now=now)
            outcome = None
            if step == "y":
                outcome = await staff_requests.confirm(fx.session, svc.protocol, request, member, now=now)
            else:
                await staff_requests.cancel(fx.session, request, member, now=now)
        except RequestRefused as refused:
            fx.reply = await _refusal_view(context, fx.session, member, int(request_id), refused)
        else:
            fx.reply = await _view(context, fx.session, member, request, outcome=outcome)
    svc.outbox_ready.set()  # a pause tells the team
    await show(update, context, fx.reply)


# --- the steps shared by commands and buttons ---------------------------------------------------

async def _start(update: Update, context: TrialbotContext, member: StaffMember, study_id: str,
                 action: RequestAction, *, details: dict[str, Any] | None = None, visit_name: str | None = None,
                 text: str = "") -> None:
    svc = services(context)
    now = svc.clock.now()
    async with effects(update, context) as fx:
        person = await participants.by_study_id(fx.session, study_id)
        visit = await visits.by_name(fx.session, person, visit_name) if person is not None and visit_name else None
        if person is None:
            fx.reply = _refused(context, member, "unknown", study_id)
        elif visit_name and visit is None:
            fx.reply = _refused(context, member, "no_visit", person.study_id, name=visit_name[:16])
        elif action in staff_requests.VISIT_ACTIONS and visit is None and not await _open_visits(fx.session, person):
            fx.reply = _refused(context, member, "no_open_visits", person.study_id)
        else:
            try:
                request = await staff_requests.start(fx.session, svc.protocol, member, person, action,
                                                     details=details, visit=visit, now=now)
            except RequestRefused as refused:
                fx.reply = _refused(context, member, refused.code, person.study_id, **_suggested(refused))
            else:
                fx.reply = (await _answering(context, fx.session, member, request, text)
                            if text and request.step in TYPED_STEPS else await _view(context, fx.session, member, request))
    await show(update, context, fx.reply)


async def _answering(context: TrialbotContext, session, member: StaffMember, request: StaffRequest,
                     text: str) -> RenderedMessage:
    """Take typed words as the answer to the request's question: the next question, the request
    for confirming, or the same question again saying what was wrong with the words."""
    try:
        await staff_requests.answer_text(session, services(context).protocol, request, member, text,
                                         now=services(context).clock.now())
    except RequestRefused as refused:
        if refused.final:
            return await _refusal_view(context, session, member, request.id, refused)
        return await _view(context, session, member, request, problem=refused)
    return await _view(context, session, member, request)


async def _open_visits(session, person: Participant) -> list[Visit]:
    return [v for v in await visits.for_participant(session, person) if v.status in visits.OPEN_STATUSES]


async def _view(context: TrialbotContext, session, member: StaffMember, request: StaffRequest, *,
                problem: RequestRefused | None = None, outcome: staff_requests.Outcome | None = None) -> RenderedMessage:
    """The request as the member sees it: its question (with the visits to pick from, or what was
    wrong with the words typed), or the whole of it with Confirm and Cancel, or how it ended."""
    person = await session.get(Participant, request.participant_id)
    visit = await session.get(Visit, request.visit_id) if request.visit_id is not None else None
    cancel = Button("request_cancel", f"q:n:{request.id}")
    variables = {"study_id": person.study_id, "action": str(request.action), "visit": _visit_dict(visit),
                 "status": request.details.get("status", ""), "example": _today(context, person)}
    if request.state == RequestState.ASKING:
        buttons: list[list[Button]] = []
        if request.step == RequestStep.VISIT:
            buttons = [[Button("pick_visit", f"q:v:{request.id}:{v.id}", {"name": v.name, "day": v.scheduled_date})]
                       for v in await _open_visits(session, person)]
        return render(context, "staff_request_ask", member.language, {
            **variables, "step": str(request.step), "problem": problem.code if problem else "",
            "typed": problem.details.get("typed", "") if problem else ""}, [*buttons, [cancel]])
    given = request.details
    baseline = _iso(given.get("baseline"))
    planned = [{"label": v.label, "name": v.name, "day": v.day, "window": v.window_days}
               for v in visits.schedule_from(services(context).protocol, baseline)] if baseline else []
    day = _iso(given.get("date"))
    outside = (visit is not None and day is not None and visits.outside_window(visit, day)
               and request.state in (RequestState.CONFIRMING, RequestState.CONFIRMED))
    if outcome is not None and request.action == RequestAction.MOVE_VISIT:
        outside = outcome.outside_window
    rendered_visit = _visit_dict(visit)
    if rendered_visit is not None and given.get("from_day"):  # where it stood when picked
        rendered_visit.update(day=_iso(given["from_day"]), time=given.get("from_time", ""))
    buttons = ([[Button("request_confirm", f"q:y:{request.id}"), cancel]]
               if request.state == RequestState.CONFIRMING else [])
    return render(context, "staff_request", member.language, {
        **variables, "visit": rendered_visit, "state": str(request.state), "baseline": baseline,
        "planned": planned, "date": day, "time": given.get("time", ""), "reason": given.get("reason", ""),
        "old_zone": given.get("from_zone", person.timezone),
        "new_zone": given.get("timezone", ""), "outside_window": bool(outside)}, buttons)


async def _refusal_view(context: TrialbotContext, session, member: StaffMember, request_id: int,
                        refused: RequestRefused) -> RenderedMessage:
    """A press or words that found the request decided: the request as it ended; anything else
    that stopped it: why, in words."""
    request = await session.get(StaffRequest, request_id)
    mine = request is not None and request.staff_id == member.id
    if mine and refused.code in ("decided", "expired") and staff_requests.next_step(request) is None:
        return await _view(context, session, member, request)  # all it asked for is there to show
    person = await session.get(Participant, request.participant_id) if mine else None
    details = _suggested(refused)
    if mine and refused.code == "decided":
        details["state"] = str(request.state)
    return _refused(context, member, refused.code, person.study_id if person else "", **details)


def _suggested(refused: RequestRefused) -> dict[str, Any]:
    details = dict(refused.details)
    details.pop("message", None)
    return details


def _refused(context: TrialbotContext, member: StaffMember, code: str, study_id: str, **details: Any) -> RenderedMessage:
    variables = {"code": code, "study_id": participants.normal_study_id(study_id)[:32], "command": "", "status": "", "name": "", "typed": "",
                 "suggestions": [], "zone_problem": "", "timezone": "", "state": "",
                 "minutes": int(staff_requests.EXPIRES_AFTER.total_seconds() // 60)}
    variables.update({k: v for k, v in details.items() if k in variables})
    return render(context, "staff_request_refused", member.language, variables)


async def _show_visits(update: Update, context: TrialbotContext, member: StaffMember, study_id: str) -> None:
    svc = services(context)
    async with svc.db.read() as session:
        person = await participants.by_study_id(session, study_id)
        rows = await visits.for_participant(session, person) if person is not None else []
        try:
            if person is not None:
                await visits.check_plan(session, svc.protocol, person)
            can_plan = True
        except visits.VisitError:
            can_plan = False
    if person is None:
        await show(update, context, _refused(context, member, "unknown", study_id))
        return
    may_change = roles.allowed(member, roles.ENROL) and person.status not in participants.FINAL_STATUSES
    open_now = any(v.status in visits.OPEN_STATUSES for v in rows)
    buttons: list[list[Button]] = []
    if may_change and can_plan:
        buttons.append([Button("visits_plan", f"q:p:{person.id}")])
    if may_change and open_now:
        buttons.append([Button("visits_move", f"q:m:{person.id}"), Button("visits_cancel", f"q:c:{person.id}")])
        buttons.append([Button("visits_done", f"q:d:{person.id}")])
    await show(update, context, render(context, "staff_visits_participant", member.language, {
        "study_id": person.study_id, "timezone": person.timezone, "participant_status": person.status,
        "visits": [_visit_dict(v) for v in rows], "can_change": bool(buttons)}, buttons))


def _visit_dict(visit: Visit | None) -> dict[str, Any] | None:
    if visit is None:
        return None
    return {"name": visit.name, "label": visit.label, "day": visit.scheduled_date,
            "time": visit.scheduled_time.strftime("%H:%M") if visit.scheduled_time else "",
            "status": visit.status, "target": visit.target_date, "window": visit.window_days}


def _data(update: Update) -> str:
    """A pressed button's data (its handler's pattern has checked its shape)."""
    query = update.callback_query
    return (query.data or "") if query is not None else ""


def _iso(value: Any) -> date | None:
    return date.fromisoformat(value) if isinstance(value, str) and value else None


def _today(context: TrialbotContext, person: Participant) -> date:
    return services(context).clock.now().astimezone(ZoneInfo(person.timezone)).date()


def _delivery(delivery: outbox.Delivery, zone: ZoneInfo) -> dict[str, Any]:
    row = delivery.row
    due = row.due_at or row.created_at

    def both(moment: datetime) -> dict[str, datetime]:
        moment = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
        return {"utc": moment.astimezone(UTC), "local": moment.astimezone(zone)}

    return {"template": row.template_id, "status": row.status, "due": both(due), "queued": both(row.created_at),
            "events": [{"at": both(e.at), "event": e.event, "detail": e.detail or ""} for e in delivery.events]}


def _pages(context: TrialbotContext, member: StaffMember, entries: list[dict[str, Any]],
           base: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """The deliveries in parts that each fit one message (measured by rendering them)."""
    pages: list[list[dict[str, Any]]] = []
    page: list[dict[str, Any]] = []
    for entry in entries:
        trial = render(context, "staff_deliveries", member.language,
                       {**base, "deliveries": [*page, entry], "part": 99, "parts": 99})
        if page and len(trial.text) > MESSAGE_BUDGET:
            pages.append(page)
            page = []
        page.append(entry)
    pages.append(page)
    return pages
