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
from study.audit import Actor
from study.database import Database
from study.models import DiaryEntry, OutboxMessage, Participant
from study.protocol import EXAMPLE_PROTOCOL, load_protocol
from tests.drills.crash import (
    FIRST_CHAT,
    REMINDER_TEXT,
    _Deliveries,
    _populate,
    _reminder_due_now,
)
from tests.drills.outage import (
    APOLOGY,
    APPLIED_NOW,
    NO_ANSWER,
    _answered,
    _command,
    _new_text,
    _reminders,
    _tap,
    _wait,
)
from tests.drills.pgproxy import PostgresProxy
from tests.drills.process import TOKEN, BotProcess
from tests.drills.records import half_written
from tests.ledger import approve_all


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
    updates_held: bool = False  # some went unanswered during it (nothing fetched them)
    taps_during: list = field(default_factory=list)
    command_during: str = ""
    held_taps_after: list = field(default_factory=list)  # held updates, handled after the outage
    held_command_after: str | None = None
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
        """As in tests/drills/outage.py: each update during the outage is answered with the
        apology at once; one held by Telegram (handled once after it) is still a failure: silence."""
        found = []
        if self.updates_held:
            found.append("participants met silence during the outage (updates held, not answered)")
        for during, after in zip(self.taps_during, self.taps_after, strict=False):
            if (during != NO_ANSWER and APOLOGY not in during) or "Saved" not in (after or ""):
                found.append(f"a tap got {during!r} during the outage and {after!r} after it")
        if not self.taps_during:
            found.append("nobody tapped during the outage")
        if self.command_during == NO_ANSWER:
            if "itch" not in (self.held_command_after or "").lower():
                found.append(f"/symptoms held during the outage got {self.held_command_after!r} after it")
        elif APOLOGY not in self.command_during or "itch" not in self.command_after.lower():
            found.append(f"/symptoms got {self.command_during!r} during the outage, {self.command_after!r} after")
        if self.written_during:
            found.append(f"{self.written_during} diary entries written while the database was away")
        if self.entries_after != len(self.taps_after):
            found.append(f"{len(self.taps_after)} participants tapped, {self.entries_after} entries stored")
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
            f"{self.log_lines_during} log lines; updates "
            + (f"held by Telegram for {len(self.held_taps_after)} taps"
               f"{' and /symptoms' if self.held_command_after is not None else ''} (nothing fetched them)"
               if self.updates_held else "all answered at once"),
            *([f"  held updates handled after it: taps saved {sum('Saved' in (t or '') for t in self.held_taps_after)} "
               f"of {len(self.held_taps_after)}; /symptoms -> first question "
               f"{'itch' in (self.held_command_after or '').lower()}"] if self.updates_held else []),
            f"  after: wave resumed {self.first_delivery_after and round(self.first_delivery_after, 1)} s and finished "
            f"{self.finished_after and round(self.finished_after, 1)} s after the database came back; taps saved "
            f"{sum('Saved' in t for t in self.taps_after)} of {len(self.taps_after)} ({self.entries_after} entries); "
            f"/symptoms -> {self.command_after[:40]!r}",
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
        await approve_all(db, load_protocol(EXAMPLE_PROTOCOL), actor=Actor.cli("drill"))  # as the site's IRB did
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
                presses, returned_at = await _outage(world, users, bot, proxy, config, report)
                await _recovery(db, world, users, presses, returned_at, config, report)
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
    Returns the presses made during it, and when the database came back."""
    watch = _Deliveries(world, REMINDER_TEXT)
    if not await watch.reach(max(1, int(config.participants * config.cut_at_share)), bot, timeout=120):
        raise AssertionError("the reminder wave never got going")
    log_before = len(bot.log())
    await _take_away(proxy, config)
    report.delivered_at_cut = watch.count
    went = wall.monotonic()
    presses = []
    for n, user in enumerate([u for u in users if _reminders(u)][:config.tappers]):
        # spread over the outage, as people come to their phones
        await asyncio.sleep(max(0.0, went + config.outage_seconds * n / (config.tappers + 1) - wall.monotonic()))
        reminder = next(m for m in user.bot_messages if REMINDER_TEXT in (m.text or ""))
        presses.append((user, await user.press(APPLIED_NOW, message_id=reminder.message_id), reminder.message_id))
    writer_before = len(users[-1].bot_messages)
    await users[-1].send_text("/symptoms")
    await asyncio.sleep(max(2.0, went + config.outage_seconds - wall.monotonic()))
    report.taps_during = [_answered(u, q, m) or NO_ANSWER for u, q, m in presses]
    report.command_during = _new_text(users[-1], writer_before) or NO_ANSWER
    report.updates_held = NO_ANSWER in (*report.taps_during, report.command_during)
    report.log_lines_during = len(bot.log()[log_before:].splitlines())
    await _bring_back(proxy, config)
    return [(u, q, m, writer_before) for u, q, m in presses], wall.monotonic()


async def _recovery(db: Database, world, users, presses, returned_at: float, config, report) -> None:
    """Nobody helps: the wave must resume and finish, and what the participants did must count once."""
    watch = _Deliveries(world, REMINDER_TEXT)
    watch.update()
    resumed = watch.count
    tappers = [u for u, _, _, _ in presses]
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
    writer_before = presses[0][3] if presses else len(users[-1].bot_messages)
    for (user, query, message_id, _), during in zip(presses, report.taps_during, strict=False):
        if during == NO_ANSWER:  # held: handled now that the process leads (and polls) again
            await _wait(lambda user=user, query=query, message_id=message_id: _answered(user, query, message_id),
                        "a held tap", 30)
            report.held_taps_after.append(_answered(user, query, message_id))
            report.taps_after.append(report.held_taps_after[-1])  # saved: its keyboard is gone
        else:  # the same button again: the apology left it there
            report.taps_after.append(await _tap(user, message_id))
    if report.command_during == NO_ANSWER:
        await _wait(lambda: _new_text(users[-1], writer_before), "the held /symptoms", 30)
        report.held_command_after = _new_text(users[-1], writer_before)
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
