"""Benchmark: the morning reminder wave, the empty tick, and memory (issue 8's targets).

- Wave: N participants (default 20,000) over 5 time zones that share a UTC offset in November
  (New York, Toronto, Detroit, Nassau, Indianapolis), so their 08:00 reminders fall in the same
  minute. The scheduler's real tick (scheduler/tick.py) at 08:00 plans and queues them all; the
  time is against a baseline measured in the same run: a bare multi-row insert of as many outbox
  rows with no planning (the floor any design pays). Target: under 2 s.
- Empty tick: the same tick with nothing due, at M participants (default 100,000), median and p99
  of 30 ticks, against one trivial query. Target: under 20 ms.
- Peak memory of the process (ru_maxrss: everything, the interpreter included). Target: under 250 MB.
- With --day: the older whole-day run (2 reminders a day, nobody answering: reminders, nudges and
  missing-dose records), a tick every simulated minute.

SQLite always; PostgreSQL too when --database-url (or TRIALBOT_BENCH_DATABASE_URL) names a
server (a database of its own, dropped afterwards). No Bot API call is made here, so unlike the
other benches it has no --latency-ms.

    python bench/reminder_wave.py [--participants 20000] [--idle-participants 100000] [--day N]
                                  [--database-url postgresql+asyncpg://...]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import delete, insert, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scheduler.tick import Tick  # noqa: E402
from study.clock import ManualClock  # noqa: E402
from study.database import Database  # noqa: E402
from study.models import OutboxMessage, Participant  # noqa: E402
from study.protocol import load_protocol  # noqa: E402
from tests.drills.process import scratch_database  # noqa: E402

SAME_MINUTE_ZONES = ["America/New_York", "America/Toronto", "America/Detroit", "America/Nassau",
                     "America/Indiana/Indianapolis"]
DAY_ZONES = ["America/New_York", "Europe/London", "Australia/Sydney", "Asia/Kolkata", "America/Los_Angeles"]
EIGHT_AM = datetime(2026, 11, 24, 13, 0, tzinfo=UTC)  # 08:00 in every SAME_MINUTE_ZONES zone
DAY_START = datetime(2026, 11, 24, 0, 0, tzinfo=UTC)
PROTOCOL = load_protocol(ROOT / "study.toml")


async def populate(db: Database, count: int, zones: list[str], joined: datetime) -> None:
    rows = [
        dict(study_id=f"B{n:06d}", timezone=zones[n % len(zones)], language="en", wocbp=False,
             reminder_times="08:00,20:00", status="active", telegram_user_id=10_000_000 + n,
             telegram_chat_id=10_000_000 + n, enrolled_at=joined, consented_at=joined, active_since=joined)
        for n in range(count)
    ]
    async with db.transaction() as session:
        for start in range(0, count, 5000):
            await session.execute(insert(Participant), rows[start:start + 5000])


async def baseline_insert(db: Database, count: int) -> float:
    """The floor: inserting `count` outbox rows like the wave's, with no planning, then removing them."""
    now = EIGHT_AM
    variables = {"slot_at": now.isoformat(), "slot_date": "2026-11-24"}
    buttons = [[["applied_now", "d:n:s2611240800", {}]], [["applied_earlier", "d:e:s2611240800", {}]],
               [["missed", "d:m:s2611240800", {}]]]
    rows = [dict(dedup_key=f"baseline:{n}", kind="reminder", participant_id=None, staff_id=None,
                 template_id="reminder_application", variables=variables, buttons=buttons, status="pending",
                 created_at=now, not_before=now, due_at=now, late_after=now, stale_after=now, attempts=0,
                 disable_notification=False, last_error=None) for n in range(count)]
    started = time.perf_counter()
    async with db.transaction() as session:
        await session.execute(insert(OutboxMessage), rows)
    elapsed = time.perf_counter() - started
    async with db.transaction() as session:
        await session.execute(delete(OutboxMessage).where(OutboxMessage.dedup_key.like("baseline:%")))
    return elapsed


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def trivial_query(db: Database) -> float:
    started = time.perf_counter()
    for _ in range(100):
        async with db.read() as session:
            await session.execute(text("SELECT 1"))
    return (time.perf_counter() - started) / 100


async def wave(label: str, db: Database, count: int) -> None:
    await populate(db, count, SAME_MINUTE_ZONES, joined=EIGHT_AM - timedelta(hours=1))
    clock = ManualClock(EIGHT_AM - timedelta(minutes=1))
    tick = Tick(db, PROTOCOL, clock)
    await tick.run_once()  # 07:59: everyone looked at once; the next look is 08:00
    clock.advance(timedelta(minutes=1))
    started = time.perf_counter()
    report = await tick.run_once()
    elapsed = time.perf_counter() - started
    assert report.queued == count, report
    floor = await baseline_insert(db, count)
    print(f"[{label}] wave: {count} participants over {len(SAME_MINUTE_ZONES)} zones, 08:00 in the same minute")
    print(f"  planned and queued {report.queued} reminders in {elapsed:.2f} s (target < 2 s); "
          f"bare insert of {count} rows: {floor:.2f} s; ratio {elapsed / floor:.2f}")
    print(f"  peak memory of the process so far (ru_maxrss): {_peak_rss_mb():.0f} MB (target < 250 MB)")


async def idle(label: str, db: Database, count: int) -> None:
    await populate(db, count, SAME_MINUTE_ZONES, joined=EIGHT_AM - timedelta(hours=1))
    clock = ManualClock(EIGHT_AM - timedelta(minutes=30))
    tick = Tick(db, PROTOCOL, clock)
    await tick.run_once()  # everyone's next look is 08:00; the next 29 minutes have nothing due
    times = []
    for _ in range(28):
        clock.advance(timedelta(minutes=1))
        started = time.perf_counter()
        report = await tick.run_once()
        times.append(time.perf_counter() - started)
        assert report.participants == 0 and report.queued == 0, report
    trivial = await trivial_query(db)
    median, worst = statistics.median(times), max(times)
    print(f"[{label}] tick with nothing due at {count} participants: median {median * 1000:.1f} ms, "
          f"worst of {len(times)} {worst * 1000:.1f} ms (target < 20 ms); one trivial query "
          f"{trivial * 1000:.2f} ms; ratio {median / trivial:.1f}")


async def day(label: str, db: Database, count: int) -> None:
    await populate(db, count, DAY_ZONES, joined=DAY_START - timedelta(days=2))
    clock = ManualClock(DAY_START)
    tick = Tick(db, PROTOCOL, clock)
    await tick.run_once()
    tick_times: list[tuple[float, int]] = []
    for _ in range(24 * 60):
        clock.advance(timedelta(minutes=1))
        started = time.perf_counter()
        report = await tick.run_once()
        tick_times.append((time.perf_counter() - started, report.queued))
    busiest_time, busiest_queued = max(tick_times, key=lambda t: t[1])
    async with db.read() as session:
        total = (await session.execute(text("SELECT count(*) FROM outbox"))).scalar()
    print(f"[{label}] whole day: {count} participants, {len(DAY_ZONES)} zones, 08:00 and 20:00, nobody answering")
    print(f"  {total} outbox rows, {sum(t for t, _ in tick_times):.1f} s of ticking over 1440 ticks; "
          f"busiest tick {busiest_queued} messages in {busiest_time:.2f} s")


async def on_each_database(scenario, count: int, url: str | None) -> None:
    for label, backend in (("SQLite", "sqlite"), ("PostgreSQL", "postgresql")):
        if backend == "postgresql" and not url:
            return
        with tempfile.TemporaryDirectory() as scratch:
            async with scratch_database(backend, Path(scratch), url) as database_url:
                db = Database(database_url)
                try:
                    await db.migrate()
                    await scenario(label, db, count)
                finally:
                    await db.dispose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, default=20_000, help="for the wave")
    parser.add_argument("--idle-participants", type=int, default=100_000, help="for the empty tick")
    parser.add_argument("--day", type=int, metavar="N", help="also run the whole day with N participants")
    parser.add_argument("--database-url", default=os.environ.get("TRIALBOT_BENCH_DATABASE_URL"),
                        help="a PostgreSQL server to run on too (a database of its own is made and dropped)")
    args = parser.parse_args()
    await on_each_database(wave, args.participants, args.database_url)
    await on_each_database(idle, args.idle_participants, args.database_url)
    if args.day:
        await on_each_database(day, args.day, args.database_url)
    print(f"peak memory of this process (ru_maxrss), all runs: {_peak_rss_mb():.0f} MB (target < 250 MB)")


if __name__ == "__main__":
    asyncio.run(main())
