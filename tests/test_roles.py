"""Roles: what coordinators, the investigator and monitors may do in Telegram; refusals are
answered with the approved text and recorded in the audit trail."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from study import roles
from study.models import AuditEntry
from tests.test_broadcasts import say
from tests.trial import Trial

pytestmark = pytest.mark.timeout(120)
REFUSED = "cannot do this"


def test_the_role_table() -> None:
    assert roles.roles_with(roles.ACKNOWLEDGE) == ("coordinator", "investigator")
    assert roles.may("monitor", roles.OVERSEE) and roles.may("monitor", roles.EXPORT)
    for permission in (roles.MESSAGE, roles.ACKNOWLEDGE, roles.BROADCAST, roles.APPROVE_BROADCAST):
        assert not roles.may("monitor", permission)
        assert roles.may("coordinator", permission) and roles.may("investigator", permission)
    assert not roles.may("stranger", roles.OVERSEE)


@pytest.mark.parametrize("role", ["coordinator", "investigator", "monitor"])
async def test_each_role_allowed_and_refused_commands(trial: Trial, role: str) -> None:
    await trial.join("P001", user_id=2001)
    member = await trial.add_staff(5005, name="Sam", role=role)
    await say(member, "/alerts")
    assert "no open alerts" in member.last_bot_message.text.lower()  # oversight: every role
    await say(member, "/reply P001 Your visit is at 10.")
    writes = "/broadcast closure all"
    if role == "monitor":
        assert REFUSED in member.last_bot_message.text
        await say(member, writes)
        assert REFUSED in member.last_bot_message.text
        async with trial.db.transaction() as session:
            refused = list((await session.scalars(select(AuditEntry).where(AuditEntry.action == "refused")
                                                  .order_by(AuditEntry.seq))).all())
        assert [(e.entity, e.entity_id, e.new_values["role"]) for e in refused] == [
            ("staff_command", "reply", "monitor"), ("staff_command", "broadcast", "monitor")]
    else:
        assert "Sent to P001" in member.last_bot_message.text
        await say(member, writes, count=3)
        assert member.last_bot_message.button_labels == ["✅ Confirm", "✖️ Cancel"]
