"""Benchmark: plan and queue one day of reminders for N participants across 5 time zones.

Prints, for SQLite (and PostgreSQL when TRIALBOT_BENCH_DATABASE_URL is set):
- the time to plan and queue the biggest wave (every participant of one zone at 08:00 local),
  against a baseline measured in the same run: bulk-inserting the same number of outbox rows
  with no planning at all (the floor any design pays);
- the whole day: every tick the scheduler would run, in total;
- the cost of a tick when nothing is due, against a baseline of one trivial query;
- peak memory (tracemalloc, Python allocations) during the day.

    python bench/reminder_wave.py [--participants 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
import uuid
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

ZONES = ["America/New_York", "Europe/London", "Australia/Sydney", "Asia/Kolkata", "America/Los_Angeles"]
DAY_START = datetime(2026, 11, 24, 0, 0, tzinfo=UTC)


async def populate(db: Database, count: int) -> None:
    joined = DAY_START - timedelta(days=2)
    rows = [
        dict(study_id=f"B{n:06d}", timezone=ZONES[n % len(ZONES)], language="en", wocbp=False,
             reminder_times="08:00,20:00", status="active", telegram_user_id=10_000_000 + n,
             telegram_chat_id=10_000_000 + n, enrolled_at=joined, consented_at=joined, active_since=joined)
        for n in range(count)
    ]
    async with db.transaction() as session:
        for start in range(0, count, 2000):
            await session.execute(insert(Participant), rows[start:start + 2000])


async def baseline_insert(db: Database, count: int) -> float:
    """The floor: inserting `count` outbox rows with no planning, then removing them."""
    now = DAY_START
    rows = [dict(dedup_key=f"baseline:{uuid.uuid4().hex}", kind="reminder", participant_id=1,
                 template_id="reminder_application", variables={}, status="pending", created_at=now,
                 not_before=now, due_at=now, attempts=0, disable_notification=False) for _ in range(count)]
    started = time.perf_counter()
    async with db.transaction() as session:
        await session.execute(insert(OutboxMessage), rows)
    elapsed = time.perf_counter() - started
    async with db.transaction() as session:
        await session.execute(delete(OutboxMessage).where(OutboxMessage.dedup_key.like("baseline:%")))
    return elapsed


async def run(label: str, db: Database, count: int) -> None:
    protocol = load_protocol(ROOT / "study.toml")
    await db.migrate()
    await populate(db, count)
    clock = ManualClock(DAY_START)
    tick = Tick(db, protocol, clock)
    await tick.run_once()  # first look at everyone: sets next_plan_at for all

    # The whole day, as the scheduler runs it: a tick every minute.
    tracemalloc.start()
    tick_times: list[tuple[float, int]] = []
    for _ in range(24 * 60):
        clock.advance(timedelta(minutes=1))
        started = time.perf_counter()
        report = await tick.run_once()
        tick_times.append((time.perf_counter() - started, report.queued))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    busiest_time, busiest_queued = max(tick_times, key=lambda t: t[1])
    floor = await baseline_insert(db, busiest_queued)
    empty = [t for t, queued in tick_times if queued == 0]
    started = time.perf_counter()
    for _ in range(100):
        async with db.transaction() as session:
            await session.execute(text("SELECT 1"))
    trivial = (time.perf_counter() - started) / 100
    async with db.transaction() as session:
        total = (await session.execute(text("SELECT count(*) FROM outbox"))).scalar()

    print(f"[{label}] {count} participants, {len(ZONES)} zones, reminders at 08:00 and 20:00 local")
    print(f"  biggest wave: {busiest_queued} reminders planned and queued in {busiest_time * 1000:.0f} ms "
          f"(bulk insert alone: {floor * 1000:.0f} ms; ratio {busiest_time / floor:.2f})")
    print(f"  whole day: {total} outbox rows, {sum(t for t, _ in tick_times):.2f} s of ticking over 1440 ticks")
    print(f"  tick with nothing due: median {statistics.median(empty) * 1000:.2f} ms, "
          f"p99 {sorted(empty)[int(len(empty) * 0.99)] * 1000:.2f} ms "
          f"(one trivial query: {trivial * 1000:.2f} ms; ratio {statistics.median(empty) / trivial:.1f})")
    print(f"  peak Python memory while ticking: {peak / 2**20:.1f} MiB")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        db = Database(f"sqlite+aiosqlite:///{scratch}/bench.db")
        try:
            await run("SQLite", db, args.participants)
        finally:
            await db.dispose()
    url = os.environ.get("TRIALBOT_BENCH_DATABASE_URL")
    if url:
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        admin = Database(url)
        async with admin.engine.connect() as connection:
            await connection.execute(text(f"CREATE SCHEMA {schema}"))
            await connection.commit()
        db = Database(url, schema=schema)
        try:
            await run("PostgreSQL", db, args.participants)
        finally:
            await db.dispose()
            async with admin.engine.connect() as connection:
                await connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
                await connection.commit()
            await admin.dispose()


if __name__ == "__main__":
    asyncio.run(main())
