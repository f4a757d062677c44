"""The short strings buttons send back (at most 64 bytes), and how they are read.

They are never trusted: a client can send any string. Parsers return None for anything
malformed, and handlers check every value (days, hours, reasons) against the participant's own
rules before acting. The diary's "form" token is fresh each time a diary keyboard is drawn, so a
double tap on one keyboard is recognised as the same answer, not a second application.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import date, datetime

CONSENT_AGREE = "c:a:"
CONSENT_DECLINE = "c:d:"
CONSENT_PATTERN = r"^c:[ad]:"

DIARY_NOW = "d:n"
DIARY_EARLIER = "d:e"
DIARY_MISSED = "d:m"
DIARY_TODAY = "d:t"
DIARY_MENU = "d:menu"

_FORM = r"[A-Za-z0-9_-]{4,12}"
NOW_PATTERN = rf"^d:n:{_FORM}$"
EARLIER_PATTERN = rf"^d:e:{_FORM}(:\d{{8}}(:\d{{2}})?)?$"
MISSED_PATTERN = rf"^d:m:{_FORM}(:\d{{8}}(:[a-z_]{{1,16}})?)?$"
TODAY_PATTERN = r"^d:t$"
MENU_PATTERN = r"^d:menu$"

# /times: "t:<slot index>" picks which reminder to move, "t:<slot index>:<HHMM>" moves it.
TIMES_PATTERN = r"^t:\d(:\d{4})?$"
TIMES_MENU = "t"
TIMES_MENU_PATTERN = r"^t$"


def slot_day(form: str) -> date | None:
    """A reminder's buttons carry its slot as the form token (s + yymmddHHMM): its day is known."""
    if len(form) == 11 and form.startswith("s") and form[1:].isdigit():
        return parse_day("20" + form[1:7])
    return None


def slot_key(form: str) -> str | None:
    """A reminder's form token as its slot's key in outbox keys (yyyymmddHHMM), else None."""
    return "20" + form[1:] if slot_day(form) is not None else None


# Record ids are database integers (PostgreSQL INTEGER): a forged id past the largest one a
# table can hold names no record, and must not reach a query that would fail on it.
MAX_RECORD_ID = 2**31 - 1


def record_id(token: str) -> int | None:
    """A record id carried by a button, or None when it is not one (too long, not digits)."""
    if not token.isdigit() or len(token) > 10 or int(token) > MAX_RECORD_ID:
        return None
    return int(token)


def hhmm(token: str) -> tuple[int, int] | None:
    """A time of day carried as HHMM ("0800"), or None for anything else ("2599")."""
    if len(token) != 4 or not token.isdigit():
        return None
    hour, minute = int(token[:2]), int(token[2:])
    return (hour, minute) if hour < 24 and minute < 60 else None


def new_form() -> str:
    return secrets.token_urlsafe(6)[:8]


def day_token(day: date) -> str:
    return day.strftime("%Y%m%d")


def parse_day(token: str) -> date | None:
    try:
        return datetime.strptime(token, "%Y%m%d").date()
    except ValueError:
        return None


@dataclass(frozen=True)
class DiaryStep:
    """A press inside a diary form: which form, and how far the participant has got."""

    form: str
    day: date | None = None
    detail: str | None = None  # an hour "07" (applied earlier) or a reason (missed)

    @classmethod
    def parse(cls, data: str) -> DiaryStep | None:
        parts = data.split(":")
        if len(parts) < 3:
            return None
        form = parts[2]
        if len(parts) == 3:
            return cls(form)
        day = parse_day(parts[3])
        if day is None:
            return None
        return cls(form, day, parts[4] if len(parts) > 4 else None)


def diary(action: str, form: str, day: date | None = None, detail: str | None = None) -> str:
    data = f"{action}:{form}"
    if day is not None:
        data += f":{day_token(day)}"
    if detail is not None:
        data += f":{detail}"
    return data


# Visit reminders: "v:c:<visit id>:<revision>" confirms, "v:r:<visit id>:<revision>" asks to
# reschedule. The handler looks the visit up among the pressing participant's own visits only,
# and a revision that is not the visit's current one (it was moved since) changes nothing.
VISIT_PATTERN = r"^v:[cr]:\d{1,10}:\d{1,6}$"
VISIT_CONFIRM = "c"
VISIT_RESCHEDULE = "r"


@dataclass(frozen=True)
class VisitAnswer:
    action: str
    visit_id: int
    revision: int

    @classmethod
    def parse(cls, data: str) -> VisitAnswer | None:
        if not re.match(VISIT_PATTERN, data or ""):
            return None
        _, action, visit_id, revision = data.split(":")
        found = record_id(visit_id)
        return None if found is None else cls(action, found, int(revision))


def visit(action: str, visit_id: int, revision: int) -> str:
    return f"v:{action}:{visit_id}:{revision}"


# Pregnancy-test reminders: "p:<n|p|w>:<participant id>:<due YYYYMMDD>:<repeat>" (negative,
# positive, not yet - wait). The handler acts only if the participant id is the presser's own and
# the due day is the one their records make due now.
PREGNANCY_PATTERN = r"^p:[npw]:\d{1,10}:\d{8}:\d{1,4}$"
PREGNANCY_RESULTS = {"n": "negative", "p": "positive", "w": "not_yet"}  # the buttons, in this order


def pregnancy(result: str, participant_id: int, due: date, repeat: int) -> str:
    """A pregnancy reminder's button for `result` (a value of PREGNANCY_RESULTS)."""
    code = next(code for code, named in PREGNANCY_RESULTS.items() if named == result)
    return f"p:{code}:{participant_id}:{day_token(due)}:{repeat}"


@dataclass(frozen=True)
class PregnancyAnswer:
    result: str
    participant_id: int
    due: date
    repeat: int

    @classmethod
    def parse(cls, data: str) -> PregnancyAnswer | None:
        if not re.match(PREGNANCY_PATTERN, data or ""):
            return None
        _, code, participant_id, due, repeat = data.split(":")
        day, found = parse_day(due), record_id(participant_id)
        if day is None or found is None:
            return None
        return cls(PREGNANCY_RESULTS[code], found, day, int(repeat))


# The contraception question asked with a negative test: p:c:<participant>:<due>:<repeat>:<y|n>.
CONTRACEPTION_PATTERN = r"^p:c:\d{1,10}:\d{8}:\d{1,4}:[yn]$"


@dataclass(frozen=True)
class ContraceptionAnswer:
    participant_id: int
    due: date
    repeat: int
    uses: bool

    @classmethod
    def parse(cls, data: str) -> ContraceptionAnswer | None:
        if not re.match(CONTRACEPTION_PATTERN, data or ""):
            return None
        _, _, participant_id, due, repeat, uses = data.split(":")
        day, found = parse_day(due), record_id(participant_id)
        return None if day is None or found is None else cls(found, day, int(repeat), uses == "y")


# Check-ins: "k:<question>:<answer>" answers the question the draft is on; "k:save", "k:later",
# "k:resume", "k:restart" and "k:start:<full|scores>" steer the check-in itself.
CHECKIN_PATTERN = r"^k:(itch|pain|reaction|severity|new_problem|medicines|red_flags):[a-z0-9_]{1,20}$"
CHECKIN_CONTROL_PATTERN = r"^k:(save|later|resume|restart|start:full|start:scores)$"
# /urgent: "u:<red flag code>" or "u:other".
URGENT_PATTERN = r"^u:[a-z_]{1,20}$"
# Staff: "a:<alert id>" acknowledges an alert.
ACK_PATTERN = r"^a:\d{1,10}$"
# Broadcasts: confirm / cancel (the author) and approve (a second staff member); b:<step>:<id>.
BROADCAST_CONFIRM_PATTERN = r"^b:[sx]:\d{1,10}$"
BROADCAST_APPROVE_PATTERN = r"^b:a:\d{1,10}$"
# Withdrawing a broadcast awaiting approval (its author or the investigator): b:w:<id>.
BROADCAST_WITHDRAW_PATTERN = r"^b:w:\d{1,10}$"
# Picking with buttons: b:p:<notice>[:<audience>].
BROADCAST_PICK_PATTERN = r"^b:p:(notice|closure)(:(all|wocbp|visits:\d{1,2}))?$"

# /staff (the investigator): s:l the team, s:m:<member> a card, s:r:<member>:<c|i|m> propose a
# role, s:d:<member> propose ending access, s:a:<change>:<c|i|m> an addition's role,
# s:y:<change>[:<c|i|m>] Confirm, s:n:<change> Cancel (bot/handlers/team.py).
STAFF_PATTERN = r"^s:(l|[mdn]:\d{1,10}|[ra]:\d{1,10}:[cim]|y:\d{1,10}(:[cim])?)$"
# /enroll, one question at a time: en:<draft id>:<answer> with the answer z:<zone> (a time zone),
# l:<language>, w:y|w:n (pregnancy tests apply or not), t:d (the protocol's reminder times),
# c (confirm the summary) or x (cancel). Checked against the presser's own draft and its step.
ENROL_PATTERN = r"^en:\d{1,10}:(z:[A-Za-z0-9_+/-]{1,40}|l:[a-z]{2}|w:[yn]|t:d|c|x)$"
# /invite P001's confirmation: iv:<s|x>:<participant id>:<their newest invite id when asked>.
INVITE_PATTERN = r"^iv:[sx]:\d{1,10}:\d{1,10}$"


@dataclass(frozen=True)
class EnrolAnswer:
    draft_id: int
    action: str  # z l w t c x
    value: str = ""

    @classmethod
    def parse(cls, data: str) -> EnrolAnswer | None:
        if not re.match(ENROL_PATTERN, data or ""):
            return None
        _, draft_id, rest = data.split(":", 2)
        action, _, value = rest.partition(":")
        return cls(int(draft_id), action, value)


def enrol(draft_id: int, action: str, value: str = "") -> str:
    return f"en:{draft_id}:{action}" + (f":{value}" if value else "")


@dataclass(frozen=True)
class InviteAnswer:
    issue: bool
    participant_id: int
    newest_invite_id: int

    @classmethod
    def parse(cls, data: str) -> InviteAnswer | None:
        if not re.match(INVITE_PATTERN, data or ""):
            return None
        _, action, participant_id, invite_id = data.split(":")
        return cls(action == "s", int(participant_id), int(invite_id))


def invite(issue: bool, participant_id: int, newest_invite_id: int) -> str:
    return f"iv:{'s' if issue else 'x'}:{participant_id}:{newest_invite_id}"
# Staff requests (bot/handlers/manage.py, study/staff_requests.py; q: as in request, s: is /staff):
# under /visits P001,
# q:<p|m|c|d>:<participant id> plans from a baseline date, moves, cancels or marks a visit done;
# q:v:<request>:<visit> picks the visit a request is about; q:y:<request> confirms, q:n:<request>
# cancels. Each press is checked against the presser's own request and the participant's visits.
VISITS_BUTTON_PATTERN = r"^q:[pmcd]:\d{1,10}$"
REQUEST_VISIT_PATTERN = r"^q:v:\d{1,10}:\d{1,10}$"
REQUEST_DECIDE_PATTERN = r"^q:[yn]:\d{1,10}$"
