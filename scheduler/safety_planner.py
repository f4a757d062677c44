"""What the safety workflow makes due: scheduled check-ins (per participant) and the re-sending
and escalation of unacknowledged alerts (study-wide). Pure functions, like scheduler/planner.py."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from scheduler.planner import ParticipantView, Plan, PlannedMessage
from study.models import JSONObject, OutboxKind
from study.protocol import Protocol, parse_hhmm
from study.roles import ESCALATION_ROLES
from study.slots import instant

CHECKIN_STALE_AFTER = timedelta(hours=10)


def plan_checkins(protocol: Protocol, participant: ParticipantView, last_full: datetime | None,
                  now: datetime) -> Plan:
    """A full check-in `every_days` after the last one (or after joining), at the protocol's
    time; with `daily_scores`, a two-question check-in on each other day."""
    rules = protocol.checkins
    zone = participant.zone
    anchor = (last_full or participant.active_since).astimezone(zone).date()
    today = now.astimezone(zone).date()
    look_again, candidates = _checkin_calendar(rules.every_days, rules.daily_scores, rules.reminder_time,
                                               participant.timezone, anchor, today)
    plan = Plan()
    plan.look_again_at(look_again)
    for kind, checkin_kind, day, due in candidates:
        if due < participant.active_since:
            continue
        if due > now:
            plan.look_again_at(due)
            continue
        plan.messages.append(PlannedMessage(
            key=f"{kind}:{participant.id}:{day:%Y%m%d}", kind=OutboxKind.CHECKIN, template_id="checkin_due", due_at=due,
            variables={"kind": checkin_kind}, buttons=[[["checkin_start", f"k:start:{checkin_kind}", {}]]],
            late_after=due + timedelta(minutes=protocol.reminders.late_after_minutes),
            stale_after=due + CHECKIN_STALE_AFTER, participant_id=participant.id,
        ))
    return plan


@lru_cache(maxsize=4096)
def _checkin_calendar(every_days: int, daily_scores: bool, reminder_time: str, timezone: str, anchor: date,
                      today: date) -> tuple[datetime, tuple[tuple[str, str, date, datetime], ...]]:
    """When to look again, and the check-ins that may be due (kind, check-in kind, day, instant),
    for an anchor day and today: the same for everyone whose last check-in fell on that day in
    that zone, so a wave works each out once (cached, bounded)."""
    zone = ZoneInfo(timezone)
    at = parse_hhmm(reminder_time)
    # Every `every_days` from the anchor: a check-in left undone does not stop the next one.
    periods = max(1, (today - anchor).days // every_days)
    due_day = anchor + timedelta(days=periods * every_days)
    candidates = [("checkin", "full", due_day)]
    if daily_scores:
        for day in (today, today + timedelta(days=1)):
            if anchor < day < due_day:
                candidates.append(("scores", "scores", day))
    return (instant(due_day + timedelta(days=every_days), at, zone),
            tuple((kind, checkin_kind, day, instant(day, at, zone)) for kind, checkin_kind, day in candidates))


def plan_alert_followups(protocol: Protocol, open_alerts: list[tuple[int, datetime, JSONObject]],
                         staff: list[tuple[int, str]], now: datetime) -> list[PlannedMessage]:
    """Re-send each open alert every `realert_minutes` to every on-duty coordinator and
    investigator, and once `escalate_after_minutes` have passed, to the investigators marked as
    escalated. Only the latest round is planned, so after downtime there is no burst."""
    rules = protocol.escalation
    every = timedelta(minutes=rules.realert_minutes)
    escalate_after = timedelta(minutes=rules.escalate_after_minutes)
    planned = []
    for alert_id, reported_at, variables in open_alerts:
        age = now - reported_at
        rounds = int(age / every)
        escalated = age >= escalate_after
        for staff_id, role in staff:
            # Where a re-send falls on the escalation itself, investigators get the one message.
            coincides = escalated and role in ESCALATION_ROLES and rounds * every == escalate_after
            if rounds >= 1 and not coincides:
                planned.append(_alert_message(f"alert:{alert_id}:r{rounds}:staff{staff_id}", alert_id, staff_id,
                                              reported_at + rounds * every, {**variables, "round": rounds,
                                                                              "escalated": escalated}))
            if escalated and role in ESCALATION_ROLES:
                planned.append(_alert_message(f"alert:{alert_id}:escalated:staff{staff_id}", alert_id, staff_id,
                                              reported_at + escalate_after, {**variables, "round": rounds,
                                                                              "escalated": True}))
    return planned


def _alert_message(key: str, alert_id: int, staff_id: int, due: datetime, variables: JSONObject) -> PlannedMessage:
    return PlannedMessage(key=key, kind=OutboxKind.ALERT, template_id="staff_alert", due_at=due, variables=variables,
                          buttons=[[["acknowledge", f"a:{alert_id}", {}]]], staff_id=staff_id)
