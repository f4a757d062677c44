"""Invites that cannot be misused: void once their participant left the study; a Decline from
someone else's chat changes nothing for a participant who joined; the wrong-code lock-out is per
chat and over all chats, in the database (hashed chat ids only), through restarts and across
processes, and opening a valid invite does not reset it."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select
from telegram import Update

from study import participants
from study.models import (
    AuditEntry,
    CodeLockout,
    ConsentDecision,
    OutboxMessage,
    StrangerCount,
    WrongCode,
)
from tests.test_exactly_once import second_process
from tests.trial import COORDINATOR, Trial

pytestmark = pytest.mark.timeout(180)
CONSENT_BUTTONS = ["✅ Yes, I agree", "No, thank you"]
LOCKED = "too many tries"


async def answer_to(user, text: str) -> str:
    await user.send_text(text)
    return (await user.next_bot_event()).text


async def withdraw(trial: Trial, study_id: str) -> None:
    async with trial.db.transaction() as session:
        person = await participants.by_study_id(session, study_id)
        await participants.end_participation(session, person, "withdrawn", reason="withdrew consent",
                                             actor=COORDINATOR, now=trial.clock.now())


async def test_a_withdrawn_participants_unused_invite_shows_nothing(trial: Trial) -> None:
    code = await trial.enroll("P001")
    await withdraw(trial, "P001")
    holder = trial.world.add_user(user_id=3003, first_name="Pat")
    await holder.send_text(f"/start {code}")
    reply = await holder.next_bot_event()
    assert "does not work" in reply.text and reply.buttons == [], "no consent text, no Agree"
    await holder.press_forged(reply.message_id, f"c:a:{code}")  # Agree, forged with the code
    await holder.wait_for(lambda u: len(u.callback_answers) == 1)
    assert (await trial.participant("P001")).telegram_chat_id is None
    # Nor is a new one issued for them in the staff chat (the command line: below).
    coordinator = await trial.add_staff(5005, name="Dana")
    assert "P001 has left the study, so no invite is issued." in await answer_to(coordinator, "/invite P001")


async def test_a_decline_from_another_chat_does_nothing_to_a_participant_who_joined(trial: Trial) -> None:
    coordinator = await trial.add_staff(5005, name="Dana")
    await trial.join("P001", user_id=1001)
    await trial.deliver()
    notices = len(coordinator.bot_messages)
    newer = await trial.reissue("P001")  # a newer invite, say for a new phone, in someone else's hands
    other = trial.world.add_user(user_id=3003, first_name="Sam")
    await other.send_text(f"/start {newer}")
    consent = await other.next_bot_event()
    assert consent.button_labels == CONSENT_BUTTONS
    await other.press("No, thank you")
    assert "We will not send you messages here" in (await other.next_bot_event()).text

    person = await trial.participant("P001")
    assert (person.status, person.telegram_chat_id) == ("active", 1001)
    async with trial.db.read() as session:
        decisions = (await session.scalars(select(ConsentDecision.decision))).all()
        queued = (await session.scalars(select(OutboxMessage.template_id)
                                        .where(OutboxMessage.template_id == "staff_consent"))).all()
    assert decisions == ["agreed"], "no 'declined' on the record"
    assert queued == ["staff_consent"], "only the notice of the participant's own Agree"
    await trial.deliver()
    assert len(coordinator.bot_messages) == notices, "the study team is told nothing"


async def test_the_lock_out_survives_a_restart(trial: Trial) -> None:
    code = await trial.enroll("P001")
    guesser = trial.world.add_user(user_id=4004, first_name="Pat")
    for attempt in range(trial.protocol.enrolment.max_wrong_codes):
        await answer_to(guesser, f"/start wrongcode{attempt}")
    assert LOCKED in guesser.last_bot_message.text.lower()
    await trial.restart()
    assert LOCKED in (await answer_to(guesser, f"/start {code}")).lower(), "a restart lifts nothing"
    trial.clock.advance(timedelta(minutes=trial.protocol.enrolment.lockout_minutes + 1))
    await guesser.send_text(f"/start {code}")
    assert (await guesser.next_bot_event()).button_labels == CONSENT_BUTTONS


async def test_a_valid_invite_does_not_reset_the_chats_count(trial: Trial) -> None:
    code = await trial.enroll("P001")
    guesser = trial.world.add_user(user_id=4004, first_name="Pat")
    for attempt in range(trial.protocol.enrolment.max_wrong_codes - 1):
        assert "does not work" in await answer_to(guesser, f"/start wrongcode{attempt}")
    await guesser.send_text(f"/start {code}")
    assert (await guesser.next_bot_event()).button_labels == CONSENT_BUTTONS
    assert LOCKED in (await answer_to(guesser, "/start wrongcode-last")).lower()


async def test_forty_chats_guessing_together_meet_the_limit_over_all_chats(trial: Trial) -> None:
    coordinator = await trial.add_staff(5005, name="Dana")
    code = await trial.enroll("P001")
    rules = trial.protocol.enrolment
    assert rules.max_wrong_codes > 4 and rules.max_wrong_codes_global < 40 * 4
    answers = []
    for chat in range(40):
        guesser = trial.world.add_user(user_id=600_000 + chat, first_name="Guess")
        for attempt in range(4):  # under the limit of one chat, every time
            answers.append((await answer_to(guesser, f"/start guess{chat}x{attempt}")).lower())
    assert sum("does not work" in a for a in answers) == rules.max_wrong_codes_global - 1
    assert sum(LOCKED in a for a in answers) == 160 - rules.max_wrong_codes_global + 1
    # Even the right code waits now, from a chat that never guessed; the team hears why.
    invitee = trial.world.add_user(user_id=1001, first_name="Pat")
    assert LOCKED in (await answer_to(invitee, f"/start {code}")).lower()
    await trial.deliver()
    await coordinator.wait_for(lambda c: "wrong invite codes were tried" in c.last_bot_message.text)

    # Of the guessers, nothing but hashes of their chats, the times, and the day's counts.
    dump = await _whole_database_as_text(trial)
    assert not any(_mentions(dump, 600_000 + chat) for chat in range(40))
    async with trial.db.read() as session:
        counted = {c.kind: c.count for c in (await session.scalars(select(StrangerCount))).all()}
        hashes = (await session.scalars(select(WrongCode.chat_hash))).all()
        locks = (await session.scalars(select(CodeLockout))).all()
    assert counted == {"wrong_code": rules.max_wrong_codes_global, "locked_out": 160 - rules.max_wrong_codes_global + 2}
    assert len(hashes) == rules.max_wrong_codes_global and len(set(hashes)) == 13  # 4 tries from each of 13 chats
    assert [(lock.scope, lock.chat_hash) for lock in locks] == [("all", None)]

    await trial.advance(minutes=rules.lockout_minutes + 1)
    await invitee.send_text(f"/start {code}")
    assert (await invitee.next_bot_event()).button_labels == CONSENT_BUTTONS
    async with trial.db.read() as session:
        assert (await session.scalars(select(WrongCode))).all() == [], "tries past the window are gone"
        assert (await session.scalars(select(CodeLockout))).all() == [], "and the lock-out, once over"


async def test_the_limit_holds_across_processes(trial: Trial) -> None:
    code = await trial.enroll("P001")
    guesser = trial.world.add_user(user_id=4004, first_name="Pat")
    sent = iter(range(900_001, 901_000))
    async with second_process(trial) as second:
        async def by_the_second_process(text: str) -> str:
            """The guesser's message, handed to the second process only."""
            update_id = next(sent)
            command = text.split()[0]
            update = Update.de_json({"update_id": update_id, "message": {
                "message_id": update_id, "date": int(trial.clock.now().timestamp()),
                "chat": trial.world.chat_json(guesser), "from": trial.world.user_json(guesser), "text": text,
                "entities": [{"type": "bot_command", "offset": 0, "length": len(command)}]}}, second.bot)
            await second.process_update(update)
            return (await guesser.next_bot_event()).text

        half = trial.protocol.enrolment.max_wrong_codes // 2
        for attempt in range(half):  # some wrong codes reach this process, the rest the other
            assert "does not work" in await answer_to(guesser, f"/start first{attempt}")
        for attempt in range(trial.protocol.enrolment.max_wrong_codes - half - 1):
            assert "does not work" in await by_the_second_process(f"/start second{attempt}")
        assert LOCKED in (await by_the_second_process("/start the-last-one")).lower()
        assert LOCKED in (await answer_to(guesser, f"/start {code}")).lower(), "locked in this process too"


async def test_wrong_code_records_name_no_chat(trial: Trial) -> None:
    guesser = trial.world.add_user(user_id=777_000_222, first_name="Zed")
    for attempt in range(trial.protocol.enrolment.max_wrong_codes):
        await answer_to(guesser, f"/start nope{attempt}")
    async with trial.db.read() as session:
        rows = (await session.scalars(select(WrongCode))).all()
        locks = (await session.scalars(select(CodeLockout))).all()
        audit = (await session.scalars(select(AuditEntry))).all()
    assert len(rows) == trial.protocol.enrolment.max_wrong_codes and len({r.chat_hash for r in rows}) == 1
    assert [(lock.scope, lock.chat_hash) for lock in locks] == [("chat", rows[0].chat_hash)]
    assert not _mentions(await _whole_database_as_text(trial), 777000222)
    assert audit == [], "strangers are not in the audit trail either"


def _mentions(dump: str, chat_id: int) -> bool:
    """Does the dump hold this chat id as a number of its own? Not as digits inside another
    number: a float's decimals (a send slot's time, a chat bucket's tokens: 2.6000315...) or a
    hash's hex, which once made this check fail by chance."""
    return re.search(rf"(?<![0-9a-fA-F.]){chat_id}(?![0-9a-fA-F])", dump) is not None


async def _whole_database_as_text(trial: Trial) -> str:
    from study.models import Base

    chunks = []
    async with trial.db.read() as session:
        for table in Base.metadata.sorted_tables:
            for row in (await session.execute(select(table))).all():
                chunks.append(repr(tuple(row)))
    return "\n".join(chunks)


def test_the_command_line_issues_no_invite_for_a_participant_who_left(cli) -> None:
    assert cli("enroll", "P009", "--timezone", "UTC", "--language", "en").exit_code == 0
    assert cli("participant", "end", "P009", "withdrawn", "--reason", "withdrew consent").exit_code == 0
    refused = cli("invite", "P009")
    assert refused.exit_code == 2 and "No invite: P009 is withdrawn" in refused.output
