"""`trialbot run`, the production command, as a separate process pointed at the stand-in through
TELEGRAM_API_URL, exactly as a site would point it at a self-hosted Bot API server."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from sandbox.server import BotApiServer
from sandbox.world import TelegramWorld
from study.database import Database
from study.protocol import EXAMPLE_PROTOCOL
from tests.ledger import approve_all
from tests.study_files import write_study_file
from tests.trial import COORDINATOR

REPO = Path(__file__).resolve().parent.parent
TOKEN = "555000111:PRODUCTION-LIKE-TOKEN-abcdef"


@pytest.mark.timeout(90)
async def test_trialbot_run_serves_participants_and_stops_cleanly(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from study import invites, participants
    from study.participants import EnrolmentRequest
    from study.protocol import load_protocol

    database_url = f"sqlite+aiosqlite:///{tmp_path / 'prod.db'}"
    db = Database(database_url)
    await db.migrate()
    now = datetime.now(UTC)
    async with db.transaction() as session:
        participant = await participants.enroll(
            session, load_protocol(EXAMPLE_PROTOCOL), EnrolmentRequest("P001", "Europe/London", "en"),
            actor=COORDINATOR, now=now)
        code = (await invites.issue(session, participant, valid_for=timedelta(days=1), actor=COORDINATOR,
                                    now=now)).code
    # The site's IRB approved every text (trialbot messages approve ... --as, for each).
    await approve_all(db, load_protocol(write_study_file(tmp_path / "site")), actor=COORDINATOR)
    await db.dispose()

    world = TelegramWorld(token=TOKEN)
    async with BotApiServer(world) as server:
        env = {**os.environ, "TELEGRAM_BOT_TOKEN": TOKEN, "DATABASE_URL": database_url,
               "TELEGRAM_API_URL": server.base_url.removesuffix("/bot"),
               "STUDY_FILE": str(write_study_file(tmp_path / "site")), "LOG_LEVEL": "INFO"}
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "run", cwd=tmp_path, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        try:
            user = world.add_user(user_id=1001, first_name="Pat")
            await user.send_text(f"/start {code}")
            await user.next_bot_event(timeout=30)  # start-up included
            await user.press("✅ Yes, I agree")
            assert "You are all set" in (await user.next_bot_event()).text
            await user.press("✅ I put it on now")
            assert "Saved" in (await user.next_bot_event()).text
        finally:
            process.send_signal(signal.SIGTERM)
            output = (await asyncio.wait_for(process.communicate(), 30))[0].decode()
    assert process.returncode == 0, output
    assert TOKEN not in output and "PRODUCTION-LIKE" not in output
    assert "protocol version 2.0, 2026-10-01, confirmed by Dana Lee on 2026-10-02" in output
    assert world.rejected_calls == []
    assert [c["command"] for c in world.commands_for()][:3] == ["log", "today", "undo"]
