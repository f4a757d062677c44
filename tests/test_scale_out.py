"""Two `trialbot run` processes on one PostgreSQL database, as on two machines behind one webhook
URL: updates are answered by either, reminders and broadcasts are sent once, and when the
scheduler leader is killed (SIGKILL, no goodbye) the other takes over planning and delivery.

The stand-in posts updates to a small round-robin forwarder (the load balancer), which passes
each to one process in turn, or to the other when one does not answer. The processes run on the
wall clock, with the tick, the outbox look and the leader's retry set to fractions of a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import func, select, text, update

from sandbox.server import BotApiServer
from sandbox.world import TelegramWorld
from study import invites, participants, staff
from study.database import Database
from study.models import Broadcast, DiaryEntry, OutboxMessage, Participant
from study.participants import EnrolmentRequest
from study.protocol import EXAMPLE_PROTOCOL, load_protocol
from tests.drills.process import scratch_database
from tests.ledger import approve_all
from tests.study_files import confirmed, write_study_file
from tests.test_webhook import free_port
from tests.trial import COORDINATOR
from tests.waiting import until

pytestmark = pytest.mark.timeout(150)
REPO = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get("TRIALBOT_TEST_DATABASE_URL")
TOKEN = "555000222:SCALE-OUT-TOKEN-abcdefgh"
PEOPLE = 6
ZONE = "Europe/London"
REMINDER = "Time for your study cream"
NOTICE = "The clinic is closed on Friday."
LEADER = "this process is now the scheduler leader"
NAME = "Philippa"  # the participants' Telegram first name: must never reach a log
COORDINATOR_ID = 5005


class RoundRobin:
    """The load balancer: each update to the next process in turn; to another if one is down."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.port = free_port()
        self.answered: Counter[int] = Counter()  # process port -> updates it accepted
        self.refused: list[int] = []  # status codes other than 200 (a wrong secret would show here)
        self._turn = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/telegram"

    def send_next_to(self, port: int) -> None:
        self._turn = self.ports.index(port)

    async def _forward(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {name: request.headers[name] for name in ("Content-Type", "X-Telegram-Bot-Api-Secret-Token")
                   if name in request.headers}
        for _ in self.ports:
            port = self.ports[self._turn % len(self.ports)]
            self._turn += 1
            try:
                async with self._http.post(f"http://127.0.0.1:{port}/telegram", data=body, headers=headers) as answer:
                    if answer.status == 200:
                        self.answered[port] += 1
                    else:
                        self.refused.append(answer.status)
                    # The acknowledgement's body may carry a method for Telegram (a button's answer).
                    return web.Response(status=answer.status, body=await answer.read(),
                                        content_type=answer.content_type)
            except aiohttp.ClientError:
                continue  # that process is down (or not listening yet): the next one
        return web.Response(status=502)

    async def __aenter__(self) -> RoundRobin:
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        app = web.Application()
        app.router.add_post("/telegram", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._runner.cleanup()
        await self._http.close()


class BotProcess:
    """`python -m bot run --webhook URL`, with its output collected line by line."""

    def __init__(self, name: str, env: dict[str, str], cwd: Path) -> None:
        self.name, self.port = name, free_port()
        self.env = {**env, "WEBHOOK_PORT": str(self.port)}
        self.cwd = cwd
        self.lines: list[str] = []
        self.process = None
        self._changed = asyncio.Event()

    async def start(self, webhook_url: str) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "run", "--webhook", webhook_url, cwd=self.cwd, env=self.env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        while line := await self.process.stdout.readline():
            self.lines.append(line.decode(errors="replace").rstrip())
            self._changed.set()

    async def logged(self, fragment: str, timeout: float = 30) -> None:
        """Wait until the process has logged `fragment` (fails at once if it exited)."""
        async def seen() -> None:
            while not any(fragment in line for line in self.lines):
                if self.process.returncode is not None:
                    raise AssertionError(f"{self.name} exited:\n{self.output}")
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), 0.5)

        try:
            await asyncio.wait_for(seen(), timeout)
        except TimeoutError:
            raise AssertionError(f"{self.name} never logged {fragment!r}:\n{self.output}") from None

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    async def kill(self) -> None:
        """SIGKILL: no goodbye; its connections just drop."""
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()

    async def stop(self) -> int | None:
        if self.process is None:
            return None
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 30)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        await self._reader
        return self.process.returncode


async def enrol_everyone(database_url: str) -> list[str]:
    """Participants P001.. with invite codes, and a coordinator; as `trialbot enroll` would."""
    protocol = load_protocol(EXAMPLE_PROTOCOL)
    db = Database(database_url)
    await db.migrate()
    await approve_all(db, protocol, actor=COORDINATOR)  # as the site's IRB did: `trialbot run` sends nothing else
    now = datetime.now(UTC)
    codes = []
    async with db.transaction() as session:
        for n in range(1, PEOPLE + 1):
            person = await participants.enroll(session, protocol, EnrolmentRequest(f"P{n:03d}", ZONE, "en"),
                                               actor=COORDINATOR, now=now)
            codes.append((await invites.issue(session, person, valid_for=timedelta(days=1), actor=COORDINATOR,
                                              now=now)).code)
        await staff.add_or_update(session, telegram_user_id=COORDINATOR_ID, name="Dana", role="coordinator",
                                  actor=COORDINATOR, now=now)
    await db.dispose()
    return codes


async def make_reminders_due(db: Database, study_ids: list[str], *, minutes_ago: int) -> None:
    """Set their evening slot to a minute that has just passed (as if they chose that time) and
    their start an hour back, so the next tick finds a reminder due now.

    First wait until the planner has looked at them since they joined, so that what the test
    changes is not racing the tick's first look (the tick keeps a change made while it planned,
    scheduler/tick.py; an older tick did not, and this wait kept the test honest about it)."""
    async def looked_at() -> None:
        while True:
            async with db.transaction() as session:
                moments = (await session.scalars(select(Participant.next_plan_at).where(
                    Participant.study_id.in_(study_ids)))).all()
            if all(m is not None and m > datetime.now(UTC) for m in moments):
                return
            await asyncio.sleep(0.1)

    await asyncio.wait_for(looked_at(), 20)
    local = (datetime.now(UTC) - timedelta(minutes=minutes_ago)).astimezone(ZoneInfo(ZONE))
    times = f"{local:%H:%M},{local + timedelta(hours=12):%H:%M}"
    now = datetime.now(UTC)
    async with db.transaction() as session:
        await session.execute(update(Participant).where(Participant.study_id.in_(study_ids)).values(
            reminder_times=times, active_since=now - timedelta(hours=1), next_plan_at=now))


def reminders(user) -> list:
    return [m for m in user.bot_messages if REMINDER in (m.edits[0].text if m.edits else m.text or "")]


def notices(user) -> list:
    return [m for m in user.bot_messages if NOTICE in (m.text or "")]


async def outbox(db: Database) -> list[OutboxMessage]:
    async with db.transaction() as session:
        return list((await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))).all())


async def settled(db: Database, timeout: float = 30) -> list[OutboxMessage]:
    """Every outbox row delivered (or skipped, or failed): none pending or in flight."""
    async def wait() -> list[OutboxMessage]:
        while True:
            rows = await outbox(db)
            if rows and not [r for r in rows if r.status in ("pending", "sending")]:
                return rows
            await asyncio.sleep(0.2)

    return await asyncio.wait_for(wait(), timeout)


@pytest.fixture
def postgres() -> str:
    if not PG_URL:
        if os.environ.get("TRIALBOT_REQUIRE_POSTGRES") == "1":
            pytest.fail("TRIALBOT_REQUIRE_POSTGRES=1 but TRIALBOT_TEST_DATABASE_URL is not set")
        pytest.skip("several processes need PostgreSQL (SQLite is one process on one machine)")
    return PG_URL


async def test_two_processes_share_updates_send_once_and_the_survivor_takes_over(postgres: str, tmp_path: Path) -> None:
    async with scratch_database("postgresql", tmp_path, PG_URL) as database_url:
        codes = await enrol_everyone(database_url)
        world = TelegramWorld(token=TOKEN)
        db = Database(database_url)
        async with BotApiServer(world) as server:
            env = {**os.environ, "TELEGRAM_BOT_TOKEN": TOKEN, "DATABASE_URL": database_url,
                   "TELEGRAM_API_URL": server.base_url.removesuffix("/bot"), "STUDY_FILE": str(study_file_with_no_digest_due(tmp_path)),
                   "LOG_LEVEL": "INFO", "WEBHOOK_LISTEN": "127.0.0.1", "SCHEDULER_TICK_SECONDS": "0.5",
                   "OUTBOX_POLL_SECONDS": "0.3", "LEADER_RETRY_SECONDS": "0.3"}
            env.pop("WEBHOOK_SECRET", None)  # each process derives the same one from the token
            first, second = BotProcess("first", env, tmp_path), BotProcess("second", env, tmp_path)
            async with RoundRobin([first.port, second.port]) as balancer:
                try:
                    await first.start(balancer.url)
                    await first.logged(LEADER)
                    await second.start(balancer.url)
                    await second.logged("another process is the scheduler leader; this one stands by")
                    await _scenario(world, db, balancer, first, second, codes)
                finally:
                    second_exit = await second.stop()
                    await first.stop()
                    await db.dispose()
        if os.environ.get("SCALE_OUT_DEBUG"):
            print(first.output, "\n=====\n", second.output, "\n", balancer.answered, world.calls[-3:])
        assert first.process.returncode == -signal.SIGKILL
        assert second_exit == 0, second.output
        output = first.output + "\n" + second.output
        for secret_or_content in (TOKEN, "SCALE-OUT", NOTICE, NAME):
            assert secret_or_content not in output, f"{secret_or_content!r} in the logs"
        assert world.rejected_calls == [], "the bot made calls Telegram would reject"
        assert balancer.refused == [], "every process accepted the webhook secret"


def study_file_with_no_digest_due(folder: Path) -> Path:
    """The real study.toml, confirmed, with the staff digest later today. The processes run on the wall clock,
    and a digest that falls due during the test would go to the coordinator before they open the
    bot (Telegram: "chat not found"). Only the last two minutes before midnight, study time, are
    left without a later time."""
    zone = ZoneInfo(load_protocol(EXAMPLE_PROTOCOL).study.default_timezone)
    now = datetime.now(zone)
    later = min(now + timedelta(hours=1), now.replace(hour=23, minute=59))
    text = EXAMPLE_PROTOCOL.read_text()
    assert 'staff_digest_time = "07:30"' in text
    return write_study_file(folder, confirmed(text.replace('staff_digest_time = "07:30"',
                                                           f'staff_digest_time = "{later:%H:%M}"')))


async def _scenario(world: TelegramWorld, db: Database, balancer: RoundRobin, first: BotProcess,
                    second: BotProcess, codes: list[str]) -> None:
    # 1. Everyone opens the bot; their updates are shared out between the two processes.
    coordinator = world.add_user(user_id=COORDINATOR_ID, first_name="Dana")
    await coordinator.send_text("/start")
    await coordinator.next_bot_event(timeout=20)
    people = []
    for n, code in enumerate(codes, start=1):
        user = world.add_user(user_id=2000 + n, first_name=NAME)
        await user.send_text(f"/start {code}")
        await user.next_bot_event(timeout=20)
        await user.press("✅ Yes, I agree")
        await user.wait_for(lambda u: "You are all set" in (u.last_bot_message.text or ""), timeout=20)
        people.append(user)
    assert balancer.answered[first.port] >= 3 and balancer.answered[second.port] >= 3, balancer.answered

    # 2. A reminder due for everyone: the leader's tick plans it, its dispatcher sends it, once.
    await make_reminders_due(db, [f"P{n:03d}" for n in range(1, PEOPLE + 1)], minutes_ago=1)
    for user in people:
        await user.wait_for(lambda u: len(reminders(u)) >= 1, timeout=20)
    rows = await settled(db)
    assert [r.status for r in rows if r.kind == "reminder"] == ["sent"] * PEOPLE
    assert [len(reminders(u)) for u in people] == [1] * PEOPLE, "each reminder sent once"

    # 3. A broadcast, confirmed through whichever process gets the tap. The last recipient's
    #    notice hangs in Telegram (never delivered), and the leader is killed (SIGKILL: no
    #    goodbye, its lock connection just drops) while it waits for it: in the middle of the
    #    broadcast, with that message claimed and in flight.
    last = people[-1]
    world.faults.hold_seconds = 60
    world.faults.fail_next("sendMessage", chat_id=last.chat_id, mode="timeout")
    await coordinator.send_text(f"/broadcast notice all {NOTICE}")
    await coordinator.wait_for(lambda c: "✅ Confirm" in c.last_bot_message.button_labels, timeout=20)
    await coordinator.press("✅ Confirm")
    await until(lambda: any(c.injected and c.params.get("chat_id") in (last.chat_id, str(last.chat_id))
                            for c in world.calls), timeout=20)
    # (The others are under way beside it, several at once: each arrives once.)
    await until(lambda: [len(notices(u)) for u in people] == [1] * (PEOPLE - 1) + [0], timeout=20)
    # Meanwhile a participant's tap is being handled by the same process: its entry is written,
    # the edit to "Saved" hangs. An update is acknowledged only once handled, so when the
    # process dies, Telegram still holds the tap and it is handled again, by the survivor.
    tapper = people[2]  # P003 (P001 and P002 have their parts below)
    tapped = reminders(tapper)[-1].message_id
    world.faults.fail_next("editMessageText", chat_id=tapper.chat_id, mode="timeout")
    balancer.send_next_to(first.port)
    await tapper.press("✅ I put it on now", message_id=tapped)
    await until(lambda: any(c.injected and c.method == "editMessageText" for c in world.calls), timeout=20)
    assert await diary_entries(db, "P003") == 1
    await first.kill()
    await tapper.wait_for(lambda u: "Saved" in (u.message(tapped).text or ""), timeout=20)
    assert await diary_entries(db, "P003") == 1, "handled twice, stored once"
    await second.logged(LEADER)
    await second.logged("1 message(s) were being sent when the last deliverer stopped; sending again")
    await last.wait_for(lambda u: len(notices(u)) == 1, timeout=20)
    await settled(db)
    # Nothing missed and, as the message in flight never reached Telegram, nothing repeated.
    # (Had Telegram taken it before the kill, it would have been sent twice: the bound is the
    # one message a leader has in flight.)
    assert [len(notices(u)) for u in people] == [1] * PEOPLE
    async with db.transaction() as session:
        [broadcast] = (await session.scalars(select(Broadcast))).all()
    await until(lambda: "Finished: 6 sent" in (coordinator.message(broadcast.status_message_id).text or ""),
                timeout=20)

    # 4. The survivor plans (a new reminder time, so a new slot) and delivers on its own...
    await make_reminders_due(db, ["P001"], minutes_ago=0)
    await people[0].wait_for(lambda u: len(reminders(u)) == 2, timeout=20)
    await settled(db)
    assert [len(reminders(u)) for u in people] == [2] + [1] * (PEOPLE - 1)
    # ...and answers every update, the ones the balancer first tries on the dead process too.
    answered_before = balancer.answered[second.port]
    newest = reminders(people[0])[-1].message_id
    await people[0].press("✅ I put it on now", message_id=newest)
    await people[0].wait_for(lambda u: "Saved" in (u.message(newest).text or ""), timeout=20)
    shown = len(people[1].bot_messages)
    await people[1].send_text("/today")
    await people[1].wait_for(lambda u: len(u.bot_messages) > shown, timeout=20)
    await until(lambda: not world.pending_updates, timeout=20)  # both acknowledged, once handled
    assert balancer.answered[second.port] == answered_before + 2


async def diary_entries(db: Database, study_id: str) -> int:
    async with db.transaction() as session:
        return await session.scalar(select(func.count()).select_from(DiaryEntry).join(Participant).where(
            Participant.study_id == study_id)) or 0


async def test_in_polling_mode_only_the_leader_polls_and_a_standby_takes_over(
        db: Database, clock, protocol, telegram: TelegramWorld, bot_api: BotApiServer) -> None:
    """Telegram serves getUpdates to one caller at a time, so a second process in polling mode
    must not poll (it would draw 409 Conflict, over and over) until the leader is gone."""
    if db.is_sqlite:
        pytest.skip("several processes need PostgreSQL (SQLite is one process on one machine)")
    from bot.app import build_application, demo_messages, running

    other = Database(db.url.render_as_string(hide_password=False), schema=db.schema)

    def process(database: Database):
        return build_application(token=telegram.token, base_url=bot_api.base_url,
                                 base_file_url=bot_api.base_file_url, protocol=protocol, db=database, clock=clock,
                                 tick_seconds=None, rate_limit_retries=0, leader_retry_seconds=0.05,
                                 messages=demo_messages(protocol))

    async with db.transaction() as session:
        person = await participants.enroll(session, protocol, EnrolmentRequest("P001", ZONE, "en"),
                                           actor=COORDINATOR, now=clock.now())
        code = (await invites.issue(session, person, valid_for=timedelta(days=1), actor=COORDINATOR,
                                    now=clock.now())).code
    first, second = process(db), process(other)
    first_running, second_running = running(first, poll_timeout=1), running(second, poll_timeout=1)
    try:
        await first_running.__aenter__()
        async with second_running:
            assert first.runtime.scheduler.leadership.is_leader and first.updater.running
            assert not second.runtime.scheduler.leadership.is_leader and not second.updater.running
            user = telegram.add_user(user_id=1001, first_name=NAME)
            await user.send_text(f"/start {code}")
            await user.next_bot_event()
            polls = sum(c.method == "getUpdates" for c in telegram.calls)
            await first_running.__aexit__(None, None, None)  # the leader stops
            first_running = None
            await until(lambda: second.updater.running, timeout=10)
            assert second.runtime.scheduler.leadership.is_leader
            await user.press("✅ Yes, I agree")
            assert "You are all set" in (await user.next_bot_event()).text
            assert sum(c.method == "getUpdates" for c in telegram.calls) > polls, "the standby polls now"
    finally:
        if first_running is not None:
            await first_running.__aexit__(None, None, None)
        await other.dispose()
    assert telegram.rejected_calls == [], "no 409 Conflict, nor any other refusal"


async def test_a_leader_cut_off_from_its_lock_polls_on_until_another_process_leads(
        db: Database, clock, protocol, telegram: TelegramWorld, bot_api: BotApiServer) -> None:
    """A leader most often loses its lock because the database went away, and then nobody can
    lead: it goes on polling, so participants get an answer (the apology) instead of silence. Once
    it sees another process lead (and poll), it stops, since Telegram serves one poller."""
    if db.is_sqlite:
        pytest.skip("several processes need PostgreSQL (SQLite is one process on one machine)")
    from bot.app import build_application, demo_messages, running

    other = Database(db.url.render_as_string(hide_password=False), schema=db.schema)

    def process(database: Database, retry: float):
        return build_application(token=telegram.token, base_url=bot_api.base_url,
                                 base_file_url=bot_api.base_file_url, protocol=protocol, db=database, clock=clock,
                                 tick_seconds=None, rate_limit_retries=0, leader_retry_seconds=retry,
                                 messages=demo_messages(protocol))

    first, second = process(db, 1.0), process(other, 0.05)  # the second competes more eagerly
    try:
        async with running(first, poll_timeout=1):
            lock_connection = first.runtime.scheduler.leadership._connection
            async with running(second, poll_timeout=1):
                assert first.updater.running and not second.updater.running
                async with db.engine.connect() as connection:  # a network cut, a database restart
                    await connection.execute(text("SELECT pg_terminate_backend(:pid)"),
                                             {"pid": lock_connection.get_server_pid()})
                await until(lambda: not first.runtime.scheduler.leadership.is_leader, timeout=10)
                assert first.updater.running, "stepped down, still polling"
                await until(lambda: second.updater.running, timeout=10)
                await until(lambda: not first.updater.running, timeout=10)
                assert second.runtime.scheduler.leadership.is_leader
                user = telegram.add_user(user_id=1001, first_name=NAME)
                await user.send_text("/help")
                await user.next_bot_event()
    finally:
        await other.dispose()
    refused = [(c.method, c.status) for c in telegram.rejected_calls]
    assert set(refused) <= {("getUpdates", 409)}, "only the moment both polled"


async def test_a_stepped_down_leader_cut_off_from_the_database_stops_polling_when_telegram_sees_another(
        db: Database, clock, protocol, telegram: TelegramWorld, bot_api: BotApiServer) -> None:
    """The first process loses the database (a network cut between it and the server) while the
    second still reaches it and takes the lead. The first cannot see that, but Telegram can: it
    answers one of the two pollers with 409 Conflict, and the one that does not lead stops."""
    if db.is_sqlite:
        pytest.skip("several processes need PostgreSQL (SQLite is one process on one machine)")
    from bot.app import build_application, demo_messages, running
    from tests.drills.pgproxy import PostgresProxy

    url = db.url.render_as_string(hide_password=False)

    def process(database: Database, retry: float):
        return build_application(token=telegram.token, base_url=bot_api.base_url,
                                 base_file_url=bot_api.base_file_url, protocol=protocol, db=database, clock=clock,
                                 tick_seconds=None, rate_limit_retries=0, leader_retry_seconds=retry,
                                 messages=demo_messages(protocol))

    async with PostgresProxy.for_url(url) as proxy:
        cut_off, other = Database(proxy.url(url), schema=db.schema), Database(url, schema=db.schema)
        first, second = process(cut_off, 1.0), process(other, 0.05)
        try:
            async with running(first, poll_timeout=1), running(second, poll_timeout=1):
                assert first.updater.running and not second.updater.running
                proxy.cut()
                await until(lambda: second.runtime.scheduler.leadership.is_leader and second.updater.running)
                await until(lambda: not first.updater.running)
                assert proxy.is_cut and not first.runtime.scheduler.leadership.is_leader
                user = telegram.add_user(user_id=1001, first_name=NAME)
                await user.send_text("/help")
                await user.next_bot_event()
                await proxy.restore()
        finally:
            await cut_off.dispose()
            await other.dispose()
    refused = [(c.method, c.status) for c in telegram.rejected_calls]
    assert set(refused) <= {("getUpdates", 409)}, "only the moment both polled"
