"""Exports of the study record for the study's own systems (`trialbot export`).

- csv: one file per dataset plus `data_dictionary.csv`, describing every column: its type, the
  values a categorical column takes, and for every date and time whether it is UTC or the
  participant's local time (and which column holds their zone).
- redcap: `redcap_data_dictionary.csv` to build the project from (Project Setup > Data
  Dictionary), `redcap_import.csv` for the Data Import Tool, and
  `redcap_repeating_instruments.csv` naming the repeating instruments (enable them in Project
  Setup > "Repeating instruments and events", or import the file with the API's "Import
  Repeating Instruments and Events"). One record per participant (`record_id` = study id); every
  other instrument repeats (`redcap_repeat_instrument`, `redcap_repeat_instance`). Categorical
  fields are coded (`1, Applied | 2, Missed ...`: radio or dropdown, checkboxes for lists of red
  flags), scores are integers 0-10, dates `date_ymd`, instants `datetime_seconds_ymd`, and each
  instrument's `<form>_complete` is 2 (Complete): the record is what the bot recorded.

`DATASETS` is the one table of what is exported: each dataset's columns (its CSV file's columns
and its REDCap instrument's fields, in one list), and `choice_lists` the one source of every
categorical column's values (the study's own tuples and enums, and the protocol's lists), coded
1, 2, ... in REDCap in that order; a value found in the data and not in its list (a reason the
protocol no longer offers) is coded after them.

Telegram ids (`CONTACT_FIELDS`) are left out unless asked for (`include_contact`): the columns are
not written, and in the audit trail's old and new values they read "[masked]". Every export is
itself recorded in the audit trail: who, what, when, how many rows.

Diary entries and check-ins are exported as corrected (study/corrections.py): the corrected value
in its column, and `corrected`, `original_value` (the corrected fields as recorded), and the
latest correction's reason, author and time beside it; `corrections` lists every correction. A
"missing" record a participant's own entry stands for says so in `superseded_by`. The records as
recorded stay in the database and in the audit trail.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, get_args
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from study import (
    alerts,
    audit,
    checkins,
    conversation,
    corrections,
    participants,
    pregnancy_tests,
    visits,
)
from study.audit import Actor
from study.database import Database
from study.models import (
    Alert,
    AuditEntry,
    ContraceptionAnswer,
    CorrectedEntity,
    CorrectedField,
    Correction,
    DiaryKind,
    DiarySource,
    IncompleteCheckin,
    JSONObject,
    MessageKind,
    OutboxMessage,
    Participant,
    ParticipantMessage,
    PregnancyTest,
    SentMessage,
    StaffMember,
    TreatmentChange,
    TreatmentReason,
    TreatmentState,
    Visit,
)
from study.protocol import PregnancyTestSection, Protocol

FORMATS = ("csv", "redcap")
# Contact data: written only with `include_contact`, in every table (a column of this name is left
# out, and a value under this key in the audit trail's old and new values is masked).
CONTACT_FIELDS = ("telegram_user_id", "telegram_chat_id")
MASKED = "[masked]"


# -- Choice lists ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Choices:
    """The values of a categorical column, in the order of their source; REDCap codes them 1, 2, ..."""

    values: tuple[str, ...]
    labels: Mapping[str, str] = field(default_factory=dict)

    def label(self, value: str) -> str:
        return self.labels.get(value) or value.replace("_", " ").capitalize()

    def code(self, value: str) -> str:
        return str(self.values.index(value) + 1)

    def value(self, code: str) -> str:
        return self.values[int(code) - 1]

    def including(self, seen: Iterable[str]) -> Choices:
        """With any value found in the data and missing from the source, after the source's own."""
        extra = tuple(dict.fromkeys(v for v in seen if v not in self.values))
        return replace(self, values=self.values + extra) if extra else self

    def redcap(self) -> str:
        return " | ".join(f"{self.code(v)}, {self.label(v).replace('|', '/')}" for v in self.values)


def _of(enum: type[StrEnum]) -> tuple[str, ...]:
    return tuple(member.value for member in enum)


def choice_lists(protocol: Protocol) -> dict[str, Choices]:
    """Every categorical column's values, each from the one place that defines them."""
    flags = protocol.screener.flags
    return {
        "participant_status": Choices(participants.STATUSES),
        "language": Choices(tuple(protocol.study.languages), {code: code for code in protocol.study.languages}),
        "treatment_state": Choices(_of(TreatmentState)),
        "treatment_reason": Choices(_of(TreatmentReason)),
        "diary_kind": Choices(corrections.DIARY_KINDS),
        "diary_source": Choices(_of(DiarySource)),
        "missed_reason": Choices(tuple(protocol.diary.missed_reasons)),
        "checkin_kind": Choices(checkins.KINDS, {"scores": "Scores only"}),
        "checkin_source": Choices(checkins.SOURCES),
        "checkin_step": Choices(checkins.FULL_STEPS),
        "checkin_ending": Choices(checkins.ENDINGS),
        "reaction": Choices(checkins.REACTIONS),
        "severity": Choices(checkins.SEVERITIES),
        "medicines": Choices(checkins.MEDICINES, {"no": "No change", "medicines": "Medicines changed",
                                                  "other_cream": "Another cream used", "both": "Both"}),
        "red_flag": Choices(tuple(flags), {code: flag.label for code, flag in flags.items()}),
        "alert_source": Choices(alerts.SOURCES, {"checkin": "Check-in", "urgent": "/urgent"}),
        "alert_status": Choices(alerts.STATUSES),
        "message_direction": Choices(conversation.DIRECTIONS, {"in": "From the participant",
                                                               "out": "Reply from the study team"}),
        "message_kind": Choices(_of(MessageKind)),
        "visit_status": Choices(visits.STATUSES),
        "test_result": Choices(pregnancy_tests.RESULTS),
        "test_source": Choices(pregnancy_tests.SOURCES),
        "test_place": Choices(get_args(PregnancyTestSection.model_fields["where"].annotation),
                              {"home": "At home", "site": "At the study site (clinic)"}),
        "corrected_entity": Choices(_of(CorrectedEntity), {"checkin": "Check-in"}),
        "corrected_field": Choices(_of(CorrectedField)),
    }


# -- The table of what is exported ----------------------------------------------------------------


@dataclass(frozen=True)
class ColumnType:
    """How a kind of column is written and what it is in REDCap (field type, text validation)."""

    redcap_type: str
    validation: str = ""


TYPES = {
    "text": ColumnType("text"),
    "words": ColumnType("notes"),  # free text, possibly long (what a participant or staff member wrote)
    "json": ColumnType("notes"),
    "integer": ColumnType("text", "integer"),
    "boolean": ColumnType("yesno"),
    "date": ColumnType("text", "date_ymd"),
    "datetime": ColumnType("text", "datetime_seconds_ymd"),
    "time": ColumnType("text", "time"),
    "choice": ColumnType("radio"),  # one of a choice list (a dropdown when the list is long)
    "choices": ColumnType("checkbox"),  # several of a choice list
}
RADIO_AT_MOST = 6  # longer choice lists are dropdowns
ZONED = ("date", "datetime", "time")


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # a key of TYPES
    description: str
    # Dates and times: "UTC", or the column of the same dataset holding the participant's zone
    # that the value is local to.
    zone: str | None = None
    choices: str | None = None  # choice and choices columns: a key of choice_lists()
    min: int | None = None
    max: int | None = None

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise ValueError(f"{self.name}: unknown column type {self.type!r}")
        if (self.type in ZONED) != (self.zone is not None):
            raise ValueError(f"{self.name}: a date or time says its zone, nothing else has one")
        if (self.type in ("choice", "choices")) != (self.choices is not None):
            raise ValueError(f"{self.name}: a categorical column names its choice list, nothing else does")


@dataclass(frozen=True)
class Instrument:
    """A dataset's REDCap instrument: its form name, the prefix of its field names, and whether it
    repeats (every one but the participant's). `label` is its custom label in REDCap's list of
    instances (piped fields)."""

    form: str
    prefix: str
    repeating: bool = True
    label: str = ""

    def field(self, column: str) -> str:
        if column == "study_id":
            return "record_id"
        return f"{self.prefix}_{column}" if self.prefix else column


@dataclass(frozen=True)
class Spec:
    name: str
    description: str
    columns: tuple[Column, ...]
    instrument: Instrument | None = None  # None: in the CSV export only


def _c(name: str, type_: str, description: str, **more: Any) -> Column:
    return Column(name, type_, description, **more)


STUDY_ID = _c("study_id", "text", "Participant study id")
UTC_ = "UTC"
LOCAL = "timezone"  # the participant's zone, in the dataset's own `timezone` column
TIMEZONE = _c("timezone", "text", "The participant's IANA time zone then (their local dates and times are in it)")
CORRECTION_COLUMNS = (
    _c("corrected", "boolean", "Corrected by the study team: this row shows the corrected values "
                               "(every correction: corrections)"),
    _c("original_value", "json", "The corrected fields as originally recorded, e.g. {\"occurred_at\": ...}"),
    _c("correction_reason", "text", "Why it was corrected (the latest correction)"),
    _c("corrected_by", "text", "Who corrected it (the latest correction)"),
    _c("corrected_at", "datetime", "When it was last corrected", zone=UTC_),
)
DIARY_COLUMNS = (
    _c("entry_id", "integer", "Diary entry id"), STUDY_ID,
    _c("local_date", "date", "The participant's local day it belongs to", zone=LOCAL),
    _c("occurred_at", "datetime", "When the participant says it happened", zone=UTC_),
    _c("recorded_at", "datetime", "When it was recorded", zone=UTC_),
    TIMEZONE,
    _c("source", "choice", "How it was recorded", choices="diary_source"),
    _c("late", "boolean", "Recorded more than the allowed hours after it happened (a missed dose: after its day "
                          "ended)"),
    _c("withdrawn", "boolean", "Taken back: by the participant with /undo, or by the study team as not having "
                               "happened (then corrected = 1)"),
    _c("recorded_by", "text", "Who recorded it (participant:<study id>, or system)"),
)
SCORE = {"min": 0, "max": 10}

DATASETS: tuple[Spec, ...] = (
    Spec("participants", "One row per participant", (
        STUDY_ID,
        _c("status", "choice", "Status in the study", choices="participant_status"),
        _c("timezone", "text", "IANA time zone now"),
        _c("language", "choice", "Language of messages", choices="language"),
        _c("wocbp", "boolean", "Woman of child-bearing potential (1 = yes)"),
        _c("reminder_times", "text", "Local reminder times, comma-separated HH:MM"),
        _c("enrolled_at", "datetime", "Enrolment", zone=UTC_),
        _c("consented_at", "datetime", "Consent in the bot", zone=UTC_),
        _c("active_since", "datetime", "Since when the bot may write", zone=UTC_),
        _c("unreachable_since", "datetime", "Telegram said they blocked the bot; empty = reachable", zone=UTC_),
        _c("treatment", "choice", "Treatment course now (its history: treatment_changes)", choices="treatment_state"),
        _c("treatment_reason", "choice", "Why the treatment course last changed", choices="treatment_reason"),
        _c("treatment_since", "datetime", "Since when the treatment course is in this state", zone=UTC_),
        _c("telegram_user_id", "integer", "Telegram user id (contact data: only with --include-contact)"),
        _c("telegram_chat_id", "integer", "Telegram chat id (contact data: only with --include-contact)"),
    ), Instrument("participant", "", repeating=False)),
    Spec("applications", "Applications of the study cream (diary entries of kind applied, as corrected)",
         (*DIARY_COLUMNS, *CORRECTION_COLUMNS), Instrument("application", "app", label="[app_local_date]")),
    Spec("missed_doses", "Doses said missed, or not recorded when the slot closed (as corrected)", (
        *DIARY_COLUMNS, *CORRECTION_COLUMNS,
        _c("kind", "choice", "missed (said by the participant) or missing (nothing recorded)", choices="diary_kind"),
        _c("missed_reason", "choice", "Reason given for a missed dose", choices="missed_reason"),
        _c("superseded_by", "integer", "For a missing record: the participant's own entry (entry_id) that later "
                                       "recorded this dose; the slot counts as that entry says"),
    ), Instrument("missed_dose", "md", label="[md_local_date]")),
    Spec("checkins", "Symptom check-ins (answers as corrected)", (
        _c("checkin_id", "integer", "Check-in id"), STUDY_ID,
        _c("kind", "choice", "full, or scores only", choices="checkin_kind"),
        _c("local_date", "date", "Participant's local day", zone=LOCAL),
        _c("started_at", "datetime", "Started", zone=UTC_),
        _c("submitted_at", "datetime", "Saved by the participant (the check-in's submission time)", zone=UTC_),
        TIMEZONE,
        _c("source", "choice", "Asked for (command) or the protocol's scheduled check-in", choices="checkin_source"),
        _c("itch", "integer", "Worst itch, last 24 h, 0-10 (NRS)", **SCORE),
        _c("pain", "integer", "Worst skin pain, last 24 h, 0-10 (NRS)", **SCORE),
        _c("reaction", "choice", "Reaction where the cream goes", choices="reaction"),
        _c("reaction_severity", "choice", "How bad the reaction is", choices="severity"),
        _c("new_problem", "words", "New health problem, participant's words"),
        _c("medicines", "choice", "Medicines or other creams changed", choices="medicines"),
        _c("medicines_change", "words", "What changed in medicines or creams, participant's words"),
        _c("red_flags", "choices", "Red flags reported", choices="red_flag"),
        *CORRECTION_COLUMNS,
    ), Instrument("checkin", "ci", label="[ci_local_date]")),
    Spec("incomplete_checkins", "Check-ins started and never saved", (
        _c("incomplete_id", "integer", "Record id"), STUDY_ID,
        _c("kind", "choice", "full, or scores only", choices="checkin_kind"),
        _c("local_date", "date", "Participant's local day it was started", zone=LOCAL),
        _c("started_at", "datetime", "Started", zone=UTC_),
        _c("ended_at", "datetime", "Expired or restarted", zone=UTC_),
        TIMEZONE,
        _c("source", "choice", "Asked for (command) or the protocol's scheduled check-in", choices="checkin_source"),
        _c("reason", "choice", "Why it ended unsaved", choices="checkin_ending"),
        _c("step", "choice", "The question it stopped at", choices="checkin_step"),
        _c("answers", "json", "The answers given so far (never confirmed by the participant)"),
    ), Instrument("incomplete_checkin", "ic", label="[ic_local_date]")),
    Spec("reactions", "Reactions where the cream goes, from check-ins (as corrected)", (
        _c("checkin_id", "integer", "Check-in id"), STUDY_ID,
        _c("local_date", "date", "Participant's local day", zone=LOCAL), TIMEZONE,
        _c("reaction", "choice", "Reaction", choices="reaction"),
        _c("severity", "choice", "Severity", choices="severity"),
        _c("corrected", "boolean", "The check-in was corrected by the study team (see checkins)"),
    )),  # REDCap: the check-in instrument's reaction fields
    Spec("alerts", "Safety alerts and their acknowledgements", (
        _c("alert_id", "integer", "Alert id"), STUDY_ID,
        _c("source", "choice", "What raised it", choices="alert_source"),
        _c("triggers", "json", "What was reported (red flags, scores, the words of a message)"),
        _c("red_flags", "choices", "Red flags among the triggers", choices="red_flag"),
        _c("reported_at", "datetime", "Reported", zone=UTC_),
        _c("status", "choice", "Open, or acknowledged by the study team", choices="alert_status"),
        _c("acknowledged_by", "text", "Staff member who acknowledged it"),
        _c("acknowledged_at", "datetime", "Acknowledged", zone=UTC_),
        _c("checkin_id", "integer", "The check-in that raised it, if one did"),
        _c("message_id", "integer", "The participant's message that raised it, if one did (participant_messages)"),
    ), Instrument("safety_alert", "al", label="[al_reported_at]")),
    Spec("participant_messages", "What participants told the study team, and the replies", (
        _c("message_id", "integer", "Record id"), STUDY_ID,
        _c("direction", "choice", "From the participant, or a reply from the study team", choices="message_direction"),
        _c("kind", "choice", "Words, or media with a caption", choices="message_kind"),
        _c("at", "datetime", "When", zone=UTC_), TIMEZONE,
        _c("context", "text", "free | mid_checkin:<question> | answer:<question> | reply"),
        _c("text", "words", "The words (a caption for media), control characters removed"),
        _c("original_length", "integer", "Length as received, before control characters were removed"),
        _c("flags", "choices", "Red flags the screening found", choices="red_flag"),
        _c("negated", "choices", "Red flags mentioned as absent (no alert)", choices="red_flag"),
        _c("staff", "text", "Staff member who replied (a reply)"),
    ), Instrument("participant_message", "msg", label="[msg_at]")),
    Spec("messages_sent", "Every message the bot sent (template and version, not the text)", (
        _c("sent_id", "integer", "Record id"), _c("sent_at", "datetime", "Sent", zone=UTC_),
        _c("template_id", "text", "Catalog template"), _c("template_hash", "text", "SHA-256 of the text sent"),
        _c("language", "text", "Language"), _c("recipient", "text", "participant | staff | stranger"),
        _c("study_id", "text", "Participant study id, if to a participant"),
        _c("staff_id", "integer", "Staff id, if to staff"), _c("via", "text", "reply | edit | alert | outbox"),
    )),
    Spec("visits", "Study visits", (
        _c("visit_id", "integer", "Visit id"), STUDY_ID,
        _c("name", "text", "Visit name"), _c("label", "text", "Visit label"),
        _c("timezone", "text", "The participant's IANA time zone now (the visit's date and time are in it)"),
        _c("scheduled_date", "date", "Date", zone=LOCAL),
        _c("scheduled_time", "time", "Time, HH:MM", zone=LOCAL),
        _c("target_date", "date", "Protocol target date (none for an extra visit)", zone=LOCAL),
        _c("window_days", "integer", "Allowed window, ± days", min=0),
        _c("window_start", "date", "First day of the protocol's window", zone=LOCAL),
        _c("window_end", "date", "Last day of the protocol's window", zone=LOCAL),
        _c("in_window", "boolean", "The date is inside the protocol's window (empty for an extra visit)"),
        _c("status", "choice", "Status", choices="visit_status"),
        _c("revision", "integer", "Times moved + 1", min=1),
        _c("changed_at", "datetime", "Created, moved or its status last changed", zone=UTC_),
    ), Instrument("visit", "vis", label="[vis_name]")),
    Spec("pregnancy_tests", "Pregnancy-test results", (
        _c("test_id", "integer", "Record id"), STUDY_ID,
        _c("result", "choice", "Result", choices="test_result"),
        _c("local_date", "date", "Participant's local day of the answer", zone=LOCAL),
        _c("recorded_at", "datetime", "Recorded", zone=UTC_), TIMEZONE,
        _c("source", "choice", "Answered on a reminder, or recorded by the study team", choices="test_source"),
        _c("place", "choice", "Where the reminder answered asked for the test (home, or the study site); empty when "
                              "not answered on a reminder", choices="test_place"),
        _c("recorded_by", "text", "Who recorded it"),
    ), Instrument("pregnancy_test", "pt", label="[pt_local_date]")),
    Spec("contraception", "Answers to the protocol's contraception question (asked with a negative test)", (
        _c("answer_id", "integer", "Record id"), STUDY_ID,
        _c("uses", "boolean", "Uses the contraception the protocol requires (1 = yes)"),
        _c("due_date", "date", "The test's due day it was asked with", zone=LOCAL),
        _c("local_date", "date", "Participant's local day of the answer", zone=LOCAL),
        _c("recorded_at", "datetime", "Recorded", zone=UTC_), TIMEZONE,
        _c("recorded_by", "text", "Who recorded it"),
    ), Instrument("contraception", "cc", label="[cc_local_date]")),
    Spec("treatment_changes", "Every change of a participant's treatment course (the cream): to what, why, who, when", (
        _c("change_id", "integer", "Record id"), STUDY_ID,
        _c("state", "choice", "The course's new state", choices="treatment_state"),
        _c("previous", "choice", "The state before", choices="treatment_state"),
        _c("reason", "choice", "Why", choices="treatment_reason"),
        _c("reason_text", "words", "In the words of whoever changed it"),
        _c("changed_by", "text", "Who changed it"),
        _c("changed_at", "datetime", "When", zone=UTC_),
        _c("local_date", "date", "Participant's local day", zone=LOCAL), TIMEZONE,
    ), Instrument("treatment_change", "tc", label="[tc_changed_at]")),
    Spec("corrections", "Every correction by the study team (the newest of a field is what it says now)", (
        _c("correction_id", "integer", "Record id"), STUDY_ID,
        _c("entity", "choice", "Which kind of record was corrected", choices="corrected_entity"),
        _c("record_id", "integer", "Which record (entry_id, or checkin_id)"),
        _c("field", "choice", "The column corrected", choices="corrected_field"),
        _c("old_value", "json", "The value before this correction"),
        _c("new_value", "json", "The value after it"), _c("reason", "text", "Why"),
        _c("corrected_by", "text", "Who"), _c("corrected_at", "datetime", "When", zone=UTC_), TIMEZONE,
        _c("corrected_at_local", "datetime", "When, in the participant's zone", zone=LOCAL),
    ), Instrument("correction", "corr", label="[corr_field]")),
    Spec("audit_trail", "The audit trail, hash-chained", (
        _c("seq", "integer", "Position in the chain"), _c("occurred_at", "datetime", "When", zone=UTC_),
        _c("actor", "text", "Who"), _c("action", "text", "What"), _c("entity", "text", "Which kind of record"),
        _c("entity_id", "text", "Which record"),
        _c("old_values", "json", f"Before (contact data reads {MASKED} unless exported with --include-contact; "
                                 "the entry's hash is over the values as recorded)"),
        _c("new_values", "json", f"After (contact data reads {MASKED} unless exported with --include-contact)"),
        _c("reason", "text", "Why"), _c("timezone", "text", "The participant's zone, for entries about a participant"),
        _c("prev_hash", "text", "Hash of the previous entry"), _c("hash", "text", "SHA-256 of this entry"),
    )),
)
SPECS = {spec.name: spec for spec in DATASETS}


@dataclass
class Dataset:
    name: str
    description: str
    columns: list[Column]
    rows: list[dict[str, Any]]
    instrument: Instrument | None = None


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    return str(value)


def zone_note(column: Column, place: Callable[[str], str] = "column {}".format) -> str:
    """What a date or time is local to, in words (`place` names the column holding the zone)."""
    if column.zone is None:
        return ""
    if column.zone == UTC_:
        return "UTC"
    kind = "local day" if column.type == "date" else "local time"
    return f"participant's {kind} (zone in {place(column.zone)})"


def masked(value: Any) -> Any:
    """`value` with every contact field's value replaced by MASKED, at any depth."""
    if isinstance(value, dict):
        return {k: MASKED if k in CONTACT_FIELDS and v is not None else masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v) for v in value]
    return value


# -- Reading the record ---------------------------------------------------------------------------


@dataclass
class _Reading:
    session: AsyncSession
    people: dict[int, Participant]
    staff: dict[int, StaffMember]
    include_contact: bool
    _entries: list[corrections.EntryView] | None = None
    _checkins: list[corrections.CheckinView] | None = None

    def sid(self, participant_id: int | None) -> str | None:
        person = self.people.get(participant_id) if participant_id is not None else None
        return person.study_id if person is not None else None

    def who(self, actor: str) -> str:
        """An actor, with the staff member's name when it is one (as alerts name who acknowledged)."""
        kind, _, ident = actor.partition(":")
        member = self.staff.get(int(ident)) if kind == "staff" and ident.isdigit() else None
        return f"{member.name} ({actor})" if member is not None else actor

    def name(self, staff_id: int | None) -> str | None:
        member = self.staff.get(staff_id) if staff_id is not None else None
        return member.name if member is not None else None

    def corrected(self, view: corrections.EntryView | corrections.CheckinView) -> dict[str, Any]:
        last = view.last_correction
        return {"corrected": view.corrected, "original_value": view.original() or None,
                "correction_reason": last.reason if last else None,
                "corrected_by": self.who(last.corrected_by) if last else None,
                "corrected_at": last.corrected_at if last else None}

    async def all(self, model: Any, order: Any) -> list[Any]:
        return list((await self.session.scalars(select(model).order_by(order))).all())

    async def entry_views(self) -> list[corrections.EntryView]:
        if self._entries is None:
            self._entries = await corrections.entry_views(self.session)
        return self._entries

    async def checkin_views(self) -> list[corrections.CheckinView]:
        if self._checkins is None:
            self._checkins = sorted(await corrections.checkin_views(self.session), key=lambda v: v.id)
        return self._checkins


Rows = list[dict[str, Any]]


async def _participants(r: _Reading) -> Rows:
    return [{c.name: getattr(p, c.name) for c in SPECS["participants"].columns} for p in r.people.values()]


def _diary_row(r: _Reading, v: corrections.EntryView) -> dict[str, Any]:
    e = v.entry
    return {"entry_id": e.id, "study_id": r.sid(e.participant_id), "local_date": v.local_date,
            "occurred_at": v.occurred_at, "recorded_at": e.recorded_at, "timezone": e.timezone,
            "source": e.source, "late": e.late, "withdrawn": v.withdrawn, "recorded_by": e.recorded_by,
            "kind": v.kind, "missed_reason": v.missed_reason, "superseded_by": v.superseded_by, **r.corrected(v)}


async def _applications(r: _Reading) -> Rows:
    return [_diary_row(r, v) for v in await r.entry_views() if v.kind == DiaryKind.APPLIED]


async def _missed_doses(r: _Reading) -> Rows:
    return [_diary_row(r, v) for v in await r.entry_views() if v.kind in (DiaryKind.MISSED, DiaryKind.MISSING)]


async def _checkins(r: _Reading) -> Rows:
    return [{"checkin_id": v.id, "study_id": r.sid(v.checkin.participant_id), "kind": v.checkin.kind,
             "local_date": v.checkin.local_date, "started_at": v.checkin.started_at,
             "submitted_at": v.checkin.submitted_at, "timezone": v.checkin.timezone, "source": v.checkin.source,
             **{name: v[name] for name in corrections.CHECKIN_COLUMNS}, "red_flags": v.checkin.red_flags,
             **r.corrected(v)} for v in await r.checkin_views()]


async def _incomplete_checkins(r: _Reading) -> Rows:
    return [{"incomplete_id": c.id, "study_id": r.sid(c.participant_id), "kind": c.kind, "local_date": c.local_date,
             "started_at": c.started_at, "ended_at": c.ended_at, "timezone": c.timezone, "source": c.source,
             "reason": c.reason, "step": c.step, "answers": c.answers}
            for c in await r.all(IncompleteCheckin, IncompleteCheckin.id)]


async def _reactions(r: _Reading) -> Rows:
    return [{"checkin_id": v.id, "study_id": r.sid(v.checkin.participant_id), "local_date": v.checkin.local_date,
             "timezone": v.checkin.timezone, "reaction": v["reaction"], "severity": v["reaction_severity"],
             "corrected": v.corrected}
            for v in await r.checkin_views() if v["reaction"] and v["reaction"] != "none"]


def _red_flags(triggers: list[JSONObject] | None) -> list[str]:
    """The red-flag codes among an alert's triggers: a check-in's or /urgent's, or a message's screening."""
    found: list[str] = []
    for trigger in triggers or []:
        found += [trigger["red_flag"]] if trigger.get("red_flag") else list(trigger.get("flags") or [])
    return list(dict.fromkeys(found))


async def _alerts(r: _Reading) -> Rows:
    return [{"alert_id": a.id, "study_id": r.sid(a.participant_id), "source": a.source, "triggers": a.triggers,
             "red_flags": _red_flags(a.triggers), "reported_at": a.reported_at, "status": a.status,
             "acknowledged_by": r.name(a.acknowledged_by), "acknowledged_at": a.acknowledged_at,
             "checkin_id": a.checkin_id, "message_id": a.message_id} for a in await r.all(Alert, Alert.id)]


async def _participant_messages(r: _Reading) -> Rows:
    return [{"message_id": m.id, "study_id": r.sid(m.participant_id), "direction": m.direction, "kind": m.kind,
             "at": m.at, "timezone": m.timezone, "context": m.context, "text": m.text,
             "original_length": m.original_length, "flags": (m.screening or {}).get("flags"),
             "negated": (m.screening or {}).get("negated"), "staff": r.name(m.staff_id)}
            for m in await r.all(ParticipantMessage, ParticipantMessage.id)]


async def _messages_sent(r: _Reading) -> Rows:
    return [{"sent_id": m.id, "sent_at": m.sent_at, "template_id": m.template_id, "template_hash": m.template_hash,
             "language": m.language, "recipient": m.recipient, "study_id": r.sid(m.participant_id),
             "staff_id": m.staff_id, "via": m.via} for m in await r.all(SentMessage, SentMessage.id)]


def _window(v: Visit) -> dict[str, Any]:
    if v.target_date is None or v.window_days is None:
        return {"window_start": None, "window_end": None, "in_window": None}
    start, end = v.target_date - timedelta(days=v.window_days), v.target_date + timedelta(days=v.window_days)
    return {"window_start": start, "window_end": end, "in_window": start <= v.scheduled_date <= end}


async def _visits(r: _Reading) -> Rows:
    return [{"visit_id": v.id, "study_id": r.sid(v.participant_id), "name": v.name, "label": v.label,
             "timezone": r.people[v.participant_id].timezone, "scheduled_date": v.scheduled_date,
             "scheduled_time": v.scheduled_time.strftime("%H:%M") if v.scheduled_time else None,
             "target_date": v.target_date, "window_days": v.window_days, **_window(v), "status": v.status,
             "revision": v.revision, "changed_at": v.changed_at} for v in await r.all(Visit, Visit.id)]


async def _pregnancy_tests(r: _Reading) -> Rows:
    tests = await r.all(PregnancyTest, PregnancyTest.id)
    # A test answered on a reminder: the reminder (keyed as the answer is) said where to test.
    keys = [t.idempotency_key for t in tests if t.idempotency_key]
    asked = {m.dedup_key: (m.variables or {}).get("where") for m in (await r.session.scalars(
        select(OutboxMessage).where(OutboxMessage.dedup_key.in_(keys)))).all()} if keys else {}
    return [{"test_id": t.id, "study_id": r.sid(t.participant_id), "result": t.result, "local_date": t.local_date,
             "recorded_at": t.recorded_at, "timezone": t.timezone, "source": t.source,
             "place": asked.get(t.idempotency_key or ""), "recorded_by": r.who(t.recorded_by)} for t in tests]


async def _contraception(r: _Reading) -> Rows:
    return [{"answer_id": a.id, "study_id": r.sid(a.participant_id), "uses": a.uses, "due_date": a.due_date,
             "local_date": a.local_date, "recorded_at": a.recorded_at, "timezone": a.timezone,
             "recorded_by": r.who(a.recorded_by)} for a in await r.all(ContraceptionAnswer, ContraceptionAnswer.id)]


async def _treatment_changes(r: _Reading) -> Rows:
    return [{"change_id": c.id, "study_id": r.sid(c.participant_id), "state": c.state, "previous": c.previous,
             "reason": c.reason, "reason_text": c.reason_text, "changed_by": r.who(c.changed_by),
             "changed_at": c.changed_at, "local_date": c.local_date, "timezone": c.timezone}
            for c in await r.all(TreatmentChange, TreatmentChange.id)]


async def _corrections(r: _Reading) -> Rows:
    return [{"correction_id": c.id, "study_id": r.sid(c.participant_id), "entity": c.entity,
             "record_id": c.diary_entry_id if c.diary_entry_id is not None else c.checkin_id, "field": c.field,
             "old_value": json.dumps(c.old_value, ensure_ascii=False),
             "new_value": json.dumps(c.new_value, ensure_ascii=False), "reason": c.reason,
             "corrected_by": r.who(c.corrected_by), "corrected_at": c.corrected_at, "timezone": c.timezone,
             "corrected_at_local": c.corrected_at.astimezone(ZoneInfo(c.timezone))}
            for c in await r.all(Correction, Correction.id)]


async def _audit_trail(r: _Reading) -> Rows:
    hide: Callable[[Any], Any] = (lambda v: v) if r.include_contact else masked
    return [{**{c.name: getattr(e, c.name) for c in SPECS["audit_trail"].columns},
             "old_values": hide(e.old_values), "new_values": hide(e.new_values)}
            for e in await r.all(AuditEntry, AuditEntry.seq)]


READERS: dict[str, Callable[[_Reading], Awaitable[Rows]]] = {
    "participants": _participants, "applications": _applications, "missed_doses": _missed_doses,
    "checkins": _checkins, "incomplete_checkins": _incomplete_checkins, "reactions": _reactions, "alerts": _alerts,
    "participant_messages": _participant_messages, "messages_sent": _messages_sent, "visits": _visits,
    "pregnancy_tests": _pregnancy_tests, "contraception": _contraception, "treatment_changes": _treatment_changes,
    "corrections": _corrections, "audit_trail": _audit_trail,
}


async def collect(session: AsyncSession, *, include_contact: bool = False,
                  tick: Callable[[int], None] | None = None) -> list[Dataset]:
    tick = tick or (lambda n: None)
    people = {p.id: p for p in (await session.scalars(select(Participant).order_by(Participant.study_id))).all()}
    staff = {m.id: m for m in (await session.scalars(select(StaffMember))).all()}
    reading = _Reading(session, people, staff, include_contact)
    out = []
    for spec in DATASETS:
        columns = [c for c in spec.columns if include_contact or c.name not in CONTACT_FIELDS]
        rows = await READERS[spec.name](reading)
        out.append(Dataset(spec.name, spec.description, columns,
                           [{c.name: row.get(c.name) for c in columns} for row in rows], spec.instrument))
        tick(len(rows))
    return out


def resolved_choices(protocol: Protocol, datasets: list[Dataset]) -> dict[str, Choices]:
    """The choice lists, each with any value the data holds that its source does not (after them)."""
    seen: dict[str, list[str]] = {}
    for ds in datasets:
        for c in ds.columns:
            if c.choices is not None:
                for row in ds.rows:
                    value = row.get(c.name)
                    seen.setdefault(c.choices, []).extend(value if isinstance(value, list) else
                                                          [] if value is None else [value])
    return {name: choices.including(seen.get(name, ())) for name, choices in choice_lists(protocol).items()}


def _values(column: Column, choices: Mapping[str, Choices]) -> str:
    """What a column may hold, for the CSV dictionary."""
    if column.choices is not None:
        return " | ".join(choices[column.choices].values) + (" (a list)" if column.type == "choices" else "")
    if column.min is not None or column.max is not None:
        return f"{'' if column.min is None else column.min} to {'' if column.max is None else column.max}"
    return ""


def write_csv(out: Path, datasets: list[Dataset], choices: Mapping[str, Choices]) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for ds in datasets:
        path = out / f"{ds.name}.csv"
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow([c.name for c in ds.columns])
            for row in ds.rows:
                writer.writerow([cell(row.get(c.name)) for c in ds.columns])
        written.append(path)
    path = out / "data_dictionary.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "column", "type", "description", "zone", "values", "dataset_description"])
        for ds in datasets:
            for c in ds.columns:
                writer.writerow([f"{ds.name}.csv", c.name, c.type, c.description, zone_note(c),
                                 _values(c, choices), ds.description])
    written.append(path)
    return written


# -- REDCap ---------------------------------------------------------------------------------------

REDCAP_DICTIONARY_HEADER = [
    "Variable / Field Name", "Form Name", "Section Header", "Field Type", "Field Label",
    "Choices, Calculations, OR Slider Labels", "Field Note", "Text Validation Type OR Show Slider Number",
    "Text Validation Min", "Text Validation Max", "Identifier?", "Branching Logic (Show field only if...)",
    "Required Field?", "Custom Alignment", "Question Number (surveys only)", "Matrix Group Name", "Matrix Ranking?",
    "Field Annotation",
]
COMPLETE = "2"  # <form>_complete: 0 Incomplete, 1 Unverified, 2 Complete
REPEAT_COLUMNS = ["redcap_repeat_instrument", "redcap_repeat_instance"]


def _redcap_datetime(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S")  # REDCap: Y-M-D H:M:S, no zone (the field note says which)


_REDCAP_VALUE: dict[str, Callable[[Any], str]] = {"datetime": _redcap_datetime}


@dataclass(frozen=True)
class _Field:
    """One column as a REDCap field."""

    instrument: Instrument
    column: Column
    choices: Choices | None

    @property
    def name(self) -> str:
        return self.instrument.field(self.column.name)

    @property
    def type(self) -> ColumnType:
        return TYPES[self.column.type]

    def field_type(self) -> str:
        if self.type.redcap_type == "radio" and self.choices and len(self.choices.values) > RADIO_AT_MOST:
            return "dropdown"
        return self.type.redcap_type

    def data_columns(self) -> list[str]:
        """Its columns in the import file: a checkbox has one per choice, `<field>___<code>`."""
        if self.column.type == "choices" and self.choices is not None:
            return [f"{self.name}___{self.choices.code(v)}" for v in self.choices.values]
        return [self.name]

    def note(self) -> str:
        return zone_note(self.column, lambda zone: f"field {self.instrument.field(zone)}")

    def dictionary_row(self) -> list[str]:
        c = self.column
        row = {"Variable / Field Name": self.name, "Form Name": self.instrument.form, "Field Type": self.field_type(),
               "Field Label": c.description, "Field Note": self.note(),
               "Choices, Calculations, OR Slider Labels": self.choices.redcap() if self.choices else "",
               "Text Validation Type OR Show Slider Number": self.type.validation,
               "Text Validation Min": "" if c.min is None else str(c.min),
               "Text Validation Max": "" if c.max is None else str(c.max),
               "Identifier?": "y" if c.name in CONTACT_FIELDS else ""}
        return [row.get(header, "") for header in REDCAP_DICTIONARY_HEADER]

    def values(self, value: Any) -> dict[str, str]:
        if self.choices is not None and self.column.type == "choices":
            chosen = set(value or [])
            return {f"{self.name}___{self.choices.code(v)}": "1" if v in chosen else "0" for v in self.choices.values}
        if value is None:
            return {self.name: ""}
        if self.choices is not None:
            return {self.name: self.choices.code(value)}
        return {self.name: _REDCAP_VALUE.get(self.column.type, cell)(value)}


def redcap_fields(datasets: list[Dataset],
                  choices: Mapping[str, Choices]) -> list[tuple[Instrument, Dataset, list[_Field]]]:
    """Each instrument with its dataset and fields, the participant's first (its study id is
    `record_id`, the project's first field); a repeating instrument's rows name their record in
    `record_id`."""
    return [(ds.instrument, ds, [_Field(ds.instrument, c, choices[c.choices] if c.choices else None)
                                 for c in ds.columns if not (ds.instrument.repeating and c.name == "study_id")])
            for ds in datasets if ds.instrument is not None]


def write_redcap(out: Path, datasets: list[Dataset], choices: Mapping[str, Choices]) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    instruments = redcap_fields(datasets, choices)
    dictionary = out / "redcap_data_dictionary.csv"
    with dictionary.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(REDCAP_DICTIONARY_HEADER)
        for _, _, fields in instruments:
            writer.writerows(f.dictionary_row() for f in fields)

    columns = ["record_id", *REPEAT_COLUMNS]
    for_record: dict[str, list[dict[str, str]]] = {}
    for instrument, ds, fields in instruments:
        columns += [name for f in fields for name in f.data_columns() if name != "record_id"]
        columns.append(f"{instrument.form}_complete")
        instances: dict[str, int] = {}
        for source in ds.rows:
            record = source["study_id"]
            row = {"record_id": record, f"{instrument.form}_complete": COMPLETE}
            if instrument.repeating:
                instances[record] = instances.get(record, 0) + 1
                row.update(redcap_repeat_instrument=instrument.form, redcap_repeat_instance=str(instances[record]))
            for f in fields:
                row.update(f.values(source.get(f.column.name)))
            for_record.setdefault(record, []).append(row)
    data = out / "redcap_import.csv"
    with data.open("w", newline="", encoding="utf-8") as fh:
        rows = csv.DictWriter(fh, fieldnames=columns, restval="")
        rows.writeheader()
        for record in sorted(for_record):
            rows.writerows(for_record[record])

    repeating = out / "redcap_repeating_instruments.csv"
    with repeating.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["form_name", "custom_form_label"])
        writer.writerows([instrument.form, instrument.label] for instrument, _, _ in instruments
                         if instrument.repeating)
    return [dictionary, data, repeating]


async def record_export(session: AsyncSession, *, actor: Actor, fmt: str, out: Path, include_contact: bool,
                        datasets: list[Dataset], now: datetime) -> None:
    await audit.record(session, actor=actor, action="export", entity="study_record", entity_id=fmt, now=now,
                       new={"format": fmt, "out": str(out), "include_contact": include_contact,
                            "rows": {ds.name: len(ds.rows) for ds in datasets}},
                       reason="data exported" + (" with Telegram ids" if include_contact else ""))


STEPS = len(DATASETS)  # the ticks `collect` makes, for a progress bar


async def run(db: Database, *, protocol: Protocol, fmt: str, out: Path, include_contact: bool, actor: Actor, now: datetime,
              tick: Callable[[int], None] | None = None) -> tuple[list[Dataset], list[Path]]:
    """Read the record in one transaction, write the files, then audit the export."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}")
    async with db.transaction() as session:
        datasets = await collect(session, include_contact=include_contact, tick=tick)
    choices = resolved_choices(protocol, datasets)
    written = write_csv(out, datasets, choices) if fmt == "csv" else write_redcap(out, datasets, choices)
    async with db.transaction() as session:
        await record_export(session, actor=actor, fmt=fmt, out=out, include_contact=include_contact,
                            datasets=datasets, now=now)
    return datasets, written
