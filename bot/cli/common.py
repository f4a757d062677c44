"""What every `trialbot` command shares: settings, protocol and database for one command, the staff
member acting, and failures as one line instead of a traceback.

Exit codes: 0 done; 2 something for the operator to put right, said in one line on stderr (a
setting, an argument, a path, the token, the database's address or schema; Telegram or the
database out of reach); 1 a check that found a problem (`audit verify`, `messages status`) or an
error nobody foresaw, also in one line, naming it (TRIALBOT_DEBUG=1 shows its traceback: a bug to
report); `trialbot run` alone exits TRY_AGAIN (75) when Telegram or the database cannot be reached
at start, so that systemd starts it again (docs/deploy.md). Nothing is echoed with the bot token
in it, and a database URL is shown with its password masked.

Only `trialbot run` and `trialbot db upgrade` change the schema (`with_database(migrate=True)`);
every other command checks it first and, on a database not yet (or not fully) migrated, says to
run `trialbot db upgrade`, creating nothing, not even an empty SQLite file.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from bot.settings import Settings
from study.audit import Actor

DEBUG_ENV = "TRIALBOT_DEBUG"
TRY_AGAIN = 75  # EX_TEMPFAIL (sysexits.h): Telegram or the database out of reach as `trialbot run` starts
DATABASE_URL_EXAMPLES = "sqlite+aiosqlite:///path/to/trialbot.db or postgresql+asyncpg://user:password@host:5432/name"


def fail(message: str, code: int = 2) -> typer.Exit:
    typer.secho(message, fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def debugging() -> bool:
    """TRIALBOT_DEBUG=1: let an unexpected error's traceback through (for a developer, or a bug report)."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


@dataclass(frozen=True)
class Problem:
    """A failure as one line for the operator; `transient`: it may pass by itself (a network, a
    server restarting), so trying again later is worth it."""

    message: str
    transient: bool = False


class Failed(Exception):
    """A Problem raised inside a command's async work, for `run_async` to report."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


class GuardedGroup(TyperGroup):
    """The `trialbot` command group: whatever a command raises is one line, never a traceback.

    What a command refuses itself is already one line (`fail`); a failure with a known cause
    (Telegram, the database, a setting, a file) becomes one here (exit code 2); anything else is
    a bug, named in one line with exit code 1, and TRIALBOT_DEBUG=1 shows its traceback."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):  # exits, Ctrl-C, usage errors: already handled
            raise
        except Exception as exc:
            if debugging():
                raise
            problem = explain(exc)
            if problem is not None:
                raise fail(problem.message) from None
            raise fail(unexpected(exc), code=1) from None


def unexpected(exc: BaseException) -> str:
    first = scrub(str(exc).strip().splitlines()[0]) if str(exc).strip() else ""
    what = f"{type(exc).__name__}: {first[:200]}" if first else type(exc).__name__
    return (f"trialbot failed unexpectedly ({what}). Run the command again with {DEBUG_ENV}=1 to see the "
            "traceback, and report it.")


def scrub(text: str) -> str:
    """`text` without the bot token (or anything shaped like one) or the database's password."""
    from sqlalchemy.engine import make_url

    from bot.logging_setup import TOKEN_PATTERN

    secrets = [os.environ.get("TELEGRAM_BOT_TOKEN", "")]
    with contextlib.suppress(Exception):  # the settings may be what is broken: scrub what is known
        settings = Settings()
        secrets.append(settings.token or "")
        secrets.append(str(make_url(settings.database_url).password or ""))
    for secret in filter(None, secrets):
        text = text.replace(str(secret), "***")
    return TOKEN_PATTERN.sub("[token]", text)


def explain(exc: BaseException, *, database=None, opening: bool = False) -> Problem | None:
    """One line for a failure an operator can meet or cause (Telegram, the database, a setting, a
    file), or None for one nobody foresaw. `database` (a study.database.Database) names the one in
    use; `opening`: the failure came while first reaching it, so a bare network error is its."""
    from pydantic import ValidationError
    from telegram.error import TelegramError

    if isinstance(exc, Failed):
        return exc.problem
    if isinstance(exc, TelegramError):
        return telegram_problem(exc)
    if isinstance(exc, ValidationError):
        return settings_problem(exc)
    problem = database_problem(exc, database, opening=opening)
    if problem is not None:
        return problem
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        return Problem(scrub(f"{where}{exc.strerror or exc}"))
    return None


def telegram_problem(exc: BaseException) -> Problem:
    from urllib.parse import urlsplit

    from telegram import error as tg

    from study.database import outage_cause

    try:
        parts = urlsplit(Settings().telegram_api_url)
        api = f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    except Exception:  # noqa: BLE001 - an unreadable setting: say less
        api = "TELEGRAM_API_URL"
    check = f"check this machine's network (and TELEGRAM_API_URL, now {api}), then try again"
    said = scrub(getattr(exc, "message", "") or str(exc))
    if isinstance(exc, tg.InvalidToken):
        return Problem(f"Telegram refused the bot token: copy TELEGRAM_BOT_TOKEN again from @BotFather (/mybots, "
                       f"API Token) into .env (and check TELEGRAM_API_URL, now {api}).")
    if isinstance(exc, tg.TimedOut):
        return Problem(f"Telegram did not answer in time: {check}.", transient=True)
    if isinstance(exc, tg.BadRequest):
        return Problem(f"Telegram refused the request: {said}.")
    if isinstance(exc, tg.NetworkError):
        return Problem(f"Cannot reach Telegram ({outage_cause(exc)}): {check}.", transient=True)
    if isinstance(exc, tg.RetryAfter):
        return Problem(f"Telegram asks to wait before trying again (flood control: {said}).", transient=True)
    return Problem(f"Telegram refused: {said}.")


def settings_problem(exc: Any) -> Problem:
    """A setting pydantic refused, by its environment variable's name; never the value given."""
    wrong = "; ".join(f"{'.'.join(str(part) for part in error['loc']).upper()}: {error['msg']}"
                      for error in exc.errors())
    return Problem(f"A setting is not valid ({wrong}): correct it in the environment or in .env.")


def _chain(exc: BaseException):
    seen: set[int] = set()
    error: BaseException | None = exc
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def database_problem(exc: BaseException, database=None, *, opening: bool = False) -> Problem | None:
    """The database could not be reached, opened or used, as one line naming it (password
    masked); None if `exc` is not the database's."""
    import socket
    import sqlite3

    import asyncpg
    from alembic.util import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    from study.database import CONNECT_TIMEOUT_SECONDS, is_unavailable, outage_cause

    chain = list(_chain(exc))
    ours = (SQLAlchemyError, asyncpg.PostgresError, asyncpg.InterfaceError, sqlite3.Error, CommandError)
    if not opening and not any(isinstance(error, ours) for error in chain):
        return None

    def found(kinds):
        return next((error for error in chain if isinstance(error, kinds)), None)

    where = f"DATABASE_URL {database.display_url()}" if database is not None else "DATABASE_URL"
    url = database.url if database is not None else None
    if (error := found(asyncpg.InvalidCatalogNameError)) is not None:
        return Problem(f"PostgreSQL says: {error}. Create it (createdb), or correct {where}.")
    if (error := found((asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError))) is not None:
        return Problem(f"PostgreSQL refused the login ({error}): check the user and password in {where}.")
    if found(socket.gaierror) is not None:
        host = url.host if url is not None else "?"
        return Problem(f"Cannot find the database server {host!r}: check the host name in {where}.", transient=True)
    if found(ConnectionRefusedError) is not None:
        at = f"{url.host or 'localhost'}:{url.port or 5432}" if url is not None else "its address"
        return Problem(f"Nothing answers at {at}: is PostgreSQL running there, on that port? ({where})",
                       transient=True)
    if found(TimeoutError) is not None:
        return Problem(f"The database did not answer within {CONNECT_TIMEOUT_SECONDS} s: is it running, and "
                       f"reachable from here? ({where})", transient=True)
    if (error := found(sqlite3.OperationalError)) is not None and "unable to open" in str(error):
        file = database.sqlite_file if database is not None else None
        return Problem(f"Cannot open the SQLite database {file or ''}: check that trialbot may read and write "
                       f"it and its folder ({where}).")
    if (error := found(CommandError)) is not None:
        return Problem(scrub(f"The database's migrations failed ({str(error).splitlines()[0]}): is {where} "
                             "trialbot's, and this trialbot the newest that used it?"))
    if is_unavailable(exc) or (opening and found(OSError) is not None):
        return Problem(f"The database is unavailable ({outage_cause(exc)}): check it, and {where}.", transient=True)
    orig = getattr(found(SQLAlchemyError), "orig", None) or exc
    first = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
    return Problem(scrub(f"The database refused ({type(orig).__name__}: {first[:200]}); {where}."))


async def actor_for(session, named: str | None, permission: str, doing: str) -> Actor:
    """The staff member running this command (--as / TRIALBOT_OPERATOR), if their role allows it."""
    from bot.operator import acting_as

    return await acting_as(session, named, permission, doing=doing)


def context():
    """Settings, protocol and database for one command, with readable errors instead of tracebacks."""
    from pydantic import ValidationError

    from study.protocol import ProtocolError, load_protocol

    try:
        settings = Settings()
    except ValidationError as exc:
        raise fail(settings_problem(exc).message) from None
    try:
        protocol = load_protocol(settings.study_file)
    except ProtocolError as exc:
        raise fail(str(exc)) from None
    return settings, protocol, _database(settings.database_url)


def _database(url: str):
    """The Database for DATABASE_URL, or one line saying what is wrong with it (never the URL
    itself: it may hold a password)."""
    from sqlalchemy.exc import ArgumentError, InvalidRequestError, NoSuchModuleError

    from study.database import Database

    try:
        return Database(url)
    except NoSuchModuleError as exc:
        why = f"no database driver {str(exc).rpartition(':')[2]!r}"
    except ModuleNotFoundError as exc:
        why = f"its driver ({exc.name}) is not one trialbot installs"
    except InvalidRequestError:
        why = "its driver is not an asyncio one"
    except (ArgumentError, ValueError):
        why = "not a database URL"
    raise fail(f"DATABASE_URL cannot be used ({why}): write {DATABASE_URL_EXAMPLES}.")


def refuse_unconfirmed(settings: Settings, protocol) -> None:
    """Stop, in one line, unless the site has confirmed study.toml against the approved protocol
    ([protocol]): the shipped file is an example, and these commands act for real participants."""
    problem = protocol.confirmation_problem(settings.study_file)
    if problem is not None:
        raise fail(problem)


def with_database(work, *, migrate: bool = False, unavailable_code: int = 2):
    """Run `work(db)` against the configured database and close it after. The database must answer
    and have this trialbot's schema, checked first without changing anything; `migrate=True`
    (trialbot run and db upgrade only) brings the schema up to date instead. A database out of
    reach, unopenable or not migrated is one line and exit code 2 (`unavailable_code` when it may
    pass by itself: trialbot run's TRY_AGAIN)."""
    _, _, db = context()

    async def go():
        try:
            await open_database(db, migrate=migrate)
            return await work(db)
        finally:
            await db.dispose()

    return run_async(go(), database=db, unavailable_code=unavailable_code)


def run_async(work, *, database=None, unavailable_code: int = 2):
    """`asyncio.run(work)`, a failure with a known cause (Telegram, the database, a refused
    operator) as one line. Other exceptions go on to the caller (a command's own refusals) and,
    past it, to GuardedGroup."""
    from bot.operator import OperatorRefused

    try:
        return asyncio.run(work)
    except OperatorRefused as exc:
        raise fail(f"Nothing done: {exc}") from None
    except (typer.Exit, typer.Abort):
        raise
    except Exception as exc:
        problem = None if debugging() else explain(exc, database=database)
        if problem is None:
            raise
        raise fail(problem.message, unavailable_code if problem.transient else 2) from None


async def open_database(db, *, migrate: bool) -> None:
    """Reach the database and check its schema (or, with `migrate`, bring it up to date); raise
    Failed, saying what to do, if it cannot be reached or opened or is not at this code's newest
    migration. Without `migrate` nothing is created: no table, and no SQLite file either."""
    from study.database import SCHEMA_CURRENT, SCHEMA_EMPTY, SCHEMA_OLDER

    where = f"DATABASE_URL {db.display_url()}"
    file = db.sqlite_file
    if file is not None and not file.parent.is_dir():
        raise Failed(Problem(f"The SQLite database's folder {file.parent} does not exist: create it, or correct {where}."))
    try:
        state = await db.schema_state()
        if migrate and state in (SCHEMA_EMPTY, SCHEMA_OLDER):
            await db.migrate()
            state = SCHEMA_CURRENT
    except Exception as exc:
        problem = None if debugging() else explain(exc, database=db, opening=True)
        if problem is None:
            raise
        raise Failed(problem) from None
    if state == SCHEMA_EMPTY:
        raise Failed(Problem(f"The database has no trialbot tables yet ({where}): run `trialbot db upgrade` first."))
    if state == SCHEMA_OLDER:
        raise Failed(Problem(f"The database's schema is older than this trialbot ({where}): run `trialbot db upgrade` "
                             "first."))
    if state != SCHEMA_CURRENT:
        raise Failed(Problem(f"The database was migrated by a newer trialbot, or is not trialbot's ({where}): update "
                             "trialbot, or correct DATABASE_URL."))


def writable_folder(path: Path, option: str) -> None:
    """Stop, in one line, unless files can be written in the folder `path` (made if missing)."""
    problem = _unwritable(path, folder=True)
    if problem:
        raise fail(f"{option}: cannot write in {path}: {problem}.")


def writable_file(path: Path, option: str) -> None:
    """Stop, in one line, unless the file `path` can be created or appended to (its folder must exist)."""
    problem = _unwritable(path, folder=False)
    if problem:
        raise fail(f"{option}: cannot write {path}: {problem}.")


def _unwritable(path: Path, *, folder: bool) -> str | None:
    if path.exists():
        if folder and not path.is_dir():
            return "it is a file, not a folder (give a folder; it is made if missing)"
        if not folder and path.is_dir():
            return "it is a folder (give a file)"
        return None if os.access(path, os.W_OK | (os.X_OK if folder else 0)) else "permission denied"
    parent = path.parent
    if not folder and not parent.is_dir():
        return f"{parent} is not a folder" if parent.exists() else f"the folder {parent} does not exist"
    existing = parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    return None if os.access(existing, os.W_OK | os.X_OK) else f"permission denied in {existing}"



def now() -> datetime:
    return datetime.now(UTC)


def parse_date(value: str, option: str):
    from datetime import date

    try:
        return date.fromisoformat(value)
    except ValueError:
        raise fail(f"{option}: {value!r} is not a date like 2026-11-24") from None


def parse_time(value: str | None):
    from study.protocol import parse_hhmm

    if value is None:
        return None
    try:
        return parse_hhmm(value)
    except ValueError as exc:
        raise fail(f"--time: {exc}") from None


def participant_work(study_id: str, work, *, refusals: tuple[type[Exception], ...] = (), describe=str,
                     acting: tuple[str | None, str, str] | None = None):
    """Run `work(session, protocol, participant)` in one transaction for the participant named;
    an unknown participant, or one of `refusals` (described by `describe`), is one line and exit
    code 2, and nothing is written. Shared by the commands that change one participant's record
    (bot/cli/visits.py, bot/cli/treatment.py, bot/cli/corrections.py).

    A command that changes the record passes `acting=(as_, permission, doing)`: the staff member
    named is checked first and `work` gets their Actor as a fourth argument."""
    from study import participants

    _, protocol, _ = context()

    async def go(db):
        async with db.transaction() as session:
            actor = await actor_for(session, *acting) if acting is not None else None
            participant = await participants.by_study_id(session, study_id)
            if participant is None:
                raise fail(f"No participant {study_id}.")
            if actor is not None:
                return await work(session, protocol, participant, actor)
            return await work(session, protocol, participant)

    try:
        return with_database(go)
    except refusals as exc:
        raise fail(describe(exc)) from None

