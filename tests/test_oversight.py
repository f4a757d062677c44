"""Oversight and pictures: /participants, /visits, /nextvisit, /adherence and /mystats, with gaps
in the data and with no data at all."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from study import participants, visits
from study.models import CheckIn
from tests.test_broadcasts import say
from tests.trial import COORDINATOR, Trial

pytestmark = pytest.mark.timeout(120)
PNG = b"\x89PNG\r\n\x1a\n"


async def log_now(user) -> None:
    before = len(user.callback_answers)
    await user.press("✅ I put it on now")
    await user.wait_for(lambda u: len(u.callback_answers) > before)


async def add_checkin(trial: Trial, study_id: str, day: date, itch: int | None, pain: int | None) -> None:
    async with trial.db.transaction() as session:
        person = await participants.by_study_id(session, study_id)
        now = trial.clock.now()
        session.add(CheckIn(participant_id=person.id, kind="scores", started_at=now, submitted_at=now, local_date=day,
                            timezone=person.timezone, source="command", itch=itch, pain=pain))


async def photo_after(user, command: str):
    before = len(user.bot_messages)
    await user.send_text(command)
    await user.wait_for(lambda u: len(u.bot_messages) > before)
    return user.last_bot_message


async def test_pictures_with_gaps_and_with_no_data(trial: Trial) -> None:
    user = await trial.join("P001", user_id=2001)
    empty = await trial.join("P002", user_id=2002, language="es")
    staff = await trial.add_staff(5005, name="Mo", role="monitor")
    await say(user, "/log")
    await log_now(user)
    await add_checkin(trial, "P001", date(2026, 11, 24), 4, 2)
    trial.clock.advance(timedelta(days=5))  # four days with nothing at all, then one more entry
    await say(user, "/log")
    await log_now(user)
    await add_checkin(trial, "P001", date(2026, 11, 29), None, 6)
    mine = await photo_after(user, "/mystats")
    assert mine.photo.startswith(PNG) and "Your record so far" in mine.caption
    nothing = await photo_after(empty, "/mystats")
    assert nothing.photo.startswith(PNG) and nothing.caption.startswith("📊 Su registro hasta ahora")
    theirs = await photo_after(staff, "/adherence P001")
    assert theirs.photo.startswith(PNG)
    assert "P001: applications per day over 6 study day(s)" in theirs.caption
    assert "17% (7 days)" in theirs.caption  # 2 of 12 expected over the 6 study days
    unknown = await photo_after(staff, "/adherence P404")
    assert "No participant P404" in unknown.text


async def test_participants_visits_and_nextvisit(trial: Trial) -> None:
    user = await trial.join("P001", user_id=2001)
    await trial.join("P002", user_id=2002)
    staff = await trial.add_staff(5005, name="Mo", role="monitor")
    await say(user, "/nextvisit")
    assert "No study visit is planned" in user.last_bot_message.text
    async with trial.db.transaction() as session:
        person = await participants.by_study_id(session, "P001")
        await visits.plan_schedule(session, trial.protocol, person, baseline=date(2026, 11, 26), actor=COORDINATOR,
                                   now=trial.clock.now())
    await say(user, "/nextvisit")
    assert "Your next study visit:" in user.last_bot_message.text
    await say(user, "/log")
    await log_now(user)
    async with trial.db.transaction() as session:  # Telegram said P002 blocked the bot
        (await participants.by_study_id(session, "P002")).unreachable_since = trial.clock.now()
    await say(staff, "/participants")
    text = staff.last_bot_message.text
    assert "P001 active: 50% / 50%" in text and "next visit 2026-11-26" in text
    assert "P002 active: 0% / 0%; last entry none; next visit none; ⚠️ not reachable" in text
    await say(staff, "/visits")
    assert "2026-11-26: P001 Baseline" in staff.last_bot_message.text
