"""Time zones as the study takes them: IANA Area/Location names (America/New_York, Europe/Madrid),
and UTC for the study team's testing. Every zone that enters the study comes through `read` or
`check`: the enrolment request, a participant moved to another zone (the command line and
/timezone), /enroll's typed zone, study.toml's default_timezone and common_timezones.

A participant's reminders follow their zone's rules, summer time included; so a name that only
looks like a zone is refused, with the real zones it may mean:

- an abbreviation (EST, PST, CET, EST5EDT): fixed UTC-5 all year for EST, so a New York participant's
  reminders would be an hour off all summer; suggested: the places that use it (America/New_York...);
- a fixed offset (GMT+5, UTC-03:00, +05:30, Etc/GMT+5, whose POSIX sign means UTC-5): suggested,
  the zones at that offset (Asia/Karachi...);
- an old name the time zone database keeps for compatibility (US/Eastern, GB, Japan): suggested,
  the name it stands for (its "backward" links: America/New_York, Europe/London, Asia/Tokyo);
- anything else not a zone name (America/New_Yrok, Madird): suggested, the names close to it.

Typed words are read kindly: any letter case, spaces for underscores ("america/new york"); the
zone is returned as IANA spells it, which is what is stored.
"""

from __future__ import annotations

import difflib
import importlib.resources
import re
import zoneinfo
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache, lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo, available_timezones

# The first part of every Area/Location name (the tz database's continents and oceans).
AREAS = ("Africa", "America", "Antarctica", "Arctic", "Asia", "Atlantic", "Australia", "Europe", "Indian", "Pacific")
UTC_NAMES = ("UTC", "Etc/UTC")  # no place's zone, but what the study team tests with (and study.toml's default)
MAX_TYPED = 64  # characters of typed words worth reading
MAX_SUGGESTIONS = 4

# Unknown, abbreviation, offset, legacy: why a name was refused (templates word each).
UNKNOWN, ABBREVIATION, OFFSET, LEGACY = "unknown", "abbreviation", "offset", "legacy"

_EASTERN = ("America/New_York", "America/Toronto", "America/Detroit")
_CENTRAL = ("America/Chicago", "America/Winnipeg", "America/Mexico_City")
_MOUNTAIN = ("America/Denver", "America/Phoenix", "America/Edmonton")
_PACIFIC = ("America/Los_Angeles", "America/Vancouver", "America/Tijuana")
_CET = ("Europe/Paris", "Europe/Berlin", "Europe/Madrid", "Europe/Rome")
_EET = ("Europe/Athens", "Europe/Helsinki", "Europe/Bucharest", "Africa/Cairo")
# Abbreviations people write for a zone (lower case), and the places that use them, likeliest first.
ABBREVIATIONS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(("est", "edt", "et", "eastern", "est5edt"), _EASTERN),
    **dict.fromkeys(("cst", "cdt", "ct", "central", "cst6cdt"), _CENTRAL),
    **dict.fromkeys(("mst", "mdt", "mt", "mountain", "mst7mdt"), _MOUNTAIN),
    **dict.fromkeys(("pst", "pdt", "pt", "pacific", "pst8pdt"), _PACIFIC),
    **dict.fromkeys(("akst", "akdt"), ("America/Anchorage",)),
    **dict.fromkeys(("hst", "hdt"), ("Pacific/Honolulu",)),
    **dict.fromkeys(("ast", "adt"), ("America/Halifax", "America/Puerto_Rico")),
    **dict.fromkeys(("nst", "ndt"), ("America/St_Johns",)),
    **dict.fromkeys(("bst", "wet", "west"), ("Europe/London", "Europe/Lisbon", "Europe/Dublin")),
    **dict.fromkeys(("cet", "cest", "met", "mest"), _CET),
    **dict.fromkeys(("eet", "eest"), _EET),
    "msk": ("Europe/Moscow",),
    "ist": ("Asia/Kolkata", "Europe/Dublin", "Asia/Jerusalem"),
    "pkt": ("Asia/Karachi",),
    "jst": ("Asia/Tokyo",),
    "kst": ("Asia/Seoul",),
    "hkt": ("Asia/Hong_Kong",),
    "sgt": ("Asia/Singapore",),
    **dict.fromkeys(("aest", "aedt"), ("Australia/Sydney", "Australia/Melbourne", "Australia/Brisbane")),
    **dict.fromkeys(("acst", "acdt"), ("Australia/Adelaide", "Australia/Darwin")),
    "awst": ("Australia/Perth",),
    **dict.fromkeys(("nzst", "nzdt"), ("Pacific/Auckland",)),
}
# The tz database's backward links from names that are not Area/Location (file "backward"), by
# lower-case name: what each stands for. (Iceland's link goes to Africa/Abidjan, which has the
# same rules; the name a person would recognise is Reykjavik's.)
LEGACY_LINKS: dict[str, str] = {name.lower(): zone for name, zone in (
    ("Brazil/Acre", "America/Rio_Branco"), ("Brazil/DeNoronha", "America/Noronha"),
    ("Brazil/East", "America/Sao_Paulo"), ("Brazil/West", "America/Manaus"),
    ("Canada/Atlantic", "America/Halifax"), ("Canada/Central", "America/Winnipeg"),
    ("Canada/Eastern", "America/Toronto"), ("Canada/Mountain", "America/Edmonton"),
    ("Canada/Newfoundland", "America/St_Johns"), ("Canada/Pacific", "America/Vancouver"),
    ("Canada/Saskatchewan", "America/Regina"), ("Canada/Yukon", "America/Whitehorse"),
    ("Chile/Continental", "America/Santiago"), ("Chile/EasterIsland", "Pacific/Easter"),
    ("Cuba", "America/Havana"), ("Egypt", "Africa/Cairo"), ("Eire", "Europe/Dublin"),
    ("GB", "Europe/London"), ("GB-Eire", "Europe/London"), ("Hongkong", "Asia/Hong_Kong"),
    ("Iceland", "Atlantic/Reykjavik"), ("Iran", "Asia/Tehran"), ("Israel", "Asia/Jerusalem"),
    ("Jamaica", "America/Jamaica"), ("Japan", "Asia/Tokyo"), ("Kwajalein", "Pacific/Kwajalein"),
    ("Libya", "Africa/Tripoli"), ("Mexico/BajaNorte", "America/Tijuana"), ("Mexico/BajaSur", "America/Mazatlan"),
    ("Mexico/General", "America/Mexico_City"), ("NZ", "Pacific/Auckland"), ("NZ-CHAT", "Pacific/Chatham"),
    ("Navajo", "America/Denver"), ("PRC", "Asia/Shanghai"), ("Poland", "Europe/Warsaw"),
    ("Portugal", "Europe/Lisbon"), ("ROC", "Asia/Taipei"), ("ROK", "Asia/Seoul"), ("Singapore", "Asia/Singapore"),
    ("Turkey", "Europe/Istanbul"), ("US/Alaska", "America/Anchorage"), ("US/Aleutian", "America/Adak"),
    ("US/Arizona", "America/Phoenix"), ("US/Central", "America/Chicago"),
    ("US/East-Indiana", "America/Indiana/Indianapolis"), ("US/Eastern", "America/New_York"),
    ("US/Hawaii", "Pacific/Honolulu"), ("US/Indiana-Starke", "America/Indiana/Knox"),
    ("US/Michigan", "America/Detroit"), ("US/Mountain", "America/Denver"), ("US/Pacific", "America/Los_Angeles"),
    ("US/Samoa", "Pacific/Pago_Pago"), ("W-SU", "Europe/Moscow"),
    # UTC by other names: UTC itself is taken.
    ("UCT", "UTC"), ("Etc/UCT", "UTC"), ("Universal", "UTC"), ("Etc/Universal", "UTC"), ("Zulu", "UTC"),
    ("Etc/Zulu", "UTC"),
)}
# Where many zones share an offset, these come first (big places a study is likelier to have).
WELL_KNOWN = (
    "America/New_York", "America/Chicago", "America/Denver", "America/Phoenix", "America/Los_Angeles",
    "America/Anchorage", "Pacific/Honolulu", "America/Puerto_Rico", "America/Toronto", "America/Vancouver",
    "America/Mexico_City", "America/Bogota", "America/Lima", "America/Caracas", "America/Halifax",
    "America/Santiago", "America/Sao_Paulo", "America/Argentina/Buenos_Aires", "America/St_Johns",
    "Atlantic/Azores", "Atlantic/Cape_Verde", "Europe/London", "Europe/Lisbon", "Europe/Dublin", "Africa/Abidjan",
    "Europe/Madrid", "Europe/Paris", "Europe/Berlin", "Europe/Rome", "Africa/Lagos", "Europe/Athens",
    "Europe/Helsinki", "Africa/Cairo", "Africa/Johannesburg", "Europe/Istanbul", "Europe/Moscow", "Africa/Nairobi",
    "Asia/Riyadh", "Asia/Tehran", "Asia/Dubai", "Asia/Kabul", "Asia/Karachi", "Asia/Tashkent",
    "Asia/Yekaterinburg", "Asia/Kolkata", "Asia/Kathmandu", "Asia/Dhaka", "Asia/Yangon", "Asia/Bangkok",
    "Asia/Jakarta", "Asia/Shanghai", "Asia/Singapore", "Asia/Hong_Kong", "Australia/Perth", "Asia/Tokyo",
    "Asia/Seoul", "Australia/Adelaide", "Australia/Darwin", "Australia/Brisbane", "Australia/Sydney",
    "Pacific/Noumea", "Pacific/Auckland", "Pacific/Fiji", "Pacific/Tongatapu", "Pacific/Kiritimati",
    "Pacific/Pago_Pago", "Pacific/Marquesas", "Pacific/Gambier", "Pacific/Pitcairn", "Atlantic/South_Georgia",
    "America/Noronha",
)
# GMT+5, UTC-03:00, +05:30, UTC−5, Etc/GMT+5; also GMT or UTC+0 alone (offset 0).
_OFFSET = re.compile(r"^(?P<etc>etc/)?(?:gmt|utc|ut|z)?(?:(?P<sign>[-+\u2212\u2013])(?P<hours>\d{1,2})"
                     r"(?::?(?P<minutes>\d{2}))?)?$")
_GMT_NAMES = ("gmt", "gmt0", "greenwich", "etc/gmt", "etc/gmt0", "etc/greenwich")


@dataclass(frozen=True)
class ZoneAnswer:
    """Typed words read as a zone: the zone as IANA spells it, or why not and what they may mean."""

    typed: str
    zone: str | None = None
    problem: str = ""  # unknown | abbreviation | offset | legacy
    suggestions: tuple[str, ...] = ()
    offset: timedelta | None = None  # what a fixed offset stands for

    def explain(self) -> str:
        """Why the words are not taken, in one line (the command line's and study.toml's errors)."""
        shown = repr(self.typed)
        some = _listing(self.suggestions)
        if self.problem == ABBREVIATION:
            return (f"{shown} is an abbreviation, not a time zone: it does not follow a place's summer time. "
                    f"Use the participant's Area/Location zone, e.g. {some}")
        if self.problem == OFFSET:
            at = f" ({offset_words(self.offset)})" if self.offset is not None else ""
            return (f"{shown} is a fixed offset{at}: it never changes for summer time. Use the participant's "
                    f"Area/Location zone" + (f", e.g. {some}" if some else " (like America/New_York)"))
        if self.problem == LEGACY:
            return f"{shown} is an old name kept for compatibility: use {some}"
        close = f" Did you mean {some}?" if some else ""
        return f"{shown} is not a known time zone (use Area/Location names like America/New_York or Europe/Madrid).{close}"


class ZoneError(ValueError):
    """Not a zone the study takes; `answer` says why and what may have been meant."""

    def __init__(self, answer: ZoneAnswer) -> None:
        super().__init__(answer.explain())
        self.answer = answer


def check(name: str) -> str:
    """The zone as IANA spells it (what is stored), or ZoneError."""
    answer = read(name)
    if answer.zone is None:
        raise ZoneError(answer)
    return answer.zone


def read(words: str) -> ZoneAnswer:
    """Typed words as a time zone, kindly: any case, spaces for underscores ("america/new york").
    Not one the study takes: why (`problem`), and the zones it may mean."""
    shown = words.strip()[:MAX_TYPED]
    typed = "_".join(shown.split()).lower()
    accepted = _accepted()
    if typed in accepted:
        return ZoneAnswer(shown, accepted[typed])
    if typed in ABBREVIATIONS:
        return ZoneAnswer(shown, None, ABBREVIATION, ABBREVIATIONS[typed][:MAX_SUGGESTIONS])
    if typed in LEGACY_LINKS:
        return ZoneAnswer(shown, None, LEGACY, (LEGACY_LINKS[typed],))
    offset = _offset(typed)
    if offset is not None:
        return ZoneAnswer(shown, None, OFFSET, at_offset(offset), offset)
    return ZoneAnswer(shown, None, UNKNOWN, _close(typed) if typed else ())


def at_offset(offset: timedelta, limit: int = MAX_SUGGESTIONS) -> tuple[str, ...]:
    """Zones whose clocks are at `offset` from UTC, those at it in standard time first (GMT-5:
    New York before Chicago in summer), each the best known first; never Antarctica's stations."""
    year = datetime.now(UTC).year
    moments = (datetime(year, 1, 15, 12, tzinfo=UTC), datetime(year, 7, 15, 12, tzinfo=UTC))
    rank = {name: i for i, name in enumerate(WELL_KNOWN)}
    found = []
    for name in _accepted().values():
        if name in UTC_NAMES or name.startswith("Antarctica/"):
            continue
        offsets = {moment.astimezone(ZoneInfo(name)).utcoffset() or timedelta(0) for moment in moments}
        if offset in offsets:
            found.append(((offset != min(offsets), rank.get(name, len(rank)), len(offsets), name), name))
    return _distinct((name for _, name in sorted(found)), limit)


def offset_words(offset: timedelta) -> str:
    """UTC+05:00, UTC-03:30, UTC+00:00."""
    minutes = int(offset.total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    return f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _listing(zones: tuple[str, ...]) -> str:
    if len(zones) <= 1:
        return "".join(zones)
    return ", ".join(zones[:-1]) + " or " + zones[-1]


def _offset(typed: str) -> timedelta | None:
    """The offset a fixed-offset name stands for (Etc/GMT+5 is UTC-5: POSIX signs are inverted)."""
    if typed in _GMT_NAMES or typed in ("utc0", "etc/gmt0"):
        return timedelta(0)
    match = _OFFSET.match(typed)
    if match is None or match["sign"] is None:
        return None
    hours, minutes = int(match["hours"]), int(match["minutes"] or 0)
    if hours > 14 or minutes >= 60:
        return None
    offset = timedelta(hours=hours, minutes=minutes)
    negative = match["sign"] != "+"
    if match["etc"]:
        negative = not negative
    return -offset if negative else offset


@lru_cache(maxsize=1)
def _accepted() -> dict[str, str]:
    """Every zone the study takes (the Area/Location names this system knows, and UTC), by its
    lower-case spelling."""
    names = [name for name in available_timezones() if name.split("/", 1)[0] in AREAS and "/" in name]
    return {name.lower(): name for name in (*names, *UTC_NAMES)}


@lru_cache(maxsize=1)
def _cities() -> dict[str, tuple[str, ...]]:
    """The zones by the lower-case name of their city ("madrid": Europe/Madrid)."""
    found: dict[str, list[str]] = {}
    for lower, name in _accepted().items():
        found.setdefault(lower.rsplit("/", 1)[-1], []).append(name)
    return {city: tuple(sorted(names)) for city, names in found.items()}


def _close(typed: str) -> tuple[str, ...]:
    """Zones the words may mean: a city's name alone, a slip of spelling (difflib's close matches)."""
    zones = _accepted()
    cities = _cities()
    city = typed.rsplit("/", 1)[-1]
    near_cities = difflib.get_close_matches(city, list(cities), n=MAX_SUGGESTIONS, cutoff=0.75)
    close = [zones[z] for z in difflib.get_close_matches(typed, list(zones), n=MAX_SUGGESTIONS, cutoff=0.75)]
    return _distinct([*cities.get(city, ()), *close, *(z for c in near_cities for z in cities[c])], MAX_SUGGESTIONS)


def _distinct(names: Iterable[str], limit: int) -> tuple[str, ...]:
    """The first `limit` names with rules of their own: of an old name and the one it links to
    (Asia/Calcutta, Asia/Kolkata), the first only."""
    kept: dict[bytes, str] = {}
    for name in names:
        kept.setdefault(_rules(name), name)
        if len(kept) == limit:
            break
    return tuple(kept.values())


@cache
def _rules(name: str) -> bytes:
    """The zone's compiled rules, from where zoneinfo reads them (a link's are its target's)."""
    for root in zoneinfo.TZPATH:
        path = Path(root, name)
        if path.is_file():
            return path.read_bytes()
    try:
        return importlib.resources.files("tzdata").joinpath("zoneinfo", *name.split("/")).read_bytes()
    except (ModuleNotFoundError, OSError):
        return name.encode()  # not found: a zone of its own
