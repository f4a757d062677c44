"""What a staff member asks for in Telegram, held until they confirm it.

/visits P001 and its buttons (plan from a baseline date, move a visit, cancel one, mark one
done), /pause P001, /end P001 and /timezone P001 each make a request. The bot asks for what is
still missing, one thing at a time (which visit, a date, a reason), then shows the whole of it
back with Confirm and Cancel. Confirming carries it out with the same domain calls as
`trialbot visits ...` and `trialbot participant ...`, audited as those are, exactly once: the
request's row is locked and moves from confirming to confirmed, so a second tap, an update
delivered again or a Cancel pressed after Confirm finds it decided.

A staff member has one open request at a time (a new one supersedes the one before), so the
words they type next answer the one question asked; a request left open expires after
`EXPIRES_AFTER`. Every change of a request is audited (entity "staff_request"). Telegram-free:
the handlers are bot/handlers/manage.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from study import audit, participants, visits
from study.audit import Actor
from study.models import (
    Participant,
    RequestAction,
    RequestState,
    RequestStep,
    StaffMember,
    StaffRequest,
    Visit,
    VisitStatus,
)
from study.participants import EnrolmentError
from study.protocol import Protocol, parse_hhmm
from study.visits import VisitError

EXPIRES_AFTER = timedelta(minutes=30)
OPEN = (RequestState.ASKING, RequestState.CONFIRMING)
VISIT_ACTIONS = (RequestAction.MOVE_VISIT, RequestAction.CANCEL_VISIT, RequestAction.VISIT_DONE)
DONE_REASON = "visit took place"  # as `trialbot visits done` records it
REASON_MAX = 500
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class RequestRefused(ValueError):
    """The request cannot go on as asked. `code` names why (for a template), `details` fill it in.
    `final`: the request is over (refused or expired); otherwise the question still stands."""

    def __init__(self, code: str, *, final: bool = False, **details: Any) -> None:
        super().__init__(code)
        self.code = code
        self.final = final
        self.details = details


@dataclass(frozen=True)
class Outcome:
    """What a confirmed request did, for the staff member's answer."""

    visits: list[Visit] = field(default_factory=list)  # planned
    outside_window: bool = False  # a visit moved outside the protocol's window
    changed: bool = True  # False: it was so already (a visit moved to the day it had)


def next_step(request: StaffRequest) -> RequestStep | None:
    """What the request still needs, in the order it is asked; None: ready to confirm."""
    given = request.details
    action = request.action
    if action in VISIT_ACTIONS and request.visit_id is None:
        return RequestStep.VISIT
    if action == RequestAction.PLAN_VISITS and "baseline" not in given:
        return RequestStep.BASELINE
    if action == RequestAction.MOVE_VISIT and "date" not in given:
        return RequestStep.DATE
    if action in (RequestAction.MOVE_VISIT, RequestAction.CANCEL_VISIT, RequestAction.END) and not given.get("reason"):
        return RequestStep.REASON
    return None


async def start(session: AsyncSession, protocol: Protocol, member: StaffMember, participant: Participant,
                action: RequestAction, *, now: datetime, details: dict[str, Any] | None = None,
                visit: Visit | None = None, text: str | None = None) -> StaffRequest:
    """A new request by `member` about `participant`. What cannot be done now is refused at once
    and nothing is written (RequestRefused); otherwise the member's other open request is
    superseded, and this one asks for what it still needs or waits for Confirm. `text`: the
    rest of a typed command, taken as the answers to the questions it would ask (a date, a reason)."""
    details = dict(details or {})
    await _check_standing(session, protocol, participant, action, details)
    if visit is not None:
        _check_visit(participant, visit)
        details.update(_was(visit))
    if action == RequestAction.TIMEZONE:
        details["from_zone"] = participant.timezone
    for other in (await session.scalars(select(StaffRequest).where(
            StaffRequest.staff_id == member.id, StaffRequest.state.in_(OPEN)).with_for_update())).all():
        await _change(session, other, member, now, state=RequestState.SUPERSEDED, decided_at=now)
    request = StaffRequest(staff_id=member.id, participant_id=participant.id, action=action,
                           state=RequestState.ASKING, visit_id=visit.id if visit is not None else None,
                           details=details, created_at=now, expires_at=now + EXPIRES_AFTER)
    request.step = next_step(request)
    request.state = RequestState.ASKING if request.step else RequestState.CONFIRMING
    session.add(request)
    await session.flush()
    await audit.record(session, actor=Actor.staff(member.id), action="create", entity="staff_request",
                       entity_id=request.id, now=now, reason=f"asked for in Telegram: {action}",
                       new={"participant": participant.study_id, "action": str(action), "state": request.state,
                            "step": request.step, "visit_id": request.visit_id, "details": details},
                       timezone=participant.timezone)
    if text and request.step in (RequestStep.BASELINE, RequestStep.DATE, RequestStep.REASON):
        await answer_text(session, protocol, request, member, text, now=now)
    elif request.state == RequestState.CONFIRMING:
        await _ready(session, protocol, request, member, now)
    return request


async def open_question(session: AsyncSession, member: StaffMember, *, now: datetime) -> StaffRequest | None:
    """The member's request waiting for words they type (a date, a reason), if any."""
    return await session.scalar(select(StaffRequest).where(
        StaffRequest.staff_id == member.id, StaffRequest.state == RequestState.ASKING,
        StaffRequest.step.in_((RequestStep.BASELINE, RequestStep.DATE, RequestStep.REASON)),
        StaffRequest.expires_at > now).order_by(StaffRequest.id.desc()).limit(1))


async def mine(session: AsyncSession, request_id: int, member: StaffMember, *, now: datetime) -> StaffRequest:
    """The member's own request, locked for the change a press makes; RequestRefused("stale") for
    anyone else's or none, ("decided") once decided, ("expired") past its time."""
    request = await session.scalar(select(StaffRequest).where(StaffRequest.id == request_id).with_for_update())
    if request is None or request.staff_id != member.id:
        raise RequestRefused("stale", final=True)
    if request.state not in OPEN:
        raise RequestRefused("decided", final=True, state=str(request.state))
    if now >= request.expires_at:
        await _change(session, request, member, now, state=RequestState.EXPIRED, decided_at=now)
        raise RequestRefused("expired", final=True)
    return request


async def answer_visit(session: AsyncSession, protocol: Protocol, request: StaffRequest, member: StaffMember,
                       visit_id: int, *, now: datetime) -> None:
    """The visit the request is about, picked with a button (checked: the participant's own, open)."""
    if request.step != RequestStep.VISIT:
        raise RequestRefused("stale")
    participant = await session.get(Participant, request.participant_id)
    visit = await session.get(Visit, visit_id)
    if participant is None or visit is None:
        raise RequestRefused("stale")
    _check_visit(participant, visit)
    await _change(session, request, member, now, visit_id=visit.id, details={**request.details, **_was(visit)})
    await _advance(session, protocol, request, member, now)


async def answer_text(session: AsyncSession, protocol: Protocol, request: StaffRequest, member: StaffMember,
                      text: str, *, now: datetime) -> None:
    """Words typed for the question asked: a baseline date; a new date, an optional time and,
    optionally, the reason after them; a reason. Words that do not answer it are refused
    (RequestRefused "date", "time", "reason") and the question stands."""
    words = " ".join(text.split())
    given = dict(request.details)
    if request.step == RequestStep.BASELINE:
        given["baseline"] = _date(words.split(" ")[0] if words else "").isoformat()
    elif request.step == RequestStep.DATE:
        parts = words.split(" ")
        given["date"] = _date(parts[0]).isoformat()
        rest = parts[1:]
        if rest and re.match(r"^\d{1,2}:\d{2}$", rest[0]):
            given["time"] = _time(rest[0])
            rest = rest[1:]
        if rest:
            given["reason"] = _reason(" ".join(rest))
    elif request.step == RequestStep.REASON:
        given["reason"] = _reason(words)
    else:
        raise RequestRefused("stale")
    await _change(session, request, member, now, details=given)
    await _advance(session, protocol, request, member, now)


async def cancel(session: AsyncSession, request: StaffRequest, member: StaffMember, *, now: datetime) -> None:
    await _change(session, request, member, now, state=RequestState.CANCELLED, step=None, decided_at=now)


async def confirm(session: AsyncSession, protocol: Protocol, request: StaffRequest, member: StaffMember, *,
                  now: datetime) -> Outcome:
    """Carry the request out, once (the caller holds it locked: `mine`). Anything that stands in
    the way now (the visit cancelled meanwhile, the participant withdrawn) refuses it, and what
    was begun is undone."""
    if request.state != RequestState.CONFIRMING:
        raise RequestRefused("stale")
    try:
        async with session.begin_nested():  # a refusal half-way undoes what was begun
            outcome = await _carry_out(session, protocol, request, member, now)
    except (VisitError, EnrolmentError, RequestRefused) as exc:
        await _change(session, request, member, now, state=RequestState.REFUSED, decided_at=now)
        refused = _refusal(exc, final=True)
        visit = await session.get(Visit, request.visit_id) if request.visit_id is not None else None
        if refused.code == "closed" and visit is not None:  # the visit was cancelled or done meanwhile
            refused.details.update(name=visit.name, status=visit.status)
        else:
            participant = await session.get(Participant, request.participant_id)
            refused.details.setdefault("status", participant.status if participant is not None else "")
        raise refused from None
    await _change(session, request, member, now, state=RequestState.CONFIRMED, decided_at=now)
    return outcome


async def _carry_out(session: AsyncSession, protocol: Protocol, request: StaffRequest, member: StaffMember,
                     now: datetime) -> Outcome:
    participant = await session.get(Participant, request.participant_id)
    assert participant is not None
    actor = Actor.staff(member.id)
    given = request.details
    visit = await session.get(Visit, request.visit_id) if request.visit_id is not None else None
    action = request.action
    if action == RequestAction.PLAN_VISITS:
        created = await visits.plan_schedule(session, protocol, participant,
                                             baseline=date.fromisoformat(given["baseline"]), actor=actor, now=now)
        return Outcome(visits=created)
    if action == RequestAction.MOVE_VISIT and visit is not None:
        at = parse_hhmm(given["time"]) if given.get("time") else None
        moved = await visits.move(session, participant, visit, day=date.fromisoformat(given["date"]), at=at,
                                  actor=actor, now=now, reason=given["reason"])
        return Outcome(outside_window=moved.outside_window)
    if action == RequestAction.CANCEL_VISIT and visit is not None:
        return Outcome(changed=await visits.cancel(session, participant, visit, actor=actor, now=now,
                                                   reason=given["reason"]))
    if action == RequestAction.VISIT_DONE and visit is not None:
        return Outcome(changed=await visits.set_status(session, participant, visit, VisitStatus.DONE, actor=actor, now=now,
                                                       reason=given.get("reason") or DONE_REASON))
    if action == RequestAction.PAUSE:
        participants.check_can_pause(participant)
        await participants.pause_messages(session, participant, actor=actor, now=now,
                                          why=f"messages paused by the study team ({member.name})")
        return Outcome()
    if action == RequestAction.END:
        await participants.leave_study(session, participant, given["status"], reason=given["reason"], actor=actor,
                                       now=now)
        return Outcome()
    if action == RequestAction.TIMEZONE:
        return Outcome(changed=await participants.move_to_zone(session, participant, given["timezone"], actor=actor,
                                                               now=now))
    raise RequestRefused("stale")


async def _advance(session: AsyncSession, protocol: Protocol, request: StaffRequest, member: StaffMember,
                   now: datetime) -> None:
    step = next_step(request)
    if step is not None:
        await _change(session, request, member, now, step=step, state=RequestState.ASKING)
        return
    await _change(session, request, member, now, step=None, state=RequestState.CONFIRMING)
    await _ready(session, protocol, request, member, now)


async def _ready(session: AsyncSession, protocol: Protocol, request: StaffRequest, member: StaffMember,
                 now: datetime) -> None:
    """All given: check once more that it can be done, before it is shown for confirming."""
    participant = await session.get(Participant, request.participant_id)
    assert participant is not None
    try:
        await _check_standing(session, protocol, participant, RequestAction(request.action), request.details)
        if request.visit_id is not None:
            visit = await session.get(Visit, request.visit_id)
            assert visit is not None
            _check_visit(participant, visit)
    except RequestRefused as exc:
        await _change(session, request, member, now, state=RequestState.REFUSED, decided_at=now)
        raise RequestRefused(exc.code, final=True, **exc.details) from None


async def _check_standing(session: AsyncSession, protocol: Protocol, participant: Participant,
                          action: RequestAction, details: dict[str, Any]) -> None:
    """Refuse what the participant's record does not allow now (the domain's own checks)."""
    try:
        if action == RequestAction.PLAN_VISITS:
            await visits.check_plan(session, protocol, participant)
        elif action in VISIT_ACTIONS and participant.status in participants.FINAL_STATUSES:
            raise EnrolmentError(f"{participant.study_id} is {participant.status}", participant.status)
        elif action == RequestAction.PAUSE:
            participants.check_can_pause(participant)
        elif action == RequestAction.END:
            participants.check_can_end(participant, details.get("status", ""))
        elif action == RequestAction.TIMEZONE:
            details["timezone"] = participants.check_zone(details.get("timezone", ""))  # as IANA spells it
            if details["timezone"] == participant.timezone:
                raise RequestRefused("same_zone", timezone=participant.timezone)
    except (VisitError, EnrolmentError) as exc:
        refused = _refusal(exc)
        refused.details.setdefault("status", participant.status)
        zone = exc.zone if isinstance(exc, EnrolmentError) else None
        if zone is not None:  # why the zone is refused, and what it may have meant
            refused.details.update(typed=zone.typed, zone_problem=zone.problem, suggestions=list(zone.suggestions))
        raise refused from None


def _was(visit: Visit) -> dict[str, str]:
    """Where the visit stood when the request picked it (what a move is shown moving it from)."""
    return {"from_day": visit.scheduled_date.isoformat(),
            "from_time": visit.scheduled_time.strftime("%H:%M") if visit.scheduled_time else ""}


def _check_visit(participant: Participant, visit: Visit) -> None:
    if visit.participant_id != participant.id:
        raise RequestRefused("stale")
    try:
        visits.check_open(visit)
    except VisitError as exc:
        raise RequestRefused("closed", name=visit.name, status=visit.status) from exc


def _refusal(exc: Exception, *, final: bool = False) -> RequestRefused:
    """A domain refusal as a request's: a participant who has left is "ended" (with their status)."""
    if isinstance(exc, RequestRefused):
        return RequestRefused(exc.code, final=final or exc.final, **exc.details)
    code = getattr(exc, "code", "refused")
    if code in participants.FINAL_STATUSES:
        return RequestRefused("ended", final=final, status=code)
    return RequestRefused(code, final=final, message=str(exc))


def _date(text: str) -> date:
    if not _DATE.match(text):
        raise RequestRefused("date", typed=text[:20])
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise RequestRefused("date", typed=text[:20]) from None


def _time(text: str) -> str:
    try:
        return parse_hhmm(text.zfill(5)).strftime("%H:%M")
    except ValueError:
        raise RequestRefused("time", typed=text[:20]) from None


def _reason(text: str) -> str:
    reason = text.strip()
    if not reason:
        raise RequestRefused("reason")
    return reason[:REASON_MAX]


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date | datetime | time) else value


async def _change(session: AsyncSession, request: StaffRequest, member: StaffMember, now: datetime,
                  **values: Any) -> None:
    """Change the request in place, with an audit entry of what changed."""
    changed = {name: value for name, value in values.items() if getattr(request, name) != value}
    if not changed:
        return
    old = {name: _plain(getattr(request, name)) for name in changed}
    for name, value in changed.items():
        setattr(request, name, value)
    await session.flush()
    participant = await session.get(Participant, request.participant_id)
    await audit.record(session, actor=Actor.staff(member.id), action="update", entity="staff_request",
                       entity_id=request.id, now=now, old=old, new={k: _plain(v) for k, v in changed.items()},
                       reason=f"{request.action}: {request.state}",
                       timezone=participant.timezone if participant is not None else None)
