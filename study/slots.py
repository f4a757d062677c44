"""Dose slots: the participant's reminder times laid on their calendar, in their time zone.

A slot is one expected application (08:00 on 24 November, say). Each slot owns a window of the
local day, split at the midpoints between reminder times, so an entry at 07:40 or 11:00 counts for
the 08:00 slot and one at 19:00 for the 20:00 slot. Local wall-clock times become UTC instants
through `zoneinfo` with fold=0: on the spring-forward day a 02:30 reminder (a time that does not
exist) fires at 03:30, once; on the fall-back day a 01:30 reminder fires at the first 01:30, once.

Which slots a participant's diary already accounts for (`accounted`, `accounted_slots`) is asked by
the planner (scheduler/planner.py: what to remind) and by a reminder about to go out
(study/still_wanted.py: the dose recorded meanwhile), so both mean the same by it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import NamedTuple
from zoneinfo import ZoneInfo


@dataclass(frozen=True)
class Slot:
    local_date: date
    local_time: time
    at: datetime  # the reminder's instant, UTC
    window_start: datetime  # UTC
    window_end: datetime  # UTC
    key: str = field(init=False)  # yyyymmddHHMM, local: names the slot in outbox keys and forms

    def __post_init__(self) -> None:
        d, t = self.local_date, self.local_time
        object.__setattr__(self, "key", f"{d.year:04d}{d.month:02d}{d.day:02d}{t.hour:02d}{t.minute:02d}")


def instant(day: date, at: time, zone: ZoneInfo) -> datetime:
    """The UTC instant of a local wall-clock time (fold=0 across DST changes)."""
    return datetime.combine(day, at, zone).astimezone(UTC)


def _minutes(t: time) -> int:
    return t.hour * 60 + t.minute


def _local(day: date, minutes: int, zone: ZoneInfo) -> datetime:
    """Minutes after local midnight; 24*60 is the next midnight."""
    return instant(day + timedelta(days=minutes // (24 * 60)), time((minutes % 1440) // 60, minutes % 60), zone)


def slots_on(day: date, times: list[time] | tuple[time, ...], zone: ZoneInfo) -> list[Slot]:
    return list(_slots_on(day, tuple(sorted(times)), zone))


@lru_cache(maxsize=4096)
def _slots_on(day: date, ordered: tuple[time, ...], zone: ZoneInfo) -> tuple[Slot, ...]:
    # Cached: most participants share a zone and the protocol's default times, so a wave of
    # thousands needs the calendar arithmetic only a handful of times.
    marks = [_minutes(t) for t in ordered]
    bounds = [0] + [(a + b) // 2 for a, b in itertools.pairwise(marks)] + [24 * 60]
    return tuple(
        Slot(day, t, instant(day, t, zone), _local(day, bounds[i], zone), _local(day, bounds[i + 1], zone))
        for i, t in enumerate(ordered)
    )


class DiaryFact(NamedTuple):
    """A standing diary entry: applied (with its time), missed (a day), or missing (a slot). A
    plain tuple: a wave makes one for each of tens of thousands of entries."""

    kind: str
    local_date: date
    occurred_at: datetime | None


@dataclass(frozen=True)
class SlotPlan:
    """Some local days' slots for one zone and reminder times, in time order (`slots`: their
    windows tile the days, from `start` to `end`), and each day's (`by_day`); `days` are the ones
    asked about. The planner's (scheduler/planner.py `slot_plan`: yesterday's and today's, and
    tomorrow's) is the same for everyone who shares the zone and times, so a wave of thousands
    works it out a handful of times."""

    days: tuple[date, ...]
    slots: tuple[Slot, ...]
    by_day: dict[date, list[Slot]]
    start: datetime
    end: datetime
    earliest: datetime  # the earliest reminder (slots are in day and time order; a spring-forward day may not be)


def accounted_slots(reminder_times: Sequence[time], zone: ZoneInfo, facts: Iterable[DiaryFact],
                    days: Iterable[date], by_day: dict[date, list[Slot]] | None = None) -> set[str]:
    """The slots of `days` that already have an entry. An application counts for the slot whose
    window holds it; a "missed a dose" (which has a day but no time) fills the day's earliest
    slot still open; a system "missing" record holds its own slot."""
    days = tuple(days)
    by_day = by_day or {day: slots_on(day, list(reminder_times), zone) for day in days}
    slots = tuple(sorted((slot for day_slots in by_day.values() for slot in day_slots), key=lambda s: s.window_start))
    if not slots:
        return set()
    return accounted(SlotPlan(days, slots, by_day, slots[0].window_start, slots[-1].window_end,
                              min(s.at for s in slots)), list(facts))


def accounted(plan: SlotPlan, facts: list[DiaryFact]) -> set[str]:
    """The keys of the slots of `plan` that `facts` account for (see `accounted_slots`)."""
    keys: set[str] = set()
    missed = False
    for kind, _, at in facts:
        if kind == "missed":
            missed = True
        # The windows tile their days: an entry outside them is for a day not asked about
        # (compared as instants, with no conversion to the participant's zone).
        elif at is not None and plan.start <= at < plan.end and kind in ("applied", "missing"):
            for slot in plan.slots:
                if at < slot.window_end:
                    if at >= slot.window_start:
                        keys.add(slot.key)
                    break
    if missed:
        for day in plan.days:
            open_slots = [s.key for s in plan.by_day[day] if s.key not in keys]
            for _ in (f for f in facts if f.kind == "missed" and f.local_date == day):
                if open_slots:
                    keys.add(open_slots.pop(0))
    return keys
