"""Benchmark: the full "tap Applied on a reminder" path against a bare python-telegram-bot echo bot.

Both run over real HTTP against the same Bot API stand-in, in the same process and run, with
PTB's default sequential update processing and no rate limiter (this measures the bot's own work,
not Telegram's pace). The trialbot path per update: the callback query in, one transaction that
writes the diary entry, its audit entry and the reminder's "answered" mark, then the reminder
edited to "Saved" and the button answered. The echo bot answers each text with sendMessage.

A third figure, for understanding rather than as the target's baseline: a bare PTB bot that answers
a button press the way the tap must (edit the message, then answer the button) with no database,
the floor of this path's Telegram traffic.

    python bench/updates.py [--updates 300] [--database-url postgresql+asyncpg://...]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import text  # noqa: E402
from telegram import Update  # noqa: E402
from telegram import InlineKeyboardButton, InlineKeyboardMarkup  # noqa: E402
from telegram.ext import Application, CallbackQueryHandler, MessageHandler, filters  # noqa: E402

from bot.app import build_application, running  # noqa: E402
from sandbox.server import BotApiServer  # noqa: E402
from sandbox.world import TelegramWorld  # noqa: E402
from study import invites, participants  # noqa: E402
from study.audit import Actor  # noqa: E402
from study.clock import ManualClock  # noqa: E402
from study.consent import agree  # noqa: E402
from study.database import Database  # noqa: E402
from study.participants import EnrolmentRequest  # noqa: E402
from study.protocol import load_protocol  # noqa: E402

START = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)  # 10:00 in New York


async def echo_rate(count: int) -> float:
    world = TelegramWorld()
    async with BotApiServer(world) as server:
        app = Application.builder().token(world.token).base_url(server.base_url).build()

        async def echo(update: Update, _context) -> None:
            await update.message.reply_text(update.message.text)

        app.add_handler(MessageHandler(filters.TEXT, echo))
        async with app:
            await app.start()
            await app.updater.start_polling(timeout=1)
            users = [world.add_user(user_id=5000 + n, first_name="E") for n in range(count)]
            started = time.perf_counter()
            for n, user in enumerate(users):
                await user.send_text(f"hello {n}")
            for user in users:
                await user.wait_for(lambda u: len(u.bot_messages) == 1, timeout=60)
            elapsed = time.perf_counter() - started
            await app.updater.stop()
            await app.stop()
    return count / elapsed


async def button_floor_rate(count: int) -> float:
    """A bare PTB bot that edits the pressed message and answers the button, with no database."""
    world = TelegramWorld()
    async with BotApiServer(world) as server:
        app = Application.builder().token(world.token).base_url(server.base_url).build()
        keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Applied", callback_data="applied")]])

        async def offer(update: Update, _context) -> None:
            await update.message.reply_text("Time for your cream", reply_markup=keyboard)

        async def saved(update: Update, _context) -> None:
            await update.callback_query.edit_message_text("Saved")
            await update.callback_query.answer()

        app.add_handler(MessageHandler(filters.TEXT, offer))
        app.add_handler(CallbackQueryHandler(saved))
        async with app:
            await app.start()
            await app.updater.start_polling(timeout=1)
            users = [world.add_user(user_id=7000 + n, first_name="F") for n in range(count)]
            for user in users:
                await user.send_text("hello")
            for user in users:
                await user.wait_for(lambda u: len(u.bot_messages) == 1, timeout=60)
            started = time.perf_counter()
            for user in users:
                await user.press("Applied", message_id=user.last_bot_message.message_id)
            for user in users:
                await user.wait_for(lambda u: len(u.callback_answers) == 1, timeout=60)
            elapsed = time.perf_counter() - started
            await app.updater.stop()
            await app.stop()
    return count / elapsed


async def scratch_database(database_url: str | None, scratch: Path) -> Database:
    """A fresh database: a SQLite file, or a schema of its own on the PostgreSQL given."""
    if not database_url:
        return Database(f"sqlite+aiosqlite:///{scratch / 'bench.db'}")
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = Database(database_url)
    async with admin.engine.begin() as connection:
        await connection.execute(text(f"CREATE SCHEMA {schema}"))
    await admin.dispose()
    return Database(database_url, schema=schema)


async def drop_scratch_schema(db: Database) -> None:
    schema = db.engine.dialect.name == "postgresql" and db.schema
    if schema:
        admin = Database(db.url.render_as_string(hide_password=False))
        async with admin.engine.begin() as connection:
            await connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        await admin.dispose()


async def trialbot_rate(count: int, scratch: Path, database_url: str | None = None) -> float:
    protocol = load_protocol(ROOT / "study.toml")
    clock = ManualClock(START)
    db = await scratch_database(database_url, scratch)
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
                                protocol=protocol, db=db, clock=clock, tick_seconds=None, rate_limited=False,
                                outbox_poll_seconds=3600)
        async with running(app, poll_timeout=1):
            users = [world.add_user(user_id=10_000 + n, first_name="P") for n in range(count)]
            for user in users:  # a chat exists once its user has written
                await user.send_text("/help")
            for user in users:
                await user.wait_for(lambda u: len(u.bot_messages) == 1, timeout=60)
            clock.set(datetime(2026, 11, 25, 1, 0, tzinfo=UTC))  # 20:00 in New York: the evening reminder
            await app.bot_data["tick"].run_once()
            await app.bot_data["dispatcher"].deliver_due()
            reminders = [u.last_bot_message for u in users]
            assert all("Time for your study cream" in m.text for m in reminders)
            started = time.perf_counter()
            for user, reminder in zip(users, reminders, strict=True):
                await user.press("✅ I put it on now", message_id=reminder.message_id)
            for user, reminder in zip(users, reminders, strict=True):
                await user.wait_for(lambda u, m=reminder.message_id: len(u.callback_answers) == 1, timeout=120)
            elapsed = time.perf_counter() - started
            assert all("Saved" in u.message(m.message_id).text for u, m in zip(users, reminders, strict=True))
    await db.dispose()
    await drop_scratch_schema(db)
    return count / elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=300)
    parser.add_argument("--database-url", default=os.environ.get("TRIALBOT_BENCH_DATABASE_URL"),
                        help="PostgreSQL to use (a schema of its own is made); SQLite by default")
    args = parser.parse_args()
    echo = await echo_rate(args.updates)
    floor = await button_floor_rate(args.updates)
    with tempfile.TemporaryDirectory() as scratch:
        applied = await trialbot_rate(args.updates, Path(scratch), args.database_url)
    backend = "PostgreSQL" if args.database_url else "SQLite"
    print(f"{args.updates} updates each, sequential processing, no rate limiter, {backend}")
    print(f"  bare PTB echo bot (baseline):           {echo:7.1f} updates/s")
    print(f"  bare PTB button bot, edit + answer:     {floor:7.1f} updates/s")
    print(f"  tap Applied on a reminder:              {applied:7.1f} updates/s")
    print(f"  ratio to the echo bot (target >= 0.5):  {applied / echo:7.2f}")
    print(f"  ratio to the button bot:                {applied / floor:7.2f}")


if __name__ == "__main__":
    asyncio.run(main())
