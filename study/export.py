"""Exports of the study record for the study's own systems (`trialbot export`).

- csv: one file per dataset plus `data_dictionary.csv` describing every column.
- redcap: `redcap_import.csv` for REDCap's Data Import Tool and `redcap_data_dictionary.csv` to
  build the project from (Project Setup > Data Dictionary, then enable the repeating instruments
  listed in `redcap_repeating_instruments.txt`). One record per participant (`record_id` = study
  id); the diary, check-ins, visits and pregnancy tests are repeating instruments
  (`redcap_repeat_instrument`, `redcap_repeat_instance`).

Telegram ids are left out unless asked for (`include_contact`). Instants are UTC ISO 8601.
Every export is itself recorded in the audit trail: who, what, when, how many rows.

Diary entries and check-ins are exported as corrected (study/corrections.py): the corrected value
in its column, and `corrected`, `original_value` (the corrected fields as recorded), and the
latest correction's reason, author and time beside it; `corrections` lists every correction. A
"missing" record a participant's own entry stands for says so in `superseded_by`. The records as
recorded stay in the database and in the audit trail.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from study import audit, corrections
from study.audit import Actor
from study.models import (
    Alert,
    AuditEntry,
    Correction,
    IncompleteCheckin,
    Participant,
    ParticipantMessage,
    PregnancyTest,
    SentMessage,
    StaffMember,
    Visit,
)

FORMATS = ("csv", "redcap")


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # text | integer | boolean | date | datetime | json
    description: str


@dataclass
class Dataset:
    name: str
    description: str
    columns: list[Column]
    rows: list[dict[str, Any]]


def _c(name: str, type_: str, description: str) -> Column:
    return Column(name, type_, description)


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    return str(value)


async def collect(session: AsyncSession, *, include_contact: bool = False,
                  tick: Callable[[int], None] | None = None) -> list[Dataset]:
    tick = tick or (lambda n: None)
    people = {p.id: p for p in (await session.scalars(select(Participant).order_by(Participant.study_id))).all()}
    sid = {pid: p.study_id for pid, p in people.items()}
    staff = {m.id: m for m in (await session.scalars(select(StaffMember))).all()}
    out: list[Dataset] = []

    cols = [_c("study_id", "text", "Participant study id"), _c("status", "text", "invited | active | paused | withdrawn | completed"),
            _c("timezone", "text", "IANA time zone"), _c("language", "text", "Language of messages"),
            _c("wocbp", "boolean", "Woman of child-bearing potential (1 = yes)"),
            _c("reminder_times", "text", "Local reminder times, comma-separated HH:MM"),
            _c("enrolled_at", "datetime", "Enrolment (UTC)"), _c("consented_at", "datetime", "Consent in the bot (UTC)"),
            _c("active_since", "datetime", "Since when the bot may write (UTC)"),
            _c("unreachable_since", "datetime", "Telegram said they blocked the bot (UTC); empty = reachable")]
    if include_contact:
        cols += [_c("telegram_user_id", "integer", "Telegram user id (contact data)"),
                 _c("telegram_chat_id", "integer", "Telegram chat id (contact data)")]
    out.append(Dataset("participants", "One row per participant", cols,
                       [{c.name: getattr(p, c.name) for c in cols} for p in people.values()]))
    tick(len(people))

    def who(actor: str) -> str:
        """An actor, with the staff member's name when it is one (as alerts name who acknowledged)."""
        kind, _, ident = actor.partition(":")
        member = staff.get(int(ident)) if kind == "staff" and ident.isdigit() else None
        return f"{member.name} ({actor})" if member is not None else actor

    def corrected(view: corrections.EntryView | corrections.CheckinView) -> dict[str, Any]:
        last = view.last_correction
        return {"corrected": view.corrected, "original_value": view.original() or None,
                "correction_reason": last.reason if last else None,
                "corrected_by": who(last.corrected_by) if last else None,
                "corrected_at": last.corrected_at if last else None}

    correction_cols = [
        _c("corrected", "boolean", "Corrected by the study team: this row shows the corrected values "
                                   "(every correction: corrections.csv)"),
        _c("original_value", "json", "The corrected fields as originally recorded, e.g. {\"occurred_at\": ...}"),
        _c("correction_reason", "text", "Why it was corrected (the latest correction)"),
        _c("corrected_by", "text", "Who corrected it (the latest correction)"),
        _c("corrected_at", "datetime", "When it was last corrected (UTC)")]

    diary = await corrections.entry_views(session)
    diary_cols = [_c("entry_id", "integer", "Diary entry id"), _c("study_id", "text", "Participant study id"),
                  _c("local_date", "date", "The participant's local day it belongs to"),
                  _c("occurred_at", "datetime", "When the participant says it happened (UTC)"),
                  _c("recorded_at", "datetime", "When it was recorded (UTC)"),
                  _c("timezone", "text", "Participant's zone at recording"),
                  _c("source", "text", "button | reminder | command | system"),
                  _c("late", "boolean", "Recorded more than the allowed hours after it happened (a missed "
                                        "dose: after its day ended)"),
                  _c("withdrawn", "boolean", "Taken back: by the participant with /undo, or by the study team as "
                                             "not having happened (then corrected = 1)"),
                  _c("recorded_by", "text", "Actor"), *correction_cols]

    def diary_row(v: corrections.EntryView) -> dict:
        e = v.entry
        return {"entry_id": e.id, "study_id": sid.get(e.participant_id), "local_date": v.local_date,
                "occurred_at": v.occurred_at, "recorded_at": e.recorded_at, "timezone": e.timezone,
                "source": e.source, "late": e.late, "withdrawn": v.withdrawn,
                "recorded_by": e.recorded_by, "kind": v.kind, "missed_reason": v.missed_reason,
                "superseded_by": v.superseded_by, **corrected(v)}

    out.append(Dataset("applications", "Applications of the study cream (diary entries of kind applied, as corrected)",
                       diary_cols, [diary_row(v) for v in diary if v.kind == "applied"]))
    missed_cols = diary_cols + [_c("kind", "text", "missed (said by the participant) | missing (nothing recorded)"),
                                _c("missed_reason", "text", "Reason given for a missed dose"),
                                _c("superseded_by", "integer", "For a missing record: the participant's own entry "
                                   "(entry_id) that later recorded this dose; the slot counts as that entry says")]
    out.append(Dataset("missed_doses", "Doses said missed, or not recorded when the slot closed (as corrected)",
                       missed_cols, [diary_row(v) for v in diary if v.kind in ("missed", "missing")]))
    tick(len(diary))

    checkins = sorted(await corrections.checkin_views(session), key=lambda v: v.id)
    ci_cols = [_c("checkin_id", "integer", "Check-in id"), _c("study_id", "text", "Participant study id"),
               _c("kind", "text", "full | scores"), _c("local_date", "date", "Participant's local day"),
               _c("submitted_at", "datetime", "Saved (UTC)"), _c("source", "text", "command | scheduled"),
               _c("itch", "integer", "Worst itch, last 24 h, 0-10"), _c("pain", "integer", "Worst skin pain, last 24 h, 0-10"),
               _c("new_problem", "text", "New health problem, participant's words"),
               _c("medicines", "text", "no | medicines | other_cream | both"),
               _c("medicines_change", "text", "What changed in medicines or creams, participant's words"),
               _c("red_flags", "json", "Red-flag codes reported"), *correction_cols]
    out.append(Dataset("checkins", "Symptom check-ins (answers as corrected)", ci_cols, [
        {"checkin_id": v.id, "study_id": sid.get(v.checkin.participant_id), "kind": v.checkin.kind,
         "local_date": v.checkin.local_date, "submitted_at": v.checkin.submitted_at, "source": v.checkin.source,
         "itch": v["itch"], "pain": v["pain"], "new_problem": v["new_problem"], "medicines": v["medicines"],
         "medicines_change": v["medicines_change"], "red_flags": v.checkin.red_flags, **corrected(v)}
        for v in checkins]))
    unfinished = (await session.scalars(select(IncompleteCheckin).order_by(IncompleteCheckin.id))).all()
    ic_cols = [_c("incomplete_id", "integer", "Record id"), _c("study_id", "text", "Participant study id"),
               _c("kind", "text", "full | scores"), _c("local_date", "date", "Participant's local day it was started"),
               _c("started_at", "datetime", "Started (UTC)"), _c("ended_at", "datetime", "Expired or restarted (UTC)"),
               _c("reason", "text", "expired | restarted"), _c("step", "text", "The question it stopped at"),
               _c("answers", "json", "The answers given so far (never confirmed by the participant)")]
    out.append(Dataset("incomplete_checkins", "Check-ins started and never saved", ic_cols, [
        {"incomplete_id": c.id, "study_id": sid.get(c.participant_id), "kind": c.kind, "local_date": c.local_date,
         "started_at": c.started_at, "ended_at": c.ended_at, "reason": c.reason, "step": c.step,
         "answers": c.answers} for c in unfinished]))
    re_cols = [_c("checkin_id", "integer", "Check-in id"), _c("study_id", "text", "Participant study id"),
               _c("local_date", "date", "Participant's local day"),
               _c("reaction", "text", "redness | burning | itching | acne | other"),
               _c("severity", "text", "mild | moderate | severe"),
               _c("corrected", "boolean", "The check-in was corrected by the study team (see checkins.csv)")]
    out.append(Dataset("reactions", "Reactions where the cream goes, from check-ins (as corrected)", re_cols, [
        {"checkin_id": v.id, "study_id": sid.get(v.checkin.participant_id), "local_date": v.checkin.local_date,
         "reaction": v["reaction"], "severity": v["reaction_severity"], "corrected": v.corrected}
        for v in checkins if v["reaction"] and v["reaction"] != "none"]))
    tick(len(checkins))

    alerts = (await session.scalars(select(Alert).order_by(Alert.id))).all()
    al_cols = [_c("alert_id", "integer", "Alert id"), _c("study_id", "text", "Participant study id"),
               _c("source", "text", "checkin | urgent | message | pregnancy_test"),
               _c("triggers", "json", "What was reported"), _c("reported_at", "datetime", "Reported (UTC)"),
               _c("status", "text", "open | acknowledged"),
               _c("acknowledged_by", "text", "Staff member who acknowledged"),
               _c("acknowledged_at", "datetime", "Acknowledged (UTC)")]
    out.append(Dataset("alerts", "Safety alerts and their acknowledgements", al_cols, [
        {"alert_id": a.id, "study_id": sid.get(a.participant_id), "source": a.source, "triggers": a.triggers,
         "reported_at": a.reported_at, "status": a.status,
         "acknowledged_by": staff[a.acknowledged_by].name if a.acknowledged_by in staff else None,
         "acknowledged_at": a.acknowledged_at} for a in alerts]))
    tick(len(alerts))

    said = (await session.scalars(select(ParticipantMessage).order_by(ParticipantMessage.id))).all()
    pm_cols = [_c("message_id", "integer", "Record id"), _c("study_id", "text", "Participant study id"),
               _c("direction", "text", "in (from the participant) | out (a reply from the study team)"),
               _c("kind", "text", "text | photo | document | voice | audio | video | video_note | animation"),
               _c("at", "datetime", "When (UTC)"), _c("timezone", "text", "Participant's zone"),
               _c("context", "text", "free | mid_checkin:<question> | answer:<question> | reply"),
               _c("text", "text", "The words (a caption for media), control characters removed"),
               _c("original_length", "integer", "Length as received, before control characters were removed"),
               _c("flags", "json", "Red flags the screening found"),
               _c("negated", "json", "Red flags mentioned as absent (no alert)")]
    out.append(Dataset("participant_messages", "What participants told the study team, and the replies", pm_cols, [
        {"message_id": m.id, "study_id": sid.get(m.participant_id), "direction": m.direction, "kind": m.kind,
         "at": m.at, "timezone": m.timezone, "context": m.context, "text": m.text,
         "original_length": m.original_length, "flags": (m.screening or {}).get("flags"),
         "negated": (m.screening or {}).get("negated")} for m in said]))
    tick(len(said))

    sent = (await session.scalars(select(SentMessage).order_by(SentMessage.id))).all()
    se_cols = [_c("sent_id", "integer", "Record id"), _c("sent_at", "datetime", "Sent (UTC)"),
               _c("template_id", "text", "Catalog template"), _c("template_hash", "text", "SHA-256 of the text sent"),
               _c("language", "text", "Language"), _c("recipient", "text", "participant | staff | stranger"),
               _c("study_id", "text", "Participant study id, if to a participant"),
               _c("staff_id", "integer", "Staff id, if to staff"), _c("via", "text", "reply | edit | outbox")]
    out.append(Dataset("messages_sent", "Every message the bot sent (template and version, not the text)", se_cols, [
        {"sent_id": m.id, "sent_at": m.sent_at, "template_id": m.template_id, "template_hash": m.template_hash,
         "language": m.language, "recipient": m.recipient, "study_id": sid.get(m.participant_id),
         "staff_id": m.staff_id, "via": m.via} for m in sent]))
    tick(len(sent))

    vis = (await session.scalars(select(Visit).order_by(Visit.id))).all()
    vi_cols = [_c("visit_id", "integer", "Visit id"), _c("study_id", "text", "Participant study id"),
               _c("name", "text", "Visit name"), _c("label", "text", "Visit label"),
               _c("scheduled_date", "date", "Local date"), _c("scheduled_time", "text", "Local time HH:MM"),
               _c("target_date", "date", "Protocol target date"), _c("window_days", "integer", "Allowed window ± days"),
               _c("status", "text", "scheduled | confirmed | reschedule_requested | cancelled | done"),
               _c("revision", "integer", "Times moved + 1")]
    out.append(Dataset("visits", "Study visits", vi_cols, [
        {"visit_id": v.id, "study_id": sid.get(v.participant_id), "name": v.name, "label": v.label,
         "scheduled_date": v.scheduled_date,
         "scheduled_time": v.scheduled_time.strftime("%H:%M") if v.scheduled_time else None,
         "target_date": v.target_date, "window_days": v.window_days, "status": v.status, "revision": v.revision}
        for v in vis]))
    tick(len(vis))

    tests = (await session.scalars(select(PregnancyTest).order_by(PregnancyTest.id))).all()
    pt_cols = [_c("test_id", "integer", "Record id"), _c("study_id", "text", "Participant study id"),
               _c("result", "text", "negative | positive | not_yet"), _c("local_date", "date", "Participant's local day"),
               _c("recorded_at", "datetime", "Recorded (UTC)"), _c("source", "text", "reminder | staff")]
    out.append(Dataset("pregnancy_tests", "Pregnancy-test results", pt_cols, [
        {"test_id": t.id, "study_id": sid.get(t.participant_id), "result": t.result, "local_date": t.local_date,
         "recorded_at": t.recorded_at, "source": t.source} for t in tests]))
    tick(len(tests))

    fixes = (await session.scalars(select(Correction).order_by(Correction.id))).all()
    co_cols = [_c("correction_id", "integer", "Record id"), _c("study_id", "text", "Participant study id"),
               _c("entity", "text", "diary_entry | checkin: which kind of record was corrected"),
               _c("record_id", "integer", "Which record (entry_id, or checkin_id)"),
               _c("field", "text", "The column corrected (kind, occurred_at, local_date, missed_reason, withdrawn; "
                                   "itch, pain, reaction, reaction_severity, new_problem, medicines, medicines_change)"),
               _c("old_value", "json", "The value before this correction"),
               _c("new_value", "json", "The value after it"), _c("reason", "text", "Why"),
               _c("corrected_by", "text", "Who"), _c("corrected_at", "datetime", "When (UTC)"),
               _c("timezone", "text", "Participant's zone"),
               _c("corrected_at_local", "datetime", "When, in the participant's zone")]
    out.append(Dataset("corrections", "Every correction by the study team (the newest of a field is what it says now)",
                       co_cols, [
        {"correction_id": c.id, "study_id": sid.get(c.participant_id), "entity": c.entity,
         "record_id": c.diary_entry_id if c.diary_entry_id is not None else c.checkin_id, "field": c.field,
         "old_value": json.dumps(c.old_value, ensure_ascii=False), "new_value": json.dumps(c.new_value, ensure_ascii=False),
         "reason": c.reason, "corrected_by": who(c.corrected_by), "corrected_at": c.corrected_at,
         "timezone": c.timezone, "corrected_at_local": c.corrected_at.astimezone(ZoneInfo(c.timezone))}
        for c in fixes]))
    tick(len(fixes))

    trail = (await session.scalars(select(AuditEntry).order_by(AuditEntry.seq))).all()
    au_cols = [_c("seq", "integer", "Position in the chain"), _c("occurred_at", "datetime", "When (UTC)"),
               _c("actor", "text", "Who"), _c("action", "text", "What"), _c("entity", "text", "Which kind of record"),
               _c("entity_id", "text", "Which record"), _c("old_values", "json", "Before"),
               _c("new_values", "json", "After"), _c("reason", "text", "Why"), _c("timezone", "text", "Zone"),
               _c("prev_hash", "text", "Hash of the previous entry"), _c("hash", "text", "SHA-256 of this entry")]
    out.append(Dataset("audit_trail", "The audit trail, hash-chained", au_cols,
                       [{c.name: getattr(e, c.name) for c in au_cols} for e in trail]))
    tick(len(trail))
    return out


def write_csv(out: Path, datasets: list[Dataset]) -> list[Path]:
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
        writer.writerow(["file", "column", "type", "description", "dataset_description"])
        for ds in datasets:
            for c in ds.columns:
                writer.writerow([f"{ds.name}.csv", c.name, c.type, c.description, ds.description])
    written.append(path)
    return written


# -- REDCap ---------------------------------------------------------------------------------------


def _corrected_fields(prefix: str) -> list[tuple[str, str, str, str]]:
    """The correction columns of a corrected instrument (applications, missed doses, check-ins)."""
    return [(f"{prefix}_corrected", "corrected", "yesno", "Corrected by the study team"),
            (f"{prefix}_original", "original_value", "text", "Corrected fields as recorded (JSON)"),
            (f"{prefix}_correction_reason", "correction_reason", "text", "Correction reason"),
            (f"{prefix}_corrected_by", "corrected_by", "text", "Corrected by"),
            (f"{prefix}_corrected_at", "corrected_at", "datetime", "Corrected at (UTC)")]


# (instrument, dataset, repeating, [(field name, source column, type, label)])
REDCAP_INSTRUMENTS: list[tuple[str, str, bool, list[tuple[str, str, str, str]]]] = [
    ("participant", "participants", False, [
        ("status", "status", "text", "Status"), ("timezone", "timezone", "text", "Time zone"),
        ("language", "language", "text", "Language"), ("wocbp", "wocbp", "yesno", "Child-bearing potential"),
        ("enrolled_at", "enrolled_at", "datetime", "Enrolled (UTC)"),
        ("consented_at", "consented_at", "datetime", "Consented (UTC)")]),
    ("application", "applications", True, [
        ("app_date", "local_date", "date", "Local day"), ("app_occurred_at", "occurred_at", "datetime", "Applied at (UTC)"),
        ("app_source", "source", "text", "Source"), ("app_late", "late", "yesno", "Recorded late"),
        ("app_withdrawn", "withdrawn", "yesno", "Withdrawn by the participant"),
        *_corrected_fields("app")]),
    ("missed_dose", "missed_doses", True, [
        ("md_date", "local_date", "date", "Local day"), ("md_kind", "kind", "text", "missed or missing"),
        ("md_reason", "missed_reason", "text", "Reason"), ("md_late", "late", "yesno", "Recorded late"),
        ("md_withdrawn", "withdrawn", "yesno", "Withdrawn"),
        ("md_superseded_by", "superseded_by", "integer", "Recorded afterwards by the participant as entry"),
        *_corrected_fields("md")]),
    ("checkin", "checkins", True, [
        ("ci_date", "local_date", "date", "Local day"), ("ci_itch", "itch", "integer", "Worst itch 0-10"),
        ("ci_pain", "pain", "integer", "Worst skin pain 0-10"), ("ci_medicines", "medicines", "text", "Medicines changed"),
        *_corrected_fields("ci")]),
    ("reaction", "reactions", True, [
        ("re_date", "local_date", "date", "Local day"), ("re_reaction", "reaction", "text", "Reaction"),
        ("re_severity", "severity", "text", "Severity"), ("re_corrected", "corrected", "yesno", "Check-in corrected")]),
    ("visit", "visits", True, [
        ("visit_name", "name", "text", "Visit"), ("visit_date", "scheduled_date", "date", "Date"),
        ("visit_status", "status", "text", "Status")]),
    ("pregnancy_test", "pregnancy_tests", True, [
        ("pt_date", "local_date", "date", "Local day"), ("pt_result", "result", "text", "Result")]),
    ("correction", "corrections", True, [
        ("corr_entity", "entity", "text", "Record corrected: diary_entry or checkin"),
        ("corr_record_id", "record_id", "integer", "Record id"), ("corr_field", "field", "text", "Field"),
        ("corr_old", "old_value", "text", "Value before (JSON)"), ("corr_new", "new_value", "text", "Value after (JSON)"),
        ("corr_reason", "reason", "text", "Reason"), ("corr_by", "corrected_by", "text", "Corrected by"),
        ("corr_at", "corrected_at", "datetime", "Corrected at (UTC)")]),
]
REDCAP_DICTIONARY_HEADER = [
    "Variable / Field Name", "Form Name", "Section Header", "Field Type", "Field Label",
    "Choices, Calculations, OR Slider Labels", "Field Note", "Text Validation Type OR Show Slider Number",
    "Text Validation Min", "Text Validation Max", "Identifier?", "Branching Logic (Show field only if...)",
    "Required Field?", "Custom Alignment", "Question Number (surveys only)", "Matrix Group Name", "Matrix Ranking?",
    "Field Annotation",
]
_VALIDATION = {"date": "date_ymd", "datetime": "datetime_seconds_ymd", "integer": "integer", "text": ""}


def redcap_fields() -> list[str]:
    return ["record_id"] + [f for _, _, _, fields in REDCAP_INSTRUMENTS for f, _, _, _ in fields]


def _redcap_value(value: Any, type_: str) -> str:
    if value is None:
        return ""
    if type_ == "yesno":
        return "1" if value else "0"
    if type_ == "datetime" and isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")  # REDCap: Y-M-D H:M:S, no zone (these are UTC)
    return cell(value)


def write_redcap(out: Path, datasets: list[Dataset]) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    by_name = {ds.name: ds for ds in datasets}
    dictionary = out / "redcap_data_dictionary.csv"
    with dictionary.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(REDCAP_DICTIONARY_HEADER)
        writer.writerow(["record_id", "participant", "", "text", "Study ID"] + [""] * 13)
        for form, _, _, fields in REDCAP_INSTRUMENTS:
            for name, _, type_, label in fields:
                field_type = "yesno" if type_ == "yesno" else "text"
                row = [name, form, "", field_type, label, "", "", _VALIDATION.get(type_, "")] + [""] * 10
                writer.writerow(row)
    columns = ["record_id", "redcap_repeat_instrument", "redcap_repeat_instance"] + redcap_fields()[1:]
    data = out / "redcap_import.csv"
    with data.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, restval="")
        for_record: dict[str, list[dict]] = {}
        for form, dataset, repeating, fields in REDCAP_INSTRUMENTS:
            counters: dict[str, int] = {}
            for source in by_name[dataset].rows:
                record = source["study_id"]
                row = {"record_id": record}
                if repeating:
                    counters[record] = counters.get(record, 0) + 1
                    row["redcap_repeat_instrument"] = form
                    row["redcap_repeat_instance"] = str(counters[record])
                for name, column, type_, _ in fields:
                    row[name] = _redcap_value(source.get(column), type_)
                for_record.setdefault(record, []).append(row)
        writer.writeheader()
        for record in sorted(for_record):
            writer.writerows(for_record[record])
    repeating = out / "redcap_repeating_instruments.txt"
    repeating.write_text("Enable these as repeating instruments (Project Setup > Repeating instruments):\n" +
                         "\n".join(form for form, _, rep, _ in REDCAP_INSTRUMENTS if rep) + "\n", encoding="utf-8")
    return [dictionary, data, repeating]


async def record_export(session: AsyncSession, *, actor: Actor, fmt: str, out: Path, include_contact: bool,
                        datasets: list[Dataset], now: datetime) -> None:
    await audit.record(session, actor=actor, action="export", entity="study_record", entity_id=fmt, now=now,
                       new={"format": fmt, "out": str(out), "include_contact": include_contact,
                            "rows": {ds.name: len(ds.rows) for ds in datasets}},
                       reason="data exported" + (" with Telegram ids" if include_contact else ""))


STEPS = 10  # the ticks `collect` makes, for a progress bar


async def run(db, *, fmt: str, out: Path, include_contact: bool, actor: Actor, now: datetime,
              tick: Callable[[int], None] | None = None) -> tuple[list[Dataset], list[Path]]:
    """Read the record in one transaction, write the files, then audit the export."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}")
    async with db.transaction() as session:
        datasets = await collect(session, include_contact=include_contact, tick=tick)
    written = write_csv(out, datasets) if fmt == "csv" else write_redcap(out, datasets)
    async with db.transaction() as session:
        await record_export(session, actor=actor, fmt=fmt, out=out, include_contact=include_contact,
                            datasets=datasets, now=now)
    return datasets, written
