"""`trialbot demo`: the real bot, on its own, with nothing from outside.

A throw-away SQLite database, the local Bot API stand-in on loopback, demo people with fresh
invites, and either a web page (`web_demo`, the default: several participants, the study team's
chat, a simulated clock and the log of what was sent) or a terminal chat (`run_demo`,
`trialbot demo --terminal`) in which you are one participant. Nothing leaves the machine and no
Telegram token is needed or accepted: the bot's base URL is always the stand-in's loopback
address, whatever the environment says.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import tempfile
import webbrowser
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from bot.app import build_application, demo_messages, running
from bot.audit_report import format_entries, participant_entries
from bot.invite_link import invite_link
from bot.settings import Settings
from sandbox.server import BotApiServer
from sandbox.terminal_chat import run_terminal_chat
from sandbox.web import Persona, WebChat
from sandbox.world import TelegramWorld
from study import alerts, invites, participants, staff, visits
from study.audit import Actor
from study.clock import ManualClock, SystemClock
from study.database import Database
from study.models import (
    CheckinDraft,
    OutboxMessage,
    OutboxStatus,
    Participant,
    ParticipantStatus,
    SentMessage,
    StaffMember,
)
from study.participants import EnrolmentRequest
from study.protocol import EXAMPLE_PROTOCOL, Protocol, load_protocol, parse_hhmm
from study.slots import instant

log = logging.getLogger(__name__)
DEMO_TOKEN = "100000001:DEMO-SANDBOX-NOT-A-REAL-TOKEN"
DEMO_PARTICIPANT = "DEMO01"
DEMO_USER_ID = 424242
DEMO_STAFF_ID = 900001
INTRO = """\
trialbot demo: the real bot, talking to a local stand-in for Telegram. Nothing leaves this computer.

You are participant {study_id}. The study team enrolled you and gave you this invite link:
  {link}
Opening it now. Type a button's number to press it, or type a message. {quit} to leave.
"""


def demo_protocol(say: Callable[[str], None] | None = None) -> Protocol:
    """The site's study.toml when there is one (STUDY_FILE, or study.toml in this folder); otherwise
    the example protocol that ships inside the package, so the demo runs wherever trialbot is
    installed. A STUDY_FILE that names a missing file is an error, not a reason to fall back."""
    settings = Settings()
    if settings.study_file.exists() or "study_file" in settings.model_fields_set:
        return load_protocol(settings.study_file)
    if say is not None:
        say(f"No {settings.study_file} in this folder: the demo runs on the example protocol that ships with "
            f"trialbot ({EXAMPLE_PROTOCOL}). `trialbot init DIR` starts a site's own.")
    return load_protocol(EXAMPLE_PROTOCOL)


async def _read_stdin() -> str | None:
    try:
        return await asyncio.to_thread(input, "")
    except EOFError:
        return None


async def run_demo(
    *,
    color: bool = False,
    read_line: Callable[[], Awaitable[str | None]] = _read_stdin,
    write: Callable[[str], None] = print,
    workdir: Path | None = None,
) -> None:
    protocol = demo_protocol(write)
    clock = SystemClock()
    with tempfile.TemporaryDirectory(prefix="trialbot-demo-") as scratch:
        db = Database(f"sqlite+aiosqlite:///{Path(workdir or scratch) / 'demo.db'}")
        await db.migrate()
        world = TelegramWorld(token=DEMO_TOKEN, bot_username="trialbot_demo_bot", now=clock.now)
        code = await _enrol_demo_participant(db, protocol, clock)
        try:
            async with BotApiServer(world) as server:
                app = build_application(token=DEMO_TOKEN, base_url=server.base_url,
                                        base_file_url=server.base_file_url, protocol=protocol, db=db, clock=clock,
                                        messages=demo_messages(protocol))
                async with running(app, poll_timeout=1):
                    coordinator = world.add_user(user_id=DEMO_STAFF_ID, first_name="Demo coordinator")
                    await coordinator.send_text("/start")
                    await coordinator.next_bot_event()
                    write(INTRO.format(study_id=DEMO_PARTICIPANT, link=invite_link(world.bot_username, code),
                                       quit=":quit"))
                    you = world.add_user(user_id=DEMO_USER_ID, first_name="You", language_code="en")
                    await you.send_text(f"/start {code}")
                    await run_terminal_chat(you, _after_bot_answers(you, read_line), write, color=color)
                    write("\nWhat the study team's chat received:")
                    for message in coordinator.bot_messages[1:]:
                        write(f"  {message.text}")
            async with db.transaction() as session:
                trail = await participant_entries(session, DEMO_PARTICIPANT)
            write("\nThe audit trail for this participant (trialbot audit show --participant ...):")
            for line in format_entries(trail):
                write("  " + line)
        finally:
            await db.dispose()


def _after_bot_answers(you, read_line: Callable[[], Awaitable[str | None]]) -> Callable[[], Awaitable[str | None]]:
    """Read the next line only once the bot has answered the last one, so that typed-ahead or
    piped input (`printf '1\\n1\\n' | trialbot demo`) presses the buttons it was meant for."""
    seen = 0

    def shown(user) -> int:
        return sum(1 + len(m.edits) for m in user.bot_messages)

    async def read() -> str | None:
        nonlocal seen
        try:
            await you.wait_for(lambda u: shown(u) > seen, timeout=5)
        except TimeoutError:
            pass  # the bot had nothing to say (an unknown button number, say); carry on
        await asyncio.sleep(0.05)  # let the chat printer show the answer before the prompt
        seen = shown(you)
        return await read_line()

    return read


async def _enrol_demo_participant(db: Database, protocol, clock) -> str:
    actor = Actor.cli("demo")
    async with db.transaction() as session:
        participant = await participants.enroll(
            session, protocol, EnrolmentRequest(DEMO_PARTICIPANT, "America/New_York", "en", wocbp=True),
            actor=actor, now=clock.now())
        issued = await invites.issue(session, participant, valid_for=timedelta(days=1), actor=actor, now=clock.now())
        await staff.add_or_update(session, telegram_user_id=DEMO_STAFF_ID, name="Demo coordinator",
                                  role="coordinator", actor=actor, now=clock.now())
    return issued.code


# --- the web demo --------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoPersona:
    study_id: str
    user_id: int
    first_name: str
    timezone: str
    language: str
    wocbp: bool
    description: str
    visit_in_days: int | None = None  # plan the protocol's visits with the baseline this many days ahead


PERSONAS = (
    DemoPersona("DEMO01", DEMO_USER_ID, "Maya", "America/New_York", "en", True,
                "DEMO01 · English · New York · WOCBP (pregnancy tests)", visit_in_days=2),
    DemoPersona("DEMO02", 424243, "Lucía", "America/New_York", "es", False, "DEMO02 · español · New York"),
    DemoPersona("DEMO03", 424244, "Sam", "America/Los_Angeles", "en", False,
                "DEMO03 · English · Los Angeles (3 h behind the site)"),
)
# Before consent links a participant's chat (the consent text itself), the demo knows whose it is.
_PERSONA_CHATS = {p.study_id: p.user_id for p in PERSONAS}
STAFF_MEMBERS = ((DEMO_STAFF_ID, "Dana Lee", "coordinator"), (900002, "Dr. Ortiz", "investigator"))
MAX_STEPS_PER_MOVE = 5000
HEARTBEAT_SECONDS = 2.0
WEB_INTRO = """\
trialbot demo: the real bot, talking to a local stand-in for Telegram. Nothing leaves this computer.

Open {url} in a browser. Chat as the demo participants and the study team, move the simulated
clock to see reminders, visits, pregnancy tests, check-ins, alerts and digests, and see which
approved template each message came from. Ctrl-C stops the demo (its database is thrown away).
"""


class WebDemo:
    """The running demo behind the web page; also the page's `DemoControls` (clock and log)."""

    def __init__(self, *, db: Database, protocol, clock: ManualClock, world: TelegramWorld, app) -> None:
        self.db = db
        self.protocol = protocol
        self.clock = clock
        self.world = world
        self.app = app
        self.web: WebChat | None = None
        self._lock = asyncio.Lock()

    @property
    def url(self) -> str:
        assert self.web is not None
        return self.web.url

    async def step(self) -> None:
        """What the scheduler does each minute: plan what is due now, then deliver the outbox."""
        await self.app.runtime.scheduler.tick.run_once()
        await self.app.runtime.scheduler.dispatcher.deliver_due()

    async def heartbeat(self) -> None:
        """Time stands still between clock moves, but what people do (agree, /resume, a visit
        answer) can make something due now: plan and deliver it, as the minute tick would."""
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            try:
                async with self._lock:
                    await self.step()
            except Exception:
                log.exception("demo scheduler step failed")

    # --- DemoControls ------------------------------------------------------------------------

    async def clock_state(self) -> dict:
        moment, what = await self.next_event()
        return {"now": self.clock.now().isoformat(), "zone": self.protocol.study.default_timezone,
                "next_event": moment.isoformat() if moment else None, "next_what": what}

    async def move_clock(self, action: str) -> str:
        async with self._lock:
            await self.step()
            now = self.clock.now()
            if action == "next":
                target, _ = await self.next_event()
                if target is None:
                    return "Nothing is scheduled: agree in a participant's chat first."
            else:
                target = now + {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(days=7)}[action]
            sent_before = await self._sent_count()
            steps = 0
            # Stop at every scheduled moment on the way, as the minute tick would have: nothing is
            # skipped over, and nothing arrives late because the clock jumped.
            while steps < MAX_STEPS_PER_MOVE:
                moment, _ = await self.next_event()
                if moment is None or moment > target:
                    break
                self.clock.set(moment)
                await self.step()
                steps += 1
            if self.clock.now() < target:
                self.clock.set(target)
                await self.step()
            sent = await self._sent_count() - sent_before
        zone = ZoneInfo(self.protocol.study.default_timezone)
        when = self.clock.now().astimezone(zone).strftime("%a %d %b %H:%M")
        return f"Now {when} ({zone.key}): {sent} message{'s' if sent != 1 else ''} sent."

    async def sent_log(self) -> list[dict]:
        query = (select(SentMessage, Participant.study_id, Participant.telegram_chat_id, StaffMember.name,
                        StaffMember.telegram_user_id)
                 .outerjoin(Participant, SentMessage.participant_id == Participant.id)
                 .outerjoin(StaffMember, SentMessage.staff_id == StaffMember.id)
                 .order_by(SentMessage.id.desc()).limit(500))
        async with self.db.transaction() as session:
            rows = (await session.execute(query)).all()
        return [
            {"time": row.sent_at.isoformat(), "to": study_id or (f"staff: {staff_name}" if staff_name else row.recipient),
             "chat_id": chat_id or staff_chat or _PERSONA_CHATS.get(study_id), "message_id": row.telegram_message_id, "template": row.template_id,
             "language": row.language, "hash": row.template_hash, "via": row.via, "approved": not row.draft}
            for row, study_id, chat_id, staff_name, staff_chat in reversed(rows)
        ]

    # --- the schedule ----------------------------------------------------------------------------

    async def next_event(self) -> tuple[datetime | None, str]:
        """The next moment something is scheduled: a participant's planner check (a reminder, a
        nudge, a dose window closing), a queued message, or the staff digest."""
        now = self.clock.now()
        async with self.db.transaction() as session:
            planned = (await session.execute(
                select(Participant.next_plan_at, Participant.study_id).where(
                    Participant.status == ParticipantStatus.ACTIVE, Participant.telegram_chat_id.is_not(None),
                    Participant.next_plan_at > now).order_by(Participant.next_plan_at).limit(1))).first()
            queued = (await session.execute(
                select(OutboxMessage.not_before, OutboxMessage.template_id).where(
                    OutboxMessage.status == OutboxStatus.PENDING, OutboxMessage.not_before > now)
                .order_by(OutboxMessage.not_before).limit(1))).first()
            expiring = (await session.execute(
                select(CheckinDraft.expires_at).where(CheckinDraft.expires_at > now)
                .order_by(CheckinDraft.expires_at).limit(1))).first()
            staff_on_duty = bool(await staff.on_duty(session))
            open_alerts = await alerts.open_alerts(session)
        candidates: list[tuple[datetime, str]] = []
        if planned and planned[0] is not None:
            candidates.append((planned[0], f"{planned[1]}'s schedule (a reminder, a nudge or a dose window closing)"))
        if queued:
            candidates.append((queued[0], f"queued message ({queued[1]})"))
        if expiring:
            candidates.append((expiring[0], "an unfinished check-in expires"))
        if staff_on_duty:
            candidates.append((self._next_digest(now), "the staff digest"))
        candidates += self._alert_followups(now, [(alert.reported_at, person.study_id) for alert, person in open_alerts])
        if not candidates:
            return None, ""
        return min(candidates, key=lambda c: c[0])

    def _alert_followups(self, now: datetime, open_alerts: list[tuple[datetime, str]]) -> list[tuple[datetime, str]]:
        """An open alert is sent again every `realert_minutes` and escalated after
        `escalate_after_minutes` (the tick plans both; see scheduler/safety_planner.py)."""
        rules = self.protocol.escalation
        every, escalate = timedelta(minutes=rules.realert_minutes), timedelta(minutes=rules.escalate_after_minutes)
        moments = []
        for reported_at, study_id in open_alerts:
            moments.append((reported_at + (int((now - reported_at) / every) + 1) * every,
                            f"the open alert for {study_id} is sent again"))
            if reported_at + escalate > now:
                moments.append((reported_at + escalate, f"the open alert for {study_id} is escalated"))
        return moments

    def _next_digest(self, now: datetime) -> datetime:
        zone = ZoneInfo(self.protocol.study.default_timezone)
        at = parse_hhmm(self.protocol.reminders.staff_digest_time)
        today = now.astimezone(zone).date()
        for day in (today, today + timedelta(days=1), today + timedelta(days=2)):
            moment = instant(day, at, zone)
            if moment > now:
                return moment
        raise AssertionError("a digest is due every day")

    async def _sent_count(self) -> int:
        async with self.db.transaction() as session:
            return (await session.execute(select(func.count()).select_from(SentMessage))).scalar_one()


@contextlib.asynccontextmanager
async def web_demo(*, port: int = 8080, start: datetime | None = None, workdir: Path | None = None,
                   heartbeat: bool = True, say: Callable[[str], None] | None = None) -> AsyncIterator[WebDemo]:
    """The whole demo, running until the `async with` ends; the page is at `demo.url`."""
    protocol = demo_protocol(say)
    clock = ManualClock(start or datetime.now(UTC).replace(second=0, microsecond=0))
    with tempfile.TemporaryDirectory(prefix="trialbot-demo-") as scratch:
        db = Database(f"sqlite+aiosqlite:///{Path(workdir or scratch) / 'demo.db'}")
        await db.migrate()
        world = TelegramWorld(token=DEMO_TOKEN, bot_username="trialbot_demo_bot", now=clock.now,
                              bot_first_name="Skin Cream Study (demo)")
        try:
            codes = await _enrol_personas(db, protocol, clock)
            async with BotApiServer(world) as server:
                # The stand-in on loopback, always: the demo has no way to reach Telegram.
                assert server.host == "127.0.0.1"
                app = build_application(token=DEMO_TOKEN, base_url=server.base_url, base_file_url=server.base_file_url,
                                        protocol=protocol, db=db, clock=clock, tick_seconds=None,
                                        outbox_poll_seconds=1.0, messages=demo_messages(protocol))
                async with running(app, poll_timeout=1):
                    demo = WebDemo(db=db, protocol=protocol, clock=clock, world=world, app=app)
                    personas: list[Persona] = []
                    for p in PERSONAS:
                        user = world.add_user(user_id=p.user_id, first_name=p.first_name, language_code=p.language)
                        personas.append(Persona(key=p.study_id, user=user, name=p.first_name,
                                                description=p.description, role="participant", timezone=p.timezone,
                                                start_link=invite_link(world.bot_username, codes[p.study_id])))
                    for user_id, name, role in STAFF_MEMBERS:
                        member = world.add_user(user_id=user_id, first_name=name)
                        await member.send_text("/start")  # the bot can only write to people who opened it
                        await member.next_bot_event()
                        personas.append(Persona(key=f"staff{user_id}", user=member, name=name,
                                                description=f"{role} · on duty", role="staff",
                                                timezone=protocol.study.default_timezone))
                    async with WebChat(world, personas, demo, port=port) as web:
                        demo.web = web
                        beat = asyncio.create_task(demo.heartbeat()) if heartbeat else None
                        try:
                            yield demo
                        finally:
                            if beat is not None:
                                beat.cancel()
                                with contextlib.suppress(asyncio.CancelledError):
                                    await beat
        finally:
            await db.dispose()


async def run_web_demo(*, port: int = 8080, open_browser: bool = False, write: Callable[[str], None] = print,
                       start: datetime | None = None, workdir: Path | None = None) -> None:
    """`trialbot demo`: serve the page until SIGINT (Ctrl-C) or SIGTERM, then stop in order: the
    bot, the stand-in, the page, and the scratch folder with its database. The signals are handled
    in the event loop (whatever disposition the demo inherited, as from a script's `&`), so the
    shutdown is the ordinary end of the `async with`, never an exception through PTB's tasks."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with web_demo(port=port, start=start, workdir=workdir, say=write) as demo:
            write(WEB_INTRO.format(url=demo.url))
            if open_browser:
                await asyncio.to_thread(webbrowser.open, demo.url)
            await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


async def _enrol_personas(db: Database, protocol, clock) -> dict[str, str]:
    actor = Actor.cli("demo")
    codes = {}
    async with db.transaction() as session:
        for p in PERSONAS:
            participant = await participants.enroll(
                session, protocol, EnrolmentRequest(p.study_id, p.timezone, p.language, wocbp=p.wocbp),
                actor=actor, now=clock.now())
            issued = await invites.issue(session, participant, valid_for=timedelta(days=14), actor=actor,
                                         now=clock.now())
            codes[p.study_id] = issued.code
            if p.visit_in_days is not None:
                local_today = clock.now().astimezone(ZoneInfo(p.timezone)).date()
                await visits.plan_schedule(session, protocol, participant,
                                           baseline=local_today + timedelta(days=p.visit_in_days), actor=actor,
                                           now=clock.now())
        for user_id, name, role in STAFF_MEMBERS:
            await staff.add_or_update(session, telegram_user_id=user_id, name=name, role=role, actor=actor,
                                      now=clock.now())
    return codes
