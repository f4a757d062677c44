"""Is an outbox message still wanted when its time comes (study/still_wanted.py)? Each kind's rule
and the rules common to all, against a real database, with the reasons word for word as the
outbox and its delivery events record them. The dispatcher's side (a skip recorded, nothing sent)
is in the delivery tests: test_reminders, test_visits, test_pregnancy_tests, test_staff..."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from itertools import count
from typing import Any

from study import broadcasts, outbox, pregnancy_tests, roles, still_wanted
from study.database import Database
from study.models import (
    Alert,
    AlertStatus,
    DiaryEntry,
    OutboxKind,
    OutboxMessage,
    Participant,
    ParticipantMessage,
    PregnancyTest,
    StaffMember,
    Visit,
    VisitStatus,
)
from study.protocol import Protocol

NOW = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
_ids = count(1)


def test_every_kind_of_outbox_message_has_its_rule() -> None:
    """The table is the one place a kind's delivery rules are: a kind added to OutboxKind (and so
    to the database's CHECK) without its row here fails this, rather than being judged by nothing."""
    assert set(still_wanted.RULES) == set(OutboxKind)
    assert all(isinstance(kind, OutboxKind) for kind in still_wanted.RULES)
    # The slot kinds (whose keys end with the slot's) are the ones judged by the dose recorded.
    assert {kind for kind, rule in still_wanted.RULES.items()
            if rule.check is still_wanted.RULES[OutboxKind.REMINDER].check} == set(outbox.SLOT_KINDS)
    # What a participant who paused still gets: answers to what they themselves sent.
    assert {kind for kind, rule in still_wanted.RULES.items() if rule.while_paused} == {OutboxKind.MESSAGE_RECEIPT}
    # Every permission a kind needs is one a role can have.
    assert {rule.needs for rule in still_wanted.RULES.values() if rule.needs} <= roles.EVERYTHING
    assert {kind for kind, rule in still_wanted.RULES.items() if rule.needs} == {
        OutboxKind.ALERT, OutboxKind.PARTICIPANT_MESSAGE, OutboxKind.MEDIA_COPY}


# --- helpers: rows made directly, as the rules read them ----------------------------------------

async def participant(session: Any, **fields: Any) -> Participant:
    n = next(_ids)
    values: dict[str, Any] = dict(study_id=f"W{n:03d}", timezone="UTC", language="en", reminder_times="08:00,20:00",
                                  status="active", telegram_user_id=5000 + n, telegram_chat_id=5000 + n,
                                  enrolled_at=NOW - timedelta(days=30), consented_at=NOW - timedelta(days=30),
                                  active_since=NOW - timedelta(days=30))
    person = Participant(**{**values, **fields})
    session.add(person)
    await session.flush()
    return person


async def member(session: Any, role: str = "coordinator", *, active: bool = True) -> StaffMember:
    n = next(_ids)
    person = StaffMember(telegram_user_id=9000 + n, name=f"Staff {n}", role=role, active=active, language="en",
                         added_at=NOW - timedelta(days=30))
    session.add(person)
    await session.flush()
    return person


async def queued(session: Any, kind: OutboxKind, to: Participant | StaffMember, *, key: str | None = None,
                 **fields: Any) -> OutboxMessage:
    person = {"participant_id": to.id} if isinstance(to, Participant) else {"staff_id": to.id}
    row = await outbox.enqueue(session, dedup_key=key or f"{kind}:{next(_ids)}", template_id="t",
                               variables=fields.pop("variables", {}), now=NOW - timedelta(minutes=5), kind=kind,
                               **person, **fields)
    assert row is not None
    return row


async def why_not(session: Any, protocol: Protocol, row: OutboxMessage,
                  to: Participant | StaffMember | None, *, now: datetime = NOW) -> str | None:
    return await still_wanted.why_not(session, protocol, row, to, now)


# --- the rules common to all kinds --------------------------------------------------------------

async def test_a_recipient_gone_inactive_unlinked_or_not_active_gets_nothing(db: Database, protocol: Protocol) -> None:
    async with db.transaction() as session:
        active, coordinator = await participant(session), await member(session)
        notice = await queued(session, OutboxKind.NOTICE, active)
        assert await why_not(session, protocol, notice, active) is None
        assert await why_not(session, protocol, notice, None) == "recipient no longer exists"

        gone = await member(session, active=False)
        assert await why_not(session, protocol, await queued(session, OutboxKind.DIGEST, gone), gone) == \
            "staff member inactive"
        assert await why_not(session, protocol, await queued(session, OutboxKind.DIGEST, coordinator), coordinator) \
            is None

        unlinked = await participant(session, telegram_chat_id=None, telegram_user_id=None, status="invited")
        assert await why_not(session, protocol, await queued(session, OutboxKind.NOTICE, unlinked), unlinked) == \
            "participant has no linked chat"  # (before their status: it says more)

        for status in ("invited", "paused", "withdrawn", "completed"):
            person = await participant(session, status=status)
            for kind in (OutboxKind.NOTICE, OutboxKind.REMINDER, OutboxKind.BROADCAST, OutboxKind.REPLY):
                assert await why_not(session, protocol, await queued(session, kind, person), person) == \
                    f"participant is {status}", (status, kind)
            receipt = await queued(session, OutboxKind.MESSAGE_RECEIPT, person)
            assert await why_not(session, protocol, receipt, person) == (
                None if status == "paused" else f"participant is {status}"), status


async def test_a_staff_member_gets_only_what_their_role_receives(db: Database, protocol: Protocol) -> None:
    async with db.transaction() as session:
        person = await participant(session)
        alert = Alert(participant_id=person.id, source="urgent", triggers=[], reported_at=NOW, status="open")
        session.add(alert)
        await session.flush()
        words = ParticipantMessage(participant_id=person.id, direction="in", text="hello", at=NOW, timezone="UTC",
                                   kind="photo", telegram_message_id=77)
        session.add(words)
        await session.flush()
        for role in ("coordinator", "investigator", "monitor"):
            staff = await member(session, role)
            rows = {
                OutboxKind.ALERT: await queued(session, OutboxKind.ALERT, staff, variables={"alert_id": alert.id}),
                OutboxKind.PARTICIPANT_MESSAGE: await queued(session, OutboxKind.PARTICIPANT_MESSAGE, staff,
                                                             participant_message_id=words.id),
                OutboxKind.MEDIA_COPY: await queued(session, OutboxKind.MEDIA_COPY, staff,
                                                    participant_message_id=words.id),
                OutboxKind.DIGEST: await queued(session, OutboxKind.DIGEST, staff),
                OutboxKind.NOTICE: await queued(session, OutboxKind.NOTICE, staff),
            }
            reasons = {kind: await why_not(session, protocol, row, staff) for kind, row in rows.items()}
            if role == "monitor":
                assert reasons == {
                    OutboxKind.ALERT: "a monitor does not receive this (acknowledge)",
                    OutboxKind.PARTICIPANT_MESSAGE: "a monitor does not receive this (receive_participant_messages)",
                    OutboxKind.MEDIA_COPY: "a monitor does not receive this (receive_participant_messages)",
                    OutboxKind.DIGEST: None, OutboxKind.NOTICE: None}
            else:
                assert set(reasons.values()) == {None}, role


async def test_a_message_past_its_useful_time_is_stale_and_a_broadcast_expired(db: Database,
                                                                             protocol: Protocol) -> None:
    async with db.transaction() as session:
        person, staff = await participant(session), await member(session)
        until = NOW + timedelta(hours=1)
        for kind in (OutboxKind.NOTICE, OutboxKind.REMINDER, OutboxKind.CHECKIN, OutboxKind.VISIT_REMINDER):
            row = await queued(session, kind, person, stale_after=until)
            assert await why_not(session, protocol, row, person, now=until) == \
                "stale: past its useful time when it could be sent (missed delivery)", kind
        assert outbox.STALE_NOTE == "stale: past its useful time when it could be sent (missed delivery)"
        broadcast = await queued(session, OutboxKind.BROADCAST, person, stale_after=until)
        assert await why_not(session, protocol, broadcast, person, now=until - timedelta(seconds=1)) is None
        assert await why_not(session, protocol, broadcast, person, now=until) == broadcasts.EXPIRED_NOTE
        assert broadcasts.EXPIRED_NOTE == "the broadcast's approval expired before it could be sent"
        digest = await queued(session, OutboxKind.DIGEST, staff, stale_after=until)
        assert await why_not(session, protocol, digest, staff, now=until) == outbox.STALE_NOTE
        # The recipient's rules come first: a withdrawn participant's stale reminder says so.
        left = await participant(session, status="withdrawn")
        row = await queued(session, OutboxKind.REMINDER, left, stale_after=until)
        assert await why_not(session, protocol, row, left, now=until) == "participant is withdrawn"


# --- each kind's own rule -----------------------------------------------------------------------

async def test_an_alert_acknowledged_meanwhile_is_not_sent(db: Database, protocol: Protocol) -> None:
    async with db.transaction() as session:
        person, staff = await participant(session), await member(session)
        alert = Alert(participant_id=person.id, source="urgent", triggers=[], reported_at=NOW, status="open")
        session.add(alert)
        await session.flush()
        row = await queued(session, OutboxKind.ALERT, staff, variables={"alert_id": alert.id})
        assert await why_not(session, protocol, row, staff) is None
        alert.status, alert.acknowledged_by, alert.acknowledged_at = AlertStatus.ACKNOWLEDGED, staff.id, NOW
        await session.flush()
        assert await why_not(session, protocol, row, staff) == "alert acknowledged before this was sent"


async def test_a_dose_reminder_is_not_sent_off_treatment_or_once_the_dose_is_recorded(db: Database,
                                                                                    protocol: Protocol) -> None:
    async with db.transaction() as session:
        person = await participant(session)
        morning = {"slot_date": "2026-11-24", "slot_at": "2026-11-24T08:00:00+00:00"}
        reminder = await queued(session, OutboxKind.REMINDER, person, key=f"reminder:{person.id}:202611240800",
                                variables=morning)
        nudge = await queued(session, OutboxKind.NUDGE, person, key=f"nudge:{person.id}:202611240800",
                             variables=morning)
        evening = await queued(session, OutboxKind.REMINDER, person, key=f"reminder:{person.id}:202611242000",
                               variables={"slot_date": "2026-11-24", "slot_at": "2026-11-24T20:00:00+00:00"})
        for row in (reminder, nudge, evening):
            assert await why_not(session, protocol, row, person) is None
        session.add(DiaryEntry(participant_id=person.id, kind="applied", occurred_at=datetime(2026, 11, 24, 8, 10, tzinfo=UTC),
                               local_date=date(2026, 11, 24), timezone="UTC", recorded_at=NOW, source="button",
                               recorded_by=f"participant:{person.study_id}"))
        await session.flush()
        for row in (reminder, nudge):
            assert await why_not(session, protocol, row, person) == "the dose was recorded before the reminder went out"
        assert await why_not(session, protocol, evening, person) is None, "the evening's dose is still to come"

        paused_cream = await participant(session, treatment="interrupted", treatment_reason="infection")
        row = await queued(session, OutboxKind.REMINDER, paused_cream, key=f"reminder:{paused_cream.id}:202611242000",
                           variables={"slot_date": "2026-11-24", "slot_at": "2026-11-24T20:00:00+00:00"})
        assert await why_not(session, protocol, row, paused_cream) == "treatment interrupted: no cream reminders"


async def test_a_visit_reminder_is_for_one_revision_of_one_visit(db: Database, protocol: Protocol) -> None:
    async with db.transaction() as session:
        person, other = await participant(session), await participant(session)
        visit = Visit(participant_id=person.id, name="week4", label="Week 4", scheduled_date=date(2026, 11, 26),
                      status=VisitStatus.SCHEDULED, revision=1, created_at=NOW, changed_at=NOW)
        session.add(visit)
        await session.flush()
        row = await queued(session, OutboxKind.VISIT_REMINDER, person, variables={"visit_id": visit.id, "revision": 1})
        assert await why_not(session, protocol, row, person) is None
        for status in (VisitStatus.CONFIRMED, VisitStatus.RESCHEDULE_REQUESTED):
            visit.status = status
            assert await why_not(session, protocol, row, person) is None, status
        visit.revision = 2
        assert await why_not(session, protocol, row, person) == "the visit was moved after the reminder was queued"
        for status in (VisitStatus.CANCELLED, VisitStatus.DONE):
            visit.status = status
            assert await why_not(session, protocol, row, person) == \
                f"the visit was {status.value} after the reminder was queued"
        not_theirs = await queued(session, OutboxKind.VISIT_REMINDER, other,
                                  variables={"visit_id": visit.id, "revision": 2})
        assert await why_not(session, protocol, not_theirs, other) == "the visit no longer exists"
        nowhere = await queued(session, OutboxKind.VISIT_REMINDER, person, variables={"visit_id": 999999, "revision": 1})
        assert await why_not(session, protocol, nowhere, person) == "the visit no longer exists"


async def test_a_pregnancy_test_reminder_answered_or_no_longer_applying_is_not_sent(db: Database,
                                                                                   protocol: Protocol) -> None:
    rules = protocol.pregnancy_tests
    async with db.transaction() as session:
        person = await participant(session, wocbp=True)
        due = await pregnancy_tests.current_due(session, rules, person, today=NOW.date())
        row = await queued(session, OutboxKind.PREGNANCY_REMINDER, person, variables={"due_date": due.isoformat()})
        assert await why_not(session, protocol, row, person) is None
        session.add(PregnancyTest(participant_id=person.id, result="negative", local_date=NOW.date(), timezone="UTC",
                                  recorded_at=NOW, source="staff", recorded_by="staff:1"))
        await session.flush()
        assert await pregnancy_tests.current_due(session, rules, person, today=NOW.date()) != due
        assert await why_not(session, protocol, row, person) == "a test result was recorded before the reminder went out"

        not_wocbp = await participant(session, wocbp=False)
        row = await queued(session, OutboxKind.PREGNANCY_REMINDER, not_wocbp, variables={"due_date": due.isoformat()})
        assert await why_not(session, protocol, row, not_wocbp) == \
            "pregnancy tests do not apply to this participant now (treatment on_treatment)"


async def test_a_participants_photo_is_copied_only_while_it_can_be(db: Database, protocol: Protocol) -> None:
    async with db.transaction() as session:
        person, staff = await participant(session), await member(session)
        photo = ParticipantMessage(participant_id=person.id, direction="in", text="", at=NOW, timezone="UTC",
                                   kind="photo", telegram_message_id=77)
        unknown = ParticipantMessage(participant_id=person.id, direction="in", text="", at=NOW, timezone="UTC",
                                     kind="photo", telegram_message_id=None)
        session.add_all([photo, unknown])
        await session.flush()
        copy = await queued(session, OutboxKind.MEDIA_COPY, staff, participant_message_id=photo.id)
        assert await why_not(session, protocol, copy, staff) is None
        gone = "the participant's message can no longer be copied (their chat is gone)"
        row = await queued(session, OutboxKind.MEDIA_COPY, staff, participant_message_id=unknown.id)
        assert await why_not(session, protocol, row, staff) == gone
        person.telegram_chat_id = None  # the participant's chat is gone
        await session.flush()
        assert await why_not(session, protocol, copy, staff) == gone
