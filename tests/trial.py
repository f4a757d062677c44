"""A running trial for tests: the product wired exactly as in production, plus shortcuts for
what a coordinator does at the server (enrol, invite, add staff) and for reading the record."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import select

from bot.app import build_application, demo_messages, running, send_limiter
from bot.send_limiter import VirtualTime
from sandbox.chat import ChatMessage, SimUser
from sandbox.server import BotApiServer
from sandbox.world import TelegramWorld
from study import invites, participants, staff
from study.audit import Actor
from study.clock import ManualClock
from study.database import Database
from study.models import DiaryEntry, Participant
from study.participants import EnrolmentRequest
from study.protocol import Protocol

COORDINATOR = Actor.cli("coordinator")


@dataclass
class Trial:
    db: Database
    clock: ManualClock
    protocol: Protocol
    world: TelegramWorld
    server: BotApiServer
    app: object = None
    _running: object = None
    #: More build_application arguments (the fault drills shorten `request_timeout`).
    app_options: dict = field(default_factory=dict)
    #: Updates by webhook (bot.app.Webhook) instead of long polling.
    webhook: object = None

    @classmethod
    @contextlib.asynccontextmanager
    async def running(cls, *, db: Database, clock: ManualClock, protocol: Protocol,
                      world: TelegramWorld, server: BotApiServer, webhook=None, **app_options) -> AsyncIterator[Trial]:
        trial = cls(db=db, clock=clock, protocol=protocol, world=world, server=server, app_options=app_options,
                    webhook=webhook)
        await trial._start()
        try:
            yield trial
        finally:
            await trial._running.__aexit__(None, None, None)

    async def _start(self) -> None:
        # The scheduler's own timer is off: tests run the tick themselves after moving the clock.
        # Rate-limit retries are off: a 429 reaches the outbox, which retries on the test's clock.
        # The dispatcher delivers when woken (a staff notice) or when the test says so, never by
        # itself on a wall-clock timer.
        # The send limiter paces on virtual time: the order and priority of sends are real, but no
        # test waits a wall-clock second for Telegram's window (tests/test_send_limiter.py checks
        # the pace itself against the stand-in).
        if "limiter" not in self.app_options:
            self.app_options["limiter"] = send_limiter(self.db, virtual_time=VirtualTime())
        options = {"tick_seconds": None, "rate_limit_retries": 0, "outbox_poll_seconds": 3600, **self.app_options}
        self.app = build_application(token=self.world.token, base_url=self.server.base_url,
                                     base_file_url=self.server.base_file_url, protocol=self.protocol, db=self.db,
                                     clock=self.clock, **{"messages": demo_messages(self.protocol), **options})
        self._running = running(self.app, poll_timeout=2, webhook=self.webhook)
        await self._running.__aenter__()

    async def restart(self) -> None:
        """Stop the bot and start a fresh one on the same database, as after a crash."""
        await self._running.__aexit__(None, None, None)
        await self._start()

    async def enroll(self, study_id: str = "P001", *, timezone: str = "America/New_York", language: str = "en",
                     wocbp: bool = False) -> str:
        """Enrol and return the invite code, as `trialbot enroll` does."""
        async with self.db.transaction() as session:
            participant = await participants.enroll(
                session, self.protocol,
                EnrolmentRequest(study_id=study_id, timezone=timezone, language=language, wocbp=wocbp),
                actor=COORDINATOR, now=self.clock.now())
            issued = await invites.issue(session, participant, valid_for=timedelta(days=14), actor=COORDINATOR,
                                         now=self.clock.now())
        return issued.code

    async def reissue(self, study_id: str) -> str:
        async with self.db.transaction() as session:
            participant = await participants.by_study_id(session, study_id)
            issued = await invites.issue(session, participant, valid_for=timedelta(days=14), actor=COORDINATOR,
                                         now=self.clock.now())
        return issued.code

    async def add_staff(self, user_id: int, name: str = "Dana", role: str = "coordinator") -> SimUser:
        async with self.db.transaction() as session:
            await staff.add_or_update(session, telegram_user_id=user_id, name=name, role=role, actor=COORDINATOR,
                                      now=self.clock.now())
        member = self.world.add_user(user_id=user_id, first_name=name)
        await member.send_text("/start")  # the bot can only write to people who opened it once
        await member.next_bot_event()
        return member

    async def join(self, study_id: str = "P001", *, user_id: int = 1001, **enrolment) -> SimUser:
        """Enrol, open the invite link, agree: a participant ready to log."""
        code = await self.enroll(study_id, **enrolment)
        user = self.world.add_user(user_id=user_id, first_name="Pat", language_code=enrolment.get("language", "en"))
        await user.send_text(f"/start {code}")
        await user.next_bot_event()
        answered = len(user.callback_answers)
        await user.press(data=f"c:a:{code}")
        await user.next_bot_event()
        # The button's answer comes last: waited for here, it cannot be taken for the answer to the
        # test's next press (which would then go on before that press was handled).
        await user.wait_for(lambda u: len(u.callback_answers) > answered)
        return user

    async def tick(self):
        """What the scheduler does every minute: plan what is due, then deliver the outbox."""
        report = await self.app.runtime.scheduler.tick.run_once()
        await self.deliver()
        return report

    async def plan(self):
        """Only the planning half of a tick: queued, not yet delivered."""
        from scheduler.tick import Tick

        return await Tick(self.db, self.protocol, self.clock).run_once()

    async def deliver(self) -> int:
        return await self.app.runtime.scheduler.dispatcher.deliver_due()

    async def advance(self, **delta) -> None:
        """Move the clock and let the scheduler run, as if that much time had passed."""
        self.clock.advance(timedelta(**delta))
        await self.tick()

    async def participant(self, study_id: str = "P001") -> Participant:
        async with self.db.transaction() as session:
            return await participants.by_study_id(session, study_id)

    async def diary(self, study_id: str = "P001") -> list[DiaryEntry]:
        """Every diary row of the participant, withdrawals included, oldest first."""
        async with self.db.transaction() as session:
            participant = await participants.by_study_id(session, study_id)
            rows = await session.scalars(
                select(DiaryEntry).where(DiaryEntry.participant_id == participant.id).order_by(DiaryEntry.id))
            return list(rows.all())


async def reply(user: SimUser) -> ChatMessage:
    return await user.next_bot_event()
