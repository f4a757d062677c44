"""What is due, worked out from the protocol, one participant's records and the time.

Pure functions: no database, no Telegram, no clock of their own. The tick feeds them what it
loaded and turns their answer into outbox rows and records; tests feed them any instant they
like. Each planned message carries a key that cannot repeat (participant, kind, slot), so
planning the same moment twice, or after a restart, queues nothing new.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from bot import callback_data as cb  # what buttons send back: one place (no Telegram in it)
from study.models import ButtonRows, JSONObject, OutboxKind
from study.pregnancy_tests import PregnancyFact, due_date
from study.protocol import Protocol, parse_hhmm
from study.slots import DiaryFact as DiaryFact  # the planners' input, whose callers import it from here
from study.slots import Slot, SlotPlan, accounted, instant, slots_on
from study.treatment import pregnancy_tests_due


@dataclass(frozen=True)
class ParticipantView:
    """What the planner needs to know about a participant (a plain snapshot, not an ORM row)."""

    id: int
    study_id: str
    timezone: str
    reminder_times: tuple[time, ...]
    active_since: datetime
    wocbp: bool = False
    consented_at: datetime | None = None
    # The treatment course (study/treatment.py): what may be planned follows it.
    treatment: str = "on_treatment"
    treatment_reason: str | None = None
    treatment_since: datetime | None = None

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def cream_since(self) -> datetime:
        """Since when the cream is to be applied: a dose due before (joining, or treatment
        resuming) is neither reminded nor recorded missing."""
        if self.treatment_since is None:
            return self.active_since
        return max(self.active_since, self.treatment_since)


@dataclass(frozen=True)
class PlannedMessage:
    key: str
    kind: str
    template_id: str
    due_at: datetime
    variables: JSONObject = field(default_factory=dict)
    buttons: ButtonRows = field(default_factory=list)  # rows of [label block, callback data, variables]
    late_after: datetime | None = None
    stale_after: datetime | None = None
    participant_id: int | None = None
    staff_id: int | None = None

    def is_stale(self, now: datetime) -> bool:
        return self.stale_after is not None and now >= self.stale_after


@dataclass(frozen=True)
class MissingDose:
    """A slot whose window closed with nothing recorded: recorded as missing, never guessed."""

    participant_id: int
    slot: Slot


@dataclass
class Plan:
    messages: list[PlannedMessage] = field(default_factory=list)
    missing: list[MissingDose] = field(default_factory=list)
    next_check: datetime | None = None

    def look_again_at(self, moment: datetime | None) -> None:
        if moment is not None and (self.next_check is None or moment < self.next_check):
            self.next_check = moment

    def extend(self, other: Plan) -> None:
        self.messages += other.messages
        self.missing += other.missing
        self.look_again_at(other.next_check)


def slot_form(slot: Slot) -> str:
    """The diary form token a reminder's buttons carry: one per slot, so the reminder's buttons
    log at most one entry however often they are pressed."""
    return "s" + slot.key[2:]  # s + yymmddHHMM


# plan_applications plans the slots of the participant's yesterday and today (and looks at
# tomorrow's for its next look): nothing older counts for anything it plans.
PLANNED_DAYS_BACK = 1
# An instant's local day, in any zone there is (UTC-12 to UTC+14), is at least its UTC day of 12
# hours before.
_WESTMOST = timedelta(hours=12)


def planned_from(now: datetime, timezone: str) -> datetime:
    """The start of the earliest slot window plan_applications plans at `now` for a participant
    in `timezone`: local midnight PLANNED_DAYS_BACK days before their today (`slot_plan`'s
    `start`, whatever their reminder times). An application or missing record before it
    belongs to an older slot, which nothing planned looks at."""
    zone = ZoneInfo(timezone)
    return instant(now.astimezone(zone).date() - timedelta(days=PLANNED_DAYS_BACK), time(0), zone)


def diary_window(now: datetime, timezones: Iterable[str]) -> tuple[date, datetime]:
    """The diary entries the planners can look at, at `now`, for participants in these zones:
    (since, since_at). Applications and missing records from the instant `since_at` on (the
    earliest of the zones' `planned_from`), "missed a dose" entries (a day, no time) of days from
    `since` on; `since` is also the earliest local day, in whatever zone it was recorded, of an
    entry at `since_at` or after (so the (participant, day) index finds them all, reading about
    a day and a half of entries rather than the diary). A planned day is a participant's own
    local day, never earlier than `since`: a missed dose counts there. The tick loads these and
    no older ones, so planning costs the same after a year of entries as after a day. Why the
    diary's `backfill_days` does not widen it: an entry logged late for an older day holds that
    older day's slot, which is no longer planned."""
    since_at = min(planned_from(now, timezone) for timezone in set(timezones))
    return (since_at.astimezone(UTC) - _WESTMOST).date(), since_at


@lru_cache(maxsize=1024)
def slot_plan(timezone: str, reminder_times: tuple[time, ...], today: date) -> SlotPlan:
    """Cached (bounded) per zone, reminder times (at least one) and local day: a wave shares a
    few of these."""
    zone = ZoneInfo(timezone)
    days = tuple(today - timedelta(days=n) for n in range(PLANNED_DAYS_BACK, -1, -1))
    by_day = {day: slots_on(day, list(reminder_times), zone) for day in (*days, today + timedelta(days=1))}
    slots = tuple(slot for day_slots in by_day.values() for slot in day_slots)
    return SlotPlan(days, slots, by_day, slots[0].window_start, slots[-1].window_end, min(s.at for s in slots))


def plan_applications(
    protocol: Protocol, participant: ParticipantView, facts: Iterable[DiaryFact], now: datetime
) -> Plan:
    """Reminders, one nudge, and missing-dose records for yesterday's and today's slots; none
    at all off treatment (interrupted, follow-up, ended)."""
    if participant.treatment != "on_treatment" or not participant.reminder_times:
        return Plan()
    rules = protocol.reminders
    today = now.astimezone(participant.zone).date()
    slots = slot_plan(participant.timezone, participant.reminder_times, today)
    facts = list(facts)
    skipped = accounted(slots, facts) if facts else set()
    if participant.cream_since > slots.earliest:
        # A dose due before they joined (or resumed) is neither reminded nor recorded missing.
        skipped |= {slot.key for slot in slots.slots if slot.at < participant.cream_since}
    messages, missing, next_check = _application_shape(
        participant.timezone, participant.reminder_times, today, now, frozenset(skipped),
        rules.nudge_after_minutes, rules.stale_after_minutes, rules.late_after_minutes)
    plan = Plan(next_check=next_check)
    for slot, kind, template, due, late_after, stale in messages:
        variables, buttons = _slot_payload(slot)
        plan.messages.append(PlannedMessage(
            key=f"{kind}:{participant.id}:{slot.key}", kind=kind, template_id=template, due_at=due,
            variables=variables, buttons=buttons, late_after=late_after, stale_after=stale,
            participant_id=participant.id))
    plan.missing = [MissingDose(participant.id, slot) for slot in missing]
    return plan


_Step = tuple[Slot, str, str, datetime, datetime, datetime]  # slot, kind, template, due, late after, stale after


@lru_cache(maxsize=4096)
def _application_shape(timezone: str, reminder_times: tuple[time, ...], today: date, now: datetime,
                       skipped: frozenset[str], nudge_after: int, stale_after: int,
                       late_after: int) -> tuple[tuple[_Step, ...], tuple[Slot, ...], datetime | None]:
    """What plan_applications plans, at `now`, for everyone with these slots whose slots
    `skipped` are accounted for (or came before they joined): the messages, the slots to record
    missing, and the next look. Cached (bounded): at a wave's minute most participants of a zone
    share one."""
    plan = Plan()
    steps: list[_Step] = []
    missing: list[Slot] = []
    for slot in slot_plan(timezone, reminder_times, today).slots:
        if slot.key in skipped:
            continue
        if slot.at > now:  # nothing of this slot is due yet; its reminder comes first
            plan.look_again_at(slot.at)
            continue
        nudge_at = slot.at + timedelta(minutes=nudge_after)
        for kind, template, at, stale in (
            (OutboxKind.REMINDER, "reminder_application", slot.at, slot.at + timedelta(minutes=stale_after)),
            (OutboxKind.NUDGE, "reminder_nudge", nudge_at, slot.window_end),
        ):
            if at > now:
                plan.look_again_at(at)
                continue
            if kind == OutboxKind.NUDGE and now >= stale:
                continue  # a nudge that can no longer help is not worth a record either
            steps.append((slot, kind, template, at, at + timedelta(minutes=late_after), stale))
        if now >= slot.window_end:
            missing.append(slot)
        else:
            plan.look_again_at(slot.window_end)
    return tuple(steps), tuple(missing), plan.next_check


@lru_cache(maxsize=4096)
def _slot_payload(slot: Slot) -> tuple[JSONObject, ButtonRows]:
    """A slot's reminder variables and buttons: the same for everyone whose slot it is, so a wave
    of thousands shares them (they are only ever read)."""
    form = slot_form(slot)
    return ({"slot_at": slot.at.isoformat(), "slot_date": slot.local_date.isoformat()},
            [[[name, cb.diary(action, form), {}]] for name, action in
             (("applied_now", cb.DIARY_NOW), ("applied_earlier", cb.DIARY_EARLIER), ("missed", cb.DIARY_MISSED))])


# --- Study visits ---------------------------------------------------------------------------

# How long after its time a visit or pregnancy-test reminder is still worth planning at all.
# Older ones are left alone rather than re-offered to the outbox on every tick.
_LOOK_BACK = timedelta(days=2)


@dataclass(frozen=True)
class VisitFact:
    """A visit still to happen, as the planner sees it (a plain snapshot, not an ORM row)."""

    id: int
    name: str
    local_date: date
    local_time: time | None
    status: str
    revision: int
    changed_at: datetime  # created, moved or status changed: nothing earlier is reminded


def visit_reminder_points(protocol: Protocol, visit: VisitFact, zone: ZoneInfo) -> list[tuple[str, int, datetime]]:
    """(which, days before, instant) of each reminder for a visit: d7, d1 ... and the morning of."""
    rules = protocol.visits
    points = [(f"d{n}", n, instant(visit.local_date - timedelta(days=n), parse_hhmm(rules.reminder_time), zone))
              for n in rules.reminder_days_before]
    points.append(("day", 0, instant(visit.local_date, parse_hhmm(rules.morning_of_time), zone)))
    return points


def visit_reminder_key(participant_id: int, visit: VisitFact, which: str) -> str:
    """Cannot repeat, and changes when the visit moves (the revision and the date are in it)."""
    return f"visit:{participant_id}:{visit.id}:r{visit.revision}:{visit.local_date:%Y%m%d}:{which}"


def plan_visits(protocol: Protocol, participant: ParticipantView, visits: Iterable[VisitFact],
                now: datetime) -> Plan:
    """Reminders 7 days and 1 day before each open visit and on its morning, at local times."""
    rules = protocol.reminders
    zone = participant.zone
    plan = Plan()
    for visit in visits:
        if visit.status not in ("scheduled", "confirmed", "reschedule_requested"):
            continue
        visit_at = instant(visit.local_date, visit.local_time, zone) if visit.local_time else None
        for which, days_before, at in visit_reminder_points(protocol, visit, zone):
            # Nothing from before the visit was (re)planned, or before the participant could be written to.
            if at < visit.changed_at or at < participant.active_since or (visit_at and at >= visit_at):
                continue
            if at > now:
                plan.look_again_at(at)
                continue
            if now - at > _LOOK_BACK:
                continue
            buttons = [] if visit.status == "confirmed" else [
                [["visit_confirm", cb.visit(cb.VISIT_CONFIRM, visit.id, visit.revision), {}]],
                [["visit_reschedule", cb.visit(cb.VISIT_RESCHEDULE, visit.id, visit.revision), {}]],
            ]
            plan.messages.append(PlannedMessage(
                key=visit_reminder_key(participant.id, visit, which),
                kind=OutboxKind.VISIT_REMINDER,
                template_id="visit_reminder",
                due_at=at,
                variables={"visit_id": visit.id, "revision": visit.revision, "days_before": days_before,
                           "visit_date": visit.local_date.isoformat(),
                           "visit_at": visit_at.isoformat() if visit_at else None,
                           "confirmed": visit.status == "confirmed"},
                buttons=buttons,
                late_after=at + timedelta(minutes=rules.late_after_minutes),
                stale_after=at + timedelta(minutes=rules.stale_after_minutes),
                participant_id=participant.id,
            ))
    return plan


# --- Pregnancy tests --------------------------------------------------------------------------



def pregnancy_reminder_key(participant_id: int, due: date, repeat: int) -> str:
    return f"preg:{participant_id}:{due:%Y%m%d}:{repeat}"


def pregnancy_tests_apply(protocol: Protocol, participant: ParticipantView) -> bool:
    """Does the protocol schedule pregnancy tests for this participant, now?"""
    rules = protocol.pregnancy_tests
    return (rules.enabled and participant.wocbp
            and pregnancy_tests_due(rules.during, participant.treatment, participant.treatment_reason))


def plan_pregnancy_tests(protocol: Protocol, participant: ParticipantView, facts: Iterable[PregnancyFact],
                         now: datetime, anchor: date | None = None) -> Plan:
    """Women of childbearing potential only, in the treatment states the protocol names: a
    reminder on the calendar day a test is due (every `every_days` from `anchor`, the protocol's
    day 0, or consent), then again every `repeat_every_days` until a result (negative or
    positive) is recorded. "Not yet" does not stop the repeats."""
    rules = protocol.pregnancy_tests
    plan = Plan()
    if not pregnancy_tests_apply(protocol, participant):
        return plan
    zone = participant.zone
    consented = participant.consented_at or participant.active_since
    today = now.astimezone(zone).date()
    due = due_date(rules, anchor or consented.astimezone(zone).date(), facts, today)
    at_time = parse_hhmm(rules.reminder_time)
    repeat = max(0, (today - due).days // rules.repeat_every_days)
    at = instant(due + timedelta(days=repeat * rules.repeat_every_days), at_time, zone)
    if at > now:
        plan.look_again_at(at)
        return plan
    plan.look_again_at(instant(due + timedelta(days=(repeat + 1) * rules.repeat_every_days), at_time, zone))
    if at < participant.active_since or now - at > _LOOK_BACK:
        return plan
    plan.messages.append(PlannedMessage(
        key=pregnancy_reminder_key(participant.id, due, repeat),
        kind=OutboxKind.PREGNANCY_REMINDER,
        template_id="pregnancy_reminder",
        due_at=at,
        variables={"due_date": due.isoformat(), "where": rules.where, "repeat": repeat},
        buttons=[[[f"pregnancy_{result}", cb.pregnancy(result, participant.id, due, repeat), {}]]
                 for result in cb.PREGNANCY_RESULTS.values()],
        late_after=at + timedelta(minutes=protocol.reminders.late_after_minutes),
        stale_after=at + timedelta(minutes=protocol.reminders.stale_after_minutes),
        participant_id=participant.id,
    ))
    return plan
