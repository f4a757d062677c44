"""Drill: an unreliable Telegram under simulated traffic.

Participants are enrolled and consented through the domain (no Telegram needed for that), with
reminder times spread over the drill's minutes. Then, for `minutes` simulated minutes on the
injected clock, the scheduler ticks and delivers while the stand-in fails `fault_rate` of all
calls at random (429 with retry_after, 500, timeouts, dropped connections, and answers lost
after Telegram acted); participants answer their reminders and some do a check-in, retrying as
people do (tests/drills/participants.py). Afterwards the clock runs on, faults still on, until
every reminder of the drill is settled, or `drain_minutes` pass.

Held against the record:
- every diary answer and check-in a participant saw confirmed is stored, and nothing is stored
  twice (however often they pressed);
- every reminder due is sent, or skipped or failed with a reason; copies received beyond one are
  at most the sends whose answer was lost after Telegram delivered (the only way to repeat one);
- the bot is still running (updater, dispatcher) and answers a command once the faults stop;
- nothing is half-written (tests/drills/records.py).
"""

from __future__ import annotations

import random
import time as wall
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from bot.app import receiving_updates
from sandbox.faults import EVERY_KIND
from sandbox.server import BotApiServer
from sandbox.world import TelegramWorld
from study import invites, participants
from study.audit import Actor
from study.clock import ManualClock
from study.consent import agree
from study.database import Database
from study.models import CheckIn, DeliveryEvent, DiaryEntry, OutboxMessage
from study.participants import EnrolmentRequest
from study.protocol import Protocol
from tests.drills.participants import REMINDER_TEXT, Crowd, Participant
from tests.drills.records import half_written
from tests.trial import Trial

# Tuesday 24 November 2026, 10:00 in New York.
START = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
ZONE = "America/New_York"
SETTLED = ("sent", "skipped", "failed")


@dataclass(frozen=True)
class TrafficConfig:
    participants: int = 50
    minutes: int = 10
    fault_rate: float = 0.2
    seed: int = 8
    checkin_share: float = 0.3
    request_timeout: float = 1.0  # the bot's wait for an answer; a "timeout" fault holds twice that
    patience: float = 2.5  # wall seconds a participant waits for the spinner before looking again
    at_once: int = 10  # participants acting at the same moment
    minute_seconds: float = 2.0  # most wall time a simulated minute lasts: it ends once everyone is done
    drain_minutes: int = 90
    spare: tuple[str, ...] = ()  # methods never failed (the CI version spares getUpdates: see the README)


@dataclass
class TrafficReport:
    config: TrafficConfig
    calls: int = 0
    calls_exposed: int = 0  # calls of methods the faults were allowed to hit
    faults: Counter = field(default_factory=Counter)
    reminders_due: int = 0
    reminder_status: Counter = field(default_factory=Counter)
    unsettled_reminders: int = 0
    unexplained_reminders: int = 0
    reminder_copies: int = 0
    reminder_duplicates: int = 0
    # The bound, from the bot's own record: a reminder can repeat only after a send whose outcome
    # it could not know (a timeout or a dropped connection: Telegram may have delivered it), once
    # per such send. The stand-in's count of answers it lost after delivering is shown beside it.
    duplicate_bound: int = 0
    lost_answers: int = 0
    over_bound_chats: int = 0
    sent_but_not_received: int = 0
    received_yet_not_sent: int = 0  # delivered, the answer lost, then skipped once the dose was recorded
    diary_intents: int = 0
    diary_confirmed: int = 0
    diary_stored: int = 0
    diary_lost: int = 0  # confirmed to the participant, not stored
    diary_duplicates: int = 0
    diary_gave_up: int = 0
    fallbacks: int = 0
    checkins_intended: int = 0
    checkins_confirmed: int = 0
    checkins_stored: int = 0
    checkins_lost: int = 0
    checkin_duplicates: int = 0
    checkins_gave_up: int = 0
    tick_errors: int = 0
    drained_after_minutes: int = 0  # simulated minutes after the traffic until every reminder was settled
    crowd_tail_seconds: float = 0.0  # wall time participants still needed then, the clock standing still
    alive: dict = field(default_factory=dict)
    half_written: list = field(default_factory=list)
    refused_by_telegram: Counter = field(default_factory=Counter)
    wall_seconds: float = 0.0

    def failures(self) -> list[str]:
        found = []
        if self.diary_lost or self.diary_duplicates:
            found.append(f"diary: {self.diary_lost} confirmed but not stored, {self.diary_duplicates} stored twice")
        if self.checkins_lost or self.checkin_duplicates:
            found.append(f"check-ins: {self.checkins_lost} confirmed but not stored, "
                         f"{self.checkin_duplicates} stored twice")
        if self.unsettled_reminders or self.unexplained_reminders or self.sent_but_not_received:
            found.append(f"reminders: {self.unsettled_reminders} never settled, {self.unexplained_reminders} "
                         f"skipped/failed without a reason, {self.sent_but_not_received} marked sent, never received")
        if self.over_bound_chats:
            found.append(f"reminder duplicates beyond the sends of unknown outcome in {self.over_bound_chats} chat(s)")
        if self.tick_errors:
            found.append(f"{self.tick_errors} scheduler rounds raised")
        if not all(self.alive.values()):
            found.append(f"not alive: {self.alive}")
        found += self.half_written
        return found

    def summary(self) -> str:
        c = self.config
        faults = sum(self.faults.values())
        by_kind = Counter()
        for (_, kind), n in self.faults.items():
            by_kind[kind] += n
        lines = [
            f"{c.participants} participants, {c.minutes} simulated minutes, faults at {c.fault_rate:.0%} "
            f"(seed {c.seed}); {self.wall_seconds:.0f} s of wall time",
            f"  afterwards: every reminder settled {self.drained_after_minutes} simulated minutes later; participants "
            f"done {self.crowd_tail_seconds:.0f} s after that (the clock standing still)",
            f"  Bot API calls: {self.calls} ({self.calls_exposed} exposed to faults); faults injected: {faults} "
            f"({', '.join(f'{k} {n}' for k, n in sorted(by_kind.items()))})",
            f"  reminders due: {self.reminders_due}; {dict(self.reminder_status)}; never settled: "
            f"{self.unsettled_reminders}; without a reason: {self.unexplained_reminders}",
            f"  reminder copies received: {self.reminder_copies}; duplicates: {self.reminder_duplicates} "
            f"(bound: {self.duplicate_bound} sends whose outcome the bot could not know; of them the stand-in "
            f"delivered {self.lost_answers}); chats over the bound: {self.over_bound_chats}",
            f"  received though recorded skipped or failed: {self.received_yet_not_sent}",
            f"  diary: {self.diary_intents} meant, {self.diary_confirmed} confirmed, {self.diary_stored} stored; "
            f"lost {self.diary_lost}, stored twice {self.diary_duplicates}, gave up {self.diary_gave_up}, "
            f"fell back to /log {self.fallbacks}",
            f"  check-ins: {self.checkins_intended} begun, {self.checkins_confirmed} confirmed, "
            f"{self.checkins_stored} stored; lost {self.checkins_lost}, stored twice {self.checkin_duplicates}, "
            f"gave up {self.checkins_gave_up}",
            f"  bot alive: {self.alive}; scheduler rounds that raised: {self.tick_errors}; "
            f"half-written records: {len(self.half_written)}",
            f"  calls Telegram refused (not injected): {dict(self.refused_by_telegram) or 0}",
        ]
        return "\n".join(lines)


async def enrol(db: Database, protocol: Protocol, world: TelegramWorld, config: TrafficConfig,
                now: datetime) -> list[Participant]:
    """Enrolled and consented, reminder times one per minute of the drill (and twelve hours on)."""
    rng = random.Random(config.seed)
    local = now.astimezone(ZoneInfo(ZONE))
    actor = Actor.cli("drill")
    people = []
    async with db.transaction() as session:
        for n in range(config.participants):
            at = local + timedelta(minutes=1 + n % config.minutes)
            times = (at.time().replace(second=0, microsecond=0), (at + timedelta(hours=12)).time().replace(second=0))
            person = await participants.enroll(session, protocol, EnrolmentRequest(
                f"D{n:04d}", ZONE, "en", reminder_times=times), actor=actor, now=now)
            code = (await invites.issue(session, person, valid_for=timedelta(days=1), actor=actor, now=now)).code
            await agree(session, code, chat_id=30_000 + n, user_id=30_000 + n, now=now)
            user = world.add_user(user_id=30_000 + n, first_name="P")
            user.started = True  # they opened the bot at the consent visit
            roll = rng.random()
            intent = "applied" if roll < 0.8 else "missed" if roll < 0.9 else "ignore"
            checkin = rng.randint(1, config.minutes) if rng.random() < config.checkin_share else None
            people.append(Participant(user, person.study_id, person.id, intent, checkin, config.patience))
    return people


async def run_traffic_drill(db: Database, protocol: Protocol, config: TrafficConfig) -> TrafficReport:
    report = TrafficReport(config)
    started = wall.perf_counter()
    clock = ManualClock(START)
    world = TelegramWorld(now=clock.now)
    world.faults.hold_seconds = config.request_timeout * 2
    async with BotApiServer(world) as server:
        people = await enrol(db, protocol, world, config, clock.now())
        async with Trial.running(db=db, clock=clock, protocol=protocol, world=world, server=server,
                                 request_timeout=config.request_timeout) as trial:
            world.faults.random_failures(config.fault_rate, config.seed, EVERY_KIND, max_retry_after=3,
                                         spare=config.spare)
            crowd = Crowd(people, config.at_once)
            for minute in range(1, config.minutes + 1):
                await _minute(trial, report, crowd, minute, timedelta(minutes=1))
                await crowd.settle(timeout=config.minute_seconds)
            # Faults still on: the clock runs on until every reminder is settled (retries wait on
            # it); then it stands still while whoever is still busy finishes.
            while not await _reminders_settled(db) and report.drained_after_minutes < config.drain_minutes:
                step = timedelta(minutes=1) if not crowd.idle else await _until_next_retry(db, trial.clock.now())
                report.drained_after_minutes += round(step / timedelta(minutes=1))
                await _minute(trial, report, crowd, config.minutes + report.drained_after_minutes, step)
                await crowd.settle(timeout=config.minute_seconds)
            busy_from = wall.perf_counter()
            await crowd.settle()
            report.crowd_tail_seconds = wall.perf_counter() - busy_from
            report.faults = Counter(world.faults.injected)
            world.faults.clear()
            report.alive = await _alive(trial, people[0])
        report.calls = len(world.calls)
        spared = {m.lower() for m in config.spare}
        report.calls_exposed = sum(c.method.lower() not in spared for c in world.calls)
    await _account(db, world, people, report)
    report.half_written = await half_written(db)
    report.wall_seconds = wall.perf_counter() - started
    return report


async def _minute(trial: Trial, report: TrafficReport, crowd: Crowd, minute: int, step: timedelta) -> None:
    trial.clock.advance(step)
    try:
        await trial.tick()  # plan, then deliver, as the minute's job does
    except Exception:  # noqa: BLE001 - the drill counts it; in production the job's error handler logs it
        report.tick_errors += 1
    crowd.look(minute)


async def _until_next_retry(db: Database, now: datetime) -> timedelta:
    """Whole minutes to the next reminder retry (at least one): nobody is busy, so skip ahead."""
    async with db.transaction() as session:
        soonest = await session.scalar(select(func.min(OutboxMessage.not_before)).where(
            OutboxMessage.kind == "reminder", OutboxMessage.status == "pending"))
    if soonest is None or soonest <= now:
        return timedelta(minutes=1)
    return timedelta(minutes=max(1, -(-(soonest - now) // timedelta(minutes=1))))


async def _reminders_settled(db: Database) -> bool:
    async with db.transaction() as session:
        waiting = await session.scalar(select(func.count()).where(
            OutboxMessage.kind == "reminder", OutboxMessage.status.not_in(SETTLED)))
    return not waiting


async def _alive(trial: Trial, person: Participant) -> dict:
    """Still running, and answering: the faults are off now, so /today must be answered."""
    app = trial.app
    leading = app.runtime.leading
    task = leading.dispatcher_task if leading is not None else None
    answered = await person.command("/today", lambda m: "today" in (m.text or "").lower()) is not None
    return {"application": bool(app.running), "updates": receiving_updates(app),
            "dispatcher": task is not None and not task.done(), "answers /today": answered}


async def _account(db: Database, world: TelegramWorld, people: list[Participant], report: TrafficReport) -> None:
    async with db.transaction() as session:
        reminders = (await session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "reminder"))).all()
        entries = Counter((await session.scalars(select(DiaryEntry.participant_id).where(
            DiaryEntry.kind.in_(("applied", "missed"))))).all())
        checkins = Counter((await session.scalars(select(CheckIn.participant_id))).all())
    report.lost_answers = sum(
        1 for c in world.calls
        if c.method == "sendMessage" and c.injected and c.status == 200 and REMINDER_TEXT in str(c.params.get("text")))
    unknown = await _unknown_outcomes(db)
    report.duplicate_bound = sum(unknown.values())
    sent_rows = Counter()
    for row in reminders:
        report.reminders_due += 1
        report.reminder_status[row.status] += 1
        if row.status not in SETTLED:
            report.unsettled_reminders += 1
        elif row.status != "sent" and not row.last_error:
            report.unexplained_reminders += 1
        if row.status == "sent":
            sent_rows[row.participant_id] += 1
    for person in people:
        received = Counter(_reminder_text(m) for m in person.user.bot_messages if _reminder_text(m))
        copies = sum(received.values())
        report.reminder_copies += copies
        extra = copies - len(received)  # one slot's reminder received more than once
        report.reminder_duplicates += extra
        if extra > unknown[person.participant_id]:
            report.over_bound_chats += 1
        if len(received) < sent_rows[person.participant_id]:
            report.sent_but_not_received += 1
        report.received_yet_not_sent += max(0, len(received) - sent_rows[person.participant_id])
        meant = person.diary_intent != "ignore" and person.answered
        stored = entries[person.participant_id]
        report.diary_intents += bool(meant)
        report.diary_confirmed += min(person.diary_confirmed, 1)
        report.diary_stored += stored
        report.diary_lost += bool(person.diary_confirmed and not stored)
        report.diary_duplicates += max(0, stored - 1)
        report.diary_gave_up += person.diary_gave_up
        report.fallbacks += person.used_fallback
        if person.checkin_minute is not None:
            report.checkins_intended += 1
        report.checkins_confirmed += person.checkin_confirmed
        report.checkins_stored += checkins[person.participant_id]
        report.checkins_lost += person.checkin_confirmed and not checkins[person.participant_id]
        report.checkin_duplicates += max(0, checkins[person.participant_id] - 1)
        report.checkins_gave_up += person.checkin_gave_up
    for call in world.rejected_calls:
        report.refused_by_telegram[f"{call.method}: {call.description}"[:80]] += 1


async def _unknown_outcomes(db: Database) -> Counter:
    """Per participant: reminder sends that ended in a timeout or a dropped connection (the
    dispatcher's retry events say so), after which Telegram may or may not have delivered."""
    async with db.transaction() as session:
        rows = (await session.execute(
            select(OutboxMessage.participant_id, DeliveryEvent.detail)
            .join(DeliveryEvent, DeliveryEvent.outbox_id == OutboxMessage.id)
            .where(OutboxMessage.kind == "reminder", DeliveryEvent.event.in_(("retry", "failed"))))).all()
    return Counter(pid for pid, detail in rows if detail and (detail.startswith("TimedOut") or "httpx." in detail))


def _reminder_text(message) -> str | None:
    """The reminder a message first said (answering it edits the text away), if it was one."""
    first = (message.edits[0] if message.edits else message).text or ""
    return first if REMINDER_TEXT in first else None
