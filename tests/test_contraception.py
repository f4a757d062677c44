"""The protocol's contraception question, on in this module's protocol: asked with a negative
pregnancy test, stored once per reminder, and a "no" tells the study team (a notice, not an alert)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from study.models import Alert, ContraceptionAnswer
from study.protocol import EXAMPLE_PROTOCOL, Protocol, load_protocol
from tests.test_pregnancy_tests import NEGATIVE, answer, at, test_reminders, utc
from tests.trial import Trial

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def protocol() -> Protocol:
    shipped = load_protocol(EXAMPLE_PROTOCOL)
    return shipped.model_copy(update={"pregnancy_tests": shipped.pregnancy_tests.model_copy(
        update={"ask_contraception": True})})


async def test_a_negative_test_asks_about_contraception_and_a_no_tells_the_team(trial: Trial) -> None:
    coordinator = await trial.add_staff(5005)
    user = await trial.join(wocbp=True)
    await at(trial, utc(2026, 12, 22, 14, 0))
    [reminder] = test_reminders(user)
    await answer(user, NEGATIVE, reminder.message_id, "are you using the birth control")
    assert user.message(reminder.message_id).button_labels == ["Yes, I am", "No"]
    before = len(user.callback_answers)
    await user.press("No", message_id=reminder.message_id)
    await user.press("No", message_id=reminder.message_id)  # a double tap stores one answer
    await user.wait_for(lambda u: len(u.callback_answers) == before + 2)
    assert "the study team will contact you" in user.message(reminder.message_id).text
    async with trial.db.read() as session:
        answers = (await session.scalars(select(ContraceptionAnswer))).all()
        alerts = (await session.scalars(select(Alert))).all()
    assert [(a.uses, a.due_date.isoformat()) for a in answers] == [(False, "2026-12-22")]
    assert alerts == [], "a notice, not a safety alert"
    await coordinator.wait_for(lambda c: any("not</b> using the contraception" in (m.html or "")
                                             or "not using the contraception" in (m.text or "")
                                             for m in c.bot_messages))
