"""Benchmark: a broadcast to N participants against Telegram's limits.

The stand-in enforces Telegram's rates (30 messages/s overall, 1/s per chat, 429 with
retry_after past them); the bot's real broadcast path queues one outbox row per recipient and the
real dispatcher delivers them through PTB's AIORateLimiter. Prints the wall time against the
floor N/30 s, the 429 responses the stand-in had to give, and duplicates (participants who got
the notice more than once).

    python bench/broadcast.py [--recipients 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.app import build_application, demo_messages, running
from sandbox.ratelimit import RateLimits
from sandbox.server import BotApiServer
from sandbox.world import TelegramWorld
from study import broadcasts, staff
from study.audit import Actor
from study.clock import ManualClock
from study.database import Database
from study.models import Participant, ParticipantStatus
from study.protocol import EXAMPLE_PROTOCOL, load_protocol

START = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
GLOBAL_PER_SECOND = 30


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=1000)
    count = parser.parse_args().recipients
    protocol = load_protocol(EXAMPLE_PROTOCOL)
    clock = ManualClock(START)
    with tempfile.TemporaryDirectory() as scratch:
        db = Database(f"sqlite+aiosqlite:///{scratch}/bench.db")
        await db.migrate()
        joined = START - timedelta(days=1)
        async with db.transaction() as session:
            await session.execute(insert(Participant), [
                dict(study_id=f"B{n:05d}", timezone="America/New_York", language="en", wocbp=False,
                     reminder_times="08:00,20:00", status=ParticipantStatus.ACTIVE, telegram_user_id=20_000 + n,
                     telegram_chat_id=20_000 + n, enrolled_at=joined, consented_at=joined, active_since=joined,
                     next_plan_at=START + timedelta(days=30))
                for n in range(count)
            ])
            author = await staff.add_or_update(session, telegram_user_id=9001, name="Bench", role="coordinator",
                                               actor=Actor.cli("bench"), now=clock.now())
        world = TelegramWorld(now=clock.now, rate_limits=RateLimits(global_per_second=GLOBAL_PER_SECOND,
                                                                    per_chat_per_second=1.0))
        async with BotApiServer(world) as server:
            app = build_application(token=world.token, base_url=server.base_url, base_file_url=server.base_file_url,
                                    protocol=protocol, db=db, clock=clock, tick_seconds=None, outbox_poll_seconds=3600,
                                    messages=demo_messages(protocol))
            async with running(app, poll_timeout=1):
                users = [world.add_user(user_id=20_000 + n, first_name="P") for n in range(count)]
                for user in users:  # a chat exists once its user has written (not timed)
                    await user.send_text("/help")
                for user in users:
                    await user.wait_for(lambda u: len(u.bot_messages) >= 1, timeout=300)
                async with db.transaction() as session:
                    row = await broadcasts.create_draft(session, author, template_id="broadcast_clinic_closure",
                                                        audience="all", text=None, now=clock.now())
                    hashes = {"en": app.bot_data["services"].messages.render(row.template_id, "en", {
                        **app.bot_data["services"].study_variables(), **broadcasts.variables(row)}).template_hash}
                    queued = await broadcasts.confirm(session, row, author, hashes=hashes, second_approval=False,
                                                      valid=timedelta(hours=24), now=clock.now())
                calls_before = len(world.calls)
                started = time.perf_counter()
                await app.bot_data["dispatcher"].deliver_due()
                elapsed = time.perf_counter() - started
        await db.dispose()
    new_calls = world.calls[calls_before:]
    too_many = sum(c.status == 429 for c in new_calls)
    received = Counter(u.user_id for u in users for m in u.bot_messages if "clinic is closed" in (m.text or ""))
    floor = count / GLOBAL_PER_SECOND
    print(f"broadcast to {queued} participants, stand-in enforcing {GLOBAL_PER_SECOND}/s overall and 1/s per chat")
    print(f"  wall time: {elapsed:.1f} s; floor {floor:.1f} s; ratio {elapsed / floor:.3f} (target at most 1.05)")
    print(f"  429 responses: {too_many}; received: {len(received)} of {count}; "
          f"duplicates: {sum(n - 1 for n in received.values())}")


if __name__ == "__main__":
    asyncio.run(main())
