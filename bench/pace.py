"""What the pace benchmarks (bench/broadcast.py, bench/replies.py) share: a study of N active
participants written straight into a fresh database, the Bot API stand-in enforcing Telegram's
limits, the real Application, and the figures each prints (wall time against the floor N/30 s,
the stand-in's 429s, process CPU time per message).

The stand-in enforces 30 messages a second as a strict sliding window by default (429 for a
message when 30 went out in the second before it; `--bucket` for the older token bucket) and one
a second per chat (burst 3); `--latency-ms` adds a round trip to every Bot API call.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert

from bot.app import build_application, demo_messages, running
from bot.cli.serve import freeze_start_up_objects
from sandbox.chat import SimUser
from sandbox.ratelimit import RateLimits
from sandbox.server import BotApiServer
from sandbox.world import TelegramWorld
from study import staff
from study.audit import Actor
from study.clock import ManualClock
from study.database import Database
from study.models import Participant
from study.protocol import EXAMPLE_PROTOCOL, Protocol, load_protocol
from tests.drills.process import scratch_database

ROOT = Path(__file__).resolve().parent.parent
START = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)  # 10:00 in New York
PER_SECOND = 30  # Telegram's overall limit, which the stand-in enforces
FIRST_CHAT = 20_000
COORDINATOR = 9001


def arguments(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--database-url", default=os.environ.get("TRIALBOT_BENCH_DATABASE_URL"),
                        help="PostgreSQL server to use (a database of its own is made and dropped); SQLite by default")
    parser.add_argument("--latency-ms", default="0,50,100",
                        help="round trip the stand-in adds to each Bot API call; comma-separated runs")
    parser.add_argument("--bucket", action="store_true",
                        help="the stand-in's overall limit as a token bucket (bursts allowed), not a strict window")
    return parser


def latencies(args: argparse.Namespace) -> list[float]:
    return [float(v) for v in args.latency_ms.split(",")]


def backend(args: argparse.Namespace) -> str:
    return "postgresql" if args.database_url else "sqlite"


@contextlib.asynccontextmanager
async def study_database(args: argparse.Namespace, scratch: Path, people: int) -> AsyncIterator[tuple[Database, str]]:
    """A fresh database with `people` active participants (chats FIRST_CHAT...) and a coordinator."""
    async with scratch_database(backend(args), scratch, args.database_url) as url:
        db = Database(url)
        await db.migrate()
        joined = START - timedelta(days=1)
        async with db.transaction() as session:
            await session.execute(insert(Participant), [
                {"study_id": f"B{n:05d}", "timezone": "America/New_York", "language": "en", "wocbp": False,
                 "reminder_times": "08:00,20:00", "status": "active", "telegram_user_id": FIRST_CHAT + n,
                 "telegram_chat_id": FIRST_CHAT + n, "enrolled_at": joined, "consented_at": joined,
                 "active_since": joined, "next_plan_at": START + timedelta(days=30)}
                for n in range(people)
            ])
            await staff.add_or_update(session, telegram_user_id=COORDINATOR, name="Bench", role="coordinator",
                                      actor=Actor.cli("bench"), now=START)
        try:
            yield db, url
        finally:
            await db.dispose()


def stand_in(args: argparse.Namespace, clock: ManualClock | None = None, *, token: str | None = None) -> TelegramWorld:
    limits = RateLimits(global_per_second=PER_SECOND, per_chat_per_second=1.0)
    if not args.bucket:
        limits = RateLimits(global_per_second=PER_SECOND, per_chat_per_second=1.0, strict_window=True)
    named = {"token": token} if token is not None else {}
    return TelegramWorld(**named, now=clock.now if clock else None, rate_limits=limits)


def open_chats(world: TelegramWorld, people: int) -> list:
    """The participants and the coordinator, each with a chat the bot may write to (as once they
    have written to it; not timed)."""
    users = [world.add_user(user_id=FIRST_CHAT + n, first_name="P") for n in range(people)]
    coordinator = world.add_user(user_id=COORDINATOR, first_name="Dana")
    for user in [*users, coordinator]:
        user.started = True
    return [*users, coordinator]


@contextlib.asynccontextmanager
async def trialbot(world: TelegramWorld, db: Database, protocol: Protocol, clock: ManualClock):
    async with BotApiServer(world) as server:
        app = build_application(token=world.token, base_url=server.base_url, base_file_url=server.base_file_url,
                                protocol=protocol, db=db, clock=clock, tick_seconds=None, outbox_poll_seconds=3600,
                                messages=demo_messages(protocol))
        async with running(app, poll_timeout=1):
            freeze_start_up_objects()  # as `trialbot run` does once it serves (bot/cli/serve.py)
            try:
                yield app
            finally:
                gc.unfreeze()  # the next run in this process starts as this one did


def protocol() -> Protocol:
    return load_protocol(EXAMPLE_PROTOCOL)


async def until_count(world: TelegramWorld, users: Sequence[SimUser], count: Callable[[SimUser], int], target: int,
                      timeout: float = 600) -> None:
    """Wait until `count(user)` summed over `users` reaches `target`. After each change to a chat
    only that chat is counted again: the bot's process is the stand-in's too, and a count of every
    chat at every message (a thousand chats a thousand times over, in a broadcast) would take the
    event loop from the bot being measured, slowing its sends and its reading of their round trips."""
    reached = asyncio.Event()
    counts = {id(user): count(user) for user in users}
    total = sum(counts.values())

    def look(user: SimUser) -> None:
        nonlocal total
        if id(user) in counts:
            new = count(user)
            total += new - counts[id(user)]
            counts[id(user)] = new
        if total >= target:
            reached.set()

    world.add_listener(look)
    try:
        if total >= target:
            reached.set()
        await asyncio.wait_for(reached.wait(), timeout)
    finally:
        world.remove_listener(look)


async def confirm_broadcast(coordinator) -> None:
    """/broadcast closure all, up to its Confirm button (not timed; the press is the caller's),
    and the few seconds a person takes to read the preview (Telegram's burst for one chat, which
    the preview used, is back by then)."""
    await coordinator.send_text("/broadcast closure all")
    await coordinator.wait_for(lambda c: c.last_bot_message is not None
                               and "✅ Confirm" in c.last_bot_message.button_labels, timeout=120)
    await asyncio.sleep(3.5)


@dataclass
class Measure:
    """Wall and process CPU time from `start()`; the stand-in's 429s over the same span."""

    world: TelegramWorld
    calls_before: int = 0
    wall: float = 0.0
    cpu: float = 0.0

    def start(self) -> None:
        self.calls_before = len(self.world.calls)
        self._wall, self._cpu = time.perf_counter(), time.process_time()

    def stop(self) -> None:
        self.wall, self.cpu = time.perf_counter() - self._wall, time.process_time() - self._cpu

    @property
    def refused(self) -> int:
        return sum(c.status == 429 for c in self.world.calls[self.calls_before:])

    def refusals(self) -> str:
        """Which calls the 429s were (method and chat), for a look at where they come from."""
        refused = [c for c in self.world.calls[self.calls_before:] if c.status == 429]
        return ", ".join(f"{c.method} to {c.params.get('chat_id')}" for c in refused[:10])


def cpu_seconds(pid: int) -> float:
    """A bot process's CPU time so far (user and system, from /proc): the benches that run the bot
    as `trialbot run` count its CPU, not their own."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def figures(label: str, messages: int, wall: float, refused: int, cpu: float | None, *, target: float) -> str:
    floor = messages / PER_SECOND
    cpu_text = f"; CPU {cpu / messages * 1000:.2f} ms/message" if cpu is not None else ""
    return (f"  {label}: {messages} messages in {wall:.2f} s; floor {floor:.2f} s; ratio {wall / floor:.3f} "
            f"(target <= {target}); 429s: {refused}{cpu_text}")
