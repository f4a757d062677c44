"""Drill: the database goes away under the real `trialbot run` process, on the wall clock.

The full-size companion of tests/drills/outage.py, run by hand from bench/drills/: the bot is a
process of its own on PostgreSQL, a reminder wave is being delivered, and the database goes away
for `outage_seconds`: through the TCP proxy (`take_away="proxy"`, disturbing nobody else), or by
stopping the real server (`take_away="server"`: `pg_ctlcluster ... stop`, then `start`, which
every other user of that server notices). Meanwhile participants tap their reminders and one
sends /symptoms; afterwards they try again. The checks are those of the in-process drill.
"""

from __future__ import annotations

import asyncio
import subprocess
import time as wall
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, select

from sandbox.ratelimit import RateLimits
from sandbox.server import BotApiServer
from sandbox.world import TelegramWorld
from study.database import Database
from study.models import DiaryEntry, OutboxMessage, Participant
from tests.drills.crash import FIRST_CHAT, REMINDER_TEXT, _Deliveries, _populate, _reminder_due_now
from tests.drills.outage import APOLOGY, _command, _reminders, _tap
from tests.drills.pgproxy import PostgresProxy
from tests.drills.process import TOKEN, BotProcess
from tests.drills.records import half_written


@dataclass(frozen=True)
class LiveOutageConfig:
    participants: int = 300
    outage_seconds: float = 30.0
    cut_at_share: float = 0.25  # of the wave delivered when the database goes
    tappers: int = 5  # participants who tap their reminder during the outage, spread over it
    take_away: str = "proxy"  # proxy | server
    cluster: tuple[str, str] = ("15", "main")  # for take_away="server": pg_ctlcluster's version and name


@dataclass
class LiveOutageReport:
    config: LiveOutageConfig
    delivered_at_cut: int = 0
    taps_during: list = field(default_factory=list)
    command_during: str = ""
    written_during: int = 0
    taps_after: list = field(default_factory=list)
    entries_after: int = 0
    command_after: str = ""
    first_delivery_after: float | None = None  # seconds from the database's return
    finished_after: float | None = None
    reminders: Counter = field(default_factory=Counter)
    received: int = 0
    missed: int = 0
    duplicates: int = 0
    exit_code: int | None = None
    outage_lines: int = 0
    recovery_lines: int = 0
    tracebacks: int = 0
    error_lines: int = 0
    log_lines_during: int = 0
    leaked: list = field(default_factory=list)
    half_written: list = field(default_factory=list)

    def failures(self) -> list[str]:
        found = []
        if not self.taps_during or not all(APOLOGY in t for t in self.taps_during):
            found.append(f"taps during the outage got {self.taps_during}")
        if APOLOGY not in self.command_during:
            found.append(f"/symptoms during the outage got {self.command_during!r}")
        if self.written_during:
            found.append(f"{self.written_during} diary entries written while the database was away")
        if not all("Saved" in t for t in self.taps_after) or self.entries_after != len(self.taps_after):
            found.append(f"after recovery taps got {self.taps_after}, {self.entries_after} entries stored")
        if "itch" not in self.command_after.lower():
            found.append(f"after recovery /symptoms got {self.command_after!r}")
        if set(self.reminders) != {"sent"} or self.missed or self.duplicates:
            found.append(f"reminders {dict(self.reminders)}: missed {self.missed}, duplicates {self.duplicates}")
        if self.exit_code != 0:
            found.append(f"the bot stopped with exit code {self.exit_code}")
        if self.outage_lines != 1 or self.recovery_lines != 1 or self.tracebacks:
            found.append(f"log: {self.outage_lines} outage line(s), {self.recovery_lines} recovery line(s), "
                         f"{self.tracebacks} traceback(s)")
        if self.leaked:
            found.append(f"participant data in the log: {self.leaked[:5]}")
        return found + self.half_written

    def summary(self) -> str:
        c = self.config
        how = "TCP proxy cut" if c.take_away == "proxy" else f"PostgreSQL {' '.join(c.cluster)} stopped and started"
        return "\n".join([
            f"database away for {c.outage_seconds:g} s ({how}) under `trialbot run`, mid reminder wave of "
            f"{c.participants}",
            f"  at the cut: {self.delivered_at_cut} reminders delivered",
            f"  during: {len(self.taps_during)} taps -> apology alert {sum(APOLOGY in t for t in self.taps_during)}; "
            f"/symptoms -> apology {APOLOGY in self.command_during}; diary entries written {self.written_during}; "
            f"{self.log_lines_during} log lines",
            f"  after: wave resumed {self.first_delivery_after and round(self.first_delivery_after, 1)} s and finished "
            f"{self.finished_after and round(self.finished_after, 1)} s after the database came back; taps saved "
            f"{sum('Saved' in t for t in self.taps_after)} of {len(self.taps_after)} ({self.entries_after} entries); "
            f"/symptoms -> first question {'itch' in self.command_after.lower()}",
            f"  reminders {dict(self.reminders)}; received {self.received}, missed {self.missed}, "
            f"duplicates {self.duplicates}",
            f"  log: outage lines {self.outage_lines}, recovery lines {self.recovery_lines}, ERROR lines "
            f"{self.error_lines}, tracebacks {self.tracebacks}, participant data {self.leaked[:3] or 'none'}; "
            f"exit code {self.exit_code}; half-written records {len(self.half_written)}",
        ])


async def run_live_outage_drill(database_url: str, workdir: Path, config: LiveOutageConfig) -> LiveOutageReport:
    report = LiveOutageReport(config)
    proxy = PostgresProxy.for_url(database_url)
    await proxy.start()
    db = Database(database_url)  # the drill's own view, never through the proxy
    try:
        await db.migrate()
        now = datetime.now(UTC)
        zone, times = _reminder_due_now(now)
        await _populate(db, config.participants, zone=zone, times=times, now=now, plan_at=None)
        world = TelegramWorld(token=TOKEN, rate_limits=RateLimits())
        users = [world.add_user(user_id=FIRST_CHAT + n, first_name="P") for n in range(config.participants)]
        for user in users:
            user.started = True
        bot_url = proxy.url(database_url) if config.take_away == "proxy" else database_url
        async with BotApiServer(world) as server:
            bot = BotProcess(api_url=server.base_url.removesuffix("/bot"), database_url=bot_url, workdir=workdir,
                             log_path=workdir / "bot.log")
            await bot.start()
            try:
                tappers, returned_at = await _outage(world, users, bot, proxy, config, report)
                await _recovery(db, world, users, tappers, returned_at, config, report)
            finally:
                report.exit_code = await bot.stop()
        counts = [_reminders(u) for u in users]
        report.received, report.missed = sum(counts), sum(n == 0 for n in counts)
        report.duplicates = sum(n - 1 for n in counts if n > 1)
        async with db.transaction() as session:
            report.reminders = Counter(dict((await session.execute(select(OutboxMessage.status, func.count()).where(
                OutboxMessage.kind == "reminder").group_by(OutboxMessage.status))).all()))
        report.half_written = await half_written(db)
        _read_log(bot.log(), users, report)
    finally:
        await db.dispose()
        await proxy.stop()
    return report


async def _outage(world, users, bot, proxy, config, report) -> tuple[list, float]:
    """Take the database away mid-wave; tap and write during the outage; bring it back.
    Returns who tapped, and when the database came back."""
    watch = _Deliveries(world, REMINDER_TEXT)
    if not await watch.reach(max(1, int(config.participants * config.cut_at_share)), bot, timeout=120):
        raise AssertionError("the reminder wave never got going")
    log_before = len(bot.log())
    await _take_away(proxy, config)
    report.delivered_at_cut = watch.count
    went = wall.monotonic()
    tappers = [u for u in users if _reminders(u)][:config.tappers]
    for n, user in enumerate(tappers):  # spread over the outage, as people come to their phones
        await asyncio.sleep(max(0.0, went + config.outage_seconds * n / (len(tappers) + 1) - wall.monotonic()))
        reminder = next(m for m in user.bot_messages if REMINDER_TEXT in (m.text or ""))
        report.taps_during.append(await _tap(user, reminder.message_id))
    report.command_during = await _command(users[-1], "/symptoms")
    await asyncio.sleep(max(0.0, went + config.outage_seconds - wall.monotonic()))
    report.log_lines_during = len(bot.log()[log_before:].splitlines())
    await _bring_back(proxy, config)
    return tappers, wall.monotonic()


async def _recovery(db: Database, world, users, tappers, returned_at: float, config, report) -> None:
    """Nobody helps: the wave must resume and finish, and the same taps must now save."""
    watch = _Deliveries(world, REMINDER_TEXT)
    watch.update()
    resumed = watch.count
    report.written_during = await _entries(db, tappers)
    deadline = returned_at + 120
    while wall.monotonic() < deadline:
        watch.update()
        if report.first_delivery_after is None and watch.count > resumed:
            report.first_delivery_after = wall.monotonic() - returned_at
        async with db.transaction() as session:
            open_ = await session.scalar(select(func.count()).where(
                OutboxMessage.kind == "reminder", OutboxMessage.status.in_(("pending", "sending"))))
        if not open_ and watch.count >= config.participants:
            report.finished_after = wall.monotonic() - returned_at
            break
        await asyncio.sleep(0.2)
    for user in tappers:
        reminder = next(m for m in user.bot_messages if REMINDER_TEXT in ((m.edits[0] if m.edits else m).text or ""))
        report.taps_after.append(await _tap(user, reminder.message_id))
    report.entries_after = await _entries(db, tappers)
    report.command_after = await _command(users[-1], "/symptoms")


async def _entries(db: Database, users) -> int:
    async with db.transaction() as session:
        ids = (await session.scalars(select(Participant.id).where(
            Participant.telegram_chat_id.in_([u.chat_id for u in users])))).all()
        return await session.scalar(select(func.count()).where(DiaryEntry.participant_id.in_(ids))) or 0


async def _take_away(proxy: PostgresProxy, config: LiveOutageConfig) -> None:
    if config.take_away == "proxy":
        proxy.cut()
    else:
        await _pg_ctlcluster("stop", config, "-m", "fast")


async def _bring_back(proxy: PostgresProxy, config: LiveOutageConfig) -> None:
    if config.take_away == "proxy":
        await proxy.restore()
    else:
        await _pg_ctlcluster("start", config)


async def _pg_ctlcluster(action: str, config: LiveOutageConfig, *options: str) -> None:
    version, name = config.cluster
    await asyncio.to_thread(subprocess.run, ["pg_ctlcluster", version, name, action, *options], check=True)


def _read_log(log: str, users, report: LiveOutageReport) -> None:
    report.outage_lines = log.count("database unavailable")
    report.recovery_lines = log.count("database available again")
    report.tracebacks = log.count("Traceback")
    report.error_lines = sum(" ERROR " in line for line in log.splitlines())
    words = [str(u.chat_id) for u in users] + [f"K{n:05d}" for n in range(len(users))]
    report.leaked = sorted({w for w in words if w in log}) + (["the bot token"] if TOKEN in log else [])
