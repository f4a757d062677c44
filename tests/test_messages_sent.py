"""The record of what was sent, after real exchanges with the bot: per participant, with the
approved hash of each template and its language; staff notices too; strangers without any id."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from bot.app import refresh_ledger
from messages import sent
from messages.catalog import MESSAGES_ROOT
from messages.ledger import sha256_text
from study.audit import Actor
from study.models import SentMessage
from study.protocol import EXAMPLE_PROTOCOL
from tests.ledger import approve_all
from tests.trial import Trial

pytestmark = pytest.mark.timeout(60)


def _file_hash(template_id: str, language: str) -> str:
    return sha256_text((MESSAGES_ROOT / language / f"{template_id}.html.j2").read_bytes())


async def _sent_to(trial: Trial, study_id: str, count: int) -> list[sent.SentRow]:
    """The record is written right after each send; give the last one a moment to land."""
    for _ in range(100):
        async with trial.db.transaction() as session:
            rows = await sent.sent_to_participant(session, study_id)
        if len(rows) >= count:
            return rows
        await asyncio.sleep(0.02)
    return rows


async def test_what_a_spanish_speaking_participant_received_is_queryable(trial: Trial) -> None:
    staff = await trial.add_staff(5001)
    user = await trial.join("P002", user_id=2002, language="es")
    await user.press("✅ Me la puse ahora")
    saved = await user.next_bot_event()
    assert "Guardado" in saved.text
    await user.send_text("/help")
    assert "Cómo funciona" in (await user.next_bot_event()).text

    rows = await _sent_to(trial, "P002", 4)
    assert [(r.template_id, r.via) for r in rows] == [
        ("consent", "reply"), ("consent_agreed", "edit"), ("applied_logged", "edit"), ("help", "reply")]
    for row in rows:
        assert row.language == "es" and row.recipient == "P002" and not row.draft
        assert row.template_hash == _file_hash(row.template_id, "es")  # the approved text (the demo ledger's)
        assert row.sent_at == trial.clock.now()
    assert rows[-1].telegram_message_id == user.last_bot_message.message_id

    # The staff notice went through the outbox and is recorded against the staff member.
    await staff.next_bot_event()
    for _ in range(100):
        async with trial.db.transaction() as session:
            notices = (await session.scalars(select(SentMessage).where(SentMessage.via == "outbox"))).all()
        if notices:
            break
        await asyncio.sleep(0.02)
    [notice] = notices
    assert (notice.template_id, notice.recipient, notice.participant_id, notice.language) == (
        "staff_consent", "staff", None, "en")
    assert notice.staff_id is not None


async def test_strangers_are_recorded_without_any_id_and_the_record_is_append_only(trial: Trial) -> None:
    stranger = trial.world.add_user(user_id=7007, first_name="Sam")
    await stranger.send_text("hello?")
    assert "private bot" in (await stranger.next_bot_event()).text
    for _ in range(100):
        async with trial.db.transaction() as session:
            rows = (await session.scalars(select(SentMessage))).all()
        if rows:
            break
        await asyncio.sleep(0.02)
    [row] = rows
    assert (row.template_id, row.recipient, row.participant_id, row.staff_id) == ("stranger", "stranger", None, None)
    for statement in ("UPDATE sent_messages SET language = 'xx'", "DELETE FROM sent_messages"):
        with pytest.raises(DBAPIError, match="append-only"):
            async with trial.db.transaction() as session:
                await session.execute(text(statement))


async def test_trialbot_messages_sent_lists_one_participant(trial: Trial, monkeypatch, tmp_path) -> None:
    if not trial.db.is_sqlite:
        pytest.skip("the command reads DATABASE_URL; the SQLite run covers it")
    from typer.testing import CliRunner

    from bot.cli import app

    user = await trial.join("P001")
    await user.send_text("/contact")
    await user.next_bot_event()
    await _sent_to(trial, "P001", 3)
    monkeypatch.setenv("DATABASE_URL", str(trial.db.url))
    monkeypatch.setenv("STUDY_FILE", str(EXAMPLE_PROTOCOL))
    result = await asyncio.to_thread(CliRunner().invoke, app, ["messages", "sent", "--participant", "P001"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert [line.split()[4] for line in lines] == ["consent", "consent_agreed", "contact"]
    assert all(" P001 " in line and " en " in line for line in lines)
    contact_hash = _file_hash("contact", "en")[:12]
    assert f"sha256:{contact_hash}" in lines[-1]
    missing = await asyncio.to_thread(CliRunner().invoke, app, ["messages", "sent", "--participant", "P999"])
    assert missing.exit_code == 2


@pytest.fixture
def messages_copy(tmp_path, monkeypatch):
    import shutil

    from messages.catalog import ROOT_ENV

    root = tmp_path / "messages"
    shutil.copytree(MESSAGES_ROOT, root, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    monkeypatch.setenv(ROOT_ENV, str(root))  # the trial's bot is built after this (fixture order)
    return root


async def test_a_template_edited_while_the_bot_runs_is_never_sent(messages_copy, trial: Trial) -> None:
    user = await trial.join()
    path = messages_copy / "en" / "contact.html.j2"
    path.write_text(path.read_text(encoding="utf-8").replace("Your study team", "Call us any time, day or night"),
                    encoding="utf-8")
    await user.send_text("/contact")
    answer = await user.next_bot_event()
    assert "day or night" not in answer.text
    assert "something went wrong on our side" in answer.text  # the approved apology instead
    rows = await _sent_to(trial, "P001", 3)
    assert "contact" not in [r.template_id for r in rows]
    assert rows[-1].template_id == "error_generic"

    # The IRB approves the new wording: an approval in the ledger, which the running bot re-reads.
    await approve_all(trial.db, trial.protocol, actor=Actor.staff(1), root=messages_copy)
    assert await refresh_ledger(trial.app.runtime.services)
    await user.send_text("/contact")
    assert "day or night" in (await user.next_bot_event()).text
    rows = await _sent_to(trial, "P001", 4)
    assert rows[-1].template_id == "contact"
    assert rows[-1].template_hash == sha256_text(path.read_bytes())
