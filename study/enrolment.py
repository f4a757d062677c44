"""Enrolling a participant from the staff chat (/enroll P001), one question at a time.

A draft holds a staff member's enrolment in progress: the answers so far and the question it is
on (table `enrolment_drafts`, so a restart loses nothing and any process takes the next answer).
The questions: the participant's time zone, the language of their messages, whether pregnancy
tests apply, their reminder times; then a summary to confirm. Nothing is enrolled until the
staff member confirms; then `participants.enroll` and `invites.issue` run, exactly as
`trialbot enroll` runs them, under the staff member's name. Telegram-free: the bot's handler
(bot/handlers/enrolment.py) turns presses and typed words into these calls.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from study import invites, participants, zones
from study.audit import Actor
from study.invites import IssuedInvite
from study.models import (
    EnrolmentDraft,
    EnrolmentDraftState,
    EnrolmentStep,
    Invite,
    Participant,
    StaffMember,
)
from study.participants import EnrolmentError, EnrolmentRequest
from study.protocol import Protocol

# An enrolment left unanswered this long is over: its buttons are stale, typed words are not its answers.
DRAFT_KEPT = timedelta(hours=24)
STEPS = (EnrolmentStep.TIMEZONE, EnrolmentStep.LANGUAGE, EnrolmentStep.WOCBP, EnrolmentStep.TIMES,
         EnrolmentStep.CONFIRM)
MAX_TYPED = zones.MAX_TYPED  # characters of a typed answer worth reading (and showing back)


class DraftProblem(ValueError):
    """The enrolment cannot go on as asked; `code` names why for the staff member's template:
    invalid_id, exists, invalid_answers."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def valid_study_id(study_id: str) -> bool:
    """Can the typed words be a study id (read in capitals: p001 is P001)?"""
    try:
        participants.check_study_id(study_id)
    except EnrolmentError:
        return False
    return True


async def start(session: AsyncSession, protocol: Protocol, member: StaffMember, study_id: str, *,
                now: datetime) -> EnrolmentDraft:
    """A new enrolment for `study_id` (as stored: " p001" is P001); the member's enrolment in
    progress, if any, is replaced."""
    try:
        study_id = participants.check_study_id(study_id)
    except EnrolmentError:
        raise DraftProblem("invalid_id") from None
    if await participants.by_study_id(session, study_id) is not None:
        raise DraftProblem("exists")
    for old in await _open_drafts(session, member):
        old.state, old.updated_at = EnrolmentDraftState.REPLACED, now
    draft = EnrolmentDraft(staff_id=member.id, study_id=study_id, state=EnrolmentDraftState.OPEN,
                           step=EnrolmentStep.TIMEZONE, started_at=now, updated_at=now)
    if len(protocol.study.languages) == 1:  # nothing to choose
        draft.language = protocol.study.languages[0]
    session.add(draft)
    await session.flush()
    return draft


async def _open_drafts(session: AsyncSession, member: StaffMember) -> list[EnrolmentDraft]:
    return list((await session.scalars(select(EnrolmentDraft).where(
        EnrolmentDraft.staff_id == member.id, EnrolmentDraft.state == EnrolmentDraftState.OPEN))).all())


def is_current(draft: EnrolmentDraft | None, member: StaffMember, now: datetime) -> bool:
    """The member's own enrolment, still being answered and not left too long."""
    return (draft is not None and draft.staff_id == member.id and draft.state == EnrolmentDraftState.OPEN
            and now - draft.updated_at < DRAFT_KEPT)


async def current(session: AsyncSession, member: StaffMember, *, now: datetime) -> EnrolmentDraft | None:
    """The member's enrolment in progress (the one their typed words answer), if any."""
    draft = await session.scalar(
        select(EnrolmentDraft).where(EnrolmentDraft.staff_id == member.id,
                                     EnrolmentDraft.state == EnrolmentDraftState.OPEN)
        .order_by(EnrolmentDraft.id.desc()).limit(1))
    return draft if is_current(draft, member, now) else None


async def get(session: AsyncSession, draft_id: int, member: StaffMember, *, now: datetime) -> EnrolmentDraft | None:
    """The draft a button names, if it is the member's and still being answered. Read for update:
    two presses on it (a Confirm tapped twice, on two copies of the summary) go one after the other."""
    draft = await session.scalar(select(EnrolmentDraft).where(EnrolmentDraft.id == draft_id).with_for_update())
    return draft if is_current(draft, member, now) else None


def next_step(draft: EnrolmentDraft) -> EnrolmentStep:
    """The first question not answered yet; the summary once all are."""
    answers = {EnrolmentStep.TIMEZONE: draft.timezone, EnrolmentStep.LANGUAGE: draft.language,
               EnrolmentStep.WOCBP: draft.wocbp, EnrolmentStep.TIMES: draft.reminder_times}
    for step in STEPS[:-1]:
        if answers[step] is None:
            return step
    return EnrolmentStep.CONFIRM


def _moved(draft: EnrolmentDraft, now: datetime) -> None:
    draft.step = next_step(draft)
    draft.updated_at = now


# --- the answers ---------------------------------------------------------------------------


_TIME = re.compile(r"^(\d{1,2})[:.h](\d{2})$")


@dataclass(frozen=True)
class TimesAnswer:
    times: tuple[time, ...] | None
    problem: str = ""  # format | count | repeated


def read_times(words: str, protocol: Protocol) -> TimesAnswer:
    """Typed reminder times ("08:00,20:00", "8:00 20:00"): one per daily application, each a
    24-hour time, none twice; put in order."""
    parsed = []
    for token in re.split(r"[\s,;]+", words.strip()[:MAX_TYPED]):
        if not token:
            continue
        match = _TIME.match(token)
        if match is None or int(match[1]) > 23 or int(match[2]) > 59:
            return TimesAnswer(None, "format")
        parsed.append(time(int(match[1]), int(match[2])))
    if len(parsed) != protocol.treatment.applications_per_day:
        return TimesAnswer(None, "count" if parsed else "format")
    if len(set(parsed)) != len(parsed):
        return TimesAnswer(None, "repeated")
    return TimesAnswer(tuple(sorted(parsed)))


def set_timezone(draft: EnrolmentDraft, zone: str, *, now: datetime) -> None:
    answer = zones.read(zone)
    if answer.zone is None:
        raise DraftProblem("invalid_answers")
    draft.timezone = answer.zone
    _moved(draft, now)


def set_language(draft: EnrolmentDraft, protocol: Protocol, language: str, *, now: datetime) -> None:
    if language not in protocol.study.languages:
        raise DraftProblem("invalid_answers")
    draft.language = language
    _moved(draft, now)


def set_wocbp(draft: EnrolmentDraft, wocbp: bool, *, now: datetime) -> None:
    draft.wocbp = wocbp
    _moved(draft, now)


def set_times(draft: EnrolmentDraft, times: tuple[time, ...], *, now: datetime) -> None:
    draft.reminder_times = participants.format_times(times)
    _moved(draft, now)


def times_of(draft: EnrolmentDraft) -> tuple[time, ...]:
    return participants.parse_times(draft.reminder_times or "")


# --- the end -------------------------------------------------------------------------------


async def confirm(session: AsyncSession, protocol: Protocol, draft: EnrolmentDraft, member: StaffMember, *,
                  now: datetime) -> tuple[Participant, IssuedInvite]:
    """Enrol and invite, as `trialbot enroll` does, under the member's name. DraftProblem
    "exists" when the study id was enrolled meanwhile (by someone else, or by the command line)."""
    if next_step(draft) is not EnrolmentStep.CONFIRM:
        raise DraftProblem("invalid_answers")
    if await participants.by_study_id(session, draft.study_id) is not None:
        raise DraftProblem("exists")
    request = EnrolmentRequest(study_id=draft.study_id, timezone=draft.timezone or "", language=draft.language or "",
                               wocbp=bool(draft.wocbp), reminder_times=times_of(draft))
    actor = Actor.staff(member.id)
    try:
        participant = await participants.enroll(session, protocol, request, actor=actor, now=now)
    except participants.EnrolmentError:  # the protocol changed under the draft (a language dropped...)
        raise DraftProblem("invalid_answers") from None
    issued = await invites.issue(session, participant, valid_for=timedelta(days=protocol.enrolment.invite_valid_days),
                                 actor=actor, now=now)
    draft.state, draft.participant_id, draft.updated_at = EnrolmentDraftState.ENROLLED, participant.id, now
    return participant, issued


def cancel(draft: EnrolmentDraft, *, now: datetime) -> None:
    draft.state, draft.updated_at = EnrolmentDraftState.CANCELLED, now


async def reissue(session: AsyncSession, protocol: Protocol, participant: Participant, member: StaffMember, *,
                  now: datetime) -> IssuedInvite:
    """/invite P001: a new invite; earlier unused ones stop working (invites.InviteRefused for a
    participant who left the study)."""
    return await invites.issue(session, participant, valid_for=timedelta(days=protocol.enrolment.invite_valid_days),
                               actor=Actor.staff(member.id), now=now)


async def newest_invite_id(session: AsyncSession, participant: Participant) -> int:
    """The participant's newest invite (0 if none): a confirmation of /invite names it, so a
    confirmation pressed after another invite was issued is recognised as stale."""
    found = await session.scalar(select(Invite.id).where(Invite.participant_id == participant.id)
                                 .order_by(Invite.id.desc()).limit(1))
    return found or 0
