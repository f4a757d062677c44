"""Drill: `kill -9` the bot in the middle of a delivery wave, restart it, and count.

The bot is the real `trialbot run` in a process of its own (tests/drills/process.py), polling
the stand-in over HTTP with Telegram's rate limits on. The wave is either a broadcast to every
participant (queued as a coordinator's confirmation queues it) or a reminder wave (participants
whose reminder time has just come, on the wall clock the process runs on). At a random point of
the delivery, the process is killed with SIGKILL; the drill then reads from the database how
many messages were in flight (outbox rows left 'sending': claimed, handed to Telegram or about
to be, and not yet recorded), restarts the bot and waits until every message of the wave is
settled.

The bound: the dispatcher records a message as sent only after Telegram's answer, so a message
Telegram delivered just before the kill is still 'sending' and goes out again after the restart.
Nothing else can repeat (every other row is either recorded sent, or was never handed over), so
duplicates <= the rows 'sending' at the kills, summed; and nobody is missed, as 'sending' goes
back to 'pending' at start-up (`recover_in_flight`).
"""

from __future__ import annotations

import asyncio
import random
import time as wall
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import func, insert, select

from bot.app import demo_messages
from sandbox.ratelimit import RateLimits
from sandbox.server import BotApiServer
from sandbox.world import TelegramWorld
from study import audit, broadcasts, staff
from study.audit import Actor
from study.database import Database
from study.models import OutboxMessage, Participant
from study.protocol import EXAMPLE_PROTOCOL, load_protocol
from tests.drills.process import TOKEN, BotProcess
from tests.drills.records import half_written, in_flight
from tests.ledger import approve_all

BROADCAST_TEXT = "clinic is closed"
REMINDER_TEXT = "Time for your study cream"
FIRST_CHAT = 40_000


@dataclass(frozen=True)
class CrashConfig:
    wave: str = "broadcast"  # broadcast | reminders
    recipients: int = 60
    kills: int = 1
    seed: int = 9
    rate_limits: RateLimits = field(default_factory=RateLimits)  # Telegram's: 30/s overall, 1/s per chat
    kill_between: tuple[float, float] = (0.1, 0.9)  # share of the wave delivered when killed


@dataclass
class Kill:
    reached: int  # recipients Telegram had accepted the wave's message for when the process died
    recorded: int  # rows the database had recorded as sent
    in_flight: int  # rows 'sending' right after the kill

    @property
    def delivered_unrecorded(self) -> int:
        """In flight and already with Telegram: these, and only these, go out twice."""
        return self.reached - self.recorded


@dataclass
class CrashReport:
    config: CrashConfig
    database: str
    kills: list[Kill] = field(default_factory=list)
    rows: Counter = field(default_factory=Counter)
    received: int = 0
    missed: int = 0
    duplicates: int = 0
    exit_code: int | None = None
    token_in_log: bool = False
    tracebacks: int = 0
    half_written: list = field(default_factory=list)
    finished: bool = False
    seconds_to_finish: float = 0.0

    @property
    def bound(self) -> int:
        return sum(k.in_flight for k in self.kills)

    def failures(self) -> list[str]:
        found = []
        if not self.finished:
            found.append(f"the wave did not finish: {dict(self.rows)}")
        if self.missed:
            found.append(f"{self.missed} recipient(s) missed")
        if self.duplicates > self.bound:
            found.append(f"{self.duplicates} duplicates > {self.bound} in flight at the kills")
        if len(self.kills) < self.config.kills:
            found.append(f"only {len(self.kills)} of {self.config.kills} kills happened mid-wave")
        if self.exit_code != 0:
            found.append(f"the restarted bot stopped with exit code {self.exit_code}")
        if self.token_in_log:
            found.append("the bot token is in the log")
        return found + self.half_written

    def summary(self) -> str:
        c = self.config
        lines = [f"kill -9 mid {c.wave} ({self.database}): {c.recipients} recipients, {len(self.kills)} kill(s), "
                 f"stand-in limits {c.rate_limits.global_per_second:g}/s overall, "
                 f"{c.rate_limits.per_chat_per_second:g}/s per chat"]
        for n, kill in enumerate(self.kills, 1):
            lines.append(f"  kill {n}: {kill.reached} recipients reached, {kill.recorded} recorded sent, "
                         f"{kill.in_flight} in flight ('sending'), of which {kill.delivered_unrecorded} "
                         f"already delivered")
        lines += [
            f"  after restart: outbox {dict(self.rows)}; finished in {self.seconds_to_finish:.1f} s",
            f"  recipients {c.recipients}, received {self.received}, missed {self.missed}, "
            f"duplicates {self.duplicates}, bound (in flight at the kills) {self.bound}",
            f"  clean stop exit code {self.exit_code}; tracebacks in the log {self.tracebacks}; "
            f"token in the log: {self.token_in_log}; half-written records: {len(self.half_written)}",
        ]
        return "\n".join(lines)


async def run_crash_drill(database_url: str, workdir: Path, config: CrashConfig) -> CrashReport:
    db = Database(database_url)
    report = CrashReport(config, "SQLite" if db.is_sqlite else "PostgreSQL")
    rng = random.Random(config.seed)
    try:
        await db.migrate()
        await approve_all(db, load_protocol(EXAMPLE_PROTOCOL), actor=Actor.cli("drill"))  # as the site's IRB did
        now = datetime.now(UTC)
        if config.wave == "broadcast":
            await _populate(db, config.recipients, zone="Europe/London", times="08:00,20:00", now=now,
                            plan_at=now + timedelta(days=30))
            await _queue_broadcast(db, now)
            marker, wave = BROADCAST_TEXT, OutboxMessage.dedup_key.like("broadcast:%")
        else:
            zone, times = _reminder_due_now(now)
            await _populate(db, config.recipients, zone=zone, times=times, now=now, plan_at=None)
            marker, wave = REMINDER_TEXT, (OutboxMessage.kind == "reminder") & (OutboxMessage.due_at <= now)
        world = TelegramWorld(token=TOKEN, rate_limits=config.rate_limits)
        users = [world.add_user(user_id=FIRST_CHAT + n, first_name="P") for n in range(config.recipients)]
        for user in users:
            user.started = True  # they opened the bot when they joined
        async with BotApiServer(world) as server:
            bot = BotProcess(api_url=server.base_url.removesuffix("/bot"), database_url=database_url,
                             workdir=workdir, log_path=workdir / "bot.log")
            await bot.start()
            try:
                watch = _Deliveries(world, marker)
                for _ in range(config.kills):
                    share = rng.uniform(*config.kill_between)
                    target = max(1, int(config.recipients * share)) + watch.count
                    if not await watch.reach(target, bot, timeout=60 + config.recipients / 10):
                        break
                    # Anywhere between two sends, not only right after Telegram accepted one.
                    await asyncio.sleep(rng.uniform(0, 1 / config.rate_limits.global_per_second))
                    await bot.kill()
                    await asyncio.sleep(0.2)  # a request written just before the kill still lands
                    watch.update()
                    report.kills.append(Kill(watch.count, await _rows_sent(db, wave), await in_flight(db)))
                    await bot.start()
                started = wall.perf_counter()
                report.finished = await _settled(db, wave, timeout=60 + config.recipients / 10)
                report.seconds_to_finish = wall.perf_counter() - started
                await asyncio.sleep(0.5)  # anything still on the wire lands before counting
            finally:
                report.exit_code = await bot.stop()
        received = Counter({u.user_id: sum(marker in (m.text or "") for m in u.bot_messages) for u in users})
        report.received = sum(received.values())
        report.missed = sum(1 for n in received.values() if n == 0)
        report.duplicates = sum(n - 1 for n in received.values() if n > 1)
        async with db.transaction() as session:
            report.rows = Counter(dict((await session.execute(
                select(OutboxMessage.status, func.count()).where(wave).group_by(OutboxMessage.status))).all()))
        log = bot.log()
        report.token_in_log = TOKEN in log or TOKEN.split(":")[1] in log
        report.tracebacks = log.count("Traceback")
        report.half_written = await half_written(db)
    finally:
        await db.dispose()
    return report


class _Deliveries:
    """Counts the recipients the wave has reached (Telegram accepted their message), reading the
    stand-in's call record as it grows."""

    def __init__(self, world: TelegramWorld, marker: str) -> None:
        self.world, self.marker = world, marker
        self._reached: set = set()
        self._seen = 0

    @property
    def count(self) -> int:
        return len(self._reached)

    def update(self) -> None:
        calls = self.world.calls
        for call in calls[self._seen:]:
            if call.method == "sendMessage" and call.status == 200 and self.marker in str(call.params.get("text")):
                self._reached.add(call.params.get("chat_id"))
        self._seen = len(calls)

    async def reach(self, target: int, bot: BotProcess, timeout: float) -> bool:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            self.update()
            if self.count >= target:
                return True
            if not bot.running or asyncio.get_running_loop().time() > deadline:
                return False
            await asyncio.sleep(0.002)


async def _rows_sent(db: Database, wave) -> int:
    async with db.transaction() as session:
        return await session.scalar(select(func.count()).where(wave, OutboxMessage.status == "sent")) or 0


async def _settled(db: Database, wave, timeout: float) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        async with db.transaction() as session:
            total = await session.scalar(select(func.count()).where(wave)) or 0
            open_ = await session.scalar(select(func.count()).where(
                wave, OutboxMessage.status.in_(("pending", "sending")))) or 0
        if total and not open_:
            return True
        await asyncio.sleep(0.25)
    return False


def _reminder_due_now(now: datetime) -> tuple[str, str]:
    """A zone where it is about noon, and reminder times whose first came a minute ago (so the
    bot's first tick, a second after start-up, finds it due; late only after 15 minutes)."""
    offset = 12 - now.hour  # hours to add to UTC for about noon; Etc/GMT's sign is inverted
    zone = "Etc/GMT" if offset == 0 else f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"
    local = now.astimezone(ZoneInfo(zone)).replace(second=0, microsecond=0) - timedelta(minutes=1)
    later = local + timedelta(hours=12)
    return zone, f"{local:%H:%M},{later:%H:%M}"


async def _populate(db: Database, count: int, *, zone: str, times: str, now: datetime,
                    plan_at: datetime | None) -> None:
    """Active participants with linked chats, joined half an hour ago (no dose of theirs before
    that is reminded or recorded missing)."""
    joined = now - timedelta(minutes=30)
    async with db.transaction() as session:
        ids = (await session.scalars(insert(Participant).returning(Participant.id), [
            dict(study_id=f"K{n:05d}", timezone=zone, language="en", wocbp=False, reminder_times=times,
                 status="active", telegram_user_id=FIRST_CHAT + n, telegram_chat_id=FIRST_CHAT + n,
                 enrolled_at=joined, consented_at=joined, active_since=joined, next_plan_at=plan_at)
            for n in range(count)
        ])).all()
        await audit.record_many(session, [audit.Change(Actor.cli("drill"), "create", "participant", pid, joined,
                                                       reason="enrolment (drill set-up)") for pid in ids])


async def _queue_broadcast(db: Database, now: datetime) -> None:
    """What the coordinator's Confirm does: the draft, then one outbox row per recipient."""
    protocol = load_protocol(EXAMPLE_PROTOCOL)
    catalog = demo_messages(protocol)
    async with db.transaction() as session:
        author = await staff.add_or_update(session, telegram_user_id=9001, name="Drill", role="coordinator",
                                           actor=Actor.cli("drill"), now=now)
        row = await broadcasts.create_draft(session, author, template_id="broadcast_clinic_closure", audience="all",
                                            text=None, now=now)
        study = protocol.study  # the variables every template is rendered with (bot/services.py)
        variables = {"study_name": study.short_name, "study_phone": study.phone, "study_email": study.email,
                     **broadcasts.variables(row)}
        hashes = {"en": catalog.render(row.template_id, "en", variables).template_hash}
        await broadcasts.confirm(session, row, author, hashes=hashes, second_approval=False,
                                     valid=timedelta(hours=24), now=now)
