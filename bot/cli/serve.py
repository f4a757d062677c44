"""`trialbot run`, `trialbot demo` and `trialbot db upgrade`: the bot for real, the bot to try, and
the schema they both need."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from typing import Annotated

import typer

from bot.cli.common import TRY_AGAIN, context, fail, refuse_unconfirmed, run_async, with_database

db_app = typer.Typer(help="The database schema.", no_args_is_help=True)

# How often a running bot re-reads the approvals ledger (an approval takes effect within this).
LEDGER_REFRESH_SECONDS = 60


def run(
    webhook: Annotated[str | None, typer.Option(
        help="Receive updates on this public HTTPS URL instead of polling (e.g. https://bot.example.org/telegram).")] = None,
) -> None:
    """Run the bot against Telegram (needs TELEGRAM_BOT_TOKEN)."""
    from bot.app import Webhook, build_application, running
    from bot.logging_setup import configure_logging
    from study.clock import SystemClock

    settings, protocol, db = context()
    if webhook is not None and not _webhook_url_ok(webhook):
        raise fail("--webhook needs an https:// URL (Telegram only delivers to HTTPS; plain http:// only to "
                    "this machine, for a Bot API server of your own).")
    if not settings.token:
        raise fail(
            "TELEGRAM_BOT_TOKEN is not set, so trialbot cannot connect to Telegram: get a token from @BotFather, "
            "put it in .env (`trialbot init DIR` writes one) and run again; to try trialbot without a token, run: trialbot demo"
        )
    refuse_unconfirmed(settings, protocol)
    from messages.renderer import MessageCatalog, MessageError
    from study import approvals

    messages = MessageCatalog(default_language=protocol.study.default_language,
                              study_values=protocol.template_globals())

    async def approved_texts(db):
        async with db.transaction() as session:
            return await approvals.load(session)

    # Start-up: the database (migrated here: only run and db upgrade change the schema), the texts,
    # then Telegram (getMe), each failing in one line; TRY_AGAIN when out of reach: systemd retries.
    messages.use_ledger(with_database(approved_texts, migrate=True, unavailable_code=TRY_AGAIN))
    try:  # fail closed: every template the bot may send must be the IRB-approved text, with these study values
        messages.check_ready(protocol.study.languages, for_participants=True)
    except MessageError as exc:
        raise fail(f"trialbot will not start: {exc}\nSee `trialbot messages status` and `trialbot messages approve`.") from None
    run_async(_reach_telegram(settings), unavailable_code=TRY_AGAIN)
    secret = settings.webhook_secret_value()
    configure_logging(settings.log_level, secrets=[settings.token, secret])
    confirmation = protocol.protocol
    logging.getLogger(__name__).info("protocol version %s, confirmed by %s on %s (%s)", confirmation.version,
                                     confirmation.confirmed_by, confirmation.confirmed_on, settings.study_file)
    hook = None
    if webhook is not None:
        hook = Webhook(url=webhook, secret_token=secret, listen=settings.webhook_listen, port=settings.webhook_port)

    async def serve() -> None:
        application = build_application(
            token=settings.token, base_url=settings.bot_base_url(), base_file_url=settings.bot_file_url(),
            protocol=protocol, db=db, clock=SystemClock(), messages=messages,
            tick_seconds=settings.scheduler_tick_seconds, outbox_poll_seconds=settings.outbox_poll_seconds,
            leader_retry_seconds=settings.leader_retry_seconds, ledger_refresh_seconds=LEDGER_REFRESH_SECONDS,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        try:
            async with running(application, webhook=hook):
                freeze_start_up_objects()
                await stop.wait()
        finally:
            await db.dispose()

    # Once it serves, a lost network or database no longer ends it (PTB polls again, the
    # scheduler and outbox wait): only what fails while starting reaches run_async.
    run_async(serve(), database=db, unavailable_code=TRY_AGAIN)


def freeze_start_up_objects() -> None:
    """What starting made (modules, the protocol, compiled templates, SQLAlchemy's mappers and
    statement caches) lives as long as the process. Moved out of the collector's sight
    (`gc.freeze`), the oldest generation's collections no longer walk it each time: measured in a
    broadcast to 1,000, one such collection paused the event loop for 130 ms, every answer
    arriving meanwhile read late and each of those sends' slots counted from then (a slot's
    send is counted from its answer: bot/send_limiter.py)."""
    gc.collect()
    gc.freeze()


async def _reach_telegram(settings) -> None:
    """getMe with the token, before anything is started: Telegram unreachable or refusing the
    token is one line at start (and the Bot is closed again either way)."""
    from telegram import Bot

    async with Bot(settings.token, base_url=settings.bot_base_url(), base_file_url=settings.bot_file_url()):
        pass


def _webhook_url_ok(url: str) -> bool:
    """HTTPS, as Telegram requires; or plain HTTP to this machine, which only a Bot API server of
    your own (TELEGRAM_API_URL) can reach."""
    import ipaddress
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme == "https":
        return True
    if parts.scheme != "http" or not parts.hostname:
        return False
    if parts.hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return False


def demo(
    port: Annotated[int, typer.Option(help="The web page's port on 127.0.0.1.")] = 8080,
    open_browser: Annotated[bool, typer.Option("--open", help="Open the page in a browser.")] = False,
    terminal: Annotated[bool, typer.Option("--terminal", help="Chat in this terminal instead of a web page.")] = False,
    plain: Annotated[bool, typer.Option(help="No colours in the terminal chat.")] = False,
) -> None:
    """Try trialbot without Telegram: a web page with demo participants, the study team's chat and a
    simulated clock (or, with --terminal, a chat in this terminal). Local only; never real Telegram."""
    from bot.demo import run_demo, run_web_demo
    from bot.logging_setup import configure_logging

    configure_logging("WARNING")
    # Started in the background (`&` in a script), a program inherits SIGINT ignored; Ctrl-C and
    # `kill -INT` must stop the demo all the same, and so must SIGTERM: each ends it as Ctrl-C does.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    if not 0 <= port <= 65535:
        raise fail("--port must be between 0 and 65535")
    from study.protocol import ProtocolError

    try:
        if terminal:
            asyncio.run(run_demo(color=not plain and sys.stdout.isatty()))
        else:
            asyncio.run(run_web_demo(port=port, open_browser=open_browser, write=typer.echo))
    except KeyboardInterrupt:  # the terminal chat, or a signal before the web demo was serving
        pass
    except ProtocolError as exc:
        raise fail(str(exc)) from None
    except OSError as exc:
        raise fail(f"cannot serve the demo on 127.0.0.1:{port} ({exc.strerror or exc}); try --port {port + 1}") from None
    typer.echo("\ndemo stopped; its database is gone.")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply the database migrations (trialbot run and demo also do this at start)."""
    with_database(_nothing, migrate=True)
    typer.echo("database is up to date")


async def _nothing(_db) -> None:
    return None

