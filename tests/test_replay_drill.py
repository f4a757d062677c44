"""The replay drill: a scripted participant day, every update delivered once, and the same day
with every update delivered twice (as Telegram does when it is not sure the bot took one), by
long polling and by webhook, on SQLite and PostgreSQL. Every table must come out identical.

What differs between two runs by nature is masked: random tokens (invite codes, the diary's
form tokens in callback data and entry keys, the audit chain's hashes over them) and Telegram's
callback query ids. Everything else, rows, counts, statuses, times, texts, must match.
"""

from __future__ import annotations

import contextlib
import re
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.app import Webhook
from sandbox.media import png
from sandbox.server import BotApiServer
from sandbox.world import TelegramWorld
from study.clock import ManualClock
from study.database import Database
from study.models import Base
from study.protocol import Protocol
from tests.conftest import START
from tests.databases import migrated
from tests.redelivery import HandledUpdates, deliver_again, watching
from tests.test_safety import press, say
from tests.test_webhook import free_port
from tests.trial import Trial

pytestmark = pytest.mark.timeout(300)

# Columns whose values are random by design, per table (or everywhere).
RANDOM_COLUMNS = {"code_hash", "idempotency_key", "hash", "prev_hash", "callback_query_id", "salt",
                  "content"}  # audit entries' content hashes: of records that hold random keys
_FORM = re.compile(r"(d:[a-z]+:)[A-Za-z0-9_-]{8}")  # a diary keyboard's random form token
_CODE = re.compile(r"(c:[ad]:)[A-Za-z0-9_-]+")  # the invite code in the consent buttons


def sibling_database(db: Database, tmp_path: Path, name: str) -> contextlib.AbstractAsyncContextManager[Database]:
    """A second empty database beside the test's: a SQLite file, or a PostgreSQL schema."""
    if db.is_sqlite:
        return migrated(f"sqlite+aiosqlite:///{tmp_path / f'{name}.db'}")
    return migrated(db.url.render_as_string(hide_password=False), prefix="replay")


def _plain(value: Any) -> Any:
    """A value with its random tokens masked, comparable across runs."""
    if isinstance(value, str):
        return _CODE.sub(r"\1<code>", _FORM.sub(r"\1<form>", value))
    if isinstance(value, dict):
        return {k: ("<random>" if k in RANDOM_COLUMNS or k == "key" else _plain(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return value


# Written by the handlers' replies and by the outbox's deliveries, which run side by side: the
# same records either way, but which of two comes first (so its id) is the scheduler's choice.
INTERLEAVED = {"sent_messages"}
# The send limiter's ring (when each slot last sent, by the database's clock): pacing, not a record.
NOT_COMPARED = {"send_slots", "send_chats", "send_replies"}


async def snapshot(db: Database) -> dict[str, list[dict]]:
    """Every table's rows, in id order, random columns masked (INTERLEAVED tables: sorted, without ids)."""
    tables: dict[str, list[dict]] = {}
    async with db.read() as session:
        for table in Base.metadata.sorted_tables:
            if table.name in NOT_COMPARED:
                continue
            order = list(table.primary_key.columns)
            rows = (await session.execute(select(table).order_by(*order))).mappings().all()
            plain = [{k: ("<random>" if k in RANDOM_COLUMNS else _plain(v)) for k, v in row.items()} for row in rows]
            if table.name in INTERLEAVED:
                plain = sorted(({k: v for k, v in row.items() if k != "id"} for row in plain), key=repr)
            tables[table.name] = plain
    return tables


async def participant_day(trial: Trial, watcher: HandledUpdates, *, twice: bool) -> list[int]:
    """The day: joining, the diary, /undo, a check-in with typed words, messages with and without
    warning signs, /urgent, a photo, a sticker, a reminder time changed; the team acknowledges
    and replies. After each step, with `twice`, every update of the step is delivered again."""
    coordinator = await trial.add_staff(5005, name="Dana")
    await trial.deliver()
    seen = first = len(trial.world.delivered_update_ids)

    async def step(action) -> None:
        nonlocal seen
        await action()
        await trial.deliver()
        if twice:
            for update_id in trial.world.delivered_update_ids[seen:]:
                await deliver_again(trial, watcher, update_id)
            await trial.deliver()
        seen = len(trial.world.delivered_update_ids)

    code = await trial.enroll("P001", wocbp=True)
    user = trial.world.add_user(user_id=1001, first_name="Pat", language_code="en")
    await step(lambda: say(user, f"/start {code}"))
    await step(lambda: press(user, "✅ Yes, I agree"))
    await step(lambda: press(user, "✅ I put it on now"))
    await step(lambda: say(user, "/today"))
    await step(lambda: say(user, "/log"))
    await step(lambda: press(user, "🕒 I put it on earlier"))
    await step(lambda: press(user, user.last_bot_message.button_labels[0]))
    await step(lambda: press(user, user.last_bot_message.button_labels[0]))
    await step(lambda: say(user, "/undo"))
    await step(lambda: say(user, "/symptoms"))
    await step(lambda: press(user, "3"))
    await step(lambda: say(user, "seven"))
    await step(lambda: say(user, "2"))
    await step(lambda: press(user, "Burning or stinging"))
    await step(lambda: press(user, "Moderate"))
    await step(lambda: say(user, "a cough since Monday"))
    await step(lambda: press(user, "Yes, I used another cream there"))
    await step(lambda: say(user, "hydrocortisone on my arms since Friday"))
    await step(lambda: press(user, "Fever or chills"))
    await step(lambda: press(user, "Next ➡️"))
    await step(lambda: press(user, "✅ Save my answers"))
    await step(lambda: say(user, "Can I come at 11 instead of 10 on Tuesday?"))
    await step(lambda: say(user, "no fever, no infection, everything is fine"))
    await step(lambda: say(user, "I have chest pains and I cant breathe well"))
    await step(lambda: say(user, "/urgent"))
    await step(lambda: press(user, "A swollen or painful leg"))
    await step(lambda: photo(user, "the patch is infected, pus everywhere"))
    await step(lambda: sticker(user))
    await step(lambda: say(user, "/times"))
    await step(lambda: press(user, user.last_bot_message.button_labels[0]))
    await step(lambda: press(user, "9:00\u202fAM"))
    first_alert = next(m for m in coordinator.bot_messages if "Safety alert" in (m.text or ""))
    await step(lambda: press_on(coordinator, "✅ Acknowledge", first_alert.message_id))
    await step(lambda: say(coordinator, "/reply P001 Yes, 11 on Tuesday is fine."))
    await step(lambda: say(user, "/stop"))
    await step(lambda: say(user, "/resume"))
    return trial.world.delivered_update_ids[first:]


async def press_on(user, label: str, message_id: int) -> None:
    before = len(user.callback_answers)
    await user.press(label, message_id=message_id)
    await user.wait_for(lambda u: len(u.callback_answers) > before)


async def photo(user, caption: str) -> None:
    """A photo whose caption needs the safety instructions: they are the reply."""
    before = len(user.bot_messages)
    await user.send_photo(png(), caption=caption)
    await user.wait_for(lambda u: len(u.bot_messages) > before)


async def sticker(user) -> None:
    before = len(user.bot_messages)
    await user.send_sticker()
    await user.wait_for(lambda u: len(u.bot_messages) > before)


async def run_day(db: Database, protocol: Protocol, *, webhook: bool, twice: bool) -> dict[str, list[dict]]:
    clock = ManualClock(START)
    world = TelegramWorld(now=clock.now)
    async with BotApiServer(world) as server:
        hook = None
        if webhook:
            port = free_port()
            hook = Webhook(url=f"http://127.0.0.1:{port}/telegram", secret_token="replay-drill-secret", port=port)
        with watching() as watcher:
            async with Trial.running(db=db, clock=clock, protocol=protocol, world=world, server=server,
                                     webhook=hook) as trial:
                day = await participant_day(trial, watcher, twice=twice)
        assert world.rejected_calls == [], "the bot made calls Telegram would reject"
        assert len(day) > 30 and all(watcher.times(u) == (2 if twice else 1) for u in day), watcher.counts
    return await snapshot(db)


@pytest.mark.parametrize("transport", ["polling", "webhook"])
async def test_every_update_delivered_twice_changes_nothing(db: Database, protocol: Protocol, tmp_path: Path,
                                                            transport: str) -> None:
    once = await run_day(db, protocol, webhook=transport == "webhook", twice=False)
    async with sibling_database(db, tmp_path, "twice") as other:
        twice = await run_day(other, protocol, webhook=transport == "webhook", twice=True)
    assert sum(len(rows) for rows in once.values()) > 100, "the day did something"
    for table in once:
        assert twice[table] == once[table], f"table {table} differs when every update comes twice"
