"""The composition root: builds the Application, and registers every handler in one place.

Read top to bottom, `register_handlers` is the map of what the bot answers to. Order matters:
PTB tries handlers in order and runs the first that matches.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from urllib.parse import urlsplit
from datetime import timedelta

from telegram import BotCommand, Update
from telegram.constants import ParseMode
from telegram.ext import (
    AIORateLimiter,
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    Defaults,
    MessageHandler,
    filters,
)

from bot import callback_data as cb
from bot.handlers import (
    broadcast,
    checkin,
    conversation,
    diary,
    errors,
    info,
    onboarding,
    oversight,
    pause,
    pregnancy,
    staff_alerts,
    times,
    urgent,
    visits,
)
from bot.services import Services
from bot.update_order import OneChatAtATime
from messages.renderer import MessageCatalog
from scheduler.broadcast_progress import BroadcastProgress
from scheduler.dispatcher import OutboxDispatcher
from scheduler.tick import Tick
from study.clock import Clock
from study.database import Database
from study.protocol import Protocol
from study.strangers import WrongCodeLockout

# The participant's command menu, in the order Telegram shows it. Descriptions come from the
# `commands` template, like every other word participants see.
PARTICIPANT_COMMANDS = ("log", "today", "undo", "symptoms", "urgent", "times", "nextvisit", "mystats", "help", "contact",
                        "stop", "resume")
TICK_SECONDS = 60
# Telegram allows about 30 messages a second; at exactly 30 a burst at a second's edge draws the
# odd 429 (bench/broadcast.py saw 4 in 1,000). One under keeps a broadcast free of them.
OVERALL_MESSAGES_PER_SECOND = 29
# Updates handled at once, from different chats (bot/update_order.py); each chat's in order.
CONCURRENT_UPDATES = 32


def register_handlers(app: Application) -> None:
    app.add_handler(CommandHandler("start", onboarding.start))
    app.add_handler(CallbackQueryHandler(onboarding.consent_answer, pattern=cb.CONSENT_PATTERN))

    app.add_handler(CommandHandler("log", diary.show_menu))
    app.add_handler(CommandHandler("today", diary.today))
    app.add_handler(CommandHandler("undo", diary.undo))
    app.add_handler(CallbackQueryHandler(diary.applied_now, pattern=cb.NOW_PATTERN))
    app.add_handler(CallbackQueryHandler(diary.applied_earlier, pattern=cb.EARLIER_PATTERN))
    app.add_handler(CallbackQueryHandler(diary.missed, pattern=cb.MISSED_PATTERN))
    app.add_handler(CallbackQueryHandler(diary.today, pattern=cb.TODAY_PATTERN))
    app.add_handler(CallbackQueryHandler(diary.show_menu, pattern=cb.MENU_PATTERN))

    app.add_handler(CommandHandler("times", times.show_times))
    app.add_handler(CallbackQueryHandler(times.show_times, pattern=cb.TIMES_MENU_PATTERN))
    app.add_handler(CallbackQueryHandler(times.change_time, pattern=cb.TIMES_PATTERN))

    # Answers to visit and pregnancy-test reminders.
    app.add_handler(CallbackQueryHandler(visits.visit_answer, pattern=cb.VISIT_PATTERN))
    app.add_handler(CallbackQueryHandler(pregnancy.pregnancy_answer, pattern=cb.PREGNANCY_PATTERN))

    # Symptoms and safety: the check-in, /urgent at any moment.
    app.add_handler(CommandHandler("symptoms", checkin.symptoms))
    app.add_handler(CallbackQueryHandler(checkin.answer_button, pattern=cb.CHECKIN_PATTERN))
    app.add_handler(CallbackQueryHandler(checkin.control, pattern=cb.CHECKIN_CONTROL_PATTERN))
    app.add_handler(CommandHandler("urgent", urgent.urgent))
    app.add_handler(CallbackQueryHandler(urgent.urgent_report, pattern=cb.URGENT_PATTERN))

    app.add_handler(CommandHandler("stop", pause.stop))
    app.add_handler(CommandHandler("resume", pause.resume))
    app.add_handler(CommandHandler("nextvisit", oversight.nextvisit))
    app.add_handler(CommandHandler("mystats", oversight.mystats))
    app.add_handler(CommandHandler("help", info.help_command))
    app.add_handler(CommandHandler("contact", info.contact))

    # The study team: alerts and replies to participants.
    app.add_handler(CallbackQueryHandler(staff_alerts.acknowledge, pattern=cb.ACK_PATTERN))
    app.add_handler(CommandHandler("alerts", staff_alerts.list_open))
    app.add_handler(CommandHandler("reply", conversation.reply))
    app.add_handler(CommandHandler("participants", oversight.participants_list))
    app.add_handler(CommandHandler("visits", oversight.visits_week))
    app.add_handler(CommandHandler("adherence", oversight.adherence_plot))
    app.add_handler(CommandHandler("broadcast", broadcast.broadcast))
    app.add_handler(CallbackQueryHandler(broadcast.confirm_or_cancel, pattern=cb.BROADCAST_CONFIRM_PATTERN))
    app.add_handler(CallbackQueryHandler(broadcast.approve, pattern=cb.BROADCAST_APPROVE_PATTERN))
    app.add_handler(CallbackQueryHandler(broadcast.pick, pattern=cb.BROADCAST_PICK_PATTERN))

    # Whatever is left: unknown buttons and commands, then free text (to the study team, or the
    # typed answer to a check-in question), photos, stickers...
    app.add_handler(CallbackQueryHandler(diary.stale_button))
    app.add_handler(MessageHandler(filters.COMMAND, diary.free_text))
    app.add_handler(MessageHandler(filters.TEXT, conversation.participant_text))
    app.add_handler(MessageHandler(filters.ALL, diary.free_text))
    app.add_error_handler(errors.on_error)


def build_application(
    *,
    token: str,
    base_url: str,
    base_file_url: str,
    protocol: Protocol,
    db: Database,
    clock: Clock,
    messages: MessageCatalog | None = None,
    rate_limit_retries: int = 3,
    rate_limited: bool = True,
    tick_seconds: float | None = TICK_SECONDS,
    outbox_poll_seconds: float = 5.0,
) -> Application:
    """`tick_seconds=None` leaves planning to the caller (tests call the tick after moving the clock);
    the dispatcher delivers when woken, and looks on its own every `outbox_poll_seconds`."""
    enrolment = protocol.enrolment
    messages = messages or MessageCatalog(default_language=protocol.study.default_language)
    # Fail closed: no start while a template the bot may send is missing, unapproved or changed
    # (CatalogNotReady names each file). A catalog built with allow_drafts=True only needs every file.
    messages.check_ready(protocol.study.languages)
    services = Services(
        protocol=protocol,
        db=db,
        clock=clock,
        messages=messages,
        lockout=WrongCodeLockout(
            max_failures=enrolment.max_wrong_codes,
            window=timedelta(minutes=enrolment.wrong_code_window_minutes),
            lockout=timedelta(minutes=enrolment.lockout_minutes),
        ),
    )
    builder = (
        ApplicationBuilder()
        .token(token)
        .base_url(base_url)
        .base_file_url(base_file_url)
        .defaults(Defaults(parse_mode=ParseMode.HTML))
        .post_init(_post_init)
        .post_stop(_post_stop)
        .concurrent_updates(OneChatAtATime(CONCURRENT_UPDATES))
    )
    # AIORateLimiter keeps sends inside Telegram's limits; with retries=0 a 429 reaches the outbox
    # dispatcher, which reschedules on the injected clock (what the tests use).
    if rate_limited:  # off only in benchmarks that measure the bot's own work, not Telegram's pace
        builder = builder.rate_limiter(AIORateLimiter(overall_max_rate=OVERALL_MESSAGES_PER_SECOND,
                                                      max_retries=rate_limit_retries))
    app = builder.build()
    app.bot_data["services"] = services
    app.bot_data["tick_seconds"] = tick_seconds
    app.bot_data["outbox_poll_seconds"] = outbox_poll_seconds
    register_handlers(app)
    return app


async def _post_init(app: Application) -> None:
    svc: Services = app.bot_data["services"]
    for language in svc.protocol.study.languages:
        commands = [
            BotCommand(name, svc.messages.render_block("commands", language, f"command_{name}"))
            for name in PARTICIPANT_COMMANDS
        ]
        default = language == svc.protocol.study.default_language
        await app.bot.set_my_commands(commands, language_code=None if default else language)
    dispatcher = OutboxDispatcher(app.bot, svc.db, svc.messages, svc.clock, svc.protocol, svc.study_variables())
    progress = BroadcastProgress(app.bot, svc.db, svc.messages, svc.clock, svc.protocol, svc.study_variables())
    dispatcher.after_batch = progress.run_once
    app.bot_data["broadcast_progress"] = progress
    tick = Tick(svc.db, svc.protocol, svc.clock, svc.outbox_ready)
    app.bot_data["dispatcher"] = dispatcher
    app.bot_data["tick"] = tick
    await dispatcher.recover_in_flight()  # before anything in this process can deliver
    app.bot_data["dispatcher_task"] = asyncio.get_running_loop().create_task(
        dispatcher.run(svc.outbox_ready, idle_seconds=app.bot_data["outbox_poll_seconds"]), name="outbox-dispatcher"
    )
    # APScheduler (through PTB's JobQueue) is only the metronome: what is due is decided from the
    # database each time, so a missed or doubled tick changes nothing.
    if app.bot_data["tick_seconds"]:
        app.job_queue.run_repeating(_tick, interval=app.bot_data["tick_seconds"], first=1, name="planner-tick",
                                    job_kwargs={"coalesce": True, "max_instances": 1, "misfire_grace_time": None})


async def _tick(context) -> None:
    await context.application.bot_data["tick"].run_once()


async def _post_stop(app: Application) -> None:
    task = app.bot_data.pop("dispatcher_task", None)
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


ALLOWED_UPDATES = [Update.MESSAGE, Update.CALLBACK_QUERY]


@dataclass(frozen=True)
class Webhook:
    """Where Telegram should POST updates, where this process listens for them, and the secret
    Telegram sends back in `X-Telegram-Bot-Api-Secret-Token` (requests without it get 403)."""

    url: str
    secret_token: str
    listen: str = "127.0.0.1"
    port: int = 8443

    @property
    def path(self) -> str:
        return urlsplit(self.url).path.lstrip("/")


@contextlib.asynccontextmanager
async def running(app: Application, *, poll_timeout: float = 10, webhook: Webhook | None = None):
    """Run the bot inside an `async with`, by long polling or on a webhook (the demo and the
    tests use this; `trialbot run` uses PTB's own run_polling / run_webhook, which call the same
    post_init and post_stop)."""
    await app.initialize()
    await _post_init(app)
    await app.start()
    if webhook is None:
        await app.updater.start_polling(timeout=poll_timeout, allowed_updates=ALLOWED_UPDATES,
                                        drop_pending_updates=False)
    else:
        await app.updater.start_webhook(listen=webhook.listen, port=webhook.port, url_path=webhook.path,
                                        webhook_url=webhook.url, secret_token=webhook.secret_token,
                                        allowed_updates=ALLOWED_UPDATES)
    try:
        yield app
    finally:
        await app.updater.stop()
        await app.stop()
        await _post_stop(app)
        await app.shutdown()
