"""`trialbot demo`: the real bot, on its own, with nothing from outside.

A throw-away SQLite database, the local Bot API stand-in on loopback, a demo participant with a
fresh invite, and a terminal chat in which you are that participant. Nothing leaves the machine
and no Telegram token is needed (or accepted: the stand-in is not Telegram).
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

from bot.app import build_application, running
from bot.audit_report import format_entries, participant_entries
from bot.invite_link import invite_link
from bot.settings import Settings
from sandbox.server import BotApiServer
from sandbox.terminal_chat import run_terminal_chat
from sandbox.world import TelegramWorld
from study import invites, participants, staff
from study.audit import Actor
from study.clock import SystemClock
from study.database import Database
from study.participants import EnrolmentRequest
from study.protocol import load_protocol

DEMO_TOKEN = "100000001:DEMO-SANDBOX-NOT-A-REAL-TOKEN"
DEMO_PARTICIPANT = "DEMO01"
DEMO_USER_ID = 424242
DEMO_STAFF_ID = 900001
INTRO = """\
trialbot demo: the real bot, talking to a local stand-in for Telegram. Nothing leaves this computer.

You are participant {study_id}. The study team enrolled you and gave you this invite link:
  {link}
Opening it now. Type a button's number to press it, or type a message. {quit} to leave.
"""


async def _read_stdin() -> str | None:
    try:
        return await asyncio.to_thread(input, "")
    except EOFError:
        return None


async def run_demo(
    *,
    color: bool = False,
    read_line: Callable[[], Awaitable[str | None]] = _read_stdin,
    write: Callable[[str], None] = print,
    workdir: Path | None = None,
) -> None:
    protocol = load_protocol(Settings().study_file)
    clock = SystemClock()
    with tempfile.TemporaryDirectory(prefix="trialbot-demo-") as scratch:
        db = Database(f"sqlite+aiosqlite:///{Path(workdir or scratch) / 'demo.db'}")
        await db.migrate()
        world = TelegramWorld(token=DEMO_TOKEN, bot_username="trialbot_demo_bot", now=clock.now)
        code = await _enrol_demo_participant(db, protocol, clock)
        try:
            async with BotApiServer(world) as server:
                app = build_application(token=DEMO_TOKEN, base_url=server.base_url,
                                        base_file_url=server.base_file_url, protocol=protocol, db=db, clock=clock)
                async with running(app, poll_timeout=1):
                    coordinator = world.add_user(user_id=DEMO_STAFF_ID, first_name="Demo coordinator")
                    await coordinator.send_text("/start")
                    await coordinator.next_bot_event()
                    write(INTRO.format(study_id=DEMO_PARTICIPANT, link=invite_link(world.bot_username, code),
                                       quit=":quit"))
                    you = world.add_user(user_id=DEMO_USER_ID, first_name="You", language_code="en")
                    await you.send_text(f"/start {code}")
                    await run_terminal_chat(you, _after_bot_answers(you, read_line), write, color=color)
                    write("\nWhat the study team's chat received:")
                    for message in coordinator.bot_messages[1:]:
                        write(f"  {message.text}")
            async with db.transaction() as session:
                trail = await participant_entries(session, DEMO_PARTICIPANT)
            write("\nThe audit trail for this participant (trialbot audit show --participant ...):")
            for line in format_entries(trail):
                write("  " + line)
        finally:
            await db.dispose()


def _after_bot_answers(you, read_line: Callable[[], Awaitable[str | None]]) -> Callable[[], Awaitable[str | None]]:
    """Read the next line only once the bot has answered the last one, so that typed-ahead or
    piped input (`printf '1\\n1\\n' | trialbot demo`) presses the buttons it was meant for."""
    seen = 0

    def shown(user) -> int:
        return sum(1 + len(m.edits) for m in user.bot_messages)

    async def read() -> str | None:
        nonlocal seen
        try:
            await you.wait_for(lambda u: shown(u) > seen, timeout=5)
        except TimeoutError:
            pass  # the bot had nothing to say (an unknown button number, say); carry on
        await asyncio.sleep(0.05)  # let the chat printer show the answer before the prompt
        seen = shown(you)
        return await read_line()

    return read


async def _enrol_demo_participant(db: Database, protocol, clock) -> str:
    actor = Actor.cli("demo")
    async with db.transaction() as session:
        participant = await participants.enroll(
            session, protocol, EnrolmentRequest(DEMO_PARTICIPANT, "America/New_York", "en", wocbp=True),
            actor=actor, now=clock.now())
        issued = await invites.issue(session, participant, valid_for=timedelta(days=1), actor=actor, now=clock.now())
        await staff.add_or_update(session, telegram_user_id=DEMO_STAFF_ID, name="Demo coordinator",
                                  role="coordinator", actor=actor, now=clock.now())
    return issued.code
