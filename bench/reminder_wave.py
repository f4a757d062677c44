"""Benchmark: the morning reminder wave, the empty tick, and memory (issue 8's targets).

- Wave: N participants (default 20,000) over 5 time zones that share a UTC offset in November
  (New York, Toronto, Detroit, Nassau, Indianapolis), so their 08:00 reminders fall in the same
  minute. Each carries --history-days of history (default 365; 0 for none): an application at
  08:05 and at 20:05 every day (a year: 14.6 million diary entries at 20,000) and a full
  check-in every 7 days, all through yesterday, so nothing is missing and the 08:00 reminder is
  due for everyone. The scheduler's real tick (scheduler/tick.py) at 08:00 plans and queues them
  all; the time is against a baseline measured in the same run: a bare multi-row insert of as
  many outbox rows with no planning (the floor any design pays). Target: under 2 s.
- Empty tick: the same tick with nothing due, at M participants (default 100,000), median and
  worst of 28 ticks, against one trivial query. Target: under 20 ms.
- Empty tick right after a bulk enrolment: M participants enrolled in one go, the database's
  statistics then gathered (as PostgreSQL's autovacuum does after a bulk insert: everyone's next
  look still unset), one tick planning everyone, then the empty ticks as above. Target: under 20 ms.
- Peak memory of the process (ru_maxrss: everything, the interpreter included). Target: under 250 MB.
- With --day: the older whole-day run (2 reminders a day, nobody answering: reminders, nudges and
  missing-dose records), a tick every simulated minute.

SQLite always; PostgreSQL too when --database-url (or TRIALBOT_BENCH_DATABASE_URL) names a
server (a database of its own, dropped afterwards). No Bot API call is made here, so unlike the
other benches it has no --latency-ms.

    python bench/reminder_wave.py [--participants 20000] [--history-days 365] [--idle-participants 100000] [--day N]
                                  [--only wave|idle|bulk] [--profile PATH] [--database-url postgresql+asyncpg://...]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sqlalchemy import delete, insert, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scheduler.tick import Tick
from study.clock import ManualClock
from study.database import Database
from study.models import OutboxKind, OutboxMessage, OutboxStatus, Participant, ParticipantStatus
from study.protocol import EXAMPLE_PROTOCOL, load_protocol
from tests.drills.process import scratch_database

SAME_MINUTE_ZONES = ["America/New_York", "America/Toronto", "America/Detroit", "America/Nassau",
                     "America/Indiana/Indianapolis"]
DAY_ZONES = ["America/New_York", "Europe/London", "Australia/Sydney", "Asia/Kolkata", "America/Los_Angeles"]
EIGHT_AM = datetime(2026, 11, 24, 13, 0, tzinfo=UTC)  # 08:00 in every SAME_MINUTE_ZONES zone
DAY_START = datetime(2026, 11, 24, 0, 0, tzinfo=UTC)
PROTOCOL = load_protocol(EXAMPLE_PROTOCOL)


async def populate(db: Database, count: int, zones: list[str], joined: datetime) -> None:
    rows = [
        dict(study_id=f"B{n:06d}", timezone=zones[n % len(zones)], language="en", wocbp=False,
             reminder_times="08:00,20:00", status=ParticipantStatus.ACTIVE, telegram_user_id=10_000_000 + n,
             telegram_chat_id=10_000_000 + n, enrolled_at=joined, consented_at=joined, active_since=joined)
        for n in range(count)
    ]
    async with db.transaction() as session:
        for start in range(0, count, 5000):
            await session.execute(insert(Participant), rows[start:start + 5000])


async def add_history(db: Database, days: int, last: date) -> None:
    """`days` days of history through `last` for every participant, day by day as it would have
    come in: applications at 08:05 and 20:05 local (UTC-5, as in November; in local summer time an
    hour later, in the same slots) and a full check-in every 7th day at 10:00. Each is one
    INSERT ... SELECT over the participants, so the database does the work. Then the statistics
    PostgreSQL's autovacuum keeps for tables that grew over a year."""
    diary = text("INSERT INTO diary_entries (participant_id, kind, occurred_at, local_date, timezone, recorded_at, "
                 "source, late, recorded_by) SELECT id, 'applied', :at, :day, timezone, :at, 'button', false, "
                 "'participant:' || study_id FROM participants ORDER BY id")
    checkin = text("INSERT INTO checkins (participant_id, kind, started_at, submitted_at, local_date, timezone, "
                   "source, itch, pain) SELECT id, 'full', :at, :at, :day, timezone, 'scheduled', 2, 1 "
                   "FROM participants ORDER BY id")
    sqlite = db.is_sqlite

    def values(day: date, minutes: int) -> dict:
        at = datetime.combine(day, datetime.min.time(), UTC) + timedelta(minutes=minutes)
        # The columns' own formats: SQLAlchemy's text on SQLite, typed values on PostgreSQL.
        return ({"day": day.isoformat(), "at": at.strftime("%Y-%m-%d %H:%M:%S.%f")} if sqlite
                else {"day": day, "at": at})

    async with db.transaction() as session:
        # Millions of rows: on SQLite a cache to hold the indexes meanwhile; on PostgreSQL no
        # foreign-key trigger for each (their participants exist; this transaction only).
        if sqlite:
            await session.execute(text("PRAGMA cache_size = -1000000"))
        else:
            await session.execute(text("SET LOCAL session_replication_role = replica"))
        for n in range(days - 1, -1, -1):
            day = last - timedelta(days=n)
            for minutes in (13 * 60 + 5, 25 * 60 + 5):
                await session.execute(diary, values(day, minutes))
            if n % 7 == 6:
                await session.execute(checkin, values(day, 15 * 60))
    if not sqlite:
        await analyze(db)


async def analyze(db: Database) -> None:
    """Gather PostgreSQL's statistics, as its autovacuum does soon after a bulk change."""
    async with db.engine.connect() as connection:
        await connection.execute(text("ANALYZE"))
        await connection.commit()


async def baseline_insert(db: Database, count: int) -> float:
    """The floor: inserting `count` outbox rows like the wave's, with no planning, then removing them."""
    now = EIGHT_AM
    variables = {"slot_at": now.isoformat(), "slot_date": "2026-11-24"}
    buttons = [[["applied_now", "d:n:s2611240800", {}]], [["applied_earlier", "d:e:s2611240800", {}]],
               [["missed", "d:m:s2611240800", {}]]]
    rows = [dict(dedup_key=f"baseline:{n}", kind=OutboxKind.REMINDER, participant_id=None, staff_id=None,
                 template_id="reminder_application", variables=variables, buttons=buttons, status=OutboxStatus.PENDING,
                 created_at=now, not_before=now, due_at=now, late_after=now, stale_after=now, attempts=0,
                 disable_notification=False, last_error=None) for n in range(count)]
    started = time.perf_counter()
    async with db.transaction() as session:
        await session.execute(insert(OutboxMessage), rows)
    elapsed = time.perf_counter() - started
    async with db.transaction() as session:
        await session.execute(delete(OutboxMessage).where(OutboxMessage.dedup_key.like("baseline:%")))
    return elapsed


# --profile: where the wave's tick profile goes (one file per database), or None.
PROFILE: str | None = None


def _profiler():
    """A started pyinstrument profiler (async-aware) when --profile was given."""
    if PROFILE is None:
        return None
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0005, async_mode="enabled")
    profiler.start()
    return profiler


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def trivial_query(db: Database) -> float:
    started = time.perf_counter()
    for _ in range(100):
        async with db.read() as session:
            await session.execute(text("SELECT 1"))
    return (time.perf_counter() - started) / 100


async def wave(label: str, db: Database, count: int, history_days: int) -> None:
    joined = EIGHT_AM - timedelta(days=history_days, hours=1) if history_days else EIGHT_AM - timedelta(hours=1)
    await populate(db, count, SAME_MINUTE_ZONES, joined=joined)
    if history_days:
        started = time.perf_counter()
        # In a process of its own: SQLite's page cache for the writing is that process's memory,
        # not this one's (whose peak is a figure here).
        await asyncio.to_thread(subprocess.run, [sys.executable, __file__, "--write-history", str(history_days),
                                                 db.url.render_as_string(hide_password=False)], check=True)
        print(f"[{label}] {history_days} days of history written in {time.perf_counter() - started:.0f} s")
    clock = ManualClock(EIGHT_AM - timedelta(minutes=1))
    tick = Tick(db, PROTOCOL, clock)
    first = await tick.run_once()  # 07:59: everyone looked at once; the next look is 08:00
    assert first.missing == 0, first  # the history leaves no dose unaccounted for
    clock.advance(timedelta(minutes=1))
    profiler = _profiler()
    started = time.perf_counter()
    report = await tick.run_once()
    elapsed = time.perf_counter() - started
    if profiler is not None:
        profiler.stop()
        path = Path(f"{PROFILE}.{label.lower()}.txt")
        await asyncio.to_thread(path.write_text, profiler.output_text(show_all=True))
        print(f"[{label}] the wave's tick profiled (pyinstrument, which slows it): {path}")
    assert report.queued == count, report
    floor = await baseline_insert(db, count)
    print(f"[{label}] wave: {count} participants over {len(SAME_MINUTE_ZONES)} zones, 08:00 in the same minute, "
          f"{history_days} days of history each")
    print(f"  planned and queued {report.queued} reminders in {elapsed:.2f} s (target < 2 s); "
          f"bare insert of {count} rows: {floor:.2f} s; ratio {elapsed / floor:.2f}")
    print(f"  peak memory of the process so far (ru_maxrss): {_peak_rss_mb():.0f} MB (target < 250 MB)")


async def idle(label: str, db: Database, count: int, after_bulk: bool = False) -> None:
    await populate(db, count, SAME_MINUTE_ZONES, joined=EIGHT_AM - timedelta(hours=1))
    if after_bulk:
        # Statistics gathered now, as autovacuum would within its minute after the bulk insert,
        # see nobody yet planned; the tick below plans everyone, and they are stale from then on.
        await analyze(db)
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
    when = " right after a bulk enrolment (statistics from before the first tick)" if after_bulk else ""
    print(f"[{label}] tick with nothing due at {count} participants{when}: median {median * 1000:.1f} ms, "
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


async def idle_after_bulk(label: str, db: Database, count: int) -> None:
    await idle(label, db, count, after_bulk=True)


async def on_each_database(scenario, count: int, *args, backends: tuple[str, ...] = ("sqlite", "postgresql")) -> None:
    url = os.environ.get("TRIALBOT_BENCH_DATABASE_URL")
    for label, backend in (("SQLite", "sqlite"), ("PostgreSQL", "postgresql")):
        if backend not in backends:
            continue
        if backend == "postgresql" and not url:
            return
        with tempfile.TemporaryDirectory() as scratch:
            async with scratch_database(backend, Path(scratch), url) as database_url:
                db = Database(database_url)
                try:
                    await db.migrate()
                    await scenario(label, db, count, *args)
                finally:
                    await db.dispose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, default=20_000, help="for the wave")
    parser.add_argument("--history-days", type=int, default=365,
                        help="days of history each participant of the wave carries (0: none)")
    parser.add_argument("--idle-participants", type=int, default=100_000, help="for the empty tick")
    parser.add_argument("--day", type=int, metavar="N", help="also run the whole day with N participants")
    parser.add_argument("--only", choices=("wave", "idle", "bulk"), action="append",
                        help="run only this measurement (repeatable; bulk: the empty tick after a bulk enrolment)")
    parser.add_argument("--profile", metavar="PATH",
                        help="profile the wave's tick with pyinstrument into PATH.<database>.txt (times are then slower)")
    parser.add_argument("--write-history", nargs=2, metavar=("DAYS", "URL"), help=argparse.SUPPRESS)
    parser.add_argument("--database-url", default=os.environ.get("TRIALBOT_BENCH_DATABASE_URL"),
                        help="a PostgreSQL server to run on too (a database of its own is made and dropped)")
    args = parser.parse_args()
    global PROFILE
    PROFILE = args.profile
    if args.database_url:  # what on_each_database reads
        os.environ["TRIALBOT_BENCH_DATABASE_URL"] = args.database_url
    if args.write_history:  # the wave's history, written by a child process (see wave())
        db = Database(args.write_history[1])
        try:
            await add_history(db, int(args.write_history[0]), EIGHT_AM.date() - timedelta(days=1))
        finally:
            await db.dispose()
        return
    only = set(args.only or ("wave", "idle", "bulk"))
    if "wave" in only:
        await on_each_database(wave, args.participants, args.history_days)
    if "idle" in only:
        await on_each_database(idle, args.idle_participants)
    if "bulk" in only:  # PostgreSQL's statistics (SQLite has none unless ANALYZE is run by hand)
        await on_each_database(idle_after_bulk, args.idle_participants, backends=("postgresql",))
    if args.day:
        await on_each_database(day, args.day)
    print(f"peak memory of this process (ru_maxrss), all runs: {_peak_rss_mb():.0f} MB (target < 250 MB)")


if __name__ == "__main__":
    asyncio.run(main())
