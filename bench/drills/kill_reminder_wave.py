"""Drill: kill -9 the bot in the middle of a reminder wave, restart it, count who was reminded.

Participants whose reminder time came a minute ago (the process runs on the wall clock), so the
bot's first tick queues them all at once; the real `trialbot run` in a process of its own, the
stand-in enforcing Telegram's limits (30/s overall, 1/s per chat); killed with SIGKILL at a
random point of the delivery (`--kills` times), restarted each time; PASS when everyone got
their reminder and the duplicates are at most the outbox rows that were 'sending' at the kills.
See tests/drills/crash.py and this folder's README.

    python bench/drills/kill_reminder_wave.py [--participants 1000] [--kills 1] [--database postgresql]
"""

from __future__ import annotations

import asyncio

from _common import parser, scratch_dir, verdict

from tests.drills.crash import CrashConfig, run_crash_drill
from tests.drills.process import scratch_database


async def main() -> None:
    options = parser(__doc__)
    options.add_argument("--participants", type=int, default=1000)
    options.add_argument("--kills", type=int, default=1)
    args = options.parse_args()
    config = CrashConfig(wave="reminders", recipients=args.participants, kills=args.kills, seed=args.seed)
    async with scratch_dir() as scratch, scratch_database(args.database, scratch, args.postgres_url) as url:
        report = await run_crash_drill(url, scratch, config)
    verdict(report, scratch)


if __name__ == "__main__":
    asyncio.run(main())
