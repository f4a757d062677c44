"""The bot's runtime: one typed object, built once by the composition root (bot/app.py
`build_application`), through which handlers, jobs and the scheduler's start and stop reach
everything they use. Nothing of ours is kept in PTB's `bot_data`.

How it is reached:
- the Application is a `TrialbotApplication` (PTB's `application_class`), which holds the
  runtime from its construction: `app.runtime`;
- every callback's context is a `TrialbotContext` (PTB's `ContextTypes`): `context.runtime`;
  handlers read what they need of it through `bot.services.services(context)`.

What is set when:
- `services`, `timings`: at build, for the Application's life;
- `scheduler` (the tick, the outbox dispatcher, the broadcast progress, the leadership): each
  time the Application starts (bot/app.py `running` → `_prepare`), in every process;
- `polling`, `webhook_server`: how this process takes updates, also set by `running`;
- `leading`: what runs while this process is the scheduler leader, from `_start_leading` to
  `_stop_leading` (None otherwise).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from telegram.ext import Application, CallbackContext, ExtBot, JobQueue

from bot.services import Services

if TYPE_CHECKING:
    from telegram.ext import Job

    from bot.webhook import WebhookServer
    from scheduler.broadcast_progress import BroadcastProgress
    from scheduler.dispatcher import OutboxDispatcher
    from scheduler.leadership import AdvisoryLockLeadership, SoleProcess
    from scheduler.tick import Tick


@dataclass(frozen=True)
class Timings:
    """How often the scheduler's parts run (bot/app.py `build_application` says what each means)."""

    tick_seconds: float | None  # None: the caller runs the tick (the tests, after moving the clock)
    outbox_poll_seconds: float
    leader_retry_seconds: float
    ledger_refresh_seconds: float | None  # None: the approvals ledger is read once, at start


@dataclass(frozen=True)
class Scheduler:
    """The scheduler's parts: built in every process when the Application starts, run by the leader."""

    tick: Tick
    dispatcher: OutboxDispatcher
    broadcast_progress: BroadcastProgress
    leadership: SoleProcess | AdvisoryLockLeadership


@dataclass(frozen=True)
class Leading:
    """What runs while this process leads (bot/app.py `_start_leading`); stopped by `_stop_leading`."""

    stop: asyncio.Event  # set: the dispatcher finishes the message being sent, and claims no other
    dispatcher_task: asyncio.Task[None]
    tick_job: Job[Any] | None  # None when the tick is left to the caller (Timings.tick_seconds)


@dataclass
class Runtime:
    """Everything of the bot in one process; the module docstring says what is set when."""

    services: Services
    timings: Timings
    # Set by `running` (bot/app.py `_prepare`): read it as `scheduler`, which says so if it is not yet.
    prepared: Scheduler | None = None
    # How this process takes updates (set by `running`): the long-polling timeout in seconds, None on a webhook...
    polling: int | None = None
    # ...and the webhook's server, on a webhook.
    webhook_server: WebhookServer | None = None
    leading: Leading | None = None

    @property
    def scheduler(self) -> Scheduler:
        if self.prepared is None:
            raise RuntimeError("the scheduler's parts are built when the application starts (bot.app.running)")
        return self.prepared


class TrialbotContext(CallbackContext[ExtBot[None], dict[Any, Any], dict[Any, Any], dict[Any, Any]]):
    """The context every handler and job of the bot is called with (registered in bot/app.py)."""

    @property
    def runtime(self) -> Runtime:
        app = self.application
        if not isinstance(app, TrialbotApplication):
            raise TypeError(f"not the bot's application (bot.app.build_application): {type(app).__name__}")
        return app.runtime


class TrialbotApplication(
    Application[ExtBot[None], TrialbotContext, dict[Any, Any], dict[Any, Any], dict[Any, Any],
                JobQueue[TrialbotContext]]
):
    """PTB's Application, holding the bot's runtime. Built by ApplicationBuilder (bot/app.py)."""

    def __init__(self, *, runtime: Runtime, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.runtime = runtime
