"""Dose slots: the participant's reminder times laid on their calendar, in their time zone.

A slot is one expected application (08:00 on 24 November, say). Each slot owns a window of the
local day, split at the midpoints between reminder times, so an entry at 07:40 or 11:00 counts for
the 08:00 slot and one at 19:00 for the 20:00 slot. Local wall-clock times become UTC instants
through `zoneinfo` with fold=0: on the spring-forward day a 02:30 reminder (a time that does not
exist) fires at 03:30, once; on the fall-back day a 01:30 reminder fires at the first 01:30, once.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
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
