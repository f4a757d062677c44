"""What is due, worked out from the protocol, one participant's records and the time.

Pure functions: no database, no Telegram, no clock of their own. The tick feeds them what it
loaded and turns their answer into outbox rows and records; tests feed them any instant they
like. Each planned message carries a key that cannot repeat (participant, kind, slot), so
planning the same moment twice, or after a restart, queues nothing new.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from study.protocol import Protocol
from study.slots import Slot, slots_on

@dataclass(frozen=True)
class ParticipantView:
    """What the planner needs to know about a participant (a plain snapshot, not an ORM row)."""

    id: int
    study_id: str
    timezone: str
    reminder_times: tuple[time, ...]
    active_since: datetime
    wocbp: bool = False

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True)
class DiaryFact:
    """A standing diary entry: applied (with its time), missed (a day), or missing (a slot)."""

    kind: str
    local_date: date
    occurred_at: datetime | None


@dataclass(frozen=True)
class PlannedMessage:
    key: str
    kind: str
    template_id: str
    due_at: datetime
    variables: dict = field(default_factory=dict)
    buttons: list = field(default_factory=list)  # rows of [label block, callback data, variables]
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


def accounted_slots(participant: ParticipantView, facts: Iterable[DiaryFact], days: Iterable[date],
                    by_day: dict[date, list[Slot]] | None = None) -> set[str]:
    """The slots of `days` that already have an entry. An application counts for the slot whose
    window holds it; a "missed a dose" (which has a day but no time) fills the day's earliest
    slot still open; a system "missing" record holds its own slot."""
    zone = participant.zone
    facts = list(facts)
    days = list(days)
    by_day = by_day or {day: slots_on(day, list(participant.reminder_times), zone) for day in days}
    accounted: set[str] = set()
    for fact in facts:
        if fact.kind in ("applied", "missing") and fact.occurred_at is not None:
            day_slots = by_day.get(fact.occurred_at.astimezone(zone).date())
            if day_slots is None:
                continue  # outside the days asked about
            for slot in day_slots:
                if slot.window_start <= fact.occurred_at < slot.window_end:
                    accounted.add(slot.key)
                    break
    for day in days:
        open_slots = [s.key for s in by_day[day] if s.key not in accounted]
        for _ in (f for f in facts if f.kind == "missed" and f.local_date == day):
            if open_slots:
                accounted.add(open_slots.pop(0))
    return accounted


def plan_applications(
    protocol: Protocol, participant: ParticipantView, facts: Iterable[DiaryFact], now: datetime
) -> Plan:
    """Reminders, one nudge, and missing-dose records for yesterday's and today's slots."""
    rules = protocol.reminders
    zone = participant.zone
    today = now.astimezone(zone).date()
    days = [today - timedelta(days=1), today]
    by_day = {day: slots_on(day, list(participant.reminder_times), zone) for day in (*days, today + timedelta(days=1))}
    accounted = accounted_slots(participant, facts, days, by_day)
    plan = Plan()
    for slots in by_day.values():
        for slot in slots:
            # A dose due before they joined (or resumed) is neither reminded nor recorded missing.
            if slot.at < participant.active_since or slot.key in accounted:
                continue
            nudge_at = slot.at + timedelta(minutes=rules.nudge_after_minutes)
            for kind, template, at, stale in (
                ("reminder", "reminder_application", slot.at, slot.at + timedelta(minutes=rules.stale_after_minutes)),
                ("nudge", "reminder_nudge", nudge_at, slot.window_end),
            ):
                if at > now:
                    plan.look_again_at(at)
                    continue
                if kind == "nudge" and now >= stale:
                    continue  # a nudge that can no longer help is not worth a record either
                plan.messages.append(_slot_message(protocol, participant, slot, kind, template, at, stale))
            if now >= slot.window_end:
                plan.missing.append(MissingDose(participant.id, slot))
            else:
                plan.look_again_at(slot.window_end)
    return plan


def _slot_message(protocol: Protocol, participant: ParticipantView, slot: Slot, kind: str, template: str,
                  at: datetime, stale: datetime) -> PlannedMessage:
    form = slot_form(slot)
    return PlannedMessage(
        key=f"{kind}:{participant.id}:{slot.key}",
        kind=kind,
        template_id=template,
        due_at=at,
        variables={"slot_at": slot.at.isoformat(), "slot_date": slot.local_date.isoformat()},
        buttons=[[[name, f"d:{code}:{form}", {}]] for name, code in
                 (("applied_now", "n"), ("applied_earlier", "e"), ("missed", "m"))],
        late_after=at + timedelta(minutes=protocol.reminders.late_after_minutes),
        stale_after=stale,
        participant_id=participant.id,
    )
