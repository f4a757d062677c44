"""Benchmark: a broadcast to N participants, from the coordinator's Confirm, against Telegram's limits.

The real path: the coordinator's /broadcast and its preview (not timed), then the timer starts
at the press of Confirm: the handler queues one outbox row per recipient, wakes the dispatcher,
and the dispatcher delivers them through the bot's send limiter; the timer stops when the last
participant has the notice. The stand-in enforces 30 messages/s overall (a strict one-second
window unless --bucket) and 1/s per chat, answering 429 past them (bench/pace.py). Prints the wall
time against the floor N/30 s, the 429s, duplicates, and the process's CPU time per message (the
stand-in's share included: it runs in the same process).

`--bot process` runs the bot as it is deployed instead: `trialbot run` (long polling) in a process
of its own, the stand-in in this one; the CPU printed is then the bot process's alone (from
/proc). In-process, the stand-in's work (Telegram's, in life) shares the bot's event loop; in a
process of its own the bot has its event loop to itself, as against Telegram. Both are printed by
default (`--bot in-process,process`), each ratio against the same target (so far they measure
alike: docs/benchmarks.md).

    python bench/broadcast.py [--recipients 1000] [--latency-ms 0,50,100] [--database-url postgresql+asyncpg://...]
                              [--bot in-process,process]
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import pace
from sandbox.server import BotApiServer
from study.audit import Actor
from study.clock import ManualClock
from tests.drills.process import TOKEN, BotProcess
from tests.ledger import approve_all

NOTICE = "clinic is closed"


def received(user) -> int:
    last = user.last_bot_message
    return int(last is not None and NOTICE in (last.text or ""))


async def run(args, latency_ms: float) -> None:
    count = args.recipients
    clock = ManualClock(pace.START)
    with tempfile.TemporaryDirectory() as scratch:
        async with pace.study_database(args, Path(scratch), count) as (db, _url):
            world = pace.stand_in(args, clock)
            users = pace.open_chats(world, count)
            people, coordinator = users[:-1], users[-1]
            # The round trip is Telegram's all along, the preview's calls too: the send limiter
            # learns it from the answers it sees (bot/send_limiter.py `lag`). It stays until the
            # bot has stopped: dropped to nothing after the last notice, the author's final report
            # reached the stand-in 50 ms sooner than the limiter counted on, and drew a 429 that
            # was the bench's doing (the 429s counted are every call's from Confirm to the end).
            world.latency_seconds = latency_ms / 1000
            async with pace.trialbot(world, db, pace.protocol(), clock):
                await pace.confirm_broadcast(coordinator)
                measure = pace.Measure(world)
                measure.start()
                await coordinator.press("✅ Confirm")
                await pace.until_count(world, people, received, count)
                measure.stop()
    report(args, latency_ms, people, measure, measure.cpu, "the bot in this process")


async def run_process(args, latency_ms: float) -> None:
    """The same broadcast, the bot a `trialbot run` of its own (long polling, the wall clock)."""
    from tests.test_scale_out import study_file_with_no_digest_due

    count = args.recipients
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        async with pace.study_database(args, scratch, count) as (db, url):
            await approve_all(db, pace.protocol(), actor=Actor.cli("bench"))
            world = pace.stand_in(args, token=TOKEN)
            users = pace.open_chats(world, count)
            people, coordinator = users[:-1], users[-1]
            async with BotApiServer(world) as server:
                bot = BotProcess(api_url=server.base_url.removesuffix("/bot"), database_url=url, workdir=scratch,
                                 log_path=scratch / "bot.log",
                                 extra_env={"STUDY_FILE": str(study_file_with_no_digest_due(scratch / "site")),
                                            "PYTHONPATH": str(pace.ROOT)})
                world.latency_seconds = latency_ms / 1000  # Telegram's round trip all along (see run)
                await bot.start()
                try:
                    await pace.confirm_broadcast(coordinator)
                    assert bot.process is not None
                    measure = pace.Measure(world)
                    cpu_before = pace.cpu_seconds(bot.process.pid)
                    measure.start()
                    await coordinator.press("✅ Confirm")
                    await pace.until_count(world, people, received, count)
                    measure.stop()
                    cpu = pace.cpu_seconds(bot.process.pid) - cpu_before
                finally:
                    if await bot.stop() not in (0, None) and args.verbose:
                        print(bot.log()[-3000:])
    report(args, latency_ms, people, measure, cpu, "the bot a process of its own (trialbot run)")


def report(args, latency_ms: float, people: list, measure: pace.Measure, cpu: float, where: str) -> None:
    count = len(people)
    copies = Counter(u.user_id for u in people for m in u.bot_messages if NOTICE in (m.text or ""))
    print(f"broadcast to {count}, {latency_ms:g} ms per Bot API call, {pace.backend(args)}, {where}; stand-in "
          f"{'token bucket' if args.bucket else 'strict one-second window'} of {pace.PER_SECOND}/s and 1/s per chat")
    print(pace.figures("from Confirm to the last notice", count, measure.wall, measure.refused, cpu, target=1.05))
    print(f"  received: {len(copies)} of {count}; duplicates: {sum(n - 1 for n in copies.values())}")
    if measure.refused and args.verbose:
        print(f"  the 429s: {measure.refusals()}")


async def main() -> None:
    parser = pace.arguments(__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=1000)
    parser.add_argument("--verbose", action="store_true", help="say which calls drew a 429")
    parser.add_argument("--bot", default="in-process,process",
                        help="where the bot runs: in-process (beside the stand-in), process (trialbot run)")
    args = parser.parse_args()
    runs = {"in-process": run, "process": run_process}
    for where in args.bot.split(","):
        if where not in runs:
            parser.error(f"--bot: no {where!r} (in-process, process)")
    for latency_ms in pace.latencies(args):
        for where in args.bot.split(","):
            await runs[where](args, latency_ms)


if __name__ == "__main__":
    asyncio.run(main())
