"""Symptom check-ins: one question at a time, kept as a draft until the participant confirms.

A full check-in asks the worst itch and worst skin pain of the last 24 hours (0-10), any
reaction where the cream goes and how bad, any new health problem (their words, optional), any
change of medicines or other creams on the treated skin (and then what changed: the protocol
requires a stable regimen, so the study team is told at once), and the red flags; then shows the
answers for review. Only "Save" writes the clinical record, so nothing is ever half-saved; the
draft lives in the database, so a check-in interrupted by a restart resumes where it stopped.

A draft is either asking its question or set aside ("Finish later"); only a draft that is asking
takes typed words as an answer, and only at a question that wants words (`TYPED_ANSWERS`).
Drafts expire (`[checkins] draft_expires`, by default at the participant's midnight): an expired
or restarted draft is kept in `incomplete_checkins` as it was, and the participant is told.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from enum import Enum
from typing import NamedTuple
from zoneinfo import ZoneInfo

from sqlalchemy import ScalarSelect, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from study import alerts, audit, outbox, pregnancy_pathway
from study.audit import Actor
from study.diary import local_today
from study.models import (
    Alert,
    AlertSource,
    CheckIn,
    CheckinDraft,
    CheckinEnding,
    CheckinKind,
    CheckinSource,
    DraftState,
    IncompleteCheckin,
    JSONObject,
    OutboxKind,
    Participant,
)
from study.protocol import Protocol

FULL_STEPS = ("itch", "pain", "reaction", "severity", "new_problem", "medicines", "medicines_change", "red_flags",
              "review")
SCORE_STEPS = ("itch", "pain", "review")
KINDS = tuple(CheckinKind)
SOURCES = tuple(CheckinSource)  # /symptoms, or the protocol's scheduled check-in
ENDINGS = tuple(CheckinEnding)  # why a check-in was never saved (incomplete_checkins.reason)
REACTIONS = ("none", "redness", "burning", "itching", "acne", "other")
SEVERITIES = ("mild", "moderate", "severe")
MEDICINES = ("no", "medicines", "other_cream", "both")
FREE_TEXT_MAX = 1000


def steps_of(kind: str) -> tuple[str, ...]:
    return FULL_STEPS if kind == CheckinKind.FULL else SCORE_STEPS


# Questions that are not asked, given the answers so far.
_SKIPPED: dict[str, Callable[[JSONObject], bool]] = {
    "severity": lambda answers: answers.get("reaction") == "none",  # no reaction: nothing to grade
    "medicines_change": lambda answers: answers.get("medicines", "no") == "no",  # nothing changed
}


def next_step(draft: CheckinDraft) -> str:
    steps = steps_of(draft.kind)
    index = steps.index(draft.step) + 1
    while index < len(steps) - 1 and steps[index] in _SKIPPED and _SKIPPED[steps[index]](draft.answers):
        index += 1
    return steps[min(index, len(steps) - 1)]


def expires_at(protocol: Protocol, participant: Participant, started_at: datetime) -> datetime:
    """When a draft started at `started_at` expires: the participant's next midnight (through
    daylight-saving changes, as their clock shows it), or a number of hours later."""
    rule = protocol.checkins.draft_expires
    if rule != "end_of_day":
        return started_at + timedelta(hours=int(rule))
    zone = ZoneInfo(participant.timezone)
    next_day = started_at.astimezone(zone).date() + timedelta(days=1)
    return datetime.combine(next_day, time(0), zone).astimezone(started_at.tzinfo)


async def draft_of(session: AsyncSession, participant: Participant, *, protocol: Protocol | None = None,
                   now: datetime | None = None) -> CheckinDraft | None:
    """The participant's check-in in progress. Given `protocol` and `now`, a draft past its
    time is expired on the spot (the tick may not have got to it yet) and None is returned."""
    draft = await session.scalar(select(CheckinDraft).where(CheckinDraft.participant_id == participant.id))
    if draft is not None and protocol is not None and now is not None and draft.expires_at <= now:
        await _end(session, protocol, participant, draft, reason=CheckinEnding.EXPIRED, now=now)
        return None
    return draft


async def start(session: AsyncSession, protocol: Protocol, participant: Participant, *, kind: str, source: str,
                now: datetime, fresh: bool = False) -> tuple[CheckinDraft, bool]:
    """The participant's draft, new or (unless `fresh`) the one already under way, which asks
    its question again; True if new. A draft started again is kept as incomplete first."""
    draft = await draft_of(session, participant, protocol=protocol, now=now)
    if draft is not None and not fresh:
        draft.state = DraftState.ASKING
        return draft, False
    if draft is not None:
        await _end(session, protocol, participant, draft, reason=CheckinEnding.RESTARTED, now=now)
    draft = CheckinDraft(participant_id=participant.id, kind=kind, source=source, step=steps_of(kind)[0], answers={},
                         started_at=now, updated_at=now, state=DraftState.ASKING,
                         expires_at=expires_at(protocol, participant, now))
    session.add(draft)
    await session.flush()
    return draft, True


def set_aside(draft: CheckinDraft, *, now: datetime) -> None:
    """"Finish later": the draft keeps its answers and question, and stops taking typed words."""
    draft.state, draft.updated_at = DraftState.LATER, now


def takes_typed_answer(draft: CheckinDraft | None) -> bool:
    """Is typed text, right now, meant as the answer to the draft's question?"""
    return draft is not None and draft.state == DraftState.ASKING and draft.step in TYPED_ANSWERS


async def _end(session: AsyncSession, protocol: Protocol, participant: Participant, draft: CheckinDraft, *,
               reason: str, now: datetime) -> IncompleteCheckin:
    """Keep an unfinished draft as incomplete (never as a check-in) and drop it. An expired one
    is a note to the participant; a change of medicines reported without saying what changed
    still reaches the study team."""
    kept = IncompleteCheckin(participant_id=participant.id, kind=draft.kind, source=draft.source, step=draft.step,
                             answers=dict(draft.answers), started_at=draft.started_at, ended_at=now,
                             local_date=local_today(participant, draft.started_at), timezone=participant.timezone,
                             reason=reason)
    session.add(kept)
    await session.flush()
    await audit.record(session, actor=audit.SYSTEM if reason == CheckinEnding.EXPIRED else Actor.participant(participant.study_id),
                       action="create", entity="incomplete_checkin", entity_id=kept.id, now=now,
                       new={"reason": reason, "step": draft.step, **draft.answers},
                       reason="check-in expired unfinished" if reason == CheckinEnding.EXPIRED else "check-in started again",
                       timezone=participant.timezone)
    await session.execute(delete(CheckinDraft).where(CheckinDraft.id == draft.id))
    started = f"{draft.started_at:%Y%m%dT%H%M%S%f}"
    changed = draft.answers.get("medicines", "no")
    if changed != "no" and not draft.answers.get("medicines_change"):
        await outbox.notify_staff(session, event_key=f"regimen:{participant.id}:{started}",
                                  template_id="staff_regimen_change",
                                  variables={"study_id": participant.study_id, "change": changed, "text": ""},
                                  now=now)
    if reason == CheckinEnding.EXPIRED:
        await outbox.enqueue(session, dedup_key=f"checkin_expired:{participant.id}:{started}",
                             template_id="checkin_expired", variables={}, now=now, participant_id=participant.id,
                             kind=OutboxKind.CHECKIN_EXPIRED)
    return kept


async def expire_due(session: AsyncSession, protocol: Protocol, *, now: datetime, limit: int = 500) -> int:
    """The tick's part: end every draft whose time has come (`draft_of` does the same for one)."""
    due = list((await session.scalars(select(CheckinDraft).where(CheckinDraft.expires_at <= now)
                                      .order_by(CheckinDraft.expires_at).limit(limit))).all())
    for draft in due:
        participant = await session.get(Participant, draft.participant_id)
        if participant is not None:  # a draft always has its participant (foreign key)
            await _end(session, protocol, participant, draft, reason=CheckinEnding.EXPIRED, now=now)
    return len(due)


class AnswerStatus(Enum):
    ACCEPTED = "accepted"
    INVALID = "invalid"  # not an answer to this question: ask again, kindly
    WRONG_STEP = "wrong_step"  # a button from an earlier question: show the current one


def parse_score(text: str) -> int | None:
    cleaned = text.strip()
    return int(cleaned) if cleaned.isascii() and cleaned.isdigit() and 0 <= int(cleaned) <= 10 else None


def parse_free_text(text: str) -> str | None:
    cleaned = text.strip()
    return cleaned if 0 < len(cleaned) <= FREE_TEXT_MAX else None


# The questions that take typed words, and what a valid answer is (None: not an answer).
TYPED_ANSWERS: dict[str, Callable[[str], object | None]] = {
    "itch": parse_score,
    "pain": parse_score,
    "new_problem": parse_free_text,
    "medicines_change": parse_free_text,
}
# Of those, the ones whose answer is the participant's own words (screened, and told to the team).
WORDS_ANSWERS = ("new_problem", "medicines_change")
_NUMBER_WORDS = frozenset((
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve", "none",
    "cero", "uno", "una", "dos", "tres", "cuatro", "cinco", "seis", "siete", "ocho", "nueve", "diez", "once", "doce",
    "ninguno"))


def looks_like_an_answer(step: str, text: str) -> bool:
    """Did the participant try to answer this question and miss ("12", "seven", "7.5")? Then the
    question is asked again, kindly. Anything else is words for the study team."""
    if step in ("itch", "pain"):
        words = text.casefold().replace(",", " ").replace(".", " ").split()
        return 0 < len(words) <= 3 and all(w.lstrip("+-").isdigit() or w in _NUMBER_WORDS for w in words)
    if step in WORDS_ANSWERS:
        return False  # any words answer these; too many are passed on whole, then asked again
    return False


async def notify_regimen_change(session: AsyncSession, participant: Participant, draft: CheckinDraft, *,
                                now: datetime) -> None:
    """The protocol requires a stable systemic regimen and no other creams on the treated skin:
    a change reported in a check-in is a notice to the study team at once (not a safety alert)."""
    await outbox.notify_staff(session, event_key=f"regimen:{participant.id}:{draft.started_at:%Y%m%dT%H%M%S%f}",
                              template_id="staff_regimen_change",
                              variables={"study_id": participant.study_id,
                                         "change": draft.answers.get("medicines", "medicines"),
                                         "text": draft.answers.get("medicines_change") or ""}, now=now)


class _Parsed(NamedTuple):
    """The answers after one accepted answer; `stay` for a toggle, whose question is asked again."""

    answers: JSONObject
    stay: bool = False


# One parser per check-in question, from the answers so far and the value given to the answers
# after it, or None for a value the question does not take.
_StepParser = Callable[[Protocol, JSONObject, str | None], _Parsed | None]


def _score(step: str) -> _StepParser:
    def parse(protocol: Protocol, answers: JSONObject, value: str | None) -> _Parsed | None:
        score = parse_score(value or "")
        return None if score is None else _Parsed({**answers, step: score})
    return parse


def _choice(step: str, allowed: Sequence[str], *, value_clearing: str | None = None,
            clears: str | None = None) -> _StepParser:
    """One of `allowed`; the answer `value_clearing` drops the follow-up question's answer `clears`
    (no reaction, no severity; no change of medicines, nothing to describe)."""
    def parse(protocol: Protocol, answers: JSONObject, value: str | None) -> _Parsed | None:
        if value not in allowed:
            return None
        updated = {**answers, step: value}
        if clears is not None and value == value_clearing:
            updated.pop(clears, None)
        return _Parsed(updated)
    return parse


def _new_problem(protocol: Protocol, answers: JSONObject, value: str | None) -> _Parsed | None:
    if value is None:
        return None
    text = value.strip()
    if text.lower() == "no" or not text:
        return _Parsed({**answers, "new_problem": None})
    return None if len(text) > FREE_TEXT_MAX else _Parsed({**answers, "new_problem": text})


def _medicines_change(protocol: Protocol, answers: JSONObject, value: str | None) -> _Parsed | None:
    text = parse_free_text(value) if value is not None else None
    return None if text is None else _Parsed({**answers, "medicines_change": text})


def _red_flags(protocol: Protocol, answers: JSONObject, value: str | None) -> _Parsed | None:
    chosen = list(answers.get("red_flags", []))
    if value == "done":
        return _Parsed({**answers, "red_flags": chosen})
    if value in protocol.safety.red_flags:
        chosen = [f for f in chosen if f != value] if value in chosen else [*chosen, value]
        return _Parsed({**answers, "red_flags": chosen}, stay=True)
    return None


STEP_PARSERS: dict[str, _StepParser] = {
    "itch": _score("itch"),
    "pain": _score("pain"),
    "reaction": _choice("reaction", REACTIONS, value_clearing="none", clears="severity"),
    "severity": _choice("severity", SEVERITIES),
    "new_problem": _new_problem,
    "medicines": _choice("medicines", MEDICINES, value_clearing="no", clears="medicines_change"),
    "medicines_change": _medicines_change,
    "red_flags": _red_flags,
}


def answer(protocol: Protocol, draft: CheckinDraft, step: str, value: str | None, *, now: datetime) -> AnswerStatus:
    """Record one answer in the draft (the caller's transaction persists it)."""
    if step != draft.step:
        return AnswerStatus.WRONG_STEP
    parser = STEP_PARSERS.get(step)
    parsed = parser(protocol, dict(draft.answers), value) if parser is not None else None
    if parsed is None:
        return AnswerStatus.INVALID
    draft.answers, draft.updated_at = parsed.answers, now
    draft.state = DraftState.ASKING  # answering a question set aside takes it up again
    if not parsed.stay:
        draft.step = next_step(draft)
    return AnswerStatus.ACCEPTED


def triggers_for(protocol: Protocol, answers: JSONObject) -> list[JSONObject]:
    """What in these answers the study team must hear about now. The participant's own words
    (a new health problem, what medicines changed) were screened when typed, and alerted then."""
    safety = protocol.safety
    found: list[JSONObject] = [{"red_flag": code} for code in answers.get("red_flags", []) or []]
    if answers.get("severity") == "severe":
        found.append({"reaction": answers.get("reaction"), "severity": "severe"})
    for score, threshold in (("itch", safety.itch_alert_at), ("pain", safety.pain_alert_at)):
        if answers.get(score) is not None and answers[score] >= threshold:
            found.append({"score": score, "value": answers[score]})
    return found


@dataclass
class Submitted:
    checkin: CheckIn
    alert: Alert | None = None
    triggers: list[JSONObject] = field(default_factory=list)


async def submit(session: AsyncSession, protocol: Protocol, participant: Participant, draft: CheckinDraft, *,
                 now: datetime) -> Submitted:
    """Save the check-in, raise an alert if anything in it calls for one, drop the draft."""
    a = draft.answers
    checkin = CheckIn(
        participant_id=participant.id, kind=draft.kind, started_at=draft.started_at, submitted_at=now,
        local_date=local_today(participant, now), timezone=participant.timezone, source=draft.source,
        itch=a.get("itch"), pain=a.get("pain"), reaction=a.get("reaction"), reaction_severity=a.get("severity"),
        new_problem=a.get("new_problem"), medicines=a.get("medicines"), medicines_change=a.get("medicines_change"),
        red_flags=a.get("red_flags"),
    )
    session.add(checkin)
    await session.flush()
    await audit.record(session, actor=Actor.participant(participant.study_id), action="create", entity="checkin",
                       entity_id=checkin.id, now=now, new={"kind": checkin.kind, **a}, reason="symptom check-in",
                       timezone=participant.timezone)
    await session.execute(delete(CheckinDraft).where(CheckinDraft.id == draft.id))
    triggers = triggers_for(protocol, a)
    for trigger in triggers:
        if trigger.get("red_flag") == pregnancy_pathway.FLAG:  # the pathway: treatment interrupted at once
            trigger.update(await pregnancy_pathway.interrupt(session, protocol, participant, source=AlertSource.CHECKIN,
                                                             now=now))
    alert = None
    if triggers:
        alert = await alerts.raise_alert(session, participant, source=AlertSource.CHECKIN, triggers=triggers, now=now,
                                         checkin_id=checkin.id)
    return Submitted(checkin, alert, triggers)


def last_submitted_column() -> ScalarSelect[datetime]:
    """When a participant last completed a full check-in, as a column of a query on participants.
    One index look-up per participant (participant, kind, submitted_at: the newest is the last
    entry of its range), however many check-ins each has made; not all of them read and grouped."""
    return (select(func.max(CheckIn.submitted_at))
            .where(CheckIn.participant_id == Participant.id, CheckIn.kind == CheckinKind.FULL)
            .correlate(Participant).scalar_subquery())
