"""The send limiter (bot/send_limiter.py): no one-second window holds more than Telegram's 30
messages, replies go ahead of bulk messages, bulk messages are a second apart per chat, a 429
stops everyone; end to end, a burst of replies against the stand-in's strict window draws no 429,
each recipient's outbox messages arrive in order while several are under way, and two
Applications on one PostgreSQL database share one limit.

The limiter's own rules are tested on virtual time (a clock that moves only when the limiter
waits). The end-to-end tests pace real sends against the stand-in's real-time window: they take
a few seconds of wall time, as Telegram's limit does, and wait on conditions, never on sleeps."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import insert

from bot.app import build_application, demo_messages, running, send_limiter
from bot.send_limiter import (
    BULK,
    MESSAGES_PER_SECOND,
    RECENT_ANSWERS,
    SEND_WINDOW_SECONDS,
    LocalSlots,
    SendLimiter,
    SlotRing,
    VirtualTime,
)
from bot.send_slots import TAKE_AHEAD, SharedSlots
from sandbox.ratelimit import RateLimiter, RateLimits
from sandbox.server import BotApiServer
from sandbox.world import TelegramWorld
from study import outbox, staff
from study.clock import ManualClock
from study.database import Database
from study.models import Participant
from study.protocol import Protocol
from tests.conftest import START
from tests.trial import Trial

pytestmark = pytest.mark.timeout(120)


def busiest_window(times: list[float], period: float = 1.0) -> int:
    """The most of `times` inside any half-open window of `period` seconds."""
    times = sorted(times)
    most, first = 0, 0
    for last, at in enumerate(times):
        while times[first] <= at - period:
            first += 1
        most = max(most, last - first + 1)
    return most


def limiter_on(now: VirtualTime, **options) -> SendLimiter:
    return SendLimiter(LocalSlots(clock=now), clock=now, sleep=now.sleep, **options)


async def send(limiter: SendLimiter, now: VirtualTime, granted: list, *, bulk: bool = False, chat: int = 1,
               round_trip: float = 0.0, name: str = "") -> None:
    """One send through the limiter, answered `round_trip` later (on the virtual clock)."""
    token = await limiter.acquire(bulk=bulk, chat=chat)
    granted.append((now(), name or chat))
    limiter.answered(round_trip)
    await limiter._settle(token)


# --- the limiter's rules, on virtual time --------------------------------------------------------

@pytest.mark.parametrize("seed", range(5))
def test_the_ring_never_lets_more_than_the_limit_into_any_window(seed: int) -> None:
    rng = random.Random(seed)
    ring, now, grants, in_flight = SlotRing(MESSAGES_PER_SECOND, SEND_WINDOW_SECONDS), 0.0, [], []
    for _ in range(3000):
        now += rng.choice([0.0, 0.0, 0.001, 0.01, 0.05, 0.3])
        if in_flight and rng.random() < 0.5:  # an answer: counted between the grant and now
            slot, taken = in_flight.pop(rng.randrange(len(in_flight)))
            ring.settle(slot, max(taken, now - rng.uniform(0, 0.2)))
        slot, wait = ring.take(now)
        if slot is None:
            assert wait > 0
            continue
        grants.append(now)
        in_flight.append((slot, now))
    assert len(grants) > 300
    assert busiest_window(grants, SEND_WINDOW_SECONDS) <= MESSAGES_PER_SECOND


async def test_the_limiter_never_lets_more_than_the_limit_into_any_second() -> None:
    now = VirtualTime(0.0)
    limiter, granted = limiter_on(now), []
    rng = random.Random(8)
    try:
        await asyncio.gather(*(send(limiter, now, granted, bulk=rng.random() < 0.5, chat=n, round_trip=0.05)
                               for n in range(200)))
    finally:
        await limiter.shutdown()
    times = [at for at, _ in granted]
    assert len(times) == 200
    assert busiest_window(times) <= MESSAGES_PER_SECOND
    assert max(times) < 200 / MESSAGES_PER_SECOND * SEND_WINDOW_SECONDS + 1, "and no slower than the limit"


async def test_replies_go_ahead_of_bulk_messages_waiting_with_them() -> None:
    now = VirtualTime(0.0)
    limiter, granted = limiter_on(now), []
    try:
        await asyncio.gather(*[send(limiter, now, granted, bulk=True, chat=n, name=f"bulk {n}") for n in range(60)],
                             *[send(limiter, now, granted, chat=1000 + n, name=f"reply {n}") for n in range(10)])
    finally:
        await limiter.shutdown()
    order = [name for _, name in granted]
    assert order[:10] == [f"reply {n}" for n in range(10)], "the replies first, in the order they came"
    assert order[10:] == [f"bulk {n}" for n in range(60)], "then the bulk messages, in theirs"


async def test_bulk_messages_to_one_chat_go_a_second_apart_without_holding_up_other_chats() -> None:
    now = VirtualTime(0.0)
    limiter, granted = limiter_on(now), []
    try:
        await asyncio.gather(*[send(limiter, now, granted, bulk=True, chat=7, name=f"seven {n}") for n in range(3)],
                             *[send(limiter, now, granted, bulk=True, chat=100 + n) for n in range(20)])
    finally:
        await limiter.shutdown()
    sevens = [at for at, name in granted if str(name).startswith("seven")]
    assert [round(b - a, 3) >= 1.0 for a, b in itertools.pairwise(sevens)] == [True, True]
    assert all(at == 0.0 for at, name in granted if isinstance(name, int)), "the other chats went at once"


def test_a_round_trip_once_quicker_does_not_hold_up_the_slots_for_good() -> None:
    # A slot counts its send from the answer less the network's share of a round trip. Learnt
    # as the quickest ever seen, one quick answer at a quiet start (2 ms) would make every later
    # slot wait out the rest of each 100 ms round trip: a tenth of the rate, for good.
    limiter = SendLimiter(LocalSlots())
    for round_trip in [0.002] * 60 + [0.100] * RECENT_ANSWERS:
        limiter.answered(round_trip)
    assert limiter.lag == pytest.approx(0.100)
    limiter.answered(0.080)
    assert limiter.lag == pytest.approx(0.080), "and a quicker one counts at once"


async def test_a_429_holds_every_send_for_its_retry_after() -> None:
    now = VirtualTime(0.0)
    limiter, granted = limiter_on(now), []
    try:
        await send(limiter, now, granted, chat=1)
        await limiter.slots.hold(5.0)
        await asyncio.gather(*(send(limiter, now, granted, chat=n) for n in range(2, 5)))
    finally:
        await limiter.shutdown()
    assert [at >= 5.0 for at, _ in granted] == [False, True, True, True]


# --- end to end: the real Application against the stand-in's strict window ---------------------

STRICT = RateLimits(global_per_second=MESSAGES_PER_SECOND, per_chat_per_second=1.0, strict_window=True)


async def participants(db: Database, count: int, first_chat: int = 3000) -> None:
    """Active participants written straight into the database (as the benches do)."""
    joined = START - timedelta(days=1)
    async with db.transaction() as session:
        await session.execute(insert(Participant), [
            {"study_id": f"L{n:03d}", "timezone": "America/New_York", "language": "en", "wocbp": False,
             "reminder_times": "08:00,20:00", "status": "active", "telegram_user_id": first_chat + n,
             "telegram_chat_id": first_chat + n, "enrolled_at": joined, "consented_at": joined,
             "active_since": joined, "next_plan_at": START + timedelta(days=30)}
            for n in range(count)])


def opened(world: TelegramWorld, count: int, first_chat: int = 3000) -> list:
    users = [world.add_user(user_id=first_chat + n, first_name="P") for n in range(count)]
    for user in users:
        user.started = True  # as once they have written to the bot
    return users


def refused(world: TelegramWorld) -> list:
    return [c for c in world.calls if c.status == 429]


async def test_a_burst_of_replies_against_the_strict_window_draws_no_429(
        db: Database, clock: ManualClock, protocol: Protocol) -> None:
    world = TelegramWorld(now=clock.now, rate_limits=STRICT)
    await participants(db, 40)
    users = opened(world, 40)
    async with BotApiServer(world) as server, Trial.running(db=db, clock=clock, protocol=protocol, world=world,
                                                            server=server, limiter=send_limiter(db)):
        for _ in range(2):
            for user in users:
                await user.send_text("/today")
        for user in users:
            await user.wait_for(lambda u: len(u.bot_messages) == 2, timeout=60)
    sends = [c for c in world.calls if c.method == "sendMessage"]
    assert len(sends) == 80 and refused(world) == [], [c.description for c in refused(world)]


async def test_each_recipients_outbox_messages_arrive_in_order_while_several_are_under_way(trial: Trial) -> None:
    team = [await trial.add_staff(5000 + n, name=f"S{n}") for n in range(3)]
    async with trial.db.transaction() as session:
        members = [await staff.by_telegram_id(session, m.user_id) for m in team]
        for number in range(12):
            for member in members:
                await outbox.enqueue(session, dedup_key=f"order:{member.id}:{number}", template_id="staff_unreachable",
                                     variables={"study_id": f"Q{number:03d}"}, now=trial.clock.now(),
                                     staff_id=member.id)
    under_way, most = 0, 0
    dispatcher = trial.app.runtime.scheduler.dispatcher
    deliver = dispatcher._deliver

    async def counted(row_id: int, **kwargs) -> bool:  # (our own code: how many are under way at once)
        nonlocal under_way, most
        under_way += 1
        most = max(most, under_way)
        try:
            return await deliver(row_id, **kwargs)
        finally:
            under_way -= 1

    dispatcher._deliver = counted
    try:
        assert await trial.deliver() == 36
    finally:
        dispatcher._deliver = deliver
    for member in team:
        got = [m.text for m in member.bot_messages if "cannot be reached" in (m.text or "")]
        assert [text.split()[1] for text in got] == [f"Q{n:03d}" for n in range(12)]
    assert most == 3, "one per recipient at a time, the three recipients side by side"


@contextlib.asynccontextmanager
async def second_application(trial_db: Database, world: TelegramWorld, server: BotApiServer, clock: ManualClock,
                             protocol: Protocol, virtual_time: VirtualTime | None = None) -> AsyncIterator:
    """Another process of the same bot: its own pool, its own Application, the same database."""
    db = Database(trial_db.url.render_as_string(hide_password=False), schema=trial_db.schema)
    app = build_application(token=world.token, base_url=server.base_url, base_file_url=server.base_file_url,
                            protocol=protocol, db=db, clock=clock, tick_seconds=None,
                            messages=demo_messages(protocol),
                            limiter=send_limiter(db, virtual_time=virtual_time) if virtual_time else None)
    await app.initialize()
    try:
        yield app
    finally:
        await app.shutdown()
        await db.dispose()


async def test_two_applications_on_postgresql_share_one_limit(db: Database, clock: ManualClock,
                                                               protocol: Protocol) -> None:
    if db.is_sqlite:
        pytest.skip("one process on SQLite: the ring is in its memory")
    world = TelegramWorld(now=clock.now)
    users = opened(world, 80)
    async with BotApiServer(world) as server:
        first = build_application(token=world.token, base_url=server.base_url, base_file_url=server.base_file_url,
                                  protocol=protocol, db=db, clock=clock, tick_seconds=None,
                                  messages=demo_messages(protocol))
        async with running(first, poll_timeout=1), second_application(db, world, server, clock, protocol) as second:
            world.rate_limiter = RateLimiter(STRICT)  # from here on: the set-up is done
            calls = len(world.calls)
            await asyncio.gather(*(app.bot.send_message(user.chat_id, "hello") for app, user in
                                   zip([first, second] * 40, users, strict=True)))
    sends = [c for c in world.calls[calls:] if c.method == "sendMessage"]
    assert len(sends) == 80 and refused(world) == [], "paced together: each alone would have sent 30 at once"
    assert isinstance(first.bot.rate_limiter, SendLimiter)
    assert isinstance(first.bot.rate_limiter.slots, SharedSlots)


async def test_two_applications_on_postgresql_pace_one_chat_together(db: Database, clock: ManualClock,
                                                                      protocol: Protocol) -> None:
    # One participant's answers may come from either process (updates are shared among them);
    # Telegram paces the chat over both. Each alone would send its own burst of three at once.
    if db.is_sqlite:
        pytest.skip("one process on SQLite: the ring is in its memory")
    world = TelegramWorld(now=clock.now)
    [user] = opened(world, 1)
    now = VirtualTime()  # the database's clock for both, and Telegram's: no second really passes
    async with BotApiServer(world) as server:
        first = build_application(token=world.token, base_url=server.base_url, base_file_url=server.base_file_url,
                                  protocol=protocol, db=db, clock=clock, tick_seconds=None,
                                  messages=demo_messages(protocol), limiter=send_limiter(db, virtual_time=now))
        async with running(first, poll_timeout=1), \
                second_application(db, world, server, clock, protocol, virtual_time=now) as second:
            world.rate_limiter = RateLimiter(STRICT, clock=now)  # from here on: the set-up is done
            calls = len(world.calls)
            await asyncio.gather(*(app.bot.send_message(user.chat_id, f"answer {n}")
                                   for n, app in enumerate([first, second] * 3)))
            bulk = await asyncio.gather(*(app.bot.send_message(user.chat_id, f"notice {n}", rate_limit_args=BULK)
                                          for n, app in enumerate([first, second])))
    sends = [c for c in world.calls[calls:] if c.method == "sendMessage"]
    assert len(sends) == 8 and refused(world) == [], [c.description for c in refused(world)]
    assert len(bulk) == 2


async def test_a_reply_waiting_in_one_process_goes_ahead_of_bulk_messages_of_another(db: Database) -> None:
    # The scheduler leader's broadcast fills every slot; a participant's answer in the other
    # process finds none free. The next slot to free is the answer's, not the broadcast's.
    if db.is_sqlite:
        pytest.skip("one process on SQLite: priority is the limiter's own")
    now = VirtualTime(1000.0)
    leader = SharedSlots(db, limit=MESSAGES_PER_SECOND, period=SEND_WINDOW_SECONDS, clock=now)
    other = SharedSlots(db, limit=MESSAGES_PER_SECOND, period=SEND_WINDOW_SECONDS, clock=now)
    try:
        for chat in range(MESSAGES_PER_SECOND):
            taken = await leader.take(str(7000 + chat), gap=1.0, bulk=True)
            assert taken.token is not None
            await leader.settle(taken.token, 0.0)
        now.now += 0.5
        refused = await other.take("8000")
        # (It may ask again a moment before the slot frees: see the next test.)
        assert refused.token is None and refused.wait == pytest.approx(SEND_WINDOW_SECONDS - 0.5 - TAKE_AHEAD, abs=0.001)
        now.now += refused.wait + TAKE_AHEAD  # the first slot is free again
        behind = await leader.take("7100", gap=1.0, bulk=True)
        assert behind.token is None and behind.wait > 0, "the broadcast waits for the answer"
        answer = await other.take("8000")
        assert answer.token is not None
        now.now += behind.wait
        assert (await leader.take("7100", gap=1.0, bulk=True)).token is not None, "and then goes on"
    finally:
        await leader.close()
        await other.close()


async def test_a_shared_slot_taken_before_it_frees_is_used_only_once_it_has(db: Database) -> None:
    # The statement's round trip is made while the slot is still busy; the send waits out the rest.
    if db.is_sqlite:
        pytest.skip("the shared ring is PostgreSQL's")
    now = VirtualTime(2000.0)
    slots = SharedSlots(db, limit=2, period=SEND_WINDOW_SECONDS, clock=now)
    limiter = SendLimiter(slots, clock=now, sleep=now.sleep)
    try:
        for chat in ("1", "2"):
            await slots.settle((await slots.take(chat)).token, 0.0)
        started = now()
        now.now += SEND_WINDOW_SECONDS - TAKE_AHEAD * 2  # not yet within reach
        assert (await slots.take("3")).token is None
        now.now += TAKE_AHEAD  # frees in TAKE_AHEAD: taken now, with the wait
        early = await slots.take("3")
        assert early.token is not None and early.wait == pytest.approx(TAKE_AHEAD, abs=1e-6)
        await slots.settle(early.token, 0.0)
        assert slots_settled_at(early) == pytest.approx(started + SEND_WINDOW_SECONDS, abs=1e-6)
        granted_at = []

        async def one() -> None:
            token = await limiter.acquire(chat="4")
            granted_at.append(now())
            await slots.settle(token, 0.0)

        await asyncio.wait_for(one(), 5)
        # The other slot frees with the first; the send goes no sooner.
        assert granted_at[0] >= started + SEND_WINDOW_SECONDS - 1e-6
    finally:
        await limiter.shutdown()


def slots_settled_at(taken) -> float:
    """The moment a shared slot's send counts from (its token: where, (slot, moment))."""
    return taken.token[1][1]
