"""Two-person approval of broadcasts (study.toml [broadcasts] require_second_approval = true)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from study.models import AuditEntry, Broadcast
from study.protocol import BroadcastSection, Protocol
from tests.conftest import REPO
from tests.test_broadcasts import notices, press, say
from tests.trial import Trial
from study.protocol import load_protocol

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def protocol() -> Protocol:
    return load_protocol(REPO / "study.toml").model_copy(
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
