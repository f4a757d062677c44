"""Symptom check-ins: one question at a time, kept as a draft until the participant confirms.

A full check-in asks the worst itch and worst skin pain of the last 24 hours (0-10), any
reaction where the cream goes and how bad, any new health problem (their words, optional), any
change of medicines or other creams on the treated skin, and the red flags; then shows the
answers for review. Only "Save" writes the clinical record, so nothing is ever half-saved; the
draft lives in the database, so a check-in interrupted by a restart resumes where it stopped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from study import alerts, audit, red_flags
from study.audit import Actor
from study.database import among
from study.diary import local_today
from study.models import Alert, CheckIn, CheckinDraft, Participant
from study.protocol import Protocol

FULL_STEPS = ("itch", "pain", "reaction", "severity", "new_problem", "medicines", "red_flags", "review")
SCORE_STEPS = ("itch", "pain", "review")
REACTIONS = ("none", "redness", "burning", "itching", "acne", "other")
SEVERITIES = ("mild", "moderate", "severe")
MEDICINES = ("no", "medicines", "other_cream", "both")
NEW_PROBLEM_MAX = 1000


def steps_of(kind: str) -> tuple[str, ...]:
    return FULL_STEPS if kind == "full" else SCORE_STEPS


def next_step(draft: CheckinDraft) -> str:
    steps = steps_of(draft.kind)
    index = steps.index(draft.step) + 1
    if index < len(steps) and steps[index] == "severity" and draft.answers.get("reaction") == "none":
        index += 1  # no reaction: nothing to grade
    return steps[min(index, len(steps) - 1)]


async def draft_of(session: AsyncSession, participant: Participant) -> CheckinDraft | None:
    return await session.scalar(select(CheckinDraft).where(CheckinDraft.participant_id == participant.id))


async def start(session: AsyncSession, participant: Participant, *, kind: str, source: str, now: datetime,
                fresh: bool = False) -> tuple[CheckinDraft, bool]:
    """The participant's draft, new or (unless `fresh`) the one already under way; True if new."""
    draft = await draft_of(session, participant)
    if draft is not None and not fresh:
        return draft, False
    if draft is not None:
        await session.execute(delete(CheckinDraft).where(CheckinDraft.id == draft.id))
    draft = CheckinDraft(participant_id=participant.id, kind=kind, source=source, step=steps_of(kind)[0], answers={},
                         started_at=now, updated_at=now)
    session.add(draft)
    await session.flush()
    return draft, True


class AnswerStatus(Enum):
    ACCEPTED = "accepted"
    INVALID = "invalid"  # not an answer to this question: ask again, kindly
    WRONG_STEP = "wrong_step"  # a button from an earlier question: show the current one


def parse_score(text: str) -> int | None:
    cleaned = text.strip()
    return int(cleaned) if cleaned.isdigit() and 0 <= int(cleaned) <= 10 else None


def answer(protocol: Protocol, draft: CheckinDraft, step: str, value: str | None, *, now: datetime) -> AnswerStatus:
    """Record one answer in the draft (the caller's transaction persists it)."""
    if step != draft.step:
        return AnswerStatus.WRONG_STEP
    answers = dict(draft.answers)
    if step in ("itch", "pain"):
        score = parse_score(value or "")
        if score is None:
            return AnswerStatus.INVALID
        answers[step] = score
    elif step == "reaction" and value in REACTIONS:
        answers["reaction"] = value
        if value == "none":
            answers.pop("severity", None)
    elif step == "severity" and value in SEVERITIES:
        answers["severity"] = value
    elif step == "new_problem" and value is not None:
        text = value.strip()
        if text.lower() == "no" or not text:
            answers["new_problem"] = None
        elif len(text) > NEW_PROBLEM_MAX:
            return AnswerStatus.INVALID
        else:
            answers["new_problem"] = text
    elif step == "medicines" and value in MEDICINES:
        answers["medicines"] = value
    elif step == "red_flags" and value is not None:
        chosen = list(answers.get("red_flags", []))
        if value == "done":
            answers["red_flags"] = chosen
        elif value in protocol.safety.red_flags:
            chosen = [f for f in chosen if f != value] if value in chosen else [*chosen, value]
            answers["red_flags"] = chosen
            draft.answers, draft.updated_at = answers, now
            return AnswerStatus.ACCEPTED  # a toggle: stay on this question
        else:
            return AnswerStatus.INVALID
    else:
        return AnswerStatus.INVALID
    draft.answers, draft.updated_at = answers, now
    draft.step = next_step(draft)
    return AnswerStatus.ACCEPTED


def triggers_for(protocol: Protocol, answers: dict) -> list[dict]:
    """What in these answers the study team must hear about now."""
    safety = protocol.safety
    found: list[dict] = [{"red_flag": code} for code in answers.get("red_flags", []) or []]
    if answers.get("severity") == "severe":
        found.append({"reaction": answers.get("reaction"), "severity": "severe"})
    for score, threshold in (("itch", safety.itch_alert_at), ("pain", safety.pain_alert_at)):
        if answers.get(score) is not None and answers[score] >= threshold:
            found.append({"score": score, "value": answers[score]})
    text = answers.get("new_problem")
    if text:
        words = red_flags.matches(text, [w for ws in safety.red_flag_words.values() for w in ws])
        if words:
            found.append({"words": words, "text": text[:300]})
    return found


@dataclass
class Submitted:
    checkin: CheckIn
    alert: Alert | None = None
    triggers: list[dict] = field(default_factory=list)


async def submit(session: AsyncSession, protocol: Protocol, participant: Participant, draft: CheckinDraft, *,
                 now: datetime) -> Submitted:
    """Save the check-in, raise an alert if anything in it calls for one, drop the draft."""
    a = draft.answers
    checkin = CheckIn(
        participant_id=participant.id, kind=draft.kind, started_at=draft.started_at, submitted_at=now,
        local_date=local_today(participant, now), timezone=participant.timezone, source=draft.source,
        itch=a.get("itch"), pain=a.get("pain"), reaction=a.get("reaction"), reaction_severity=a.get("severity"),
        new_problem=a.get("new_problem"), medicines=a.get("medicines"), red_flags=a.get("red_flags"),
    )
    session.add(checkin)
    await session.flush()
    await audit.record(session, actor=Actor.participant(participant.study_id), action="create", entity="checkin",
                       entity_id=checkin.id, now=now, new={"kind": checkin.kind, **a}, reason="symptom check-in",
                       timezone=participant.timezone)
    await session.execute(delete(CheckinDraft).where(CheckinDraft.id == draft.id))
    triggers = triggers_for(protocol, a)
    alert = None
    if triggers:
        alert = await alerts.raise_alert(session, participant, source="checkin", triggers=triggers, now=now,
                                         checkin_id=checkin.id)
    return Submitted(checkin, alert, triggers)


async def discard(session: AsyncSession, participant: Participant) -> None:
    await session.execute(delete(CheckinDraft).where(CheckinDraft.participant_id == participant.id))


async def last_submitted(session: AsyncSession, participant_ids: list[int]) -> dict[int, datetime]:
    """When each participant last completed a full check-in (for planning the next one)."""
    query = (select(CheckIn.participant_id, func.max(CheckIn.submitted_at))
             .where(among(session, CheckIn.participant_id, participant_ids), CheckIn.kind == "full")
             .group_by(CheckIn.participant_id))
    return {pid: at for pid, at in (await session.execute(query)).all()}
