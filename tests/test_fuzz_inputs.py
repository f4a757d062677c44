"""Property-based: whatever a participant types or whatever callback data a client forges, the
bot answers within Telegram's limits, never crashes, and changes no one else's records.

Hypothesis draws the inputs; each one goes through the real bot over HTTP. The `trial` fixture
then also checks that the bot made no call Telegram would refuse."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from study.models import Alert, AuditEntry, DiaryEntry, Participant
from tests.trial import Trial

pytestmark = pytest.mark.timeout(300)
FUZZ = settings(max_examples=40, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

ids = st.integers(min_value=-5, max_value=10**12).map(str)
days = st.one_of(st.just("20261124"), st.just("20261123"), st.just("19991231"), st.text("0123456789", max_size=9))
words = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
# Callback data shaped like the bot's own (so it reaches the handlers), and anything else.
forged_data = st.one_of(
    st.builds(lambda a, f: f"d:{a}:{f}", st.sampled_from("nemt"), words),
    st.builds(lambda f, d, h: f"d:e:{f}:{d}:{h}", st.sampled_from(["abcd", "s2611240800"]), days, words),
    st.builds(lambda d, r: f"d:m:abcd:{d}:{r}", days, words),
    st.builds(lambda k, v: f"k:{k}:{v}", st.sampled_from(["itch", "pain", "reaction", "red_flags", "new_problem"]),
              words),
    st.builds(lambda a, i, r: f"v:{a}:{i}:{r}", st.sampled_from("cr"), ids, ids),
    st.builds(lambda a, p, d, n: f"p:{a}:{p}:{d}:{n}", st.sampled_from("npw"), ids, days, ids),
    st.builds(lambda i: f"a:{i}", ids),
    st.builds(lambda a, i: f"b:{a}:{i}", st.sampled_from("sxap"), ids),
    st.builds(lambda i, t: f"t:{i}:{t}", st.sampled_from("0129"), st.text("0123456789", max_size=5)),
    st.builds(lambda c: f"u:{c}", words),
    st.builds(lambda c: f"c:a:{c}", words),
    st.text(max_size=40).filter(lambda s: 1 <= len(s.encode()) <= 64),
)
typed = st.one_of(
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=300),
    st.builds(lambda c, rest: f"/{c} {rest}", st.sampled_from(
        ["start", "log", "today", "undo", "times", "symptoms", "urgent", "help", "contact", "stop", "resume",
         "reply", "alerts", "broadcast", "participants", "adherence", "visits", "nextvisit", "mystats", "nosuch"]),
        words),
).filter(lambda s: s.strip())


async def _others_records(trial: Trial) -> tuple:
    async with trial.db.transaction() as session:
        other = await session.scalar(select(Participant).where(Participant.study_id == "P002"))
        entries = (await session.scalars(select(DiaryEntry.id).where(DiaryEntry.participant_id == other.id))).all()
        return other.status, other.reminder_times, other.timezone, tuple(entries)


@pytest.fixture
async def two_participants(trial: Trial):
    other = await trial.join("P002", user_id=2002)
    await other.press("✅ I put it on now")
    await other.next_bot_event()
    user = await trial.join("P001", user_id=1001)
    return trial, user, await _others_records(trial)


# Rapid forged presses on one message can ask for the same edit twice; Telegram refuses the
# second ("message is not modified") and the bot shrugs it off. No other refusal is allowed.
@pytest.mark.rejections_expected
@FUZZ
@given(data=forged_data)
async def test_forged_callback_data_never_touches_another_participant(two_participants, data: str) -> None:
    trial, user, others = two_participants
    menu = user.bot_messages[-1]
    answers, messages = len(user.callback_answers), len(user.bot_messages)
    await user.press_forged(menu.message_id, data)
    await user.wait_for(lambda u: len(u.callback_answers) > answers, timeout=10)
    assert await _others_records(trial) == others
    assert trial.world.rejected_calls == [] or all(
        "not modified" in (c.description or "") for c in trial.world.rejected_calls)
    assert len(user.bot_messages) >= messages


@FUZZ
@given(text=typed)
async def test_any_text_gets_an_answer_and_changes_no_one_else(two_participants, text: str) -> None:
    trial, user, others = two_participants
    messages = len(user.bot_messages)
    edits = sum(len(m.edits) for m in user.bot_messages)
    await user.send_text(text)
    await user.wait_for(lambda u: len(u.bot_messages) > messages or
                        sum(len(m.edits) for m in u.bot_messages) > edits, timeout=10)
    assert await _others_records(trial) == others
    async with trial.db.transaction() as session:
        chain_ok = (await session.scalar(select(func.count()).select_from(AuditEntry))) > 0
        alerts_for_others = await session.scalar(
            select(func.count()).select_from(Alert).join(Participant, Participant.id == Alert.participant_id)
            .where(Participant.study_id == "P002"))
    assert chain_ok and alerts_for_others == 0
