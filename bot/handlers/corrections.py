"""/correct: the study team corrects a diary entry or a check-in, with a reason, from a phone.

    /correct                         how to use it
    /correct P001                    the participant's entries and check-ins of the last 7 days, with ids
    /correct P001 entry 123 time 09:00 reason participant called: applied at 9
    /correct P001 entry 123 kind missed missed_reason forgot reason ...
    /correct P001 entry 123 withdraw reason it did not happen
    /correct P001 checkin 45 itch 3 pain 2 reason typed 8 for 3

After the record's id come the changes (a word and its value; `withdraw` and `restore` have no
value), then `reason` and why. Times are the participant's local time; `time` takes HH:MM (the
entry's day) or YYYY-MM-DD HH:MM. Words may be quoted ("..." or “...”); `new_problem` and
`medicines_change` take words up to `reason`. Coordinators and the investigator only
(study/roles.py CORRECT). The correction itself is study/corrections.py: the record stays as it
was recorded; each changed field is a correction row and an audit-trail entry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from telegram import Update

from bot.access import staff_command
from bot.exactly_once import effects
from bot.replies import render, show
from bot.runtime import TrialbotContext
from bot.services import services
from messages.renderer import RenderedMessage
from study import corrections, participants, roles
from study.audit import Actor
from study.corrections import CorrectionRefused
from study.models import StaffMember

LIST_DAYS = 7
LISTED_ENTRIES = 15  # one Telegram message, with the longest values (messages lint checks)
LISTED_CHECKINS = 6
OPENING_QUOTES = {'"': '"', "“": "”", "„": "“", "«": "»", "”": "”"}
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_CLOCK = re.compile(r"^\d{1,2}[:.h]\d{2}$")
_RECORDS = {"entry": "entry", "e": "entry", "diary": "entry", "checkin": "checkin", "check-in": "checkin",
            "c": "checkin"}


@dataclass
class _Token:
    text: str
    start: int
    end: int
    quoted: bool = False


def _tokens(text: str) -> list[_Token]:
    """Words, and quoted words as one (straight or typographic quotes, as phones type them)."""
    found: list[_Token] = []
    i = 0
    while i < len(text):
        if text[i].isspace():
            i += 1
            continue
        closing = OPENING_QUOTES.get(text[i])
        if closing is not None:
            end = text.find(closing, i + 1)
            if end == -1:
                end = len(text)
            found.append(_Token(text[i + 1:end], i, min(end + 1, len(text)), quoted=True))
            i = end + 1
            continue
        start = i
        while i < len(text) and not text[i].isspace():
            i += 1
        found.append(_Token(text[start:i], start, i))
    return found


def _unquoted(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] in OPENING_QUOTES and text[-1] in set(OPENING_QUOTES.values()):
        return text[1:-1].strip()
    return text


@dataclass
class Command:
    study_id: str
    record: str | None = None  # entry | checkin; None: list the participant's records
    record_id: int = 0
    changes: list[tuple[str, str]] = field(default_factory=list)
    reason: str | None = None


def parse(text: str, missed_reasons: tuple[str, ...] | list[str] = ()) -> Command:
    """What follows /correct. Raises CorrectionRefused("syntax") when it cannot be read, and the
    domain's refusals for an unknown word."""
    tokens = _tokens(text)
    if not tokens:
        raise CorrectionRefused("syntax")
    command = Command(participants.normal_study_id(tokens[0].text)[:32])
    if len(tokens) == 1:
        return command
    record = _RECORDS.get(tokens[1].text.lower())
    if record is None or len(tokens) < 3 or not tokens[2].text.isdigit() or len(tokens[2].text) > 9:
        raise CorrectionRefused("syntax", study_id=command.study_id)
    command.record, command.record_id = record, int(tokens[2].text)
    words = corrections.ENTRY_WORDS if record == "entry" else corrections.CHECKIN_WORDS
    i = 3
    while i < len(tokens):
        token = tokens[i]
        word = token.text.lower().replace("-", "_")
        if word == "reason" and not token.quoted:
            command.reason = _unquoted(text[token.end:])
            break
        if word not in words:
            raise CorrectionRefused("unknown_field", study_id=command.study_id, record=record,
                                    record_id=command.record_id, field=token.text[:24], allowed=", ".join(words))
        i += 1
        if word in corrections.FLAG_WORDS:
            command.changes.append((word, ""))
            continue
        if i >= len(tokens) or (tokens[i].text.lower() == "reason" and not tokens[i].quoted):
            raise CorrectionRefused("bad_value", study_id=command.study_id, record=record,
                                    record_id=command.record_id, field=word, value="", allowed=_listed(word, missed_reasons))
        value = tokens[i].text
        i += 1
        if word == "time" and _DATE.match(value) and i < len(tokens) and _CLOCK.match(tokens[i].text):
            value, i = f"{value} {tokens[i].text}", i + 1
        elif word in corrections.TEXT_WORDS and not tokens[i - 1].quoted:
            end = i  # their words, up to `reason`
            while end < len(tokens) and not (tokens[end].text.lower() == "reason" and not tokens[end].quoted):
                end += 1
            value, i = text[tokens[i - 1].start:tokens[end - 1].end], end
        command.changes.append((word, value))
    return command


def _listed(word: str, missed_reasons: tuple[str, ...] | list[str]) -> str:
    """The values a word takes, when they are a list (the refusal explains the others)."""
    return {"kind": "applied | missed", "missed_reason": " | ".join((*missed_reasons, "none")),
            "reaction": " | ".join(corrections.REACTIONS),
            "severity": " | ".join((*corrections.SEVERITIES, "none")),
            "medicines": " | ".join(corrections.MEDICINES)}.get(word, "")


def _refused(context: TrialbotContext, member: StaffMember, refused: CorrectionRefused) -> RenderedMessage:
    details = {"study_id": "", "record": "entry", "record_id": 0, "field": "", "value": "", "allowed": "",
               "kind": "", **refused.details}
    return render(context, "staff_correct_refused", member.language, {
        "problem": refused.problem, "study_id": str(details["study_id"]), "record": details["record"],
        "record_id": int(details["record_id"] or 0), "field": str(details["field"]), "value": str(details["value"]),
        "allowed": str(details["allowed"]), "kind": str(details["kind"])})


@staff_command(roles.CORRECT, "correct")
async def correct(update: Update, context: TrialbotContext, member: StaffMember) -> None:
    svc = services(context)
    now = svc.clock.now()
    words = (update.effective_message.text or "").split(maxsplit=1) if update.effective_message else []
    if len(words) < 2:
        await show(update, context, render(context, "staff_correct_usage", member.language,
                                           {"missed_reasons": svc.protocol.diary.missed_reasons}))
        return
    try:
        command = parse(words[1], svc.protocol.diary.missed_reasons)
    except CorrectionRefused as refused:
        await show(update, context, _refused(context, member, refused))
        return
    if command.record is None:
        await show(update, context, await _listing(context, member, command.study_id))
        return
    actor = Actor.staff(member.id)
    async with effects(update, context) as fx:
        person = await participants.by_study_id(fx.session, command.study_id)
        try:
            if person is None:
                raise CorrectionRefused("unknown_participant", study_id=command.study_id)
            if command.record == "entry":
                done = await corrections.correct_entry(fx.session, svc.protocol, person, command.record_id,
                                                       command.changes, reason=command.reason, actor=actor, now=now)
            else:
                done = await corrections.correct_checkin(fx.session, person, command.record_id, command.changes,
                                                         reason=command.reason, actor=actor, now=now)
            fx.reply = render(context, "staff_correct_done", member.language, {
                "study_id": done.study_id, "record": str(done.entity), "record_id": done.record_id,
                "changes": [{"field": f, "old": old, "new": new} for f, old, new in done.changes()],
                "reason": done.rows[0].reason})
        except CorrectionRefused as refused:
            fx.reply = _refused(context, member, refused)
    await show(update, context, fx.reply)


async def _listing(context: TrialbotContext, member: StaffMember, study_id: str) -> RenderedMessage:
    svc = services(context)
    async with svc.db.read() as session:
        person = await participants.by_study_id(session, study_id)
        if person is None:
            return _refused(context, member, CorrectionRefused("unknown_participant", study_id=study_id))
        entries, checkins = await corrections.recent(session, person, now=svc.clock.now(), days=LIST_DAYS)
    zone = ZoneInfo(person.timezone)
    shown_entries = [_entry_row(v, zone) for v in entries[:LISTED_ENTRIES]]
    shown_checkins = [{"id": v.id, "day": v.checkin.local_date.isoformat(), "kind": v.checkin.kind,
                       **{name: "" if v[name] is None else str(v[name])
                          for name in ("itch", "pain", "reaction", "reaction_severity", "medicines")},
                       "corrected": v.corrected} for v in checkins[:LISTED_CHECKINS]]
    return render(context, "staff_correct_list", member.language, {
        "study_id": person.study_id, "timezone": person.timezone, "days": LIST_DAYS, "entries": shown_entries,
        "checkins": shown_checkins,
        "not_listed": max(len(entries) - LISTED_ENTRIES, 0) + max(len(checkins) - LISTED_CHECKINS, 0)})


def _entry_row(view: corrections.EntryView, zone: ZoneInfo) -> dict[str, object]:
    if view.kind == "missed" or view.occurred_at is None:
        when = view.local_date.isoformat()
    else:
        when = view.occurred_at.astimezone(zone).strftime("%Y-%m-%d %H:%M")
    state = ("undone" if view.undone else "withdrawn" if view.withdrawn_by_staff
             else "superseded" if view.superseded_by is not None else "")
    return {"id": view.id, "kind": view.kind, "when": when, "reason": view.missed_reason or "", "late": view.late,
            "corrected": view.corrected, "state": state, "by": view.superseded_by or 0}
