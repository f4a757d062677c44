"""Drill: PostgreSQL goes away for 30 s under the running bot, mid reminder wave, and comes back.

The real `trialbot run` on a throw-away PostgreSQL database, a reminder wave under Telegram's
limits; when `--cut-at` of it is delivered the database goes away for `--outage` seconds:
through a TCP proxy in front of the server (the default; nobody else notices), or with
`--stop-server`, by stopping the real server with `pg_ctlcluster` and starting it again (every
other user of that server notices: run it only on a machine nobody else is testing on). Taps and
/symptoms during the outage, the same again after. PASS when the bot degrades with one clear log
line each way and no traceback, answers with the approved apology, writes nothing half-way, and
recovers by itself (the wave finishes, nobody missed or reminded twice, the taps then save). See
tests/drills/outage_live.py and this folder's README.

    python bench/drills/database_outage.py [--participants 300] [--outage 30] [--stop-server]
"""

from __future__ import annotations

import asyncio

from _common import parser, scratch_dir, verdict

from tests.drills.outage_live import LiveOutageConfig, run_live_outage_drill
from tests.drills.process import scratch_database


async def main() -> None:
    options = parser(__doc__)
    options.set_defaults(database="postgresql")
    options.add_argument("--participants", type=int, default=300)
    options.add_argument("--outage", type=float, default=30.0)
    options.add_argument("--cut-at", type=float, default=0.25, help="share of the wave delivered when it goes")
    options.add_argument("--stop-server", action="store_true",
                         help="stop and start the real PostgreSQL server instead of cutting a proxy")
    options.add_argument("--cluster", default="15/main", help="pg_ctlcluster's version/name (see pg_lsclusters)")
    args = options.parse_args()
    if args.database != "postgresql":
        options.error("a database outage needs a database server: SQLite is a file the bot opens itself")
    config = LiveOutageConfig(participants=args.participants, outage_seconds=args.outage, cut_at_share=args.cut_at,
                              take_away="server" if args.stop_server else "proxy",
                              cluster=tuple(args.cluster.split("/", 1)))
    async with scratch_dir() as scratch, scratch_database("postgresql", scratch, args.postgres_url) as url:
        report = await run_live_outage_drill(url, scratch, config)
    verdict(report, scratch)


if __name__ == "__main__":
    asyncio.run(main())
