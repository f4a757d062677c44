"""Drill: the database goes away in the middle of a reminder wave, and comes back.

The bot runs in-process (tests/trial.py, injected clock) on PostgreSQL reached through a TCP
proxy (tests/drills/pgproxy.py). A reminder wave is queued; when the stand-in has delivered
`cut_after_sends` reminders, the proxy is cut (every connection reset, new ones refused) for
`outage_seconds` of wall time. Meanwhile a participant taps their reminder's button, another
sends /symptoms, the minute's tick runs as the scheduler's job runs it, and the dispatcher is
woken. Then the proxy is restored and the same participant taps again.

Held against the record and the log:
- during the outage: the tap is answered with the approved apology (an alert; the reminder and
  its buttons stay), /symptoms is answered with the apology too, and nothing is written;
- afterwards, with no help: the tap saves one entry, /symptoms starts a check-in, every reminder
  of the wave is delivered and recorded (none left 'sending', none twice beyond those in flight
  when the database went), and the bot's tasks are all alive;
- the log says once that the database went and once that it came back, has no traceback, and
  carries no participant's words, chat or study id;
- nothing is half-written (tests/drills/records.py).
"""

from __future__ import annotations

import asyncio
import io
import logging
import socket
import time as wall
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from bot.app import Webhook, _tick, receiving_updates
from bot.logging_setup import RedactingFormatter
from sandbox.chat import BotEventTimeout, SimUser
from sandbox.server import BotApiServer
from sandbox.world import TelegramWorld
from study.clock import ManualClock
from study.database import Database
from study.models import CheckinDraft, DiaryEntry, OutboxMessage
from study.protocol import Protocol
from tests.drills.participants import REMINDER_TEXT
from tests.drills.pgproxy import PostgresProxy
from tests.drills.records import half_written
from tests.drills.traffic import START, TrafficConfig, enrol
from tests.trial import Trial

APOLOGY = "Sorry, something went wrong on our side"
APPLIED_NOW = "✅ I put it on now"
NO_ANSWER = "(no answer)"


@dataclass(frozen=True)
class OutageConfig:
    participants: int = 20
    outage_seconds: float = 3.0
    cut_after_sends: int = 5
    webhook: bool = False  # updates by webhook (every process serves them) rather than polling


@dataclass
class OutageReport:
    config: OutageConfig
    in_flight_at_cut: int = 0
    delivered_before_cut: int = 0
    updates_held: bool = False  # some went unanswered during the outage (and were handled after it)
    tap_during: str = ""  # what the participant saw
    tap_kept_buttons: bool = False
    command_during: str = ""
    written_during: int = 0
    held_tap_after: str | None = None  # updates held during the outage, handled after it
    held_command_after: str | None = None
    tap_after: str = ""
    command_after: str = ""
    entries_after: int = 0
    reminders: Counter = field(default_factory=Counter)
    received: int = 0
    missed: int = 0
    duplicates: int = 0
    alive: dict = field(default_factory=dict)
    outage_lines: int = 0
    recovery_lines: int = 0
    tracebacks: int = 0
    log_lines: int = 0
    leaked: list = field(default_factory=list)
    watch_for: list = field(default_factory=list)  # what must not be in the log: study and chat ids
    half_written: list = field(default_factory=list)
    recovered_in: float = 0.0

    def failures(self) -> list[str]:
        """Each update during the outage is answered with the apology at once (the process still
        receives updates, by webhook or by polling); one held by Telegram and handled after it is
        reported as such, and is still a failure: the participant met silence."""
        found = []
        if self.updates_held:
            found.append("participants met silence during the outage (updates held, not answered)")
        if self.tap_during == NO_ANSWER:
            if "Saved" not in (self.held_tap_after or ""):
                found.append(f"the tap held during the outage got {self.held_tap_after!r} after it")
        elif APOLOGY not in self.tap_during or not self.tap_kept_buttons:
            found.append(f"a tap during the outage got {self.tap_during!r} (buttons kept: {self.tap_kept_buttons})")
        if self.command_during == NO_ANSWER:
            if "itch" not in (self.held_command_after or "").lower():
                found.append(f"/symptoms held during the outage got {self.held_command_after!r} after it")
            if "check-in" not in self.command_after.lower():  # the held one started it
                found.append(f"/symptoms after recovery got {self.command_after!r}")
        else:
            if APOLOGY not in self.command_during:
                found.append(f"/symptoms during the outage got {self.command_during!r}")
            if "itch" not in self.command_after.lower():
                found.append(f"after recovery /symptoms got {self.command_after!r}")
        if self.written_during:
            found.append(f"{self.written_during} record(s) written while the database was away")
        if "Saved" not in self.tap_after or self.entries_after != 1:
            found.append(f"after recovery the tap got {self.tap_after!r}, {self.entries_after} entries stored")
        if set(self.reminders) != {"sent"} or self.missed or self.duplicates > self.in_flight_at_cut:
            found.append(f"reminders {dict(self.reminders)}: missed {self.missed}, duplicates {self.duplicates} "
                         f"(in flight at the cut {self.in_flight_at_cut})")
        if not all(self.alive.values()):
            found.append(f"not alive: {self.alive}")
        if self.outage_lines != 1 or self.recovery_lines != 1 or self.tracebacks:
            found.append(f"log: {self.outage_lines} outage line(s), {self.recovery_lines} recovery line(s), "
                         f"{self.tracebacks} traceback(s)")
        if self.leaked:
            found.append(f"participant data in the log: {self.leaked}")
        return found + self.half_written

    def summary(self) -> str:
        c = self.config
        return "\n".join([
            f"database away for {c.outage_seconds:g} s (TCP proxy cut) mid reminder wave of {c.participants}, "
            f"updates by {'webhook' if c.webhook else 'long polling'}",
            f"  at the cut: {self.delivered_before_cut} reminders delivered, {self.in_flight_at_cut} in flight",
            f"  during: tap -> {self.tap_during[:60]!r} (buttons kept: {self.tap_kept_buttons}); "
            f"/symptoms -> {self.command_during[:60]!r}; records written: {self.written_during}; updates "
            + ("held by Telegram (nothing fetched them during the outage)" if self.updates_held
               else "still received"),
            *([f"  held updates handled after it: tap -> {(self.held_tap_after or '')[:40]!r}; "
               f"/symptoms -> {(self.held_command_after or '')[:40]!r}"] if self.updates_held else []),
            f"  after (recovered in {self.recovered_in:.1f} s, nobody's help): tap -> {self.tap_after[:40]!r}, "
            f"entries {self.entries_after}; /symptoms -> {self.command_after[:40]!r}",
            f"  reminders {dict(self.reminders)}; received {self.received}, missed {self.missed}, "
            f"duplicates {self.duplicates}",
            f"  bot alive: {self.alive}",
            f"  log: {self.log_lines} lines, outage {self.outage_lines}, recovery {self.recovery_lines}, "
            f"tracebacks {self.tracebacks}, participant data {self.leaked or 'none'}; "
            f"half-written records: {len(self.half_written)}",
        ])


async def run_outage_drill(postgres_url: str, protocol: Protocol, config: OutageConfig) -> OutageReport:
    report = OutageReport(config)
    schema = f"drill_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(postgres_url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as connection:
        await connection.execute(text(f"CREATE SCHEMA {schema}"))
    log_text = io.StringIO()
    handler = _capture(log_text)
    try:
        async with PostgresProxy.for_url(postgres_url) as proxy:
            db = Database(proxy.url(postgres_url), schema=schema)
            try:
                await db.migrate()
                await _drill(db, proxy, protocol, config, report)
            finally:
                await db.dispose()
    finally:
        logging.getLogger().removeHandler(handler)
        async with admin.connect() as connection:
            await connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        await admin.dispose()
    _read_log(log_text.getvalue(), report)
    return report


async def _drill(db: Database, proxy: PostgresProxy, protocol: Protocol, config: OutageConfig,
                 report: OutageReport) -> None:
    clock = ManualClock(START)
    world = TelegramWorld(now=clock.now)
    async with BotApiServer(world) as server:
        people = await enrol(db, protocol, world, TrafficConfig(participants=config.participants, minutes=1),
                             clock.now())
        report.watch_for = [p.study_id for p in people] + [str(p.user.chat_id) for p in people]
        # The dispatcher looks for due messages by itself every second (every 5 s in production),
        # so nothing but its own loop delivers what the outage held up.
        port = _free_port()
        hook = Webhook(url=f"http://127.0.0.1:{port}/telegram", secret_token="drill-secret", port=port) \
            if config.webhook else None
        async with Trial.running(db=db, clock=clock, protocol=protocol, world=world, server=server, webhook=hook,
                                 outbox_poll_seconds=1, leader_retry_seconds=1) as trial:
            services = trial.app.runtime.services
            cut = _CutWhenDelivered(world, proxy, config.cut_after_sends)
            clock.advance(timedelta(minutes=1))
            await trial.plan()  # the wave is queued; the dispatcher's own task delivers it
            services.outbox_ready.set()
            while not proxy.is_cut:
                await asyncio.sleep(0.01)
            cut_at = wall.monotonic()
            report.delivered_before_cut = sum(_reminders(p.user) for p in people)

            tapper, writer = people[0], people[-1]
            await _wait(lambda: _reminders(tapper.user) > 0, "the first reminder")  # delivered before the cut
            reminder = next(m for m in tapper.user.bot_messages if REMINDER_TEXT in (m.text or ""))
            # In polling mode the scheduler leader fetches updates (scheduler/leadership.py); a
            # leader cut off from the database steps down but polls on while nobody else leads.
            held_query = await tapper.user.press(APPLIED_NOW, message_id=reminder.message_id)
            writer_before = len(writer.user.bot_messages)
            await writer.user.send_text("/symptoms")
            trial.app.job_queue.run_once(_tick, 0, name="planner-tick")  # the minute's job, as scheduled
            services.outbox_ready.set()
            await asyncio.sleep(max(1.0, config.outage_seconds - (wall.monotonic() - cut_at)))
            report.tap_during = _answered(tapper.user, held_query, reminder.message_id) or NO_ANSWER
            shown = tapper.user.message(reminder.message_id)
            report.tap_kept_buttons = REMINDER_TEXT in (shown.text or "") and bool(shown.buttons)
            report.command_during = _new_text(writer.user, writer_before) or NO_ANSWER
            report.updates_held = NO_ANSWER in (report.tap_during, report.command_during)

            await proxy.restore()
            restored_at = wall.monotonic()
            report.written_during = await _written(db, tapper.participant_id, writer.participant_id)
            # What was held is handled once the process leads (and polls) again.
            if report.tap_during == NO_ANSWER:
                await _wait(lambda: _answered(tapper.user, held_query, reminder.message_id), "the held tap", 20)
                report.held_tap_after = report.tap_after = _answered(tapper.user, held_query, reminder.message_id)
            else:  # the same button again: the apology left it there
                report.tap_after = await _tap(tapper.user, reminder.message_id)
            if report.command_during == NO_ANSWER:
                await _wait(lambda: _new_text(writer.user, writer_before), "the held /symptoms", 20)
                report.held_command_after = _new_text(writer.user, writer_before)
            report.command_after = await _command(writer.user, "/symptoms")
            async with db.transaction() as session:
                report.entries_after = await session.scalar(select(func.count()).where(
                    DiaryEntry.participant_id == tapper.participant_id)) or 0
            await _settle(db)
            report.recovered_in = wall.monotonic() - restored_at
            leading = trial.app.runtime.leading
            task = leading.dispatcher_task if leading is not None else None
            report.alive = {"updates": receiving_updates(trial.app),
                            "dispatcher": task is not None and not task.done(),
                            "job queue": bool(trial.app.job_queue.scheduler.running)}
        counts = Counter({p.participant_id: _reminders(p.user) for p in people})
        report.received = sum(counts.values())
        report.missed = sum(1 for n in counts.values() if n == 0)
        report.duplicates = sum(n - 1 for n in counts.values() if n > 1)
        report.in_flight_at_cut = cut.in_flight
    async with db.transaction() as session:
        report.reminders = Counter(dict((await session.execute(select(OutboxMessage.status, func.count()).where(
            OutboxMessage.kind == "reminder").group_by(OutboxMessage.status))).all()))
    report.half_written = await half_written(db)


class _CutWhenDelivered:
    """Cuts the database the moment Telegram accepts the `sends`-th reminder, before answering:
    the dispatcher is then between handing one over and recording it, its worst moment."""

    def __init__(self, world: TelegramWorld, proxy: PostgresProxy, sends: int) -> None:
        self.proxy, self.sends = proxy, sends
        self.delivered = 0
        self.in_flight = 0  # reminders Telegram has that the database cannot yet say were sent
        world.add_listener(self._on_change)

    def _on_change(self, user: SimUser) -> None:
        last = user.last_bot_message
        if self.in_flight or last is None or last.edits or REMINDER_TEXT not in (last.text or ""):
            return  # once only
        self.delivered += 1
        if self.delivered >= self.sends:
            self.in_flight = 1
            self.proxy.cut()


def _reminders(user: SimUser) -> int:
    return sum(REMINDER_TEXT in ((m.edits[0] if m.edits else m).text or "") for m in user.bot_messages)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _answered(user: SimUser, query_id: str, message_id: int) -> str | None:
    """What the participant saw of a press: the alert it was answered with, or the message."""
    for answered_id, alert_text, _ in user.callback_answers:
        if answered_id == query_id:
            return alert_text or user.message(message_id).text or ""
    return None


def _new_text(user: SimUser, before: int) -> str | None:
    """The first bot message since `before` were there, if any."""
    messages = user.bot_messages
    return (messages[before].text or "") if len(messages) > before else None


async def _tap(user: SimUser, message_id: int) -> str:
    """Press "I put it on now"; what the participant then sees (the alert, or the edited message)."""
    answers = len(user.callback_answers)
    await user.press(APPLIED_NOW, message_id=message_id)
    try:
        await user.wait_for(lambda u: len(u.callback_answers) > answers, timeout=15)
    except BotEventTimeout:
        return "(no answer)"
    _, alert_text, _ = user.callback_answers[-1]
    return alert_text or user.message(message_id).text or ""


async def _command(user: SimUser, command: str) -> str:
    before = len(user.bot_messages)
    await user.send_text(command)
    try:
        await user.wait_for(lambda u: len(u.bot_messages) > before, timeout=15)
    except BotEventTimeout:
        return "(no answer)"
    return user.bot_messages[before].text or ""


async def _written(db: Database, *participant_ids: int) -> int:
    """Records the outage's tap and command would have made: a diary entry, a check-in draft."""
    async with db.transaction() as session:
        entries = await session.scalar(select(func.count()).where(DiaryEntry.participant_id.in_(participant_ids)))
        drafts = await session.scalar(select(func.count()).where(CheckinDraft.participant_id.in_(participant_ids)))
    return (entries or 0) + (drafts or 0)


async def _settle(db: Database, timeout: float = 20) -> None:
    """Wait for the wave to finish on its own (the dispatcher's loop looks again by itself)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        async with db.transaction() as session:
            open_ = await session.scalar(select(func.count()).where(
                OutboxMessage.kind == "reminder", OutboxMessage.status.in_(("pending", "sending"))))
        if not open_:
            return
        await asyncio.sleep(0.2)


async def _wait(ready, what: str, timeout: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not ready():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what} never came")
        await asyncio.sleep(0.02)


def _capture(stream: io.StringIO) -> logging.Handler:
    """The log as `trialbot run` writes it: the bot's INFO lines, other libraries' warnings
    (bot/logging_setup.py keeps httpx, apscheduler, SQLAlchemy and the drivers at WARNING)."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(RedactingFormatter("%(levelname)s %(name)s: %(message)s", []))
    handler.setLevel(logging.INFO)
    handler.addFilter(lambda record: record.levelno >= logging.WARNING or record.name.split(".")[0] in (
        "bot", "scheduler", "study", "messages", "telegram"))
    root = logging.getLogger()
    root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    return handler


def _read_log(log: str, report: OutageReport) -> None:
    lines = [line for line in log.splitlines() if line.strip()]
    report.log_lines = len(lines)
    report.outage_lines = sum("database unavailable" in line for line in lines)
    report.recovery_lines = sum("database available again" in line for line in lines)
    report.tracebacks = log.count("Traceback")
    report.leaked = sorted({w for w in report.watch_for if w in log})
