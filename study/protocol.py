"""The study protocol (`study.toml`) as validated data.

Everything trial-specific lives in the file; the code reads it through these models. Validation
errors name the offending key so a coordinator editing the file can fix it without a developer.
"""

from __future__ import annotations

import tomllib
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from study import zones
from study.screening import Screener, ScreeningFileError

LanguageCode = Annotated[str, Field(pattern=r"^[a-z]{2}$")]


@lru_cache(maxsize=256)
def parse_hhmm(value: str) -> time:
    """'08:00' -> time(8, 0); raises ValueError with a plain explanation otherwise."""
    try:
        hours, minutes = value.split(":")
        if len(hours) != 2 or len(minutes) != 2:
            raise ValueError
        return time(int(hours), int(minutes))
    except ValueError:
        raise ValueError(f"{value!r} is not a time like 08:00 (24-hour HH:MM)") from None


def check_timezone(name: str) -> str:
    """An IANA Area/Location zone (or UTC), as IANA spells it; a ValueError saying why not, with
    the zones it may mean, otherwise (study/zones.py)."""
    return zones.check(name)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


MAX_CONSENT_PHRASE = 150  # characters of one language's words for a consent-text value


class StudySection(_Section):
    name: str
    short_name: str
    site: str
    phone: str
    email: str
    languages: list[LanguageCode] = Field(min_length=1)
    default_timezone: str = "UTC"
    # Words the consent to messaging is rendered with, one text per language of `languages`:
    # when the study team reads messages, how soon it answers, and how long the study keeps its
    # records (the protocol's records retention). See study.toml for the sentences they end.
    team_hours: dict[LanguageCode, str]
    reply_within: dict[LanguageCode, str]
    records_kept: dict[LanguageCode, str]

    _tz = field_validator("default_timezone")(check_timezone)

    @field_validator("team_hours", "reply_within", "records_kept")
    @classmethod
    def _phrases(cls, values: dict[str, str]) -> dict[str, str]:
        cleaned = {language: " ".join(text.split()) for language, text in values.items()}
        for language, text in cleaned.items():
            if not text:
                raise ValueError(f"the {language!r} text is empty")
            if len(text) > MAX_CONSENT_PHRASE:
                raise ValueError(f"the {language!r} text is {len(text)} characters; keep it under "
                                 f"{MAX_CONSENT_PHRASE} (it is part of a sentence of the consent text)")
        return cleaned

    @model_validator(mode="after")
    def _every_language(self) -> StudySection:
        for key in ("team_hours", "reply_within", "records_kept"):
            given = getattr(self, key)
            missing = [language for language in self.languages if language not in given]
            extra = [language for language in given if language not in self.languages]
            if missing:
                raise ValueError(f"{key}: no text for {', '.join(map(repr, missing))}: give one for each of "
                                 f"languages ({', '.join(self.languages)}), e.g. {key} = {{ en = \"...\", es = \"...\" }}")
            if extra:
                raise ValueError(f"{key}: {', '.join(map(repr, extra))} is not one of languages "
                                 f"({', '.join(self.languages)})")
        return self

    @property
    def default_language(self) -> str:
        return self.languages[0]


class TreatmentSection(_Section):
    name: str
    applications_per_day: int = Field(ge=1, le=6)
    reminder_times: list[str] = Field(min_length=1)

    @field_validator("reminder_times")
    @classmethod
    def _times(cls, values: list[str]) -> list[str]:
        parsed = [parse_hhmm(v) for v in values]
        if parsed != sorted(set(parsed)):
            raise ValueError("reminder times must be distinct and in order")
        return values


class DiarySection(_Section):
    late_after_hours: int = Field(ge=0, le=72)
    backfill_days: int = Field(ge=0, le=7)
    undo_minutes: int = Field(ge=1, le=24 * 60)
    missed_reasons: list[Annotated[str, Field(pattern=r"^[a-z_]{1,16}$")]] = Field(min_length=1)


# The zones /enroll offers as buttons when a site's study.toml names none.
COMMON_TIMEZONES = ("America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles",
                    "America/Puerto_Rico")
MAX_COMMON_TIMEZONES = 12  # buttons on one question; any other zone can be typed


class EnrolmentSection(_Section):
    invite_valid_days: int = Field(ge=1, le=90)
    # Wrong invite codes within the window before a chat is locked out (per chat), and before
    # every chat outside the study is (all of them together: many chats guessing at once).
    max_wrong_codes: int = Field(ge=1, le=50)
    max_wrong_codes_global: int = Field(ge=1, le=10_000, default=50)
    wrong_code_window_minutes: int = Field(ge=1)
    lockout_minutes: int = Field(ge=1)
    # The time zones /enroll offers as buttons (any other can be typed).
    common_timezones: list[str] = Field(default=list(COMMON_TIMEZONES), min_length=1,
                                        max_length=MAX_COMMON_TIMEZONES)

    @field_validator("common_timezones")
    @classmethod
    def _zones(cls, values: list[str]) -> list[str]:
        values = [check_timezone(value) for value in values]
        if len(set(values)) != len(values):
            raise ValueError("a time zone is listed twice")
        return values

    @model_validator(mode="after")
    def _global_limit(self) -> EnrolmentSection:
        if self.max_wrong_codes_global < self.max_wrong_codes:
            raise ValueError("max_wrong_codes_global (all chats together) must be at least max_wrong_codes (one chat)")
        return self


class RemindersSection(_Section):
    late_after_minutes: int = Field(ge=0, default=15)
    stale_after_minutes: int = Field(ge=1, default=180)
    nudge_after_minutes: int = Field(ge=1, default=90)
    quiet_hours: tuple[str, str] = ("21:30", "07:30")
    staff_digest_time: str = "07:30"

    @field_validator("quiet_hours")
    @classmethod
    def _quiet(cls, values: tuple[str, str]) -> tuple[str, str]:
        for value in values:
            parse_hhmm(value)
        return values

    @field_validator("staff_digest_time")
    @classmethod
    def _digest(cls, value: str) -> str:
        parse_hhmm(value)
        return value

    @property
    def quiet_start(self) -> time:
        return parse_hhmm(self.quiet_hours[0])

    @property
    def quiet_end(self) -> time:
        return parse_hhmm(self.quiet_hours[1])

    def is_quiet(self, local: time) -> bool:
        start, end = self.quiet_start, self.quiet_end
        return (start <= local or local < end) if start > end else (start <= local < end)


VisitName = Annotated[str, Field(pattern=r"^[a-z0-9_]{1,16}$")]


class VisitDefinition(_Section):
    """One visit of the protocol's schedule: `day` after baseline, allowed `window_days` either side."""

    name: VisitName
    label: str = Field(min_length=1, max_length=64)  # for the study team; participants see the date
    day: int = Field(ge=0, le=3650)
    window_days: int = Field(ge=0, le=60, default=0)


class VisitSection(_Section):
    schedule: list[VisitDefinition] = Field(default_factory=list)
    # Reminders before each visit: at `reminder_time` this many days before, and at `morning_of_time`
    # on the day itself (participant-local wall-clock times).
    reminder_days_before: list[int] = Field(default_factory=lambda: [7, 1])
    reminder_time: str = "10:00"
    morning_of_time: str = "08:00"

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, values: list[VisitDefinition]) -> list[VisitDefinition]:
        names = [v.name for v in values]
        if len(names) != len(set(names)):
            raise ValueError("visit names must be distinct")
        days = [v.day for v in values]
        if days != sorted(days):
            raise ValueError("visits must be listed in the order of their days")
        return values

    @field_validator("reminder_days_before")
    @classmethod
    def _days_before(cls, values: list[int]) -> list[int]:
        if any(not 1 <= v <= 60 for v in values) or len(values) != len(set(values)):
            raise ValueError("days before a visit must be distinct whole numbers from 1 to 60")
        return sorted(values, reverse=True)

    @field_validator("reminder_time", "morning_of_time")
    @classmethod
    def _time(cls, value: str) -> str:
        parse_hhmm(value)
        return value

    def definition(self, name: str) -> VisitDefinition | None:
        return next((v for v in self.schedule if v.name == name), None)


TreatmentStateName = Literal["on_treatment", "interrupted", "off_treatment"]


def _every_treatment_state() -> list[TreatmentStateName]:
    return ["on_treatment", "interrupted", "off_treatment"]


class PregnancyTestSection(_Section):
    enabled: bool = True
    every_days: int = Field(ge=1, le=90, default=28)
    where: Literal["home", "site"] = "home"
    reminder_time: str = "09:00"  # participant-local
    # While no result is recorded, the reminder comes again every this many days.
    repeat_every_days: int = Field(ge=1, le=14, default=2)
    # Tests are due every `every_days` from this visit's date (the protocol's day 0), or from
    # consent until the visit is planned: a late answer does not move the next test.
    anchor_visit: str | None = "baseline"
    # In which treatment states tests are due; never while treatment is interrupted for a pregnancy.
    during: list[TreatmentStateName] = Field(default_factory=_every_treatment_state)
    # Also ask, with a negative result, whether the participant uses the contraception the
    # protocol requires (stored with the answer). Off unless the protocol asks it.
    ask_contraception: bool = False

    @field_validator("reminder_time")
    @classmethod
    def _time(cls, value: str) -> str:
        parse_hhmm(value)
        return value


class CheckinSection(_Section):
    every_days: int = Field(ge=1, default=7)
    reminder_time: str = "10:00"
    daily_scores: bool = False
    # A check-in left unfinished expires: "end_of_day" (the participant's midnight after it was
    # started) or a number of hours after it was started. It is then kept as incomplete.
    draft_expires: Literal["end_of_day"] | Annotated[int, Field(ge=1, le=168)] = "end_of_day"

    _time = field_validator("reminder_time")(lambda value: (parse_hhmm(value), value)[1])


RED_FLAG_CODE = Annotated[str, Field(pattern=r"^[a-z_]{1,20}$")]


class SafetySection(_Section):
    itch_alert_at: int = Field(ge=0, le=11, default=9)
    pain_alert_at: int = Field(ge=0, le=11, default=9)
    red_flags: list[RED_FLAG_CODE] = Field(default_factory=list)  # the check-in buttons; flags of screening_file
    # The red-flag screening's words (study/screening.py), relative to the folder of study.toml.
    screening_file: str = Field(default="screening.toml", min_length=1, max_length=200)
    # What participants are told to call, per site: the emergency number and the crisis line.
    emergency_number: str = Field(default="911", pattern=r"^[0-9+][0-9 +-]{0,14}$")
    crisis_line: str = Field(default="988", pattern=r"^[0-9+][0-9 +-]{0,14}$")


class EscalationSection(_Section):
    realert_minutes: int = Field(ge=1, default=30)
    escalate_after_minutes: int = Field(ge=1, default=120)


class BroadcastSection(_Section):
    # A second, different staff member must approve a broadcast before anything is sent.
    require_second_approval: bool = False
    # The status message of a broadcast is edited at most this often while it is sending.
    progress_every_seconds: int = Field(ge=1, default=5)
    # An approval holds this long: a broadcast awaiting the second approval can be approved until
    # this long after its author confirmed it, and a queued one is sent until this long after it
    # was queued; what is still unsent then is not sent (study/broadcasts.py).
    approval_valid_hours: int = Field(ge=1, le=24 * 14, default=24)

    @property
    def approval_valid(self) -> timedelta:
        return timedelta(hours=self.approval_valid_hours)


# What the site checks against the approved protocol before the protocol is used for real.
CONFIRMED_SECTIONS = ("visits", "pregnancy_tests", "checkins", "reminders", "treatment", "safety")


class ProtocolSection(_Section):
    """Which approved protocol this file follows, and who at the site confirmed the schedule and the
    reminder rules against it. Without the section the file counts as an unconfirmed example."""

    version: str = Field(default="", max_length=100)
    confirmed_by: str = Field(default="", max_length=100)
    confirmed_on: date | None = None
    example: bool = True

    @field_validator("version", "confirmed_by")
    @classmethod
    def _stripped(cls, value: str) -> str:
        return value.strip()

    @field_validator("confirmed_on", mode="before")
    @classmethod
    def _date(cls, value: object) -> date | None:
        if value is None or value == "":
            return None
        if isinstance(value, date) and not isinstance(value, datetime):
            return value
        if isinstance(value, str):
            try:
                return date.fromisoformat(value)
            except ValueError:
                pass
        timed = isinstance(value, datetime)
        raise ValueError("give the day only, like 2026-10-01 (no time)" if timed else
                         f"{value!r} is not a date like 2026-10-01")


class Protocol(_Section):
    study: StudySection
    treatment: TreatmentSection
    diary: DiarySection
    enrolment: EnrolmentSection
    reminders: RemindersSection = RemindersSection()
    visits: VisitSection = VisitSection()
    pregnancy_tests: PregnancyTestSection = PregnancyTestSection()
    checkins: CheckinSection = CheckinSection()
    escalation: EscalationSection = EscalationSection()
    safety: SafetySection = SafetySection()
    broadcasts: BroadcastSection = BroadcastSection()
    protocol: ProtocolSection = ProtocolSection()

    _screener: Screener | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _anchor_is_a_visit(self) -> Protocol:
        anchor = self.pregnancy_tests.anchor_visit
        if anchor and self.visits.schedule and self.visits.definition(anchor) is None:
            names = ", ".join(v.name for v in self.visits.schedule)
            raise ValueError(f"pregnancy_tests.anchor_visit {anchor!r} is not a visit of [visits] schedule ({names})")
        return self

    @property
    def default_reminder_times(self) -> list[time]:
        return [parse_hhmm(v) for v in self.treatment.reminder_times]

    @property
    def screener(self) -> Screener:
        """The red-flag screening of [safety] screening_file, loaded by `load_protocol`."""
        if self._screener is None:
            raise ProtocolError("this Protocol has no red-flag screening: build it with load_protocol(path), "
                                "which loads [safety] screening_file next to study.toml")
        return self._screener

    def unconfirmed_keys(self) -> list[str]:
        """The [protocol] keys the site has still to fill in before this file is used for real."""
        section = self.protocol
        keys = [f"protocol.{key}" for key in ("version", "confirmed_by", "confirmed_on") if not getattr(section, key)]
        if section.example:
            keys.append("protocol.example")
        return keys

    def confirmation_problem(self, path: Path | str) -> str | None:
        """One line saying what to confirm in the file at `path`, or None when it is confirmed."""
        keys = [f"{key} = false" if key == "protocol.example" else key for key in self.unconfirmed_keys()]
        if not keys:
            return None
        state = "is the shipped example, not confirmed" if self.protocol.example else "is not confirmed"
        to_set = keys[0] if len(keys) == 1 else ", ".join(keys[:-1]) + " and " + keys[-1]
        sections = ", ".join(f"[{name}]" for name in CONFIRMED_SECTIONS[:-1]) + f" and [{CONFIRMED_SECTIONS[-1]}]"
        return (f"{path} {state} for this study: set {to_set} after checking {sections} against the approved "
                "protocol (README.md, \"Running it for real\")")

    def template_globals(self) -> dict[str, object]:
        """What every template may use (messages/catalog.toml [globals])."""
        study, safety = self.study, self.safety
        return {"study_name": study.short_name, "study_phone": study.phone, "study_email": study.email,
                "emergency_number": safety.emergency_number, "crisis_line": safety.crisis_line,
                "flag_labels": {code: flag.label for code, flag in self.screener.flags.items()},
                "team_hours": dict(study.team_hours), "reply_within": dict(study.reply_within),
                "records_kept": dict(study.records_kept)}


class ProtocolError(Exception):
    """The protocol file is missing or invalid; the message names each offending key."""


# The example protocol that ships inside the package (with its screening.toml beside it): what
# `trialbot demo` runs on when there is no study.toml, and what `trialbot init` copies for a new site.
EXAMPLE_PROTOCOL = Path(__file__).parent / "example" / "study.toml"
EXAMPLE_SCREENING = EXAMPLE_PROTOCOL.with_name("screening.toml")


def load_protocol(path: Path | str) -> Protocol:
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ProtocolError(f"study protocol not found: {path} (set STUDY_FILE, or start a new site's folder with "
                            "`trialbot init DIR`)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ProtocolError(f"{path}: not valid TOML: {exc}") from None
    try:
        protocol = Protocol.model_validate(raw)
    except ValidationError as exc:
        problems = [f"  {_key(err['loc'])}: {err['msg']}" for err in exc.errors()]
        raise ProtocolError(f"{path} has {len(problems)} problem(s):\n" + "\n".join(problems)) from None
    screening_path = path.parent / protocol.safety.screening_file
    try:
        screener = _load_screener(screening_path.resolve())
    except ScreeningFileError as exc:
        raise ProtocolError(f"{path}: safety.screening_file: {exc}") from None
    unknown = [f"  safety.red_flags[{i}]: {code!r} is not a flag of {screening_path.name}"
               for i, code in enumerate(protocol.safety.red_flags) if code not in screener.flags]
    if unknown:
        raise ProtocolError(f"{path} has {len(unknown)} problem(s):\n" + "\n".join(unknown))
    protocol._screener = screener
    return protocol


def _load_screener(path: Path) -> Screener:
    """Screener.load, remembered per file version: loading compiles every term (about a tenth of a
    second), and tests and tools load the protocol many times. A changed file is read again."""
    try:
        stat = path.stat()
    except OSError:
        return Screener.load(path)  # raises ScreeningFileError naming the missing file
    return _load_screener_version(path, stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=8)
def _load_screener_version(path: Path, mtime_ns: int, size: int) -> Screener:
    return Screener.load(path)


def _key(loc: tuple[int | str, ...]) -> str:
    key = ""
    for part in loc:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    return key
