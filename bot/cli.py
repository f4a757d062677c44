"""`trialbot ...`: the command line for the study team's server and for developers.

Built with Typer (typed options, help text and shell completion for free). Commands that change
the study record, approve a text or export name the staff member doing it (`--as` or
TRIALBOT_OPERATOR, checked against the staff list and their role: bot/operator.py); the audit trail
records that person, never an operating-system login.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from bot.corrections_cli import correct_app
from bot.messages_cli import messages_app
from bot.operator import AsOption
from bot.settings import Settings
from bot.treatment_cli import treatment_app
from study import roles
from study.audit import Actor

app = typer.Typer(help="trialbot: a Telegram companion for clinical-trial participants.", no_args_is_help=True,
                  add_completion=False)
staff_app = typer.Typer(help="The study team's accounts.", no_args_is_help=True)
audit_app = typer.Typer(help="The audit trail.", no_args_is_help=True)
db_app = typer.Typer(help="The database schema.", no_args_is_help=True)
app.add_typer(staff_app, name="staff")
app.add_typer(audit_app, name="audit")
app.add_typer(db_app, name="db")
app.add_typer(messages_app, name="messages")
app.add_typer(treatment_app, name="treatment")
app.add_typer(correct_app, name="correct")


# How often a running bot re-reads the approvals ledger (an approval takes effect within this).
LEDGER_REFRESH_SECONDS = 60


def main() -> None:
    app()


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.secho(message, fg=typer.colors.RED, err=True)
    return typer.Exit(code)


async def _actor(session, named: str | None, permission: str, doing: str) -> Actor:
    """The staff member running this command (--as / TRIALBOT_OPERATOR), if their role allows it."""
    from bot.operator import acting_as

    return await acting_as(session, named, permission, doing=doing)


def _context():
    """Settings, protocol and database for one command, with readable errors instead of tracebacks."""
    from study.database import Database
    from study.protocol import ProtocolError, load_protocol

    settings = Settings()
    try:
        protocol = load_protocol(settings.study_file)
    except ProtocolError as exc:
        raise _fail(str(exc)) from None
    return settings, protocol, Database(settings.database_url)


def _refuse_unconfirmed(settings: Settings, protocol) -> None:
    """Stop, in one line, unless the site has confirmed study.toml against the approved protocol
    ([protocol]): the shipped file is an example, and these commands act for real participants."""
    problem = protocol.confirmation_problem(settings.study_file)
    if problem is not None:
        raise _fail(problem)


def _with_database(work, *, migrate: bool = True):
    """Run `work(db)` against the configured database, migrated first, and close it after."""
    _, _, db = _context()

    async def go():
        try:
            if migrate:
                await db.migrate()
            return await work(db)
        finally:
            await db.dispose()

    from bot.operator import OperatorRefused

    try:
        return asyncio.run(go())
    except OperatorRefused as exc:
        raise _fail(f"Nothing done: {exc}") from None


@app.command()
def run(
    webhook: Annotated[str | None, typer.Option(
        help="Receive updates on this public HTTPS URL instead of polling (e.g. https://bot.example.org/telegram).")] = None,
) -> None:
    """Run the bot against Telegram (needs TELEGRAM_BOT_TOKEN)."""
    from bot.app import Webhook, build_application, running
    from bot.logging_setup import configure_logging
    from study.clock import SystemClock

    settings, protocol, db = _context()
    if webhook is not None and not _webhook_url_ok(webhook):
        raise _fail("--webhook needs an https:// URL (Telegram only delivers to HTTPS; plain http:// only to "
                    "this machine, for a Bot API server of your own).")
    if not settings.token:
        raise _fail(
            "TELEGRAM_BOT_TOKEN is not set, so trialbot cannot connect to Telegram: get a token from @BotFather, "
            "put it in .env (see .env.example) and run again; to try trialbot without a token, run: trialbot demo"
        )
    _refuse_unconfirmed(settings, protocol)
    from messages.renderer import MessageCatalog, MessageError
    from study import approvals

    messages = MessageCatalog(default_language=protocol.study.default_language,
                              study_values=protocol.template_globals())

    async def approved_texts(db):
        async with db.transaction() as session:
            return await approvals.load(session)

    messages.use_ledger(_with_database(approved_texts))
    try:  # fail closed: every template the bot may send must be the IRB-approved text, with these study values
        messages.check_ready(protocol.study.languages, for_participants=True)
    except MessageError as exc:
        raise _fail(f"trialbot will not start: {exc}\nSee `trialbot messages status` and `trialbot messages approve`.") from None
    secret = settings.webhook_secret_value()
    configure_logging(settings.log_level, secrets=[settings.token, secret])
    confirmation = protocol.protocol
    logging.getLogger(__name__).info("protocol version %s, confirmed by %s on %s (%s)", confirmation.version,
                                     confirmation.confirmed_by, confirmation.confirmed_on, settings.study_file)
    hook = None
    if webhook is not None:
        hook = Webhook(url=webhook, secret_token=secret, listen=settings.webhook_listen, port=settings.webhook_port)

    async def serve() -> None:
        await db.migrate()
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
                await stop.wait()
        finally:
            await db.dispose()

    asyncio.run(serve())


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


@app.command()
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
    if terminal:
        asyncio.run(run_demo(color=not plain and sys.stdout.isatty()))
        return
    if not 0 <= port <= 65535:
        raise _fail("--port must be between 0 and 65535")
    try:
        asyncio.run(run_web_demo(port=port, open_browser=open_browser, write=typer.echo))
    except KeyboardInterrupt:
        typer.echo("\ndemo stopped; its database is gone.")
    except OSError as exc:
        raise _fail(f"cannot serve the demo on 127.0.0.1:{port} ({exc.strerror or exc}); try --port {port + 1}") from None


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply the database migrations (trialbot run and demo also do this at start)."""
    _with_database(_nothing)
    typer.echo("database is up to date")


async def _nothing(_db) -> None:
    return None


@app.command()
def enroll(
    study_id: Annotated[str, typer.Argument(help="The participant's study id, e.g. P001.")],
    timezone: Annotated[str, typer.Option(help="The participant's time zone, e.g. America/New_York.")],
    language: Annotated[str, typer.Option(help="Language for messages, e.g. en or es.")],
    wocbp: Annotated[bool, typer.Option("--wocbp", help="Woman of childbearing potential (monthly pregnancy tests).")] = False,
    reminder_times: Annotated[str | None, typer.Option(help="Local reminder times, e.g. 08:00,20:00.")] = None,
    qr_dir: Annotated[Path, typer.Option(help="Where to write the invite QR code.")] = Path("invites"),
    as_: AsOption = None,
) -> None:
    """Enrol a participant and print their single-use invite link and QR code."""
    from study.participants import EnrolmentError, EnrolmentRequest
    from study.protocol import parse_hhmm

    try:
        times = tuple(parse_hhmm(t.strip()) for t in reminder_times.split(",")) if reminder_times else None
    except ValueError as exc:
        raise _fail(f"--reminder-times: {exc}") from None
    request = EnrolmentRequest(study_id=study_id, timezone=timezone, language=language, wocbp=wocbp,
                               reminder_times=times)
    from study import participants

    settings, protocol, _ = _context()
    _refuse_unconfirmed(settings, protocol)

    async def enrol_and_invite(db) -> None:
        async with db.transaction() as session:
            actor = await _actor(session, as_, roles.ENROL, "enrol participants")
            participant = await participants.enroll(session, protocol, request, actor=actor, now=_now())
        typer.echo(f"Enrolled {participant.study_id} ({participant.timezone}, {participant.language}).")
        await _issue_invite(settings, protocol, db, request.study_id, qr_dir, as_)

    try:
        _with_database(enrol_and_invite)
    except EnrolmentError as exc:
        raise _fail(f"Not enrolled: {exc}") from None


@app.command()
def invite(
    study_id: str,
    qr_dir: Annotated[Path, typer.Option(help="Where to write the invite QR code.")] = Path("invites"),
    as_: AsOption = None,
) -> None:
    """Issue a new invite for a participant; any earlier unused invite stops working."""
    settings, protocol, _ = _context()
    _with_database(lambda db: _issue_invite(settings, protocol, db, study_id, qr_dir, as_))


async def _issue_invite(settings: Settings, protocol, db, study_id: str, qr_dir: Path, as_: str | None) -> None:
    from datetime import timedelta

    from bot.invite_link import bot_username, invite_link, write_qr
    from study import invites, participants

    async with db.transaction() as session:
        actor = await _actor(session, as_, roles.ENROL, "invite participants")
        participant = await participants.by_study_id(session, study_id)
        if participant is None:
            raise _fail(f"No participant {study_id}. Enrol them first: trialbot enroll {study_id} ...")
        try:
            issued = await invites.issue(session, participant,
                                         valid_for=timedelta(days=protocol.enrolment.invite_valid_days),
                                         actor=actor, now=_now())
        except invites.InviteRefused as exc:
            raise _fail(f"No invite: {exc}") from None
    expires = issued.invite.expires_at.strftime("%Y-%m-%d %H:%M UTC")
    typer.echo(f"Invite for {study_id} (single use, valid until {expires}):")
    username = await bot_username(settings)
    if username is None:
        typer.echo(f"  code: {issued.code}")
        typer.echo("  Set TELEGRAM_BOT_USERNAME (or TELEGRAM_BOT_TOKEN) to get the link and its QR code.")
        return
    link = invite_link(username, issued.code)
    typer.echo(f"  {link}")
    path = write_qr(link, qr_dir / f"{study_id}-invite.png")
    typer.echo(f"  QR code: {path}")
    typer.echo("Hand it over at the consent visit, then delete the file. Anyone with it can join as this participant.")


@staff_app.command("add")
def staff_add(
    telegram_id: Annotated[int, typer.Option(help="The staff member's Telegram user id.")],
    name: Annotated[str, typer.Option(help="Name, as colleagues know them.")],
    role: Annotated[str, typer.Option(help="coordinator, investigator or monitor.")],
    as_: AsOption = None,
) -> None:
    """Add a staff member, change the name or role of one, or give a deactivated member access
    again (audited). The first member of an empty team needs no --as: they are recorded as adding
    themselves. The investigator manages the team; until it has one, a coordinator may."""
    from study import staff

    if role not in staff.ROLES:
        raise _fail(f"role must be one of {', '.join(staff.ROLES)}")

    async def add(db):
        async with db.transaction() as session:
            first = not await staff.all_staff(session)
            actor = None if first else await _staff_manager(session, as_, "add or change staff")
            return await staff.add_or_update(session, telegram_user_id=telegram_id, name=name, role=role,
                                             actor=actor, now=_now())

    try:
        member = _with_database(add)
    except staff.StaffError as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"Staff {member.id}: {member.name} ({member.role}).")


async def _staff_manager(session, as_: str | None, doing: str) -> Actor:
    """The member running a staff command, if they may change the team now (the investigator;
    a coordinator while the team has none: study/staff.py managing_permission)."""
    from study import staff

    return await _actor(session, as_, await staff.managing_permission(session), doing)


async def _one_member(session, who: str):
    from bot.operator import find

    found = await find(session, who)
    if len(found) != 1:
        raise _fail(f"{'More than one' if found else 'No'} staff member {who.strip()!r}; give the number from "
                    "`trialbot staff list`.")
    return found[0]


@staff_app.command("role")
def staff_role(
    who: Annotated[str, typer.Argument(help="The member's number or name (`trialbot staff list`).")],
    role: Annotated[str, typer.Argument(help="coordinator, investigator or monitor.")],
    reason: Annotated[str | None, typer.Option(help="Why, for the audit trail.")] = None,
    as_: AsOption = None,
) -> None:
    """Give an active member another role (audited, old and new). A monitor does not receive
    participants' messages or alerts."""
    from study import staff

    async def change(db):
        async with db.transaction() as session:
            actor = await _staff_manager(session, as_, "change staff roles")
            member = await _one_member(session, who)
            await staff.change_role(session, member, role, actor=actor, now=_now(), reason=reason)
            return member

    try:
        member = _with_database(change)
    except staff.StaffError as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"Staff {member.id}: {member.name} is now a {member.role}.")


@staff_app.command("deactivate")
def staff_deactivate(
    who: Annotated[str, typer.Argument(help="The member's number or name (`trialbot staff list`).")],
    reason: Annotated[str, typer.Option(help="Why their access ends, for the audit trail.")],
    as_: AsOption = None,
) -> None:
    """End a member's access (audited): from now on they receive nothing (alerts, escalations,
    digests, participants' messages, approval requests) and can do nothing; what they did stays on
    the record under their name. `staff add` with their Telegram id gives access back."""
    from study import staff

    async def end(db):
        async with db.transaction() as session:
            actor = await _staff_manager(session, as_, "deactivate staff")
            member = await _one_member(session, who)
            await staff.deactivate(session, member, actor=actor, now=_now(), reason=reason)
            return member

    try:
        member = _with_database(end)
    except staff.StaffError as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"Staff {member.id}: {member.name} deactivated; they receive nothing and can do nothing.")


@staff_app.command("list")
def staff_list() -> None:
    """List the study team."""
    from study import staff

    async def listing(db):
        async with db.transaction() as session:
            return await staff.all_staff(session)

    for member in _with_database(listing):
        state = "active" if member.active else "inactive"
        typer.echo(f"{member.id:>4}  {member.name:<24} {member.role:<13} {state}")


@audit_app.command("verify")
def audit_verify(
    anchor: Annotated[str | None, typer.Option(
        help="Also check the trail against an anchor: a line from `trialbot audit anchor`, or a file of them "
             "(its last line).")] = None,
) -> None:
    """Check the audit chain and re-hash every record against its creation entry; exits 1 if an entry
    or a record was altered or removed, or a record has no entry."""
    from study import audit, audit_anchor

    try:
        expected = audit_anchor.read(anchor) if anchor is not None else None
    except (audit_anchor.AnchorError, OSError) as exc:
        raise _fail(f"--anchor: {exc}") from None

    async def verify(db) -> audit.VerifyReport:
        if not await db.at_newest_migration():  # verifying changes nothing, so it does not migrate
            raise _fail("The database's schema is older than this trialbot: run `trialbot db upgrade` first "
                        "(it also hashes the records made before records were hashed).")
        async with db.read() as session:
            if not db.is_sqlite:  # one snapshot of chain and records, though the bot writes meanwhile
                await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            report = await audit.verify(session)
            if expected is not None:
                report.problems += await audit_anchor.check(session, expected)
            return report

    report = _with_database(verify, migrate=False)
    against = f", matches the anchor of {expected.at:%Y-%m-%d %H:%M} UTC" if expected else ""
    if report.ok:
        typer.secho(f"audit trail OK: {report.entries} entries, chain intact, {report.records} records verified"
                    f"{against}", fg=typer.colors.GREEN)
        return
    typer.secho(f"audit trail FAILED: {len(report.problems)} problem(s) in {report.entries} entries", fg=typer.colors.RED, err=True)
    for problem in report.problems:
        typer.echo(f"  {problem}", err=True)
    raise typer.Exit(1)


@audit_app.command("anchor")
def audit_anchor_command(
    append: Annotated[Path | None, typer.Option(
        "--append", help="Also append the line to this file (keep it where the database cannot change it).")] = None,
) -> None:
    """Print the chain's head as one line (entry count, last hash, time UTC), to keep outside the
    database; `audit verify --anchor` checks the trail against it later."""
    from study import audit_anchor

    async def take(db) -> audit_anchor.Anchor:
        async with db.read() as session:
            return await audit_anchor.take(session, _now())

    line = _with_database(take, migrate=False).line()
    if append is not None:
        try:
            with append.open("a", encoding="utf-8") as out:
                out.write(line + "\n")
        except OSError as exc:
            raise _fail(f"--append: cannot write {append}: {exc.strerror or exc}") from None
    typer.echo(line)


@audit_app.command("show")
def audit_show(
    participant: Annotated[str | None, typer.Option(help="Only this participant's records, e.g. P001.")] = None,
    limit: Annotated[int, typer.Option(help="Show at most this many of the newest entries.")] = 50,
) -> None:
    """Print the audit trail: when (UTC and the participant's zone), who, what, and why."""
    from bot.audit_report import format_entries, participant_entries, staff_names
    from study import audit

    async def entries(db) -> tuple[list, dict[str, str]]:
        async with db.transaction() as session:
            names = await staff_names(session)
            if participant:
                return await participant_entries(session, participant, limit=limit), names
            return await audit.entries(session, limit=limit), names

    rows, names = _with_database(entries, migrate=False)
    for line in format_entries(rows, names):
        typer.echo(line)


def _now() -> datetime:
    return datetime.now(UTC)


participant_app = typer.Typer(help="One participant's settings and standing.", no_args_is_help=True)
app.add_typer(participant_app, name="participant")


def _change_participant(study_id: str, as_: str | None, change) -> None:
    """`change(session, participant, actor)` in one transaction, by a staff member who may enrol."""
    from study import participants
    from study.participants import EnrolmentError

    async def work(db) -> None:
        async with db.transaction() as session:
            actor = await _actor(session, as_, roles.ENROL, "change a participant's record")
            participant = await participants.by_study_id(session, study_id)
            if participant is None:
                raise _fail(f"No participant {study_id}.")
            await change(session, participant, actor)

    try:
        _with_database(work)
    except EnrolmentError as exc:
        raise _fail(str(exc)) from None


@participant_app.command("timezone")
def participant_timezone(study_id: str, timezone: str, as_: AsOption = None) -> None:
    """Move a participant to another time zone; reminders follow from now on (audited)."""
    from study import participants

    _change_participant(study_id, as_, lambda session, p, actor: participants.move_to_zone(
        session, p, timezone, actor=actor, now=_now()))
    typer.echo(f"{study_id} is now in {timezone}.")


@participant_app.command("pause")
def participant_pause(study_id: str, as_: AsOption = None) -> None:
    """Pause the bot's messages to a participant, as their own /stop does: what is queued is not
    sent and the study team is told; they turn messages back on with /resume (audited)."""
    from study import participants

    async def pause(session, p, actor) -> None:
        participants.check_can_pause(p)
        await participants.pause_messages(session, p, actor=actor, now=_now(),
                                          why=f"messages paused by the study team ({actor})")

    _change_participant(study_id, as_, pause)
    typer.echo(f"Messages to {study_id} are paused; they turn them back on with /resume.")


@participant_app.command("end")
def participant_end(
    study_id: str,
    status: Annotated[str, typer.Argument(help="withdrawn or completed")],
    reason: Annotated[str, typer.Option(help="Why, for the audit trail.")],
    as_: AsOption = None,
) -> None:
    """Withdraw a participant or mark them completed: the bot no longer writes to them."""
    from study import participants

    _change_participant(study_id, as_, lambda session, p, actor: participants.leave_study(
        session, p, status, reason=reason, actor=actor, now=_now()))
    typer.echo(f"{study_id} is now {status}.")


@app.command()
def deliveries(
    study_id: str,
    limit: Annotated[int, typer.Option(help="Show at most this many of the newest messages.")] = 30,
) -> None:
    """The life of each message the bot started for a participant: queued, sent, answered, skipped..."""
    from study import outbox, participants

    async def work(db):
        async with db.transaction() as session:
            participant = await participants.by_study_id(session, study_id)
            if participant is None:
                raise _fail(f"No participant {study_id}.")
            found, _ = await outbox.ledger(session, participant.id, limit=limit)
            return participant, found

    participant, found = _with_database(work, migrate=False)
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(participant.timezone)
    for delivery in found:
        row = delivery.row
        due = row.due_at or row.created_at
        typer.echo(f"{row.dedup_key}  {row.template_id}  due {due:%Y-%m-%d %H:%M} UTC / "
                   f"{due.astimezone(zone):%H:%M %Z}  [{row.status}]")
        typer.echo(f"    {row.created_at:%Y-%m-%d %H:%M:%S} UTC  queued")
        for event in delivery.events:
            typer.echo(f"    {event.at:%Y-%m-%d %H:%M:%S} UTC  {event.event}  {event.detail or ''}")


visits_app = typer.Typer(help="Study visits: plan from the protocol, add, move, cancel, list.", no_args_is_help=True)
app.add_typer(visits_app, name="visits")


def _parse_date(value: str, option: str):
    from datetime import date

    try:
        return date.fromisoformat(value)
    except ValueError:
        raise _fail(f"{option}: {value!r} is not a date like 2026-11-24") from None


def _parse_time(value: str | None):
    from study.protocol import parse_hhmm

    if value is None:
        return None
    try:
        return parse_hhmm(value)
    except ValueError as exc:
        raise _fail(f"--time: {exc}") from None


def participant_work(study_id: str, work, *, refusals: tuple[type[Exception], ...] = (), describe=str,
                     acting: tuple[str | None, str, str] | None = None):
    """Run `work(session, protocol, participant)` in one transaction for the participant named;
    an unknown participant, or one of `refusals` (described by `describe`), is one line and exit
    code 2, and nothing is written. Shared by the commands that change one participant's record
    (visits here, bot/treatment_cli.py, bot/corrections_cli.py).

    A command that changes the record passes `acting=(as_, permission, doing)`: the staff member
    named is checked first and `work` gets their Actor as a fourth argument."""
    from study import participants

    _, protocol, _ = _context()

    async def go(db):
        async with db.transaction() as session:
            actor = await _actor(session, *acting) if acting is not None else None
            participant = await participants.by_study_id(session, study_id)
            if participant is None:
                raise _fail(f"No participant {study_id}.")
            if actor is not None:
                return await work(session, protocol, participant, actor)
            return await work(session, protocol, participant)

    try:
        return _with_database(go)
    except refusals as exc:
        raise _fail(describe(exc)) from None


def _visit_work(study_id: str, work, as_: str | None):
    """`participant_work` for visits: a VisitError becomes a clear message; a change names who."""
    from study.visits import VisitError

    acting = (as_, roles.ENROL, "change a participant's visits")
    return participant_work(study_id, work, refusals=(VisitError,), acting=acting)


def _visit_line(visit) -> str:
    when = visit.scheduled_date.strftime("%a %Y-%m-%d")
    if visit.scheduled_time:
        when += f" {visit.scheduled_time:%H:%M}"
    window = ""
    if visit.target_date is not None:
        window = f"  (target {visit.target_date:%Y-%m-%d} ±{visit.window_days}d)"
    return f"{visit.name:<10} {visit.label:<28} {when:<20} {visit.status}{window}"


async def _named_visit(session, participant, name: str):
    from study import visits

    visit = await visits.by_name(session, participant, name)
    if visit is None:
        raise _fail(f"{participant.study_id} has no visit named {name} (see: trialbot visits list {participant.study_id})")
    return visit


@visits_app.command("plan")
def visits_plan(
    study_id: str,
    baseline: Annotated[str, typer.Option(help="The baseline date the protocol's day offsets count from, e.g. 2026-11-24.")],
    as_: AsOption = None,
) -> None:
    """Create the protocol's visit schedule for a participant (once; audited)."""
    from study import visits

    day = _parse_date(baseline, "--baseline")
    _refuse_unconfirmed(*_context()[:2])  # the plan copies [visits] into the participant's record

    async def work(session, protocol, participant, actor):
        return await visits.plan_schedule(session, protocol, participant, baseline=day, actor=actor, now=_now())

    created = _visit_work(study_id, work, as_)
    typer.echo(f"Planned {len(created)} visits for {study_id} from baseline {day.isoformat()}:")
    for visit in created:
        typer.echo("  " + _visit_line(visit))


@visits_app.command("add")
def visits_add(
    study_id: str,
    name: Annotated[str, typer.Option(help="A short name for the visit, e.g. extra1.")],
    date: Annotated[str, typer.Option(help="The visit's day, e.g. 2026-12-02.")],
    time: Annotated[str | None, typer.Option(help="The visit's time, participant-local, e.g. 09:30.")] = None,
    label: Annotated[str | None, typer.Option(help="What the study team calls it (default: the name).")] = None,
    reason: Annotated[str | None, typer.Option(help="Why, for the audit trail.")] = None,
    as_: AsOption = None,
) -> None:
    """Add an extra visit (audited)."""
    from study import visits

    day, at = _parse_date(date, "--date"), _parse_time(time)

    async def work(session, protocol, participant, actor):
        return await visits.add(session, participant, name=name, day=day, at=at, label=label, actor=actor,
                                now=_now(), reason=reason)

    visit = _visit_work(study_id, work, as_)
    typer.echo(f"Added for {study_id}: " + _visit_line(visit))


@visits_app.command("move")
def visits_move(
    study_id: str,
    name: str,
    date: Annotated[str, typer.Option(help="The new day, e.g. 2026-12-23.")],
    time: Annotated[str | None, typer.Option(help="The new time, participant-local, e.g. 09:30.")] = None,
    reason: Annotated[str | None, typer.Option(help="Why, for the audit trail.")] = None,
    as_: AsOption = None,
) -> None:
    """Move a visit to another day (audited); warns when the day is outside the protocol's window."""
    from study import visits

    day, at = _parse_date(date, "--date"), _parse_time(time)

    async def work(session, protocol, participant, actor):
        visit = await _named_visit(session, participant, name)
        return await visits.move(session, participant, visit, day=day, at=at, actor=actor, now=_now(),
                                 reason=reason)

    result = _visit_work(study_id, work, as_)
    typer.echo(f"Moved for {study_id}: " + _visit_line(result.visit))
    if result.outside_window:
        typer.secho(f"Warning: {day.isoformat()} is outside the protocol's window for {name} "
                    f"({result.visit.target_date.isoformat()} ±{result.visit.window_days} days).",
                    fg=typer.colors.YELLOW, err=True)


@visits_app.command("cancel")
def visits_cancel(
    study_id: str,
    name: str,
    reason: Annotated[str, typer.Option(help="Why, for the audit trail.")],
    as_: AsOption = None,
) -> None:
    """Cancel a visit: no more reminders for it (audited)."""
    from study import visits

    async def work(session, protocol, participant, actor):
        visit = await _named_visit(session, participant, name)
        await visits.cancel(session, participant, visit, actor=actor, now=_now(), reason=reason)
        return visit

    visit = _visit_work(study_id, work, as_)
    typer.echo(f"Cancelled for {study_id}: " + _visit_line(visit))


@visits_app.command("done")
def visits_done(
    study_id: str,
    name: str,
    reason: Annotated[str, typer.Option(help="For the audit trail.")] = "visit took place",
    as_: AsOption = None,
) -> None:
    """Mark a visit as done (audited)."""
    from study import visits

    async def work(session, protocol, participant, actor):
        visit = await _named_visit(session, participant, name)
        await visits.set_status(session, participant, visit, "done", actor=actor, now=_now(), reason=reason)
        return visit

    visit = _visit_work(study_id, work, as_)
    typer.echo(f"Done for {study_id}: " + _visit_line(visit))


@visits_app.command("list")
def visits_list(study_id: str) -> None:
    """A participant's visits, in date order."""
    from study import visits

    async def work(session, protocol, participant):
        return await visits.for_participant(session, participant)

    rows = participant_work(study_id, work)
    if not rows:
        typer.echo(f"{study_id} has no visits yet. Plan them: trialbot visits plan {study_id} --baseline YYYY-MM-DD")
    for visit in rows:
        typer.echo(_visit_line(visit))


@app.command()
def export(
    fmt: Annotated[str, typer.Option("--format", help="csv (one file per dataset and a data dictionary) or redcap")],
    out: Annotated[Path, typer.Option("--out", help="Directory to write the files into")],
    include_contact: Annotated[bool, typer.Option("--include-contact", help="Include Telegram ids (contact data)")] = False,
    as_: AsOption = None,
) -> None:
    """Export the study record (audited: who exported what, when)."""
    from rich.progress import Progress

    from study import export as exporting

    if fmt not in exporting.FORMATS:
        raise _fail(f"--format must be one of {', '.join(exporting.FORMATS)}")
    _, protocol, _ = _context()  # its lists (missed-dose reasons, red flags, languages) are choice lists

    async def work(db):
        async with db.transaction() as session:  # who exports is checked before anything is read
            actor = await _actor(session, as_, roles.EXPORT, "export the study record")
        with Progress(transient=True) as progress:
            task = progress.add_task("Exporting", total=exporting.STEPS)
            return await exporting.run(db, protocol=protocol, fmt=fmt, out=out, include_contact=include_contact,
                                       actor=actor, now=_now(), tick=lambda rows: progress.advance(task))

    datasets, written = _with_database(work)
    for ds in datasets:
        typer.echo(f"{ds.name}: {len(ds.rows)} row(s)")
    for path in written:
        typer.echo(f"wrote {path}")
