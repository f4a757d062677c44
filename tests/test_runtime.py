"""The bot's runtime (bot/runtime.py) is one typed object that the Application holds and every
callback's context reaches: nothing of ours is kept in PTB's `bot_data` under a string key, not
at build, not when the Application starts, not while it leads, not in a handler."""

from __future__ import annotations

from bot.app import build_application, demo_messages
from bot.runtime import Runtime, TrialbotApplication, TrialbotContext
from sandbox.server import BotApiServer
from sandbox.world import TelegramWorld
from study.clock import ManualClock
from study.database import Database
from study.protocol import Protocol
from tests.trial import Trial


async def test_the_application_is_built_with_its_runtime(db: Database, clock: ManualClock, protocol: Protocol) -> None:
    app = build_application(token="1:x", base_url="http://127.0.0.1:9/bot", base_file_url="http://127.0.0.1:9/file/bot",
                            protocol=protocol, db=db, clock=clock, messages=demo_messages(protocol))
    assert isinstance(app, TrialbotApplication) and isinstance(app.runtime, Runtime)
    assert app.context_types.context is TrialbotContext
    assert app.runtime.services.db is db and app.runtime.timings.tick_seconds == 60
    assert app.runtime.prepared is None and app.runtime.leading is None  # both come with `running`
    assert app.bot_data == {}


async def test_a_running_bot_keeps_nothing_in_bot_data(db: Database, clock: ManualClock, protocol: Protocol,
                                                       telegram: TelegramWorld, bot_api: BotApiServer) -> None:
    async with Trial.running(db=db, clock=clock, protocol=protocol, world=telegram, server=bot_api) as trial:
        await trial.join()  # handlers answered: /start with the invite, then Agree
        await trial.tick()  # the scheduler's parts ran: the tick, the dispatcher
        app = trial.app
        assert app.runtime.scheduler.leadership.is_leader and app.runtime.leading is not None
        assert not app.runtime.leading.dispatcher_task.done()
        assert app.bot_data == {}, "a string key in bot_data: keep it in the runtime (bot/runtime.py)"
    assert app.runtime.leading is None, "what ran while this process led stopped with it"
    assert app.bot_data == {}
