"""Benchmark: a broadcast to N participants, from the coordinator's Confirm, against Telegram's limits.

The real path: the coordinator's /broadcast and its preview (not timed), then the timer starts
at the press of Confirm: the handler queues one outbox row per recipient, wakes the dispatcher,
and the dispatcher delivers them through the bot's send limiter; the timer stops when the last
participant has the notice. The stand-in enforces 30 messages/s overall (a strict one-second
window unless --bucket) and 1/s per chat, answering 429 past them (bench/pace.py). Prints the wall
time against the floor N/30 s, the 429s, duplicates, and the process's CPU time per message (the
stand-in's share included: it runs in the same process).

    python bench/broadcast.py [--recipients 1000] [--latency-ms 0,50,100] [--database-url postgresql+asyncpg://...]
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import pace
from study.clock import ManualClock

NOTICE = "clinic is closed"


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

                def received(user) -> int:
                    last = user.last_bot_message
                    return int(last is not None and NOTICE in (last.text or ""))

                measure = pace.Measure(world)
                measure.start()
                await coordinator.press("✅ Confirm")
                await pace.until_count(world, people, received, count)
                measure.stop()
    copies = Counter(u.user_id for u in people for m in u.bot_messages if NOTICE in (m.text or ""))
    print(f"broadcast to {count}, {latency_ms:g} ms per Bot API call, {pace.backend(args)}, stand-in "
          f"{'token bucket' if args.bucket else 'strict one-second window'} of {pace.PER_SECOND}/s and 1/s per chat")
    print(pace.figures("from Confirm to the last notice", count, measure.wall, measure.refused, measure.cpu,
                       target=1.05))
    print(f"  received: {len(copies)} of {count}; duplicates: {sum(n - 1 for n in copies.values())}")
    if measure.refused and args.verbose:
        print(f"  the 429s: {measure.refusals()}")


async def main() -> None:
    parser = pace.arguments(__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=1000)
    parser.add_argument("--verbose", action="store_true", help="say which calls drew a 429")
    args = parser.parse_args()
    for latency_ms in pace.latencies(args):
        await run(args, latency_ms)


if __name__ == "__main__":
    asyncio.run(main())
