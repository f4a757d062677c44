"""Benchmark: the full "tap Applied on a reminder" path against a bare python-telegram-bot echo bot.

All over real HTTP against the same Bot API stand-in, in the same process and run, no rate
limiter. The trialbot path per update: the callback query in; who is writing (a read); one
transaction writing the diary entry, its audit entry and the reminder's "answered" mark; the
reminder edited to "Saved"; the record of what was sent; the button answered (by webhook, in the
acknowledgement of the update: bot/webhook.py). trialbot handles updates of different chats
concurrently (bot/update_order.py), each chat's in order.

Each run is made for each transport: long polling (getUpdates), and webhook (the stand-in POSTs
each update, as Telegram does: chats side by side, up to 40 at once). The bare PTB bots use PTB's
own polling and webhook server; trialbot its own (`trialbot run` and `trialbot run --webhook`).

Baselines in the same run: the echo bot (answers each text with sendMessage) as PTB runs it by
default, one update at a time, and with the same concurrency as trialbot (the ratio is taken
against the faster of the two); and, for understanding, a bare PTB bot that answers a button the
way the tap must (edit, then answer) with no database: the floor of this path's Telegram traffic.

Each is run with no network delay (CPU-bound: everything, the stand-in included, shares this
process) and with a round trip added to each Bot API call, as over the internet to Telegram.

CPU per update: the process's CPU time (time.process_time: every thread, aiosqlite's included, and
the stand-in's own work) over each measured stretch, divided by its updates: the echo bot (PTB's
default), trialbot's `/today` (with the day's entry to show) and trialbot's tap, and the ratios of
the two to the echo. `--cpu` runs only those, with no network delay, `--repeat` times (each run a
fresh bot and database), and prints each run and the medians.

`--cpu` also measures each path's floor in the same run: a bare PTB bot making the same Telegram
calls (the tap: edit and answer; `/today`: one sendMessage) and the same database work as trialbot
made in its stretch, counted there (transactions and statements per update, reads and writes
apart: `DatabaseWork`), as prebuilt SQLAlchemy Core statements on the same kind of database and
nothing else: no ledger, no audit chain, no templates, no routing. What trialbot spends beyond
its floor is its own logic; the floor is what any bot on this stack pays for that many records.
And the floor of the leanest tap conceivable (`DatabaseWork.leanest_tap`), fewer records than
trialbot keeps.

    python bench/updates.py [--updates 300] [--latency-ms 0,25] [--transports polling,webhook]
                            [--database-url postgresql+asyncpg://...] [--cpu [--repeat 3]]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import Table, event, insert, select
from telegram import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Update,
)
from telegram.ext import Application, BaseRateLimiter, CallbackQueryHandler, MessageHandler, filters

from bot.app import (
    CONCURRENT_UPDATES,
    Webhook,
    build_application,
    demo_messages,
    running,
)
from sandbox.server import BotApiServer
from sandbox.world import TelegramWorld
from study import invites, participants
from study.audit import Actor
from study.clock import ManualClock
from study.consent import agree
from study.database import Database, is_read_only
from study.models import SentMessage
from study.participants import EnrolmentRequest
from study.protocol import EXAMPLE_PROTOCOL, load_protocol
from tests.drills.process import scratch_database

START = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)  # 10:00 in New York


class Unpaced(BaseRateLimiter[Any]):
    """No pacing: every call goes straight through. The dispatcher passes a `Pace` with each bulk
    send (the reminders), which PTB refuses without a limiter; this one takes it and ignores it."""

    async def initialize(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass

    async def process_request(self, callback, args, kwargs, endpoint, data, rate_limit_args):
        return await callback(*args, **kwargs)


@contextlib.asynccontextmanager
async def receiving(app: Application, transport: str):
    """A bare PTB bot taking updates the way PTB does it: long polling, or PTB's own webhook server."""
    if transport == "polling":
        await app.updater.start_polling(timeout=1)
    else:
        port = free_port()
        await app.updater.start_webhook(listen="127.0.0.1", port=port, url_path="bare",
                                        webhook_url=f"http://127.0.0.1:{port}/bare")
    try:
        yield
    finally:
        await app.updater.stop()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Measured:
    """A measured stretch: updates per second (wall clock) and the process's CPU time per update."""

    rate: float
    cpu_ms: float
    work: DatabaseWork | None = None  # trialbot's stretches: what it asked of the database per update


class Stopwatch:
    """Wall-clock and process CPU time over a stretch of `count` updates.

    Each stretch starts from a full garbage collection: the collector's oldest generation is
    collected once enough younger collections have passed, and with a large heap (trialbot's, or
    an echo measured after it in the same process) one such collection in a stretch of 300
    updates cost the echo about a quarter of its CPU per update (0.76 of 3.1 ms, measured), by chance,
    which made the baseline weaker and the ratios flatter. Collected first, neither side starts
    with another's debt."""

    def __init__(self, count: int) -> None:
        self.count = count
        gc.collect()
        # What is alive now (the bot as started, the stand-in, the set-up) is then frozen, as
        # `trialbot run` freezes what starting made (bot/cli/serve.py): a collection in the
        # stretch walks only what the stretch made. Both sides alike, the echo too.
        gc.freeze()
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def stop(self) -> Measured:
        wall, cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu
        gc.unfreeze()
        return Measured(self.count / wall, cpu / self.count * 1000)


@dataclass
class DatabaseWork:
    """Transactions and statements per update, reads (`Database.read`) and writes apart."""

    read_transactions: float = 0.0
    read_statements: float = 0.0
    write_transactions: float = 0.0
    write_statements: float = 0.0

    @classmethod
    def leanest_tap(cls) -> DatabaseWork:
        """What no tap can do without (a design with less than trialbot's): who is writing; then,
        in one transaction, the ledger's row with its answer, the entry, the audit chain's end read
        and the entry's audit entry, the record of the edit. No reminder's mark, no missed dose
        superseded, no chain lock on PostgreSQL."""
        return cls(read_transactions=1, read_statements=1, write_transactions=1, write_statements=5)

    def per_update(self, count: int) -> DatabaseWork:
        return DatabaseWork(*(value / count for value in vars(self).values()))

    def __str__(self) -> str:
        return (f"{self.read_transactions:.1f} read transaction(s) of {self.read_statements:.1f} statement(s), "
                f"{self.write_transactions:.1f} writing of {self.write_statements:.1f}")


@contextlib.contextmanager
def counting(db: Database) -> Iterator[DatabaseWork]:
    """Counts what `db` is asked to do while the block runs (SQLAlchemy's engine events)."""
    work = DatabaseWork()

    def on_begin(connection: Any) -> None:
        if is_read_only(connection):
            work.read_transactions += 1
        else:
            work.write_transactions += 1

    def on_statement(connection: Any, *_: Any) -> None:
        if is_read_only(connection):
            work.read_statements += 1
        else:
            work.write_statements += 1

    engine = db.engine.sync_engine
    event.listen(engine, "begin", on_begin)
    event.listen(engine, "before_cursor_execute", on_statement)
    try:
        yield work
    finally:
        event.remove(engine, "begin", on_begin)
        event.remove(engine, "before_cursor_execute", on_statement)


class FloorWork:
    """`DatabaseWork` done with nothing around it: each read a prebuilt Core select of one row by
    its key, each write a prebuilt Core insert of a sent-message record (ten columns, as the
    tap's records have: the diary entry twelve, the audit entry thirteen, the ledger's row seven)."""

    def __init__(self, db: Database, work: DatabaseWork) -> None:
        self.db = db
        table = cast(Table, SentMessage.__table__)  # a mapped class's Table
        self._select = select(table.c.id).where(table.c.id == 1)
        self._insert = insert(table)
        self._row = {"sent_at": START, "template_id": "floor", "template_hash": "0" * 64, "language": "en",
                     "draft": False, "recipient": "participant", "participant_id": None, "staff_id": None,
                     "via": "reply", "telegram_message_id": 1}
        # Whole numbers per update: what trialbot's stretch made, rounded.
        self.reads = [round(work.read_statements / work.read_transactions)] * round(work.read_transactions) \
            if work.read_transactions else []
        self.writes = [round(work.write_statements / work.write_transactions)] * round(work.write_transactions) \
            if work.write_transactions else []

    async def read(self) -> None:
        for statements in self.reads:
            async with self.db.read() as session:
                for _ in range(statements):
                    await session.execute(self._select)

    async def write(self) -> None:
        for statements in self.writes:
            async with self.db.transaction() as session:
                for _ in range(statements):
                    await session.execute(self._insert, self._row)


async def echo_rate(count: int, latency: float, concurrent: int | bool = False, transport: str = "polling") -> float:
    return (await echo_measured(count, latency, concurrent, transport)).rate


async def echo_measured(count: int, latency: float, concurrent: int | bool = False,
                        transport: str = "polling") -> Measured:
    world = TelegramWorld()
    world.latency_seconds = latency
    async with BotApiServer(world) as server:
        app = Application.builder().token(world.token).base_url(server.base_url).concurrent_updates(concurrent).build()

        async def echo(update: Update, _context) -> None:
            await update.message.reply_text(update.message.text)

        app.add_handler(MessageHandler(filters.TEXT, echo))
        async with app:
            await app.start()
            async with receiving(app, transport):
                users = [world.add_user(user_id=5000 + n, first_name="E") for n in range(count)]
                watch = Stopwatch(count)
                for n, user in enumerate(users):
                    await user.send_text(f"hello {n}")
                for user in users:
                    await user.wait_for(lambda u: len(u.bot_messages) == 1, timeout=60)
                measured = watch.stop()
            await app.stop()
    return measured


async def button_floor_rate(count: int, latency: float, concurrent: int | bool = False,
                            transport: str = "polling") -> float:
    """A bare PTB bot that edits the pressed message and answers the button, with no database."""
    return (await _floor_measured(count, "tap", None, transport, latency, concurrent)).rate


async def floor_measured(count: int, path: str, work: DatabaseWork, scratch: Path,
                         database_url: str | None, transport: str) -> Measured:
    """The floor of `path` ("tap" or "today"): a bare PTB bot making its Telegram calls and
    `work` (per update), nothing else; CPU per update, no network delay, one update at a time,
    updates taken as the echo takes them (PTB's polling or PTB's webhook server)."""
    backend = "postgresql" if database_url else "sqlite"
    async with scratch_database(backend, scratch, database_url) as url:
        db = Database(url)
        await db.migrate()
        try:
            return await _floor_measured(count, path, FloorWork(db, work), transport)
        finally:
            await db.dispose()


async def _floor_measured(count: int, path: str, floor: FloorWork | None, transport: str,
                         latency: float = 0.0, concurrent: int | bool = False) -> Measured:
    """The bare PTB bot of a floor: `floor` its database work (None: none)."""
    world = TelegramWorld()
    world.latency_seconds = latency
    async with BotApiServer(world) as server:
        app = Application.builder().token(world.token).base_url(server.base_url).concurrent_updates(concurrent).build()
        keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Applied", callback_data="applied")]])

        async def offer_or_answer(update: Update, _context) -> None:
            if update.message.text == "hello":
                await update.message.reply_text("Time for your cream", reply_markup=keyboard)
                return
            if floor is not None:
                await floor.read()  # /today: who is writing, the day's entries
            await update.message.reply_text("Today: 1 of 2")
            if floor is not None:
                await floor.write()  # the record of the reply, the update's in the ledger

        async def saved(update: Update, _context) -> None:
            if floor is not None:
                await floor.read()  # who is writing (and the ledger)
                await floor.write()  # the entry, its audit entry, the reminder's mark, the ledger, the edit's record
            await update.callback_query.edit_message_text("Saved")
            await update.callback_query.answer()

        app.add_handler(MessageHandler(filters.TEXT, offer_or_answer))
        app.add_handler(CallbackQueryHandler(saved))
        async with app:
            await app.start()
            async with receiving(app, transport):
                users = [world.add_user(user_id=9000 + n, first_name="G") for n in range(count)]
                for user in users:
                    await user.send_text("hello")
                for user in users:
                    await user.wait_for(lambda u: len(u.bot_messages) == 1, timeout=60)
                watch = Stopwatch(count)
                for user in users:
                    if path == "tap":
                        await user.press("Applied", message_id=user.last_bot_message.message_id)
                    else:
                        await user.send_text("/today")
                for user in users:
                    await user.wait_for(lambda u: len(u.callback_answers) == 1 or len(u.bot_messages) == 2,
                                        timeout=60)
                await idle(app)  # the writes after /today's reply count, as trialbot's do
                measured = watch.stop()
            await app.stop()
    return measured


async def trialbot_measured(count: int, scratch: Path, database_url: str | None, latency: float,
                            transport: str = "polling") -> dict[str, Measured]:
    """The tap on each participant's reminder, then each participant's `/today` (showing that entry)."""
    backend = "postgresql" if database_url else "sqlite"
    async with scratch_database(backend, scratch, database_url) as url:
        return await _trialbot_measured(count, Database(url), latency, transport)


async def _trialbot_measured(count: int, db: Database, latency: float, transport: str) -> dict[str, Measured]:
    protocol = load_protocol(EXAMPLE_PROTOCOL)
    clock = ManualClock(START)
    await db.migrate()
    actor = Actor.cli("bench")
    async with db.transaction() as session:
        for n in range(count):
            person = await participants.enroll(session, protocol, EnrolmentRequest(f"B{n:05d}", "America/New_York", "en"),
                                               actor=actor, now=clock.now())
            code = (await invites.issue(session, person, valid_for=timedelta(days=1), actor=actor,
                                        now=clock.now())).code
            await agree(session, code, chat_id=10_000 + n, user_id=10_000 + n, now=clock.now())
    world = TelegramWorld(now=clock.now)
    async with BotApiServer(world) as server:
        app = build_application(token=world.token, base_url=server.base_url, base_file_url=server.base_file_url,
                                protocol=protocol, db=db, clock=clock, tick_seconds=None,
                                limiter=Unpaced(),  # type: ignore[arg-type]  # a SendLimiter's place, unpaced
                                outbox_poll_seconds=3600, messages=demo_messages(protocol))
        port = free_port()
        hook = Webhook(url=f"http://127.0.0.1:{port}/telegram", secret_token="bench-secret", port=port)
        async with running(app, poll_timeout=1, webhook=hook if transport == "webhook" else None):
            users = [world.add_user(user_id=10_000 + n, first_name="P") for n in range(count)]
            world.latency_seconds = latency  # from here on: the set-up above needs no realism
            for user in users:  # a chat exists once its user has written
                await user.send_text("/help")
            for user in users:
                await user.wait_for(lambda u: len(u.bot_messages) == 1, timeout=60)
            clock.set(datetime(2026, 11, 25, 1, 0, tzinfo=UTC))  # 20:00 in New York: the evening reminder
            await app.runtime.scheduler.tick.run_once()
            await app.runtime.scheduler.dispatcher.deliver_due()
            reminders = [u.last_bot_message for u in users]
            assert all("Time for your study cream" in m.text for m in reminders)
            with counting(db) as work:
                watch = Stopwatch(count)
                for user, reminder in zip(users, reminders, strict=True):
                    await user.press("✅ I put it on now", message_id=reminder.message_id)
                for user, reminder in zip(users, reminders, strict=True):
                    await user.wait_for(lambda u, m=reminder.message_id: len(u.callback_answers) == 1, timeout=120)
                measured = {"tap": watch.stop()}
            measured["tap"].work = work.per_update(count)
            assert all("Saved" in u.message(m.message_id).text for u, m in zip(users, reminders, strict=True))
            before = [len(u.bot_messages) for u in users]
            with counting(db) as work:
                watch = Stopwatch(count)
                for user in users:
                    await user.send_text("/today")
                for user, seen in zip(users, before, strict=True):
                    await user.wait_for(lambda u, n=seen: len(u.bot_messages) > n, timeout=120)
                await idle(app)  # the record of each reply is written after it is sent: counted too
                measured["today"] = watch.stop()
            measured["today"].work = work.per_update(count)
            assert all("1 of 2" in u.last_bot_message.text for u in users), users[0].last_bot_message.text
    await db.dispose()
    return measured


async def cpu_runs(args: argparse.Namespace, backend: str) -> None:
    """`--cpu`: the process's CPU time per update, echo / `/today` / tap, and the floors of the two
    (`floor_measured`) in the same run, no network delay."""
    paths = ("today", "tap")
    for transport in args.transports.split(","):
        echoes: list[float] = []
        cpu: dict[str, list[float]] = {path: [] for path in paths}
        floors: dict[str, list[float]] = {path: [] for path in paths}
        leanest: list[float] = []
        for run in range(args.repeat):
            echo = await echo_measured(args.updates, 0.0, False, transport)
            with tempfile.TemporaryDirectory() as scratch:
                trialbot = await trialbot_measured(args.updates, Path(scratch), args.database_url, 0.0, transport)
            echoes.append(echo.cpu_ms)
            line = f"run {run + 1}, {backend}, {transport}: CPU ms per update: echo {echo.cpu_ms:.2f}"
            for path in paths:
                work = trialbot[path].work
                assert work is not None
                with tempfile.TemporaryDirectory() as scratch:
                    floor = await floor_measured(args.updates, path, work, Path(scratch), args.database_url,
                                                 transport)
                cpu[path].append(trialbot[path].cpu_ms)
                floors[path].append(floor.cpu_ms)
                line += (f"; /{path} " if path == "today" else f"; {path} ") + \
                    (f"{trialbot[path].cpu_ms:.2f} ({trialbot[path].cpu_ms / echo.cpu_ms:.1f} x), "
                     f"its floor {floor.cpu_ms:.2f} ({floor.cpu_ms / echo.cpu_ms:.1f} x)")
            with tempfile.TemporaryDirectory() as scratch:
                lean = await floor_measured(args.updates, "tap", DatabaseWork.leanest_tap(), Path(scratch),
                                            args.database_url, transport)
            leanest.append(lean.cpu_ms)
            line += f"; the leanest tap's floor {lean.cpu_ms:.2f} ({lean.cpu_ms / echo.cpu_ms:.1f} x)"
            print(line, flush=True)
        print(f"{args.updates} updates each, {args.repeat} run(s), 0 ms per Bot API call, {backend}, "
              f"updates by {'long polling' if transport == 'polling' else 'webhook'}; medians:")
        echo_ms = statistics.median(echoes)
        print(f"  process CPU per update, bare PTB echo bot (PTB's default): {echo_ms:6.2f} ms")
        for path, label in (("today", "trialbot /today:               "), ("tap", "trialbot tap Applied:          ")):
            path_ms, floor_ms = statistics.median(cpu[path]), statistics.median(floors[path])
            work = trialbot[path].work
            print(f"  process CPU per update, {label}   {path_ms:6.2f} ms  "
                  f"({path_ms / echo_ms:.1f} x the echo; target <= 4)")
            print(f"    its floor: bare PTB, the same Telegram calls and database work: {floor_ms:6.2f} ms  "
                  f"({floor_ms / echo_ms:.1f} x the echo); the database work per update: {work}")
        lean_ms = statistics.median(leanest)
        print(f"  the leanest tap's floor (DatabaseWork.leanest_tap: {DatabaseWork.leanest_tap()}): "
              f"{lean_ms:6.2f} ms  ({lean_ms / echo_ms:.1f} x the echo)")


async def idle(app: Application) -> None:
    """Until no update is queued or being handled."""
    while app.update_queue.qsize() or app.update_processor.current_concurrent_updates:
        await asyncio.sleep(0.002)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=300)
    parser.add_argument("--database-url", default=os.environ.get("TRIALBOT_BENCH_DATABASE_URL"),
                        help="PostgreSQL server to use (a database of its own is made and dropped); SQLite by default")
    parser.add_argument("--latency-ms", default="0,25",
                        help="round trips the stand-in adds to each call, comma-separated runs (default 0,25)")
    parser.add_argument("--transports", default="polling,webhook",
                        help="how updates reach the bots, comma-separated runs (default polling,webhook)")
    parser.add_argument("--cpu", action="store_true",
                        help="only the process CPU time per update (echo, /today, tap), with no network delay")
    parser.add_argument("--repeat", type=int, default=3, help="--cpu: runs of each, medians printed (default 3)")
    args = parser.parse_args()
    backend = "PostgreSQL" if args.database_url else "SQLite"
    if args.cpu:
        await cpu_runs(args, backend)
        return
    transports = args.transports.split(",")
    for latency_ms in (float(v) for v in args.latency_ms.split(",")):
        latency = latency_ms / 1000
        echoes: dict[str, float] = {}
        for transport in transports:
            echo_measure = await echo_measured(args.updates, latency, False, transport)
            echo = echo_measure.rate
            echo_concurrent = await echo_rate(args.updates, latency, CONCURRENT_UPDATES, transport)
            floor = await button_floor_rate(args.updates, latency, False, transport)
            with tempfile.TemporaryDirectory() as scratch:
                trialbot = await trialbot_measured(args.updates, Path(scratch), args.database_url, latency, transport)
            applied = trialbot["tap"].rate
            best_echo = echoes[transport] = max(echo, echo_concurrent)
            print(f"{args.updates} updates each, {latency_ms:g} ms per Bot API call, no rate limiter, {backend}, "
                  f"updates by {'long polling' if transport == 'polling' else 'webhook'}")
            print(f"  bare PTB echo bot, PTB's default (one update at a time):  {echo:7.1f} updates/s")
            print(f"  the same echo bot, {CONCURRENT_UPDATES} updates at a time:               {echo_concurrent:7.1f} updates/s")
            print(f"  bare PTB button bot (edit + answer, no database):        {floor:7.1f} updates/s")
            print(f"  trialbot: tap Applied on a reminder:                     {applied:7.1f} updates/s")
            print(f"  ratio to the faster echo bot (target >= 0.5):            {applied / best_echo:7.2f}")
            print(f"  ratio to the default echo bot:                           {applied / echo:7.2f}")
            if len(echoes) > 1:
                print(f"  ratio to the fastest echo bot of any transport:          {applied / max(echoes.values()):7.2f}")
            cpu_echo = echo_measure.cpu_ms
            print(f"  process CPU per update: echo {cpu_echo:.2f} ms, /today {trialbot['today'].cpu_ms:.2f} ms "
                  f"({trialbot['today'].cpu_ms / cpu_echo:.1f} x), tap {trialbot['tap'].cpu_ms:.2f} ms "
                  f"({trialbot['tap'].cpu_ms / cpu_echo:.1f} x)")


if __name__ == "__main__":
    asyncio.run(main())
