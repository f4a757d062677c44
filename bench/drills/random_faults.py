"""Drill: Telegram failing a fifth of all calls while participants diary, check in and are reminded.

Simulated minutes on the injected clock (so ten of them need not take ten real ones); the
stand-in fails `--rate` of every call at random from `--seed` (429 with retry_after, 500,
timeouts, dropped connections, answers lost after Telegram acted), getUpdates included.
PASS when every diary entry and check-in a participant saw confirmed is stored exactly once,
nothing is stored twice, every due reminder is sent or skipped/failed with a reason, repeats
stay within the sends of unknown outcome, and the bot is still running and answering. See
tests/drills/traffic.py and this folder's README.

    python bench/drills/random_faults.py [--participants 500] [--minutes 10] [--rate 0.2] [--database postgresql]
"""

from __future__ import annotations

import asyncio

from _common import parser, scratch_dir, scratch_schema_database, verdict

from study.protocol import EXAMPLE_PROTOCOL, load_protocol
from tests.drills.traffic import TrafficConfig, run_traffic_drill


async def main() -> None:
    options = parser(__doc__)
    options.add_argument("--participants", type=int, default=500)
    options.add_argument("--minutes", type=int, default=10)
    options.add_argument("--rate", type=float, default=0.2)
    options.add_argument("--request-timeout", type=float, default=0.5,
                         help="the bot's wait for Telegram's answer (PTB's default is 5 s; each timeout costs it)")
    args = options.parse_args()
    config = TrafficConfig(participants=args.participants, minutes=args.minutes, fault_rate=args.rate, seed=args.seed,
                           checkin_share=0.3, request_timeout=args.request_timeout, patience=5.0, at_once=20,
                           minute_seconds=30.0)
    async with scratch_dir() as scratch, scratch_schema_database(args, scratch) as db:
        report = await run_traffic_drill(db, load_protocol(EXAMPLE_PROTOCOL), config)
    verdict(report, scratch)


if __name__ == "__main__":
    asyncio.run(main())
