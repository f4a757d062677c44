"""Corrections by the study team, and a participant's own entry standing for a "missing" record.

Diary entries and check-ins are append-only (database triggers refuse UPDATE and DELETE), so
neither is ever changed in place:

- A **correction** is a row in `corrections` for each field it changes: the record (a diary entry
  or a check-in), the field, the value before and after, why, who, and when (UTC, with the
  participant's zone). One correction typed by a coordinator may change several fields ("kind
  applied, time 09:00": a row each). The newest correction of a field is what the field says now;
  the record keeps what was recorded. Every row is also an audit-trail entry (action `correct`,
  with the row's id, so `audit.verify` notices a correction written without one).
  A diary entry's kind (applied or missed), its time (and so its day), a missed dose's day and
  reason, and whether it happened at all (`withdrawn`) can be corrected; a check-in's answers too.

- A **supersession** is a participant's own entry standing for a dose slot the system had
  recorded as `missing` (the slot's window closed with nothing recorded): a dose recorded
  afterwards with "I put it on earlier" (the missing record of the slot it belongs to), or a dose
  said missed (the day's earliest missing record). Both entries are kept; while the participant's
  entry stands (not taken back with /undo nor withdrawn by the study team) the missing record
  does not count.

Everything that shows or counts diary entries reads them through `entry_views`, and check-ins
through `checkin_views`: each record with its corrections applied, flagged as corrected, and
whether it stands (not taken back, not withdrawn, not superseded). `touched` names the
participants with any correction or supersession, so that the planner's and the digest's bulk
queries stay plain SQL for everyone else.
"""

from __future__ import annotations

import functools
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, bindparam, exists, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from study import audit
from study.audit import Actor
from study.database import among, among_param
from study.models import (
    CheckIn,
    CheckinKind,
    CorrectedEntity,
    CorrectedField,
    Correction,
    DiaryEntry,
    DiaryKind,
    Participant,
    Supersession,
)
from study.participants import parse_times
from study.protocol import Protocol
from study.slots import slots_on

DIARY_KINDS = DiaryKind.DOSES
# A "now" a little ahead of the server's clock is still now (as for participants' own entries).
FUTURE_TOLERANCE = timedelta(minutes=5)
REASON_MAX = 500
SHOWN_MAX = 200  # a value in a confirmation (a check-in's own words may be long)
TEXT_MAX = 1000  # as a check-in's own free-text answers
REACTIONS = ("none", "redness", "burning", "itching", "acne", "other")
SEVERITIES = ("mild", "moderate", "severe")
MEDICINES = ("no", "medicines", "other_cream", "both")

# What a staff member names, in Telegram and on the command line, and what each word corrects.
ENTRY_WORDS = ("kind", "time", "day", "missed_reason", "withdraw", "restore")
CHECKIN_WORDS = ("itch", "pain", "reaction", "severity", "medicines", "new_problem", "medicines_change")
FLAG_WORDS = ("withdraw", "restore")  # take no value
TEXT_WORDS = ("new_problem", "medicines_change")  # take words


class CorrectionRefused(Exception):
    """A correction that cannot be made as asked: `problem` says why (a code the templates and the
    command line explain), `details` what about (study_id, record, record_id, field, value, allowed,
    kind)."""

    def __init__(self, problem: str, **details: Any) -> None:
        super().__init__(problem)
        self.problem = problem
        self.details = details

    def describe(self) -> str:
        """One line for the command line."""
        d = {"study_id": "", "record": "entry", "record_id": "", "field": "", "value": "", "allowed": "",
             "kind": "", **self.details}
        d["record_name"] = "check-in" if d["record"] == "checkin" else "diary entry"
        d["allowed"] = d["allowed"] or NEEDS.get(d["field"], "a value")
        d["kind"] = KINDS_EXPLAINED.get(d["kind"], d["kind"])
        return _EXPLAINED.get(self.problem, self.problem).format(**d)


_EXPLAINED = {
    "unknown_participant": "No participant {study_id}.",
    "unknown_record": "{study_id} has no {record_name} {record_id} that can be corrected "
                      "(see: trialbot correct list {study_id}).",
    "unknown_field": "{field!r} cannot be corrected on a {record_name}; one of: {allowed}.",
    "repeated": "{field} is given twice; give each change once.",
    "conflict": "withdraw and restore cannot both be given.",
    "bad_value": "{field}: {value!r} is not {allowed}.",
    "not_applicable": "{field} does not apply to {kind}.",
    "needs_time": "a dose corrected to applied needs the time it was put on: give the time too "
                  "(e.g. 2026-11-24 09:00, participant-local).",
    "in_future": "{field}: {value} has not come yet.",
    "unchanged": "nothing to change: {record_name} {record_id} already says that.",
    "taken_back": "diary entry {record_id} was taken back by the participant with /undo; it cannot be "
                  "withdrawn or restored.",
    "no_reason": "a reason is needed (it goes into the audit trail).",
    "nothing": "say what to correct.",
    "syntax": "that cannot be read as a correction.",
}
# What a value must be, for fields whose refusal gives no list of values (`allowed` is empty).
NEEDS = {
    "time": "a time like 09:00 or 2026-11-24 09:00 (participant-local)",
    "day": "a day like 2026-11-24",
    "itch": "a whole number from 0 to 10",
    "pain": "a whole number from 0 to 10",
    "new_problem": f"words (at most {TEXT_MAX} characters), or none",
    "medicines_change": f"words (at most {TEXT_MAX} characters), or none",
}
# What a field cannot apply to (`kind` in a not_applicable refusal).
KINDS_EXPLAINED = {
    "applied": "an application", "missed": "a missed dose",
    "missing": "the system's record of a slot with nothing recorded (correct its kind instead)",
    "scores": "a scores-only check-in", "no_reaction": "a check-in without a reaction",
    "no_medicines_change": "a check-in without a change of medicines",
}


# -- Values --------------------------------------------------------------------------------------


def _json(value: Any) -> Any:
    """A field's value as the corrections table keeps it (JSON): instants and days as ISO text."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value


def _value(field_name: str, stored: Any) -> Any:
    """A value from the corrections table, as the record's own column would hold it."""
    if stored is None:
        return None
    if field_name == CorrectedField.OCCURRED_AT:
        parsed = datetime.fromisoformat(stored)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    if field_name == CorrectedField.LOCAL_DATE:
        return date.fromisoformat(stored)
    return stored


def shown(field_name: str, stored: Any, zone: ZoneInfo) -> str:
    """A stored value for people: instants in the participant's local time, empty for none."""
    if stored is None:
        return ""
    if field_name == CorrectedField.OCCURRED_AT:
        instant: datetime = _value(field_name, stored)
        return instant.astimezone(zone).strftime("%Y-%m-%d %H:%M")
    if field_name == CorrectedField.WITHDRAWN:
        return "yes" if stored else "no"
    return str(stored)


# -- Views ---------------------------------------------------------------------------------------


@dataclass(eq=False)
class EntryView:
    """A diary entry as it stands now: its corrections applied, and whether it counts."""

    entry: DiaryEntry
    kind: str
    occurred_at: datetime | None
    local_date: date
    missed_reason: str | None
    undone: bool  # taken back by the participant with /undo
    withdrawn_by_staff: bool = False  # the study team says it did not happen
    superseded_by: int | None = None  # the participant's own entry that stands for this missing record
    corrections: list[Correction] = field(default_factory=list)

    @property
    def id(self) -> int:
        return self.entry.id

    @property
    def participant_id(self) -> int:
        return self.entry.participant_id

    @property
    def late(self) -> bool:
        return self.entry.late

    @property
    def timezone(self) -> str:
        return self.entry.timezone

    @property
    def corrected(self) -> bool:
        return bool(self.corrections)

    @property
    def withdrawn(self) -> bool:
        return self.undone or self.withdrawn_by_staff

    @property
    def stands(self) -> bool:
        """Counts: not taken back, not withdrawn, not superseded."""
        return not self.withdrawn and self.superseded_by is None

    @property
    def last_correction(self) -> Correction | None:
        return self.corrections[-1] if self.corrections else None

    def original(self) -> dict[str, Any]:
        """The corrected fields as they were recorded (JSON values)."""
        first: dict[str, Any] = {}
        for c in self.corrections:
            first.setdefault(c.field, c.old_value)
        return first


def _entry_view(entry: DiaryEntry, undone: bool, corrections: list[Correction]) -> EntryView:
    view = EntryView(entry, entry.kind, entry.occurred_at, entry.local_date, entry.missed_reason, undone,
                     corrections=corrections)
    for c in corrections:
        if c.field == CorrectedField.WITHDRAWN:
            view.withdrawn_by_staff = bool(c.new_value)
        else:
            setattr(view, c.field, _value(c.field, c.new_value))
    return view


async def touched(session: AsyncSession, participant_ids: list[int] | None = None) -> set[int]:
    """The participants (of `participant_ids`, or all) whose diary has a correction or a supersession."""
    found: set[int] = set()
    for query in (select(Correction.participant_id).where(Correction.entity == CorrectedEntity.DIARY_ENTRY),
                  select(Supersession.participant_id)):
        if participant_ids is not None:
            column = query.selected_columns[0]
            query = query.where(among(session, column, participant_ids))
        found |= set((await session.scalars(query.distinct())).all())
    return found


@functools.cache
def _entry_view_statements(dialect: str, by_participant: bool, since: bool, involved: bool) -> tuple[Any, Any, Any]:
    """`entry_views`' three queries, built once for each shape (a diary view on every /today
    and tap costs no statement construction): corrections, supersessions, entries."""
    corrections_q = select(Correction).where(Correction.entity == CorrectedEntity.DIARY_ENTRY)
    supersessions_q = select(Supersession)
    undo = aliased(DiaryEntry)
    query = (select(DiaryEntry, undo.id).outerjoin(undo, undo.supersedes_id == DiaryEntry.id)
             .where(DiaryEntry.kind.in_(DIARY_KINDS)))
    if by_participant:
        corrections_q = corrections_q.where(among_param(dialect, Correction.participant_id, "participant_ids"))
        supersessions_q = supersessions_q.where(among_param(dialect, Supersession.participant_id, "participant_ids"))
        query = query.where(among_param(dialect, DiaryEntry.participant_id, "participant_ids"))
    if since:
        recent = DiaryEntry.local_date >= bindparam("since")
        query = query.where(or_(recent, among_param(dialect, DiaryEntry.id, "involved")) if involved else recent)
    return (corrections_q.order_by(Correction.id), supersessions_q.order_by(Supersession.id),
            query.order_by(DiaryEntry.id))


async def entry_views(session: AsyncSession, participant_ids: list[int] | None = None, *,
                      since: date | None = None) -> list[EntryView]:
    """The applied, missed and missing entries of these participants (all, when None), whose day
    (as corrected) is `since` or later, in the order they were recorded. Taken back, withdrawn
    and superseded entries are included, flagged: use `stands` for what counts."""
    dialect = session.get_bind().dialect.name
    corrections_q, supersessions_q, _ = _entry_view_statements(dialect, participant_ids is not None, False, False)
    params: dict[str, Any] = {} if participant_ids is None else {"participant_ids": list(participant_ids)}
    corrections = list((await session.scalars(corrections_q, params)).all())
    supersessions = list((await session.scalars(supersessions_q, params)).all())
    by_entry: dict[int, list[Correction]] = defaultdict(list)
    for c in corrections:
        if c.diary_entry_id is not None:
            by_entry[c.diary_entry_id].append(c)
    # Entries a correction may have moved into the days asked about, and both ends of each supersession.
    involved = sorted(set(by_entry) | {s.superseded_id for s in supersessions} | {s.by_entry_id for s in supersessions})

    *_, query = _entry_view_statements(dialect, participant_ids is not None, since is not None,
                                       since is not None and bool(involved))
    if since is not None:
        params["since"] = since
        if involved:
            params["involved"] = involved
    rows = (await session.execute(query, params)).all()
    views = {entry.id: _entry_view(entry, undone_by is not None, by_entry.get(entry.id, []))
             for entry, undone_by in rows}
    for s in supersessions:
        missing, by = views.get(s.superseded_id), views.get(s.by_entry_id)
        if (missing is not None and by is not None and missing.superseded_by is None
                and missing.kind == DiaryKind.MISSING and not by.withdrawn and by.kind in (DiaryKind.APPLIED, DiaryKind.MISSED)):
            missing.superseded_by = by.id
    return [v for v in views.values() if since is None or v.local_date >= since]


@functools.cache
def _plain_views_statement() -> Any:
    """`entry_views_of`'s one statement: whether the participant's diary has any correction or
    supersession, and beside that their entries from the day on (none: one row of NULLs). The
    flags come from a one-row subquery, so they come back even on a day with no entry."""
    flags = select(
        exists().where(Correction.participant_id == bindparam("participant_id"),
                       Correction.entity == CorrectedEntity.DIARY_ENTRY).label("corrected"),
        exists().where(Supersession.participant_id == bindparam("participant_id")).label("superseded"),
    ).subquery()
    undo = aliased(DiaryEntry)
    return (select(flags.c.corrected, flags.c.superseded, DiaryEntry, undo.id).select_from(flags)
            .outerjoin(DiaryEntry, and_(DiaryEntry.participant_id == bindparam("participant_id"),
                                        DiaryEntry.kind.in_(DIARY_KINDS), DiaryEntry.local_date >= bindparam("since")))
            .outerjoin(undo, undo.supersedes_id == DiaryEntry.id)
            .order_by(DiaryEntry.id))


async def entry_views_of(session: AsyncSession, participant_id: int, since: date) -> list[EntryView]:
    """`entry_views` of one participant: the same views, in one statement when nothing in their
    diary was ever corrected or superseded (nearly always: a /today on the hot path), else by
    `entry_views` (the flags say whether an entry of another day may have been moved into these)."""
    rows = (await session.execute(_plain_views_statement(), {"participant_id": participant_id, "since": since})).all()
    if rows and (rows[0].corrected or rows[0].superseded):
        return await entry_views(session, [participant_id], since=since)
    views = {entry.id: _entry_view(entry, undone_by is not None, [])
             for _, _, entry, undone_by in rows if entry is not None}
    return list(views.values())


@dataclass(eq=False)
class CheckinView:
    """A check-in as it stands now: its answers with their corrections applied."""

    checkin: CheckIn
    answers: dict[str, Any]
    corrections: list[Correction] = field(default_factory=list)

    @property
    def id(self) -> int:
        return self.checkin.id

    @property
    def corrected(self) -> bool:
        return bool(self.corrections)

    @property
    def last_correction(self) -> Correction | None:
        return self.corrections[-1] if self.corrections else None

    def original(self) -> dict[str, Any]:
        first: dict[str, Any] = {}
        for c in self.corrections:
            first.setdefault(c.field, c.old_value)
        return first

    def __getitem__(self, name: str) -> Any:
        return self.answers[name]


CHECKIN_COLUMNS = tuple(str(f) for f in (CorrectedField.ITCH, CorrectedField.PAIN, CorrectedField.REACTION,
                                         CorrectedField.REACTION_SEVERITY, CorrectedField.NEW_PROBLEM,
                                         CorrectedField.MEDICINES, CorrectedField.MEDICINES_CHANGE))


def _checkin_view(checkin: CheckIn, corrections: list[Correction]) -> CheckinView:
    answers = {name: getattr(checkin, name) for name in CHECKIN_COLUMNS}
    for c in corrections:
        answers[c.field] = c.new_value
    return CheckinView(checkin, answers, corrections)


async def checkin_views(session: AsyncSession, participant_ids: list[int] | None = None, *,
                        since: date | None = None) -> list[CheckinView]:
    """Check-ins of these participants (all, when None) from the day `since` on, oldest first."""
    query = select(CheckIn)
    corrections_q = select(Correction).where(Correction.entity == CorrectedEntity.CHECKIN)
    if participant_ids is not None:
        query = query.where(among(session, CheckIn.participant_id, participant_ids))
        corrections_q = corrections_q.where(among(session, Correction.participant_id, participant_ids))
    if since is not None:
        query = query.where(CheckIn.local_date >= since)
    by_checkin: dict[int, list[Correction]] = defaultdict(list)
    for c in (await session.scalars(corrections_q.order_by(Correction.id))).all():
        if c.checkin_id is not None:
            by_checkin[c.checkin_id].append(c)
    checkins = (await session.scalars(query.order_by(CheckIn.submitted_at, CheckIn.id))).all()
    return [_checkin_view(c, by_checkin.get(c.id, [])) for c in checkins]


# -- Supersession --------------------------------------------------------------------------------


_ANY_MISSING = select(DiaryEntry.id).where(  # built once: every tap asks
    DiaryEntry.participant_id == bindparam("participant_id"), DiaryEntry.kind == "missing",
    DiaryEntry.local_date == bindparam("day")).limit(1)


async def supersede_missing(session: AsyncSession, participant: Participant, entry: DiaryEntry, *,
                            now: datetime) -> Supersession | None:
    """A participant's new entry (applied, or missed) standing for a slot the system recorded as
    missing on its day: an application, the missing record of the slot whose window holds it; a
    dose said missed, the day's earliest missing record still counted. In the caller's
    transaction; None when there is none."""
    if entry.kind not in (DiaryKind.APPLIED, DiaryKind.MISSED):
        return None
    # Most entries have no missing record on their day: one indexed look first (every tap comes here).
    anything = await session.scalar(_ANY_MISSING, {"participant_id": participant.id, "day": entry.local_date})
    if anything is None:
        return None
    candidates = [v for v in await entry_views(session, [participant.id], since=entry.local_date)
                  if v.kind == DiaryKind.MISSING and v.stands and v.local_date == entry.local_date and v.occurred_at]
    target: EntryView | None = None
    if entry.kind == DiaryKind.APPLIED and entry.occurred_at is not None:
        zone = ZoneInfo(participant.timezone)
        for slot in slots_on(entry.local_date, parse_times(participant.reminder_times), zone):
            if slot.window_start <= entry.occurred_at < slot.window_end:
                target = next((v for v in candidates if v.occurred_at == slot.at), None)
                break
    elif entry.kind == DiaryKind.MISSED and candidates:
        target = min(candidates, key=lambda v: (v.occurred_at, v.id))
    if target is None:
        return None
    row = Supersession(participant_id=participant.id, superseded_id=target.id, by_entry_id=entry.id,
                       recorded_at=now, timezone=participant.timezone)
    session.add(row)
    await session.flush()
    what = "recorded the dose" if entry.kind == DiaryKind.APPLIED else "said the dose was missed"
    await audit.record(session, actor=Actor.participant(participant.study_id), action="supersede",
                       entity="diary_entry", entity_id=target.id, now=now, old={"counts": True},
                       new={"counts": False, "superseded_by": entry.id, "supersession_id": row.id},
                       reason=f"the participant {what} after the slot closed", timezone=participant.timezone)
    return row


# -- Corrections ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Corrected:
    """What a correction wrote: one row per field changed."""

    study_id: str
    entity: str
    record_id: int
    rows: list[Correction]
    zone: ZoneInfo

    def changes(self) -> list[tuple[str, str, str]]:
        """(field, before, after) for people: times in the participant's zone."""
        return [(c.field, _cut(shown(c.field, c.old_value, self.zone)), _cut(shown(c.field, c.new_value, self.zone)))
                for c in self.rows]


def _cut(text: str) -> str:
    return text if len(text) <= SHOWN_MAX else text[:SHOWN_MAX - 1] + "…"


def _reason(reason: str | None) -> str:
    cleaned = " ".join((reason or "").split())
    if not cleaned:
        raise CorrectionRefused("no_reason")
    return cleaned[:REASON_MAX]


def _named(asked: Sequence[tuple[str, str]], allowed: tuple[str, ...], record: str) -> dict[str, str]:
    named: dict[str, str] = {}
    for word, text in asked:
        key = word.strip().lower().replace("-", "_")
        if key not in allowed:
            raise CorrectionRefused("unknown_field", record=record, field=word[:24], allowed=", ".join(allowed))
        if key in named:
            raise CorrectionRefused("repeated", record=record, field=key)
        named[key] = text.strip()
    if not named:
        raise CorrectionRefused("nothing", record=record)
    return named


_CLOCK = re.compile(r"^(\d{1,2})[:.h](\d{2})$")


def _day(text: str) -> date | None:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        return None


def local_instant(text: str, default_day: date, zone: ZoneInfo) -> datetime | None:
    """'09:00' (on `default_day`) or '2026-11-24 09:00', participant-local, as a UTC instant."""
    parts = text.strip().replace("T", " ").split()
    if len(parts) == 2:
        day = _day(parts[0])
        if day is None:
            return None
        clock = parts[1]
    elif len(parts) == 1:
        day, clock = default_day, parts[0]
    else:
        return None
    match = _CLOCK.match(clock)
    if not match or int(match[1]) > 23 or int(match[2]) > 59:
        return None
    return datetime.combine(day, time(int(match[1]), int(match[2])), zone).astimezone(UTC)


async def entry_of(session: AsyncSession, participant: Participant, entry_id: int) -> EntryView | None:
    """One of the participant's applied, missed or missing entries, as it stands now."""
    entry = await session.get(DiaryEntry, entry_id)
    if entry is None or entry.participant_id != participant.id or entry.kind not in DIARY_KINDS:
        return None
    for view in await entry_views(session, [participant.id], since=entry.local_date):
        if view.id == entry_id:
            return view
    # Corrected to an earlier day than it was recorded on: look at the whole record.
    return next((v for v in await entry_views(session, [participant.id]) if v.id == entry_id), None)


async def correct_entry(session: AsyncSession, protocol: Protocol, participant: Participant, entry_id: int,
                        asked: Sequence[tuple[str, str]], *, reason: str | None, actor: Actor,
                        now: datetime) -> Corrected:
    """Correct a diary entry. `asked` is (word, value) pairs, the words of `ENTRY_WORDS`: `kind`
    applied|missed, `time` HH:MM or YYYY-MM-DD HH:MM (participant-local; its day too), `day`
    YYYY-MM-DD, `missed_reason` (the protocol's reasons, or none), `withdraw` (it did not happen),
    `restore` (it did after all). Raises CorrectionRefused; writes nothing then."""
    why = _reason(reason)
    named = _named(asked, ENTRY_WORDS, "entry")
    view = await entry_of(session, participant, entry_id)
    if view is None:
        raise CorrectionRefused("unknown_record", study_id=participant.study_id, record="entry", record_id=entry_id)
    zone = ZoneInfo(view.timezone)
    refuse = _refuser(participant, "entry", entry_id)
    target: dict[str, Any] = {"kind": view.kind, "occurred_at": view.occurred_at, "local_date": view.local_date,
                              "missed_reason": view.missed_reason, "withdrawn": view.withdrawn_by_staff}
    flags = [w for w in FLAG_WORDS if w in named]
    if len(flags) > 1:
        raise refuse("conflict")
    if flags:
        if view.undone:
            raise refuse("taken_back")
        target["withdrawn"] = flags[0] == "withdraw"
    if "kind" in named:
        kind = named["kind"].lower()
        if kind not in (DiaryKind.APPLIED, DiaryKind.MISSED):
            raise refuse("bad_value", field="kind", value=named["kind"][:40], allowed="applied | missed")
        if kind != view.kind:
            target["kind"] = kind
            if kind == DiaryKind.MISSED:
                target["occurred_at"] = None
            else:
                target["missed_reason"] = None
                if "time" not in named:
                    raise refuse("needs_time")
    today = now.astimezone(zone).date()
    if "day" in named:
        day = _day(named["day"])
        if day is None:
            raise refuse("bad_value", field="day", value=named["day"][:40])
        if target["kind"] == DiaryKind.MISSING:
            raise refuse("not_applicable", field="day", kind="missing")
        if day > today:
            raise refuse("in_future", field="day", value=day.isoformat())
        if target["kind"] == DiaryKind.APPLIED and target["occurred_at"] is not None:
            clock = target["occurred_at"].astimezone(zone).time()
            target["occurred_at"] = datetime.combine(day, clock, zone).astimezone(UTC)
            if "time" not in named and target["occurred_at"] > now + FUTURE_TOLERANCE:
                raise refuse("in_future", field="day", value=f"{day.isoformat()} {clock:%H:%M}")
        target["local_date"] = day
    if "time" in named:
        if target["kind"] != DiaryKind.APPLIED:
            raise refuse("not_applicable", field="time", kind=target["kind"])
        at = local_instant(named["time"], target["local_date"], zone)
        if at is None:
            raise refuse("bad_value", field="time", value=named["time"][:40])
        if at > now + FUTURE_TOLERANCE:
            raise refuse("in_future", field="time", value=named["time"])
        target["occurred_at"], target["local_date"] = at, at.astimezone(zone).date()
    if "missed_reason" in named:
        if target["kind"] != DiaryKind.MISSED:
            raise refuse("not_applicable", field="missed_reason", kind=target["kind"])
        reasons = [*protocol.diary.missed_reasons, "none"]
        given = named["missed_reason"].lower()
        if given not in reasons:
            raise refuse("bad_value", field="missed_reason", value=named["missed_reason"][:40],
                         allowed=" | ".join(reasons))
        target["missed_reason"] = None if given == "none" else given
    current = {"kind": view.kind, "occurred_at": view.occurred_at, "local_date": view.local_date,
               "missed_reason": view.missed_reason, "withdrawn": view.withdrawn_by_staff}
    changes = [(name, current[name], target[name]) for name in map(str, _DIARY_ORDER) if current[name] != target[name]]
    if not changes:
        raise refuse("unchanged")
    rows = await _write(session, participant, CorrectedEntity.DIARY_ENTRY, entry_id, changes, reason=why,
                        actor=actor, now=now)
    return Corrected(participant.study_id, CorrectedEntity.DIARY_ENTRY, entry_id, rows, zone)


_DIARY_ORDER = (CorrectedField.KIND, CorrectedField.OCCURRED_AT, CorrectedField.LOCAL_DATE,
                CorrectedField.MISSED_REASON, CorrectedField.WITHDRAWN)


def _refuser(participant: Participant, record: str, record_id: int) -> Callable[..., CorrectionRefused]:
    def refuse(problem: str, **details: Any) -> CorrectionRefused:
        return CorrectionRefused(problem, study_id=participant.study_id, record=record, record_id=record_id,
                                 **details)
    return refuse


async def correct_checkin(session: AsyncSession, participant: Participant, checkin_id: int,
                          asked: Sequence[tuple[str, str]], *, reason: str | None, actor: Actor,
                          now: datetime) -> Corrected:
    """Correct a check-in's answers. `asked` is (word, value) pairs, the words of `CHECKIN_WORDS`:
    `itch` and `pain` 0-10, `reaction` (none, redness, burning, itching, acne, other), `severity`
    (mild, moderate, severe, or none), `medicines` (no, medicines, other_cream, both),
    `new_problem` and `medicines_change` (words, or none). Raises CorrectionRefused."""
    why = _reason(reason)
    named = _named(asked, CHECKIN_WORDS, "checkin")
    checkin = await session.get(CheckIn, checkin_id)
    if checkin is None or checkin.participant_id != participant.id:
        raise CorrectionRefused("unknown_record", study_id=participant.study_id, record="checkin",
                                record_id=checkin_id)
    [view] = [v for v in await checkin_views(session, [participant.id], since=checkin.local_date) if v.id == checkin_id]
    refuse = _refuser(participant, "checkin", checkin_id)
    target = dict(view.answers)
    full_only = [w for w in named if w not in ("itch", "pain")]
    if checkin.kind != CheckinKind.FULL and full_only:
        raise refuse("not_applicable", field=full_only[0], kind="scores")
    for word in ("itch", "pain"):
        if word in named:
            text = named[word]
            if not (text.isascii() and text.isdigit() and 0 <= int(text) <= 10):
                raise refuse("bad_value", field=word, value=text[:40])
            target[word] = int(text)
    if "reaction" in named:
        reaction = named["reaction"].lower()
        if reaction not in REACTIONS:
            raise refuse("bad_value", field="reaction", value=named["reaction"][:40], allowed=" | ".join(REACTIONS))
        target["reaction"] = reaction
        if reaction == "none":
            target["reaction_severity"] = None
    if "severity" in named:
        severity = named["severity"].lower()
        if severity not in (*SEVERITIES, "none"):
            raise refuse("bad_value", field="severity", value=named["severity"][:40],
                         allowed=" | ".join((*SEVERITIES, "none")))
        if severity != "none" and target["reaction"] in (None, "none"):
            raise refuse("not_applicable", field="severity", kind="no_reaction")
        target["reaction_severity"] = None if severity == "none" else severity
    if "medicines" in named:
        medicines = named["medicines"].lower()
        if medicines not in MEDICINES:
            raise refuse("bad_value", field="medicines", value=named["medicines"][:40],
                         allowed=" | ".join(MEDICINES))
        target["medicines"] = medicines
        if medicines == "no":
            target["medicines_change"] = None
    for word in TEXT_WORDS:
        if word in named:
            text = " ".join(named[word].split())
            if not text or len(text) > TEXT_MAX:
                raise refuse("bad_value", field=word, value=text[:40])
            if word == "medicines_change" and text.lower() != "none" and target["medicines"] in (None, "no"):
                raise refuse("not_applicable", field=word, kind="no_medicines_change")
            target[word] = None if text.lower() == "none" else text
    changes = [(name, view.answers[name], target[name]) for name in CHECKIN_COLUMNS
               if view.answers[name] != target[name]]
    if not changes:
        raise refuse("unchanged")
    rows = await _write(session, participant, CorrectedEntity.CHECKIN, checkin_id, changes, reason=why, actor=actor,
                        now=now)
    return Corrected(participant.study_id, CorrectedEntity.CHECKIN, checkin_id, rows, ZoneInfo(checkin.timezone))


async def _write(session: AsyncSession, participant: Participant, entity: CorrectedEntity, record_id: int,
                 changes: list[tuple[str, Any, Any]], *, reason: str, actor: Actor, now: datetime) -> list[Correction]:
    """One row per field, and one audit entry per row, in the caller's transaction."""
    rows = [Correction(participant_id=participant.id, entity=str(entity),
                       diary_entry_id=record_id if entity == CorrectedEntity.DIARY_ENTRY else None,
                       checkin_id=record_id if entity == CorrectedEntity.CHECKIN else None,
                       field=name, old_value=_json(old), new_value=_json(new), reason=reason,
                       corrected_by=str(actor), corrected_at=now, timezone=participant.timezone)
            for name, old, new in changes]
    session.add_all(rows)
    await session.flush()
    await audit.record_many(session, [
        audit.Change(actor, "correct", str(entity), record_id, now, old={row.field: row.old_value},
                     new={row.field: row.new_value, "correction_id": row.id}, reason=reason,
                     timezone=participant.timezone)
        for row in rows])
    return rows


# -- For the study team's list ---------------------------------------------------------------------


async def recent(session: AsyncSession, participant: Participant, *, now: datetime,
                 days: int = 7) -> tuple[list[EntryView], list[CheckinView]]:
    """The participant's entries and check-ins of the last `days` local days, newest first."""
    since = now.astimezone(ZoneInfo(participant.timezone)).date() - timedelta(days=days - 1)
    entries = await entry_views(session, [participant.id], since=since)
    checkins = await checkin_views(session, [participant.id], since=since)
    entries.sort(key=lambda v: (v.local_date, v.occurred_at or v.entry.recorded_at, v.id), reverse=True)
    return entries, list(reversed(checkins))
