"""Two-person approval of broadcasts (study.toml [broadcasts] require_second_approval = true)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import select

from study.models import AuditEntry, Broadcast, OutboxMessage, StaffMember
from study.protocol import EXAMPLE_PROTOCOL, BroadcastSection, Protocol, load_protocol
from tests.test_broadcasts import notices, press, say
from tests.trial import Trial

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def protocol() -> Protocol:
    return load_protocol(EXAMPLE_PROTOCOL).model_copy(
        update={"broadcasts": BroadcastSection(require_second_approval=True)})


async def test_a_second_different_staff_member_must_approve(trial: Trial) -> None:
    person = await trial.join("P001", user_id=2001)
    author = await trial.add_staff(5005, name="Dana", role="coordinator")
    investigator = await trial.add_staff(5006, name="Ivan", role="investigator")
    monitor = await trial.add_staff(5007, name="Mo", role="monitor")
    await say(author, "/broadcast notice all Clinic opens at 9.", count=3)
    assert "another staff member must approve" in author.last_bot_message.text
    await press(author, "✅ Confirm")
    assert "Waiting for a second staff member" in author.last_bot_message.text
    await trial.deliver()
    assert notices(person) == [], "nothing is sent before the second approval"
    request = investigator.last_bot_message
    assert "Broadcast #1 needs your approval" in request.text and "Clinic opens at 9." in request.text
    assert all("needs your approval" not in (m.text or "") for m in author.bot_messages), "not asked of the author"
    assert all("needs your approval" not in (m.text or "") for m in monitor.bot_messages), "monitors cannot approve"
    # The author presses a forged Approve: refused and recorded.
    before = len(author.callback_answers)
    await author.press_forged(author.last_bot_message.message_id, "b:a:1")
    await author.wait_for(lambda u: len(u.callback_answers) > before)
    assert "cannot approve your own broadcast" in author.last_bot_message.text
    await press(investigator, "✅ Approve and send")
    await trial.deliver()
    [got] = notices(person)
    assert "Clinic opens at 9." in got.text
    async with trial.db.transaction() as session:
        row = (await session.scalars(select(Broadcast))).one()
        trail = list((await session.scalars(select(AuditEntry).order_by(AuditEntry.seq))).all())
    assert (row.status, row.approver_id is not None, row.approved_at is not None) == ("done", True, True)
    refused = [e for e in trail if e.action == "refused" and e.entity == "broadcast"]
    assert len(refused) == 1 and refused[0].actor.startswith("staff:")
    queued = next(e for e in trail if e.entity == "broadcast" and (e.new_values or {}).get("status") == "sending")
    assert queued.new_values["approver"] == "Ivan" and queued.new_values["recipients"] == ["P001"]


async def _awaiting(trial: Trial):
    """P001, a coordinator's broadcast awaiting approval, another coordinator and the investigator."""
    person = await trial.join("P001", user_id=2001)
    author = await trial.add_staff(5005, name="Dana", role="coordinator")
    other = await trial.add_staff(5008, name="Cole", role="coordinator")
    investigator = await trial.add_staff(5006, name="Ivan", role="investigator")
    await say(author, "/broadcast notice all Clinic opens at 9.", count=3)
    await press(author, "✅ Confirm")
    await trial.deliver()
    return person, author, other, investigator


async def _broadcast(trial: Trial) -> Broadcast:
    async with trial.db.transaction() as session:
        return (await session.scalars(select(Broadcast))).one()


async def _trail(trial: Trial) -> list[AuditEntry]:
    async with trial.db.transaction() as session:
        return [e for e in (await session.scalars(select(AuditEntry).order_by(AuditEntry.seq))).all()
                if e.entity == "broadcast"]


async def test_its_author_withdraws_a_broadcast_awaiting_approval(trial: Trial) -> None:
    person, author, other, investigator = await _awaiting(trial)
    status = author.last_bot_message
    assert "Waiting for a second staff member" in status.text and status.button_labels == ["↩️ Withdraw"]
    assert other.last_bot_message.button_labels == ["✅ Approve and send"], "a coordinator cannot withdraw it"
    assert investigator.last_bot_message.button_labels == ["✅ Approve and send", "↩️ Withdraw"]
    assert "within 24 hours" in investigator.last_bot_message.text
    await press(author, "↩️ Withdraw")
    assert "Withdrawn by Dana before it was approved" in author.message(status.message_id).text
    before = len(author.callback_answers)
    await author.press_forged(status.message_id, "b:w:1")  # a second tap (sent before the edit came)
    await author.wait_for(lambda u: len(u.callback_answers) > before)
    assert "Withdrawn by Dana" in author.message(status.message_id).text
    await press(investigator, "✅ Approve and send")
    assert "withdrawn before it was approved" in investigator.last_bot_message.text
    await trial.deliver()
    assert notices(person) == [], "nothing of it is sent"
    row = await _broadcast(trial)
    assert (row.status, row.approver_id) == ("withdrawn", None)
    withdrawn = [e for e in await _trail(trial) if (e.new_values or {}).get("status") == "withdrawn"]
    assert len(withdrawn) == 1 and withdrawn[0].old_values == {"status": "awaiting_approval"}
    assert withdrawn[0].reason == "broadcast withdrawn by its author before approval"


async def test_the_investigator_withdraws_it_and_another_coordinator_may_not(trial: Trial) -> None:
    person, author, other, investigator = await _awaiting(trial)
    status = author.last_bot_message
    before = len(other.callback_answers)
    await other.press_forged(other.last_bot_message.message_id, "b:w:1")  # not theirs to withdraw
    await other.wait_for(lambda u: len(u.callback_answers) > before)
    assert "Only its author or the investigator" in other.last_bot_message.text
    assert (await _broadcast(trial)).status == "awaiting_approval"
    await press(investigator, "↩️ Withdraw")
    assert "Withdrawn by Ivan" in investigator.last_bot_message.text
    await author.wait_for(lambda u: "Withdrawn by Ivan" in u.message(status.message_id).text)
    assert author.message(status.message_id).button_labels == [], "no Withdraw left on the author's status"
    await trial.deliver()
    assert notices(person) == []
    trail = await _trail(trial)
    refused = [e for e in trail if e.action == "refused"]
    assert [(e.actor, e.reason) for e in refused] == [("staff:2", "a coordinator may withdraw only their own broadcast")]
    withdrawn = [e for e in trail if (e.new_values or {}).get("status") == "withdrawn"]
    assert withdrawn[0].actor == "staff:3" and withdrawn[0].new_values["withdrawn_by"] == "Ivan"


async def test_an_approval_21_days_late_is_refused_and_nothing_is_sent(trial: Trial) -> None:
    """The issue's case: approved 21 days later, it was still sent. Now the approval is refused
    and the broadcast is marked expired."""
    person, _, other, investigator = await _awaiting(trial)
    trial.clock.advance(timedelta(days=21))
    await press(investigator, "✅ Approve and send")
    assert "was not approved in time, so it expired" in investigator.last_bot_message.text
    await trial.deliver()
    assert notices(person) == []
    row = await _broadcast(trial)
    assert (row.status, row.approver_id, row.recipients) == ("expired", None, None)
    expired = [e for e in await _trail(trial) if (e.new_values or {}).get("status") == "expired"]
    assert len(expired) == 1 and expired[0].actor == "system" and "Ivan" in expired[0].reason
    await press(other, "✅ Approve and send")  # and stays so
    assert "expired" in other.last_bot_message.text
    assert notices(person) == []


async def test_an_approval_just_in_time_is_sent(trial: Trial) -> None:
    person, _, _, investigator = await _awaiting(trial)
    trial.clock.advance(timedelta(hours=23, minutes=59))
    await press(investigator, "✅ Approve and send")
    await trial.deliver()
    assert len(notices(person)) == 1


async def test_an_approved_broadcast_not_sent_before_its_approval_runs_out_is_not_sent(trial: Trial) -> None:
    person, author, _, investigator = await _awaiting(trial)
    status = author.last_bot_message  # the broadcast's status (P002's joining is told to the author next)
    second = await trial.join("P002", user_id=2002)
    trial.world.faults.fail_next("sendMessage", status=500, chat_id=second.chat_id)  # P002's is held up
    await press(investigator, "✅ Approve and send")
    await trial.deliver()
    assert len(notices(person)) == 1 and notices(second) == []
    trial.clock.advance(timedelta(hours=25))  # Telegram (or the bot) away until the approval has run out
    await trial.deliver()
    assert notices(second) == [], "not sent once its approval ran out"
    await author.wait_for(lambda u: "Finished" in u.message(status.message_id).text)
    assert "1 not sent because the approval ran out" in author.message(status.message_id).text
    async with trial.db.transaction() as session:
        [late] = (await session.scalars(select(OutboxMessage).where(OutboxMessage.dedup_key.like("broadcast:1:%"),
                                                                     OutboxMessage.status == "skipped"))).all()
    assert late.last_error == "the broadcast's approval expired before it could be sent"
    assert (await _broadcast(trial)).status == "done"


async def test_a_member_whose_access_ended_gets_no_approval_request(trial: Trial) -> None:
    from study import staff
    from study.audit import Actor

    await trial.join("P001", user_id=2001)
    author = await trial.add_staff(5005, name="Dana", role="coordinator")
    other = await trial.add_staff(5008, name="Cole", role="coordinator")
    investigator = await trial.add_staff(5006, name="Ivan", role="investigator")
    await say(author, "/broadcast notice all Clinic opens at 9.", count=3)
    trial.world.faults.fail_next("sendMessage", status=500, chat_id=other.chat_id)  # Cole's is held up
    await press(author, "✅ Confirm")  # the requests are queued to Cole and Ivan...
    await investigator.wait_for(lambda u: "needs your approval" in (u.last_bot_message.text or ""))
    await _first_try_failed(trial, staff_id=2)  # sent side by side: Ivan's may land before Cole's 500
    async with trial.db.transaction() as session:  # ...and Cole's access ends before his goes out
        await staff.deactivate(session, await session.get(StaffMember, 2), actor=Actor.staff(3),
                               now=trial.clock.now(), reason="left the study team")
    trial.clock.advance(timedelta(minutes=10))
    await trial.deliver()
    async with trial.db.transaction() as session:
        row = await session.scalar(select(OutboxMessage).where(OutboxMessage.staff_id == 2))
    assert (row.status, row.last_error) == ("skipped", "staff member inactive")
    assert "needs your approval" in investigator.last_bot_message.text
    assert all("needs your approval" not in (m.text or "") for m in other.bot_messages)


async def _first_try_failed(trial, *, staff_id: int, timeout: float = 10) -> None:
    """Until the staff member's request has failed once and waits for its retry (a condition,
    bounded by `timeout`; the deliveries run side by side on their own)."""
    async def failed_once() -> None:
        while True:
            async with trial.db.transaction() as session:
                row = await session.scalar(select(OutboxMessage).where(OutboxMessage.staff_id == staff_id))
            if row is not None and row.attempts >= 1 and row.status == "pending":
                return
            await asyncio.sleep(0.01)

    await asyncio.wait_for(failed_once(), timeout)
