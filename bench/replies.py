"""Benchmark: a burst of replies against Telegram's limits, alone, beside a broadcast, and from two processes.

Scenarios (each for every --latency-ms):
- burst: 40 participants send /today 15 times each, all at once (600 updates); the timer runs from
  the first update to the 600th answer. Floor: 600 / 30 s = 20 s.
- broadcast: the same burst sent right after the coordinator confirmed a broadcast to 1,000
  participants (the 40 among them). Replies go ahead of the broadcast's messages: the burst's
  figures are against its own 20 s floor; the whole (600 answers and 1,000 notices) against 1600/30 s.
- two-processes (PostgreSQL only): the burst given to two `trialbot run --webhook` processes on
  one database behind a round-robin balancer, as in tests/test_scale_out.py; every send of both
  passes the one limiter in the database. CPU time is the two processes' (from /proc).

The stand-in enforces 30 messages/s overall (a strict one-second window unless --bucket) and
1/s per chat with a burst of 3 (bench/pace.py). Prints wall time against the floor, the 429s the
stand-in gave, and process CPU time per message (in-process runs include the stand-in's share).

    python bench/replies.py [--scenarios burst,broadcast,two-processes] [--latency-ms 0,50,100]
                            [--database-url postgresql+asyncpg://...]
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import pace
from sandbox.server import BotApiServer
from study.audit import Actor
from study.clock import ManualClock
from tests.ledger import approve_all

SENDERS = 40
EACH = 15
RECIPIENTS = 1000
NOTICE = "clinic is closed"


def answers(user) -> int:
    return sum(1 for m in user.bot_messages if NOTICE not in (m.text or ""))


def notices(user) -> int:
    return sum(1 for m in user.bot_messages if NOTICE in (m.text or ""))


async def burst(users: list) -> None:
    for _ in range(EACH):
        for user in users:
            await user.send_text("/today")


async def in_process(args, latency_ms: float, with_broadcast: bool) -> None:
    people = RECIPIENTS if with_broadcast else SENDERS
    clock = ManualClock(pace.START)
    with tempfile.TemporaryDirectory() as scratch:
        async with pace.study_database(args, Path(scratch), people) as (db, _url):
            world = pace.stand_in(args, clock)
            users = pace.open_chats(world, people)
            everyone, coordinator = users[:-1], users[-1]
            senders = everyone[:SENDERS]
            world.latency_seconds = latency_ms / 1000  # Telegram's round trip all along (bench/broadcast.py)
            async with pace.trialbot(world, db, pace.protocol(), clock):
                if with_broadcast:
                    await pace.confirm_broadcast(coordinator)
                measure = pace.Measure(world)
                measure.start()
                if with_broadcast:
                    await coordinator.press("✅ Confirm")
                await burst(senders)
                await pace.until_count(world, senders, answers, SENDERS * EACH)
                replies_wall = time.perf_counter() - measure._wall
                if with_broadcast:
                    await pace.until_count(world, everyone, notices, RECIPIENTS)
                measure.stop()
    title = "the burst beside a broadcast to 1,000" if with_broadcast else "the burst"
    print(f"{title}: {SENDERS * EACH} /today from {SENDERS} participants, {latency_ms:g} ms per Bot API call, "
          f"{pace.backend(args)}, one process")
    if with_broadcast:
        print(pace.figures("answers (of the burst)", SENDERS * EACH, replies_wall, measure.refused, None, target=1.10))
        print(pace.figures("answers and notices", SENDERS * EACH + RECIPIENTS, measure.wall, measure.refused,
                           measure.cpu, target=1.10))
    else:
        print(pace.figures("answers", SENDERS * EACH, measure.wall, measure.refused, measure.cpu, target=1.10))
    if measure.refused and args.verbose:
        print(f"  the 429s: {measure.refusals()}")


async def two_processes(args, latency_ms: float) -> None:
    from tests.test_scale_out import (
        LEADER,
        BotProcess,
        RoundRobin,
        study_file_with_no_digest_due,
    )

    if not args.database_url:
        print("two processes: PostgreSQL only (--database-url); skipped")
        return
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        async with pace.study_database(args, scratch, SENDERS) as (db, url):
            await approve_all(db, pace.protocol(), actor=Actor.cli("bench"))
            world = pace.stand_in(args)
            users = pace.open_chats(world, SENDERS)[:-1]
            async with BotApiServer(world) as server:
                env = {**os.environ, "TELEGRAM_BOT_TOKEN": world.token, "DATABASE_URL": url,
                       "TELEGRAM_API_URL": server.base_url.removesuffix("/bot"),
                       "STUDY_FILE": str(study_file_with_no_digest_due(scratch)), "LOG_LEVEL": "INFO",
                       "WEBHOOK_LISTEN": "127.0.0.1", "OUTBOX_POLL_SECONDS": "5", "LEADER_RETRY_SECONDS": "5"}
                env.pop("WEBHOOK_SECRET", None)
                env["PYTHONPATH"] = str(pace.ROOT)  # this checkout's code, whatever is installed
                first, second = BotProcess("first", env, scratch), BotProcess("second", env, scratch)
                world.latency_seconds = latency_ms / 1000  # Telegram's round trip all along (bench/broadcast.py)
                async with RoundRobin([first.port, second.port]) as balancer:
                    try:
                        await first.start(balancer.url)
                        await first.logged(LEADER)
                        await second.start(balancer.url)
                        await second.logged("another process is the scheduler leader; this one stands by")
                        measure = pace.Measure(world)
                        cpu_before = sum(pace.cpu_seconds(p.process.pid) for p in (first, second))
                        measure.start()
                        await burst(users)
                        await pace.until_count(world, users, answers, SENDERS * EACH)
                        measure.stop()
                        cpu = sum(pace.cpu_seconds(p.process.pid) for p in (first, second)) - cpu_before
                        shares = sorted(balancer.answered.values())
                    finally:
                        await second.stop()
                        await first.stop()
    print(f"the burst given to two processes: {SENDERS * EACH} /today from {SENDERS} participants, "
          f"{latency_ms:g} ms per Bot API call, postgresql (updates shared {shares[0]} / {shares[-1]})")
    print(pace.figures("answers", SENDERS * EACH, measure.wall, measure.refused, cpu, target=1.10))
    if measure.refused and args.verbose:
        print(f"  the 429s: {measure.refusals()}")


async def main() -> None:
    parser = pace.arguments(__doc__.splitlines()[0])
    parser.add_argument("--scenarios", default="burst,broadcast,two-processes")
    parser.add_argument("--verbose", action="store_true", help="say which calls drew a 429")
    args = parser.parse_args()
    print(f"({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)")
    for latency_ms in pace.latencies(args):
        for scenario in args.scenarios.split(","):
            if scenario == "burst":
                await in_process(args, latency_ms, with_broadcast=False)
            elif scenario == "broadcast":
                await in_process(args, latency_ms, with_broadcast=True)
            elif scenario == "two-processes":
                await two_processes(args, latency_ms)
            else:
                parser.error(f"no scenario {scenario!r}")


if __name__ == "__main__":
    asyncio.run(main())
