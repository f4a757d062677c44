"""The composition root: builds the Application, and registers every handler in one place.

Read top to bottom, `register_handlers` is the map of what the bot answers to. Order matters:
PTB tries handlers in order and runs the first that matches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

from telegram import BotCommand, Update
from telegram.constants import ParseMode
from telegram.error import Conflict, TelegramError
from telegram.ext import (
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    Defaults,
    JobQueue,
    MessageHandler,
    TypeHandler,
    filters,
)

from bot import callback_data as cb
from bot.handlers import (
    broadcast,
    checkin,
    conversation,
    corrections,
    diary,
    enrolment,
    errors,
    gate,
    info,
    manage,
    onboarding,
    oversight,
    pause,
    pregnancy,
    staff_alerts,
    team,
    times,
    treatment,
    urgent,
    visits,
)
from bot.runtime import Leading, Runtime, Scheduler, Timings, TrialbotApplication, TrialbotContext
from bot.send_limiter import (
    MESSAGES_PER_SECOND,
    SEND_WINDOW_SECONDS,
    LocalSlots,
    SendLimiter,
    SlotStore,
    VirtualTime,
)
from bot.send_slots import SharedSlots
from bot.services import Services
from bot.update_order import OneChatAtATime
from bot.webhook import WebhookServer
from messages.catalog import PARTICIPANT_COMMANDS
from messages.renderer import MessageCatalog, demo_catalog
from scheduler.broadcast_progress import BroadcastProgress
from scheduler.dispatcher import OutboxDispatcher
from scheduler.leadership import leadership_for
from scheduler.tick import Tick
from study import approvals
from study.clock import Clock
from study.database import Database
from study.protocol import Protocol
from study.strangers import WrongCodeLimit, WrongCodeRules

TICK_SECONDS = 60
# What a participant may send the study team as it is (bot/handlers/conversation.py MEDIA_KINDS).
PARTICIPANT_MEDIA = (filters.PHOTO | filters.Document.ALL | filters.VOICE | filters.AUDIO | filters.VIDEO
                     | filters.VIDEO_NOTE | filters.ANIMATION)
# Updates handled at once, from different chats (bot/update_order.py); each chat's in order.
CONCURRENT_UPDATES = 32
# A leader stepping down lets the message being sent finish (so it is recorded, not repeated by
# the successor); a send still under way after this long is abandoned.
DISPATCHER_STOP_SECONDS = 30
log = logging.getLogger(__name__)


def register_handlers(app: TrialbotApplication) -> None:
    # Before any handler: updates of a kind the bot does not handle (business messages, channel
    # posts) and buttons pressed on another chat's message go no further (bot/handlers/gate.py).
    # (Group -2: in a group, PTB runs only the first handler that matches, and this one matches all.)
    app.add_handler(TypeHandler(Update, gate.screen), group=-2)
    # A message edited after it was sent: its new words go to the study team, whatever they say
    # (first, so that an edited command or answer is never carried out a second time).
    app.add_handler(MessageHandler(filters.UpdateType.EDITED_MESSAGE, conversation.participant_edited))
    # Before everything else (group -1): words a staff member types while a request of theirs
    # asks for a date or a reason answer it; any other text goes on to the handlers below.
    app.add_handler(MessageHandler(filters.UpdateType.MESSAGE & filters.TEXT & ~filters.COMMAND,
                                   manage.typed_answer), group=-1)
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
    app.add_handler(CallbackQueryHandler(pregnancy.contraception_answer, pattern=cb.CONTRACEPTION_PATTERN))

    # Symptoms and safety: the check-in, /urgent at any moment.
    app.add_handler(CommandHandler("symptoms", checkin.symptoms))
    app.add_handler(CallbackQueryHandler(checkin.answer_button, pattern=cb.CHECKIN_PATTERN))
    app.add_handler(CallbackQueryHandler(checkin.control, pattern=cb.CHECKIN_CONTROL_PATTERN))
    app.add_handler(CommandHandler("urgent", urgent.urgent))
    app.add_handler(CallbackQueryHandler(urgent.urgent_report, pattern=cb.URGENT_PATTERN))

    app.add_handler(CommandHandler("stop", pause.stop))
    app.add_handler(CommandHandler("resume", treatment.resume_command))  # a participant's, or the investigator's
    app.add_handler(CommandHandler("nextvisit", oversight.nextvisit))
    app.add_handler(CommandHandler("mystats", oversight.mystats))
    app.add_handler(CommandHandler("help", manage.help_command))  # a participant's, or a staff member's
    app.add_handler(CommandHandler("contact", info.contact))

    # The study team: alerts and replies to participants.
    app.add_handler(CallbackQueryHandler(staff_alerts.acknowledge, pattern=cb.ACK_PATTERN))
    app.add_handler(CommandHandler("alerts", staff_alerts.list_open))
    app.add_handler(CommandHandler("reply", conversation.reply))
    app.add_handler(CommandHandler("participants", oversight.participants_list))
    app.add_handler(CommandHandler("visits", manage.visits_command))  # the week's, or one participant's
    app.add_handler(CommandHandler("adherence", oversight.adherence_plot))
    app.add_handler(CommandHandler("treatment", treatment.show_course))
    app.add_handler(CommandHandler("interrupt", treatment.interrupt))
    app.add_handler(CommandHandler("offtreatment", treatment.off_treatment))
    app.add_handler(CommandHandler("correct", corrections.correct))
    # A participant's record from Telegram: each change asked for, shown back, then confirmed.
    app.add_handler(CallbackQueryHandler(manage.visits_button, pattern=cb.VISITS_BUTTON_PATTERN))
    app.add_handler(CallbackQueryHandler(manage.choose_visit, pattern=cb.REQUEST_VISIT_PATTERN))
    app.add_handler(CallbackQueryHandler(manage.decide, pattern=cb.REQUEST_DECIDE_PATTERN))
    app.add_handler(CommandHandler("pause", manage.pause_command))
    app.add_handler(CommandHandler("end", manage.end_command))
    app.add_handler(CommandHandler("timezone", manage.timezone_command))
    app.add_handler(CommandHandler("deliveries", manage.deliveries_command))
    app.add_handler(CommandHandler("broadcast", broadcast.broadcast))
    app.add_handler(CallbackQueryHandler(broadcast.confirm_or_cancel, pattern=cb.BROADCAST_CONFIRM_PATTERN))
    app.add_handler(CallbackQueryHandler(broadcast.approve, pattern=cb.BROADCAST_APPROVE_PATTERN))
    app.add_handler(CallbackQueryHandler(broadcast.withdraw, pattern=cb.BROADCAST_WITHDRAW_PATTERN))
    app.add_handler(CallbackQueryHandler(broadcast.pick, pattern=cb.BROADCAST_PICK_PATTERN))
    # The study team itself (the investigator): /staff, its buttons, a contact card to add someone.
    app.add_handler(CommandHandler("staff", team.staff_command))
    app.add_handler(CallbackQueryHandler(team.button, pattern=cb.STAFF_PATTERN))
    # Enrolment at the consent visit: /enroll one question at a time, /invite (and their buttons).
    app.add_handler(CommandHandler("enroll", enrolment.enroll))
    app.add_handler(CallbackQueryHandler(enrolment.answer, pattern=cb.ENROL_PATTERN))
    app.add_handler(CommandHandler("invite", enrolment.invite))
    app.add_handler(CallbackQueryHandler(enrolment.invite_answer, pattern=cb.INVITE_PATTERN))

    # Whatever is left: unknown buttons and commands; then what participants send: text (to the
    # study team, or the typed answer to a check-in question), media (to the study team as it
    # is), stickers (kindly asked for words), anything else (what the bot understands).
    app.add_handler(CallbackQueryHandler(diary.stale_button))
    app.add_handler(MessageHandler(filters.COMMAND, diary.free_text))
    # Text: a staff member's answer to /enroll's question; anyone else's, conversation.participant_text.
    app.add_handler(MessageHandler(filters.TEXT, enrolment.typed))
    app.add_handler(MessageHandler(PARTICIPANT_MEDIA, conversation.participant_media))
    app.add_handler(MessageHandler(filters.Sticker.ALL, conversation.sticker))
    app.add_handler(MessageHandler(filters.CONTACT, team.contact))
    app.add_handler(MessageHandler(filters.ALL, diary.free_text))
    app.add_error_handler(errors.on_error)


def demo_messages(protocol: Protocol) -> MessageCatalog:
    """The study's templates under the demo ledger (messages.renderer.demo_catalog): the web demo,
    the benches and the tests. Never what `trialbot run` sends by."""
    return demo_catalog(protocol.template_globals(), protocol.study.languages,
                        default_language=protocol.study.default_language)


def build_application(
    *,
    token: str,
    base_url: str,
    base_file_url: str,
    protocol: Protocol,
    db: Database,
    clock: Clock,
    messages: MessageCatalog,
    rate_limit_retries: int = 3,
    rate_limited: bool = True,
    tick_seconds: float | None = TICK_SECONDS,
    outbox_poll_seconds: float = 5.0,
    leader_retry_seconds: float = 5.0,
    ledger_refresh_seconds: float | None = None,
    request_timeout: float | None = None,
    limiter: SendLimiter | None = None,
) -> TrialbotApplication:
    """`tick_seconds=None` leaves planning to the caller (tests call the tick after moving the clock);
    the dispatcher delivers when woken, and looks on its own every `outbox_poll_seconds`; a
    process that is not the scheduler leader tries to become it every `leader_retry_seconds`.
    `ledger_refresh_seconds` (trialbot run) re-reads the approvals ledger from the database that
    often, in every process, so an approval made with `trialbot messages approve` takes effect
    without a restart. `request_timeout` (seconds) replaces PTB's 5 s waits for the Bot API (fault drills shorten it).
    `limiter`: the send limiter instead of `send_limiter(db)` (the tests' one runs on virtual time).
    Run the result with `running` (which starts and stops what PTB's run_polling would)."""
    enrolment = protocol.enrolment
    # Fail closed: no start while a template the bot may send is missing, unapproved or changed
    # (CatalogNotReady names each one). `messages` says by which approvals: the database's ledger
    # (trialbot run) or the demo ledger (the demo, the tests: messages.renderer.demo_catalog).
    messages.check_ready(protocol.study.languages)
    runtime = Runtime(services=Services(
        protocol=protocol,
        db=db,
        clock=clock,
        messages=messages,
        lockout=WrongCodeLimit(WrongCodeRules(
            per_chat=enrolment.max_wrong_codes,
            all_chats=enrolment.max_wrong_codes_global,
            window=timedelta(minutes=enrolment.wrong_code_window_minutes),
            lockout=timedelta(minutes=enrolment.lockout_minutes),
        )),
    ), timings=Timings(
        tick_seconds=tick_seconds,
        outbox_poll_seconds=outbox_poll_seconds,
        leader_retry_seconds=leader_retry_seconds,
        ledger_refresh_seconds=ledger_refresh_seconds,
    ))
    # The runtime goes into the Application as it is made, and every callback's context reaches
    # it (bot/runtime.py): nothing of ours is kept in `bot_data`.
    builder = (
        ApplicationBuilder()
        .application_class(TrialbotApplication, kwargs={"runtime": runtime})
        .context_types(ContextTypes(context=TrialbotContext))
        .token(token)
        .base_url(base_url)
        .base_file_url(base_file_url)
        .defaults(Defaults(parse_mode=ParseMode.HTML))
        .concurrent_updates(OneChatAtATime(CONCURRENT_UPDATES))
    )
    # One limiter for every send of this bot (bot/send_limiter.py): replies, edits, the outbox;
    # on PostgreSQL shared with the bot's other processes. With retries=0 a 429 reaches the
    # outbox dispatcher, which reschedules on the injected clock (what the tests use).
    if rate_limited:  # off only in benchmarks that measure the bot's own work, not Telegram's pace
        # ApplicationBuilder() is typed for a limiter without per-call arguments; ours takes a Pace
        # (bot/send_limiter.py), which the dispatcher passes as rate_limit_args.
        builder = builder.rate_limiter(limiter or send_limiter(db, max_retries=rate_limit_retries))  # type: ignore[arg-type]
    if request_timeout is not None:
        for setting in ("connect_timeout", "read_timeout", "write_timeout", "pool_timeout",
                        "get_updates_connect_timeout", "get_updates_read_timeout", "get_updates_write_timeout"):
            builder = getattr(builder, setting)(request_timeout)
    app = builder.build()
    if not isinstance(app, TrialbotApplication):  # PTB's builder is typed for its own Application class
        raise TypeError(f"ApplicationBuilder made a {type(app).__name__}, not a TrialbotApplication")
    register_handlers(app)
    return app


def send_limiter(db: Database, *, max_retries: int = 0, per_second: int = MESSAGES_PER_SECOND,
                 virtual_time: VirtualTime | None = None) -> SendLimiter:
    """The bot's one limiter: its ring in the database on PostgreSQL (every process shares it),
    in memory on SQLite (one process). `virtual_time`: the tests' clock, which moves only when
    the limiter waits (no test waits on the wall clock for a second to pass)."""
    clock: Callable[[], float] = virtual_time or time.monotonic
    sleep = virtual_time.sleep if virtual_time is not None else asyncio.sleep
    slots: SlotStore
    if db.is_sqlite:
        slots = LocalSlots(per_second, SEND_WINDOW_SECONDS, clock=clock)
    else:
        slots = SharedSlots(db, limit=per_second, period=SEND_WINDOW_SECONDS, clock=virtual_time)
    return SendLimiter(slots, max_retries=max_retries, clock=clock, sleep=sleep)


async def refresh_ledger(svc: Services) -> bool:
    """Re-read the approvals ledger if an approval was recorded since it was read; True if it was."""
    async with svc.db.transaction() as session:
        if await approvals.head(session) == svc.messages.ledger.head:
            return False
        ledger = await approvals.load(session)
    svc.messages.use_ledger(ledger)
    log.info("message approvals re-read: %d template versions approved", len(ledger.all_current()))
    return True


async def _refresh_ledger(context: TrialbotContext) -> None:
    try:
        await refresh_ledger(context.runtime.services)
    except Exception as exc:  # noqa: BLE001 - the database may be away; the approvals read before stand
        log.warning("could not re-read the message approvals (%s); the ones read before stand", type(exc).__name__)


def _jobs(app: TrialbotApplication) -> JobQueue[TrialbotContext]:
    if app.job_queue is None:  # PTB makes one when its job-queue extra is installed (pyproject.toml)
        raise RuntimeError("PTB's job queue is missing: install python-telegram-bot[job-queue]")
    return app.job_queue


async def _prepare(app: TrialbotApplication) -> None:
    """The bot's command menu, and the scheduler's parts (built in every process; run by the leader)."""
    runtime = app.runtime
    svc, timings = runtime.services, runtime.timings
    if timings.ledger_refresh_seconds:
        _jobs(app).run_repeating(_refresh_ledger, interval=timings.ledger_refresh_seconds,
                                 first=timings.ledger_refresh_seconds, name="approvals-ledger",
                                 job_kwargs={"coalesce": True, "max_instances": 1})
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
    runtime.prepared = Scheduler(
        tick=Tick(svc.db, svc.protocol, svc.clock, svc.outbox_ready),
        dispatcher=dispatcher,
        broadcast_progress=progress,
        leadership=leadership_for(svc.db, on_gain=lambda: _start_leading(app), on_loss=lambda: _stop_leading(app),
                                  on_other_leader=lambda: _stop_polling(app),
                                  retry_seconds=timings.leader_retry_seconds),
    )


async def _start_leading(app: TrialbotApplication) -> None:
    """This process became the scheduler leader (scheduler/leadership.py): plan, deliver, and, in
    polling mode, fetch updates. Every process answers the updates it is given."""
    runtime = app.runtime
    svc, timings, scheduler = runtime.services, runtime.timings, runtime.scheduler
    # The lock is ours, so no other process is delivering: what is marked in flight was left by a
    # leader that is gone (or cut off; see recover_in_flight for the one message that can repeat).
    await scheduler.dispatcher.recover_in_flight()
    stop = asyncio.Event()
    dispatcher_task = asyncio.get_running_loop().create_task(
        scheduler.dispatcher.run(svc.outbox_ready, idle_seconds=timings.outbox_poll_seconds, stop=stop,
                                 fence=scheduler.leadership.fence()),
        name="outbox-dispatcher")
    # APScheduler (through PTB's JobQueue) is only the metronome: what is due is decided from the
    # database each time, so a missed or doubled tick (even one by a leader that is stepping down)
    # changes nothing.
    tick_job = None
    if timings.tick_seconds:
        tick_job = _jobs(app).run_repeating(
            _tick, interval=timings.tick_seconds, first=1, name="planner-tick",
            job_kwargs={"coalesce": True, "max_instances": 1, "misfire_grace_time": None})
    runtime.leading = Leading(stop=stop, dispatcher_task=dispatcher_task, tick_job=tick_job)
    # Telegram answers only one getUpdates caller at a time (409 to the others): in polling mode
    # the leader polls, and the other processes stand by (a leader that stepped down polls on
    # until it sees another lead: see _stop_leading).
    polling = runtime.polling
    if polling is not None and not app.updater.running:
        await app.updater.start_polling(timeout=polling, allowed_updates=ALLOWED_UPDATES,
                                        drop_pending_updates=False,
                                        error_callback=lambda error: _polling_failed(app, error))


def _polling_failed(app: TrialbotApplication, error: TelegramError) -> None:
    """What getUpdates raised (PTB's polling loop tries again by itself). A 409 Conflict while
    this process does not lead means another process polls now: the new leader, seen by Telegram
    before this process could see it (cut off from the database, it cannot), so this one stops.
    Anything else is one line in the log, not PTB's traceback per failed poll."""
    if isinstance(error, Conflict) and not app.runtime.scheduler.leadership.is_leader:
        app.create_task(_stop_polling(app), name="stop-polling")
        return
    log.warning("polling for updates failed (%s); trying again", type(error).__name__)


class _LastPollAtShutdown(logging.Filter):
    """Stopping, PTB's updater calls getUpdates once more to confirm the updates it fetched, and
    logs a traceback when Telegram is out of reach then. One line says it: whatever was not
    confirmed comes again at the next start and is handled once (bot/exactly_once.py)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and "get_updates` one more time" in str(record.msg):
            error = record.exc_info[1]
            record.msg = ("could not confirm the last updates to Telegram while stopping (%s); Telegram sends them "
                          "again at the next start, and they are not handled twice")
            record.args = (type(error).__name__,)
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


_LAST_POLL_AT_SHUTDOWN = _LastPollAtShutdown()


async def _stop_polling(app: TrialbotApplication) -> None:
    """Another process leads, and polls: Telegram serves one poller, so this one stops."""
    if app.runtime.polling is not None and app.updater.running:
        log.info("another process polls for updates now; this one stops polling")
        await app.updater.stop()


async def _stop_leading(app: TrialbotApplication) -> None:
    """Stop planning and delivering (the message being sent is finished first).

    Polling goes on until another process is seen leading (`_stop_polling`): a leader most often
    loses its lock because the database went away, and then nobody can lead; a process that
    went on polling answers every tap at once with the apology rather than leaving participants
    with silence until the database is back. Should another process take the lead meanwhile,
    the two poll side by side until this one sees it: at its next attempt to lead, or at the
    first 409 Conflict from Telegram, which serves one poller (`_polling_failed`; each update is
    still handed out once meanwhile)."""
    leading, app.runtime.leading = app.runtime.leading, None
    if leading is None:  # not leading (or gone before recover_in_flight let it start anything)
        return
    if leading.tick_job is not None:
        leading.tick_job.schedule_removal()
    leading.stop.set()
    app.runtime.services.outbox_ready.set()  # wake an idle dispatcher so it sees `stop`
    task = leading.dispatcher_task
    _, still_running = await asyncio.wait({task}, timeout=DISPATCHER_STOP_SECONDS)
    if still_running:  # a send stuck beyond its own timeouts
        log.warning("the outbox dispatcher did not stop in time and was cancelled")
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _tick(context: TrialbotContext) -> None:
    await context.runtime.scheduler.tick.run_once()


ALLOWED_UPDATES = [Update.MESSAGE, Update.EDITED_MESSAGE, Update.CALLBACK_QUERY]


def receiving_updates(app: TrialbotApplication) -> bool:
    """Is this process taking updates: polling for them, or serving the webhook?"""
    server = app.runtime.webhook_server
    return bool(app.updater.running or (server is not None and server.running))


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
async def running(app: TrialbotApplication, *, poll_timeout: int = 10, webhook: Webhook | None = None):
    """Run the bot inside an `async with`, by long polling or on a webhook; `trialbot run`, the
    demo and the tests all run it this way.

    Whether this process plans and delivers is decided by the scheduler leadership: the first
    attempt is made before the block starts (on SQLite, or when no other process leads, this
    process leads from the start), then it competes in the background until the block ends. In
    polling mode the leader polls (and a leader that stepped down, until another leads: see
    _stop_leading); in webhook mode every process serves the webhook."""
    logging.getLogger("telegram.ext.Updater").addFilter(_LAST_POLL_AT_SHUTDOWN)  # once: it is one object
    await app.initialize()
    await _prepare(app)
    await app.start()
    app.runtime.polling = poll_timeout if webhook is None else None
    server = None
    leadership = app.runtime.scheduler.leadership
    competing = None
    try:
        if webhook is not None:
            server = app.runtime.webhook_server = WebhookServer(
                app, listen=webhook.listen, port=webhook.port, path=webhook.path, secret_token=webhook.secret_token)
            await server.start()
            await app.bot.set_webhook(webhook.url, secret_token=webhook.secret_token,
                                      allowed_updates=ALLOWED_UPDATES)
        await leadership.try_to_lead()
        competing = asyncio.get_running_loop().create_task(leadership.run(), name="scheduler-leadership")
        yield app
    finally:
        # The webhook server first: the updates being handled finish (and are acknowledged)
        # while this process still has everything they may need. Then leading stops (polling,
        # tick and delivery end, then the lock is let go), so a successor never overlaps.
        if server is not None:
            await server.stop()
        if competing is not None:
            competing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await competing
        elif leadership.is_leader:
            await _stop_leading(app)
        if app.updater.running:
            await app.updater.stop()
        await app.stop()
        await app.shutdown()
