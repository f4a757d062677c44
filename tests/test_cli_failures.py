"""Every failure an operator can meet or cause is one line, never a traceback (issue 17).

Every command registered in bot/cli/__init__.py (enumerated from the Typer app, so a new one is
covered, or this test fails until it has a case in COMMANDS) is run against Telegram out of reach
(a closed loopback port, a token of the right shape), a database out of reach (a closed
PostgreSQL port, a SQLite file in a folder that does not exist) and a database not migrated: one
line, exit code 2 (0 when the command needs neither; `trialbot run`, 75 when it cannot reach them,
so systemd tries again), no traceback, the token never shown, a password masked. Only `run` and
`db upgrade` change the schema: the others create no table, and no SQLite file.

Most commands run in this process (Typer's CliRunner); a few as `python -m bot ...`, to show that
nothing reaches stderr but the line. Nothing here waits on the clock.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from typer.main import get_command
from typer.testing import CliRunner

from bot.cli import app
from bot.cli.common import TRY_AGAIN
from sandbox.server import BotApiServer
from sandbox.world import TelegramWorld
from study.database import Database
from tests.conftest import PG_URL, REQUIRE_PG
from tests.ledger import approve_all
from tests.study_files import write_study_file
from tests.trial import COORDINATOR

REPO = Path(__file__).resolve().parent.parent
TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"  # the right shape, valid nowhere
PASSWORD = "pg-Secret-42"
USERNAME = "site_trial_bot"


@dataclass(frozen=True)
class Case:
    """A command's arguments, and what it does against the seeded database with Telegram out of
    reach (`ok`: its exit code there). `database`: whether it needs the study database at all."""

    args: list[str] = field(default_factory=list)
    ok: int = 0
    database: bool = True
    skip: str | None = None


# Every command: arguments it accepts, on the database `seeded` makes (Dana Lee the coordinator,
# Dr Gray the investigator, Mo a monitor; P001 with visits planned, P005 without, P006 with its
# treatment interrupted; every text approved).
COMMANDS: dict[tuple[str, ...], Case] = {
    ("init",): Case(["new-site"], database=False),  # writes files only: neither Telegram nor the database
    ("run",): Case(ok=TRY_AGAIN),
    ("demo",): Case(skip="its own scratch database and a Telegram stand-in on 127.0.0.1: needs neither "
                         "(tests/test_web_demo.py runs it)"),
    ("db", "upgrade"): Case(),
    ("enroll",): Case(["P002", "--timezone", "Europe/London", "--language", "en"]),
    ("invite",): Case(["P001"]),
    ("participant", "timezone"): Case(["P001", "Europe/Paris"]),
    ("participant", "pause"): Case(["P001"], ok=2),  # refused in one line: P001 has not joined the bot
    ("participant", "end"): Case(["P001", "withdrawn", "--reason", "moved away"]),
    ("deliveries",): Case(["P001"]),
    ("visits", "plan"): Case(["P005", "--baseline", "2026-11-24"]),
    ("visits", "add"): Case(["P001", "--name", "extra1", "--date", "2026-12-02"]),
    ("visits", "move"): Case(["P001", "week4", "--date", "2026-12-23", "--reason", "holiday"]),
    ("visits", "cancel"): Case(["P001", "week4", "--reason", "not needed"]),
    ("visits", "done"): Case(["P001", "baseline"]),
    ("visits", "list"): Case(["P001"]),
    ("treatment", "show"): Case(["P001"]),
    ("treatment", "interrupt"): Case(["P001", "--reason", "infection"]),
    ("treatment", "resume"): Case(["P006", "--text", "infection resolved", "--as", "Dr Gray"]),
    ("treatment", "off"): Case(["P001"]),
    ("correct", "list"): Case(["P001"]),
    # No diary entry or check-in 1 in the seeded record: refused, in one line.
    ("correct", "entry"): Case(["P001", "1", "--withdraw", "--reason", "did not happen"], ok=2),
    ("correct", "checkin"): Case(["P001", "1", "--itch", "3", "--reason", "typed 8 for 3"], ok=2),
    ("staff", "add"): Case(["--telegram-id", "7009", "--name", "Lee Park", "--role", "monitor", "--as", "Dr Gray"]),
    ("staff", "role"): Case(["Mo", "coordinator", "--as", "Dr Gray"]),
    ("staff", "deactivate"): Case(["Mo", "--reason", "left the team", "--as", "Dr Gray"]),
    ("staff", "list"): Case(),
    ("messages", "lint"): Case(database=False),
    ("messages", "status"): Case(),
    ("messages", "diff"): Case(["help"]),
    ("messages", "preview"): Case(["help"]),
    ("messages", "approve"): Case(["help", "--irb-ref", "IRB 26-1042 amendment 2"]),
    ("messages", "review-packet"): Case(["--out", "packet.html"]),
    ("messages", "sent"): Case(),
    ("audit", "verify"): Case(),
    ("audit", "anchor"): Case(),
    ("audit", "show"): Case(),
    ("export",): Case(["--format", "csv", "--out", "export"]),
}
MIGRATING = {("run",), ("db", "upgrade")}  # the only commands that may change the schema


def registered_commands() -> list[tuple[str, ...]]:
    """Every command of the `trialbot` Typer app, as the words that name it."""

    def walk(group, path: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
        for name, command in group.commands.items():
            if hasattr(command, "commands"):
                yield from walk(command, (*path, name))
            else:
                yield (*path, name)

    return sorted(walk(get_command(app), ()))


RUNNABLE = [path for path in registered_commands() if path in COMMANDS and COMMANDS[path].skip is None]


def ids(path: tuple[str, ...]) -> str:
    return "-".join(path)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then let go)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def seen(result) -> str:
    """What the command printed (stdout and stderr), checked for what must never be there."""
    output = result.output
    assert "Traceback" not in output, output
    assert TOKEN not in output and TOKEN.split(":")[1] not in output, output
    assert PASSWORD not in output, output
    assert "Usage:" not in output, f"the case's arguments no longer fit the command: {output}"
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"{type(result.exception).__name__} escaped: {result.exception!r}")
    return output.strip()


def one_line(result) -> str:
    output = seen(result)
    assert len(output.splitlines()) == 1, output
    return output


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """`trialbot run` configures the root logger (to this test's captured stderr): put it back."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A study file the site has confirmed."""
    return write_study_file(tmp_path_factory.mktemp("site"))


@pytest.fixture(scope="module")
def seeded(site: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database as a site's would be after a few days, made with the command line."""
    folder = tmp_path_factory.mktemp("seeded")
    path = folder / "seeded.db"
    url = f"sqlite+aiosqlite:///{path}"
    env = {"DATABASE_URL": url, "STUDY_FILE": str(site), "TELEGRAM_BOT_USERNAME": USERNAME,
           "TELEGRAM_BOT_TOKEN": None, "TRIALBOT_OPERATOR": "Dana Lee"}
    runner = CliRunner()
    steps = [
        ["db", "upgrade"],
        ["staff", "add", "--telegram-id", "7001", "--name", "Dana Lee", "--role", "coordinator"],
        ["staff", "add", "--telegram-id", "7002", "--name", "Dr Gray", "--role", "investigator"],
        ["staff", "add", "--telegram-id", "7003", "--name", "Mo", "--role", "monitor", "--as", "Dr Gray"],
        *(["enroll", study_id, "--timezone", "America/New_York", "--language", "en", "--qr-dir", str(folder)]
          for study_id in ("P001", "P005", "P006")),
        ["visits", "plan", "P001", "--baseline", "2026-11-24"],
        ["treatment", "interrupt", "P006", "--reason", "infection"],
    ]
    cwd = Path.cwd()
    os.chdir(folder)
    try:
        for step in steps:
            result = runner.invoke(app, step, env=env)
            assert result.exit_code == 0, (step, result.output)
    finally:
        os.chdir(cwd)

    async def approve() -> None:
        from study.protocol import load_protocol

        db = Database(url)
        try:
            await approve_all(db, load_protocol(site), actor=COORDINATOR)
        finally:
            await db.dispose()

    asyncio.run(approve())
    return path


@pytest.fixture
def trialbot(site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restore_logging):
    """trialbot(database_url, *args, **settings): one command in this process, in tmp_path, as
    Dana Lee, with the token set and Telegram at a closed port unless the settings say otherwise."""
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    def run(database_url: str, *args: str, **settings: str | None):
        env: dict[str, str | None] = {
            "DATABASE_URL": database_url, "STUDY_FILE": str(site), "TRIALBOT_OPERATOR": "Dana Lee",
            "TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_URL": f"http://127.0.0.1:{closed_port()}",
            "TELEGRAM_BOT_USERNAME": None, "TRIALBOT_DEBUG": None,
        }
        env.update({name.upper(): value for name, value in settings.items()})
        return runner.invoke(app, list(args), env=env)

    return run


def test_every_command_has_a_case() -> None:
    registered = set(registered_commands())
    missing = sorted(registered - COMMANDS.keys())
    assert not missing, f"give these commands a case in COMMANDS (arguments they accept): {missing}"
    assert not sorted(COMMANDS.keys() - registered), "COMMANDS names commands that are gone"


# -- Telegram out of reach ----------------------------------------------------------------------


@pytest.mark.parametrize("path", RUNNABLE, ids=ids)
def test_telegram_out_of_reach(path: tuple[str, ...], trialbot, seeded: Path, tmp_path: Path) -> None:
    """Commands that do not need Telegram work without it; those that do say so in one line."""
    database = tmp_path / "copy.db"
    shutil.copy(seeded, database)
    case = COMMANDS[path]
    result = trialbot(f"sqlite+aiosqlite:///{database}", *path, *case.args)
    output = seen(result)
    assert result.exit_code == case.ok, output
    if path == ("run",):
        assert one_line(result).startswith("Cannot reach Telegram"), output
    if path in {("enroll",), ("invite",)}:
        study_id = case.args[0]
        assert "  code: " in output and "TELEGRAM_BOT_USERNAME" in output, output
        assert f"trialbot invite {study_id}" in output and "Cannot reach Telegram" in output, output
    if case.ok == 2:
        one_line(result)


# -- The database out of reach ------------------------------------------------------------------


@pytest.mark.parametrize("path", RUNNABLE, ids=ids)
def test_postgresql_out_of_reach(path: tuple[str, ...], trialbot) -> None:
    case = COMMANDS[path]
    result = trialbot(f"postgresql+asyncpg://trialbot:{PASSWORD}@127.0.0.1:{closed_port()}/trialbot",
                      *path, *case.args)
    if not case.database:
        seen(result)
        assert result.exit_code == 0
        return
    line = one_line(result)
    assert result.exit_code == (TRY_AGAIN if path == ("run",) else 2), line
    assert line.startswith("Nothing answers at 127.0.0.1:"), line
    assert "trialbot:***@127.0.0.1" in line, line  # the URL is shown, its password masked


@pytest.mark.parametrize("path", RUNNABLE, ids=ids)
def test_sqlite_in_a_missing_folder(path: tuple[str, ...], trialbot, tmp_path: Path) -> None:
    case = COMMANDS[path]
    result = trialbot(f"sqlite+aiosqlite:///{tmp_path / 'nowhere' / 'trialbot.db'}", *path, *case.args)
    assert not (tmp_path / "nowhere").exists()
    if not case.database:
        seen(result)
        assert result.exit_code == 0
        return
    line = one_line(result)
    assert result.exit_code == 2, line
    assert line.startswith(f"The SQLite database's folder {tmp_path / 'nowhere'} does not exist"), line


@pytest.mark.parametrize("url", [
    "mysql+aiomysql://trialbot@localhost/trialbot", "postgresql://trialbot@localhost/trialbot",
    f"postgresql+asyncpg://trialbot:{PASSWORD}@localhost:port/trialbot", "sqlite:///trialbot.db", "trialbot.db",
])
def test_database_url_that_cannot_be_used(url: str, trialbot) -> None:
    line = one_line(trialbot(url, "staff", "list"))
    assert line.startswith("DATABASE_URL cannot be used") and "sqlite+aiosqlite:///" in line, line


def test_a_setting_that_is_not_valid(trialbot, tmp_path: Path) -> None:
    for args in (("staff", "list"), ("messages", "lint")):
        result = trialbot(f"sqlite+aiosqlite:///{tmp_path / 'trialbot.db'}", *args, webhook_port="eighty")
        line = one_line(result)
        assert result.exit_code == 2 and line.startswith("A setting is not valid (WEBHOOK_PORT: "), line
        assert "eighty" not in line  # what was given is not echoed: it could be a secret


def test_postgresql_database_that_does_not_exist(trialbot) -> None:
    if not PG_URL:
        pytest.skip("needs TRIALBOT_TEST_DATABASE_URL")
    url = make_url(PG_URL).set(database=f"missing_{uuid.uuid4().hex[:12]}")
    result = trialbot(url.render_as_string(hide_password=False), "staff", "list")
    line = one_line(result)
    assert result.exit_code == 2 and f'database "{url.database}" does not exist' in line, line


# -- A database not (fully) migrated ------------------------------------------------------------

READING = [path for path in RUNNABLE if COMMANDS[path].database and path not in MIGRATING]


@pytest.mark.parametrize("path", READING, ids=ids)
def test_sqlite_not_migrated(path: tuple[str, ...], trialbot, tmp_path: Path) -> None:
    """Not even an empty file is left behind."""
    file = tmp_path / "trialbot.db"
    result = trialbot(f"sqlite+aiosqlite:///{file}", *path, *COMMANDS[path].args)
    line = one_line(result)
    assert result.exit_code == 2 and "run `trialbot db upgrade` first" in line, line
    assert not file.exists()


def test_sqlite_file_without_tables_gets_none(trialbot, tmp_path: Path) -> None:
    file = tmp_path / "trialbot.db"
    sqlite3.connect(file).close()
    for path in READING:
        line = one_line(trialbot(f"sqlite+aiosqlite:///{file}", *path, *COMMANDS[path].args))
        assert "run `trialbot db upgrade` first" in line, (path, line)
    with sqlite3.connect(file) as connection:
        assert connection.execute("SELECT name FROM sqlite_master").fetchall() == []


def test_older_schema_asks_for_an_upgrade(trialbot, tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"

    async def migrate_to_an_older_revision() -> None:
        db = Database(url)
        await db.migrate("0012")
        await db.dispose()

    asyncio.run(migrate_to_an_older_revision())
    line = one_line(trialbot(url, "audit", "verify"))
    assert line.startswith("The database's schema is older than this trialbot") and "trialbot db upgrade" in line
    assert trialbot(url, "db", "upgrade").exit_code == 0
    assert trialbot(url, "staff", "list").exit_code == 0


@pytest.fixture
def empty_postgresql():
    """A PostgreSQL database of its own, with nothing in it; dropped afterwards."""
    if not PG_URL:
        if REQUIRE_PG:
            pytest.fail("TRIALBOT_REQUIRE_POSTGRES=1 but TRIALBOT_TEST_DATABASE_URL is not set")
        pytest.skip("PostgreSQL tests need TRIALBOT_TEST_DATABASE_URL")
    server = PG_URL
    name = f"unmigrated_{uuid.uuid4().hex[:12]}"

    async def admin(statement: str):
        engine = create_async_engine(server, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as connection:
                await connection.execute(text(statement))
        finally:
            await engine.dispose()

    asyncio.run(admin(f"CREATE DATABASE {name}"))
    try:
        yield make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(admin(f"DROP DATABASE {name} WITH (FORCE)"))


def test_postgresql_not_migrated_gets_no_table(trialbot, empty_postgresql: str) -> None:
    """What the tester saw: `staff list` against a shared database quietly created 18 tables."""
    for path in READING:
        result = trialbot(empty_postgresql, *path, *COMMANDS[path].args)
        line = one_line(result)
        assert result.exit_code == 2 and "run `trialbot db upgrade` first" in line, (path, line)

    async def tables() -> list[str]:
        engine = create_async_engine(empty_postgresql)
        try:
            async with engine.connect() as connection:
                return list((await connection.scalars(text(
                    "SELECT table_schema || '.' || table_name FROM information_schema.tables "
                    "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"))).all())
        finally:
            await engine.dispose()

    assert asyncio.run(tables()) == []


# -- Paths --------------------------------------------------------------------------------------


@pytest.fixture
def copy(seeded: Path, tmp_path: Path) -> str:
    shutil.copy(seeded, tmp_path / "copy.db")
    return f"sqlite+aiosqlite:///{tmp_path / 'copy.db'}"


def test_export_out_a_file_or_under_one(trialbot, copy: str, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine\n")
    for out, said in (("notes.txt", "it is a file, not a folder"), ("notes.txt/export", "notes.txt is a file")):
        result = trialbot(copy, "export", "--format", "csv", "--out", out)
        line = one_line(result)
        assert result.exit_code == 2 and line.startswith(f"--out: cannot write in {out}: ") and said in line, line
    assert (tmp_path / "notes.txt").read_text() == "mine\n"
    assert "export" not in seen(trialbot(copy, "audit", "show")).lower()  # nothing exported, nothing audited


def test_append_and_review_packet_paths(trialbot, copy: str, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine\n")
    for append in ("notes.txt/anchors", str(tmp_path), "missing/anchors"):
        result = trialbot(copy, "audit", "anchor", "--append", append)
        assert result.exit_code == 2 and one_line(result).startswith(f"--append: cannot write {append}: ")
    result = trialbot(copy, "messages", "review-packet", "--out", "notes.txt/packet.html")
    line = one_line(result)
    assert result.exit_code == 2 and line.startswith("--out: cannot write in notes.txt: it is a file"), line


def test_qr_dir_under_a_file_enrols_nobody(trialbot, copy: str, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine\n")
    result = trialbot(copy, "enroll", "P002", "--timezone", "Europe/London", "--language", "en",
                      "--qr-dir", "notes.txt/qr", telegram_bot_username=USERNAME)
    assert result.exit_code == 2 and one_line(result).startswith("--qr-dir: cannot write in notes.txt/qr")
    line = one_line(trialbot(copy, "visits", "list", "P002"))
    assert line.startswith("No participant P002"), line


# -- Enrolling is safe to retry -----------------------------------------------------------------


def test_enroll_without_telegram_prints_the_code_and_invite_gives_the_link(trialbot, copy: str,
                                                                           tmp_path: Path) -> None:
    enrol = ("enroll", "P002", "--timezone", "Europe/London", "--language", "en")
    first = trialbot(copy, *enrol)
    output = seen(first)
    assert first.exit_code == 0, output
    assert output.startswith("Enrolled P002 (Europe/London, en).\nInvite for P002 (single use, valid until")
    code = next(line.split("code: ")[1] for line in output.splitlines() if "code: " in line)
    assert "Cannot reach Telegram" in output and "trialbot invite P002" in output
    again = trialbot(copy, *enrol)
    assert again.exit_code == 2 and one_line(again) == "Not enrolled: P002 is already enrolled"
    invite = trialbot(copy, "invite", "P002", telegram_bot_username=USERNAME)
    output = seen(invite)
    assert invite.exit_code == 0, output
    assert f"https://t.me/{USERNAME}?start=" in output and code not in output
    assert (tmp_path / "invites" / "P002-invite.png").is_file()


async def test_telegram_refusing_the_token(site: Path, seeded: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch, restore_logging) -> None:
    """A 401 from getMe: `run` refuses to start (2: waiting will not mend it), `enroll` prints the code."""
    shutil.copy(seeded, tmp_path / "copy.db")
    monkeypatch.chdir(tmp_path)
    async with BotApiServer(TelegramWorld(token="987654321:ANOTHER-BOT-TOKEN-altogether")) as server:
        env = {"DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'copy.db'}", "STUDY_FILE": str(site),
               "TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_URL": server.base_url.removesuffix("/bot"),
               "TELEGRAM_BOT_USERNAME": None, "TRIALBOT_OPERATOR": "Dana Lee"}

        def invoke(*args: str):
            return CliRunner().invoke(app, list(args), env=env)

        run = await asyncio.to_thread(invoke, "run")
        assert run.exit_code == 2 and one_line(run).startswith("Telegram refused the bot token"), run.output
        enrol = await asyncio.to_thread(invoke, "enroll", "P002", "--timezone", "Europe/London", "--language", "en")
        output = seen(enrol)
        assert enrol.exit_code == 0 and "  code: " in output and "Telegram refused the bot token" in output, output


# -- Anything else: one line naming it, or the traceback on request ------------------------------


def test_unexpected_error_is_one_line_naming_it(trialbot, copy: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from study import staff

    async def broken(session):
        raise RuntimeError(f"something nobody foresaw near {TOKEN}")

    monkeypatch.setattr(staff, "all_staff", broken)
    result = trialbot(copy, "staff", "list")
    line = one_line(result)
    assert result.exit_code == 1 and line.startswith("trialbot failed unexpectedly (RuntimeError: something nobody"), line
    assert "TRIALBOT_DEBUG=1" in line
    debugged = trialbot(copy, "staff", "list", trialbot_debug="1")
    assert isinstance(debugged.exception, RuntimeError)


# -- As a separate process: nothing on stderr but the line --------------------------------------


def trialbot_process(cwd: Path, *args: str, **settings: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_URL": f"http://127.0.0.1:{closed_port()}",
           "TRIALBOT_OPERATOR": "Dana Lee", **{name.upper(): value for name, value in settings.items()}}
    for name in ("TELEGRAM_BOT_USERNAME", "TRIALBOT_DEBUG"):
        if name.lower() not in settings:
            env.pop(name, None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "bot", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=60, check=False)


def test_processes_print_one_line(site: Path, seeded: Path, tmp_path: Path) -> None:
    shutil.copy(seeded, tmp_path / "copy.db")
    copy = f"sqlite+aiosqlite:///{tmp_path / 'copy.db'}"
    dead_database = f"postgresql+asyncpg://trialbot:{PASSWORD}@127.0.0.1:{closed_port()}/trialbot"
    for args, database, code in ((("staff", "list"), dead_database, 2), (("run",), dead_database, TRY_AGAIN),
                                 (("run",), copy, TRY_AGAIN), (("audit", "verify"), f"{copy}-missing", 2)):
        done = trialbot_process(tmp_path, *args, database_url=database, study_file=str(site))
        assert done.returncode == code, (args, done.stderr)
        assert done.stdout == "" and len(done.stderr.strip().splitlines()) == 1, (args, done.stderr)
        assert TOKEN not in done.stderr and PASSWORD not in done.stderr
    assert not Path(f"{tmp_path / 'copy.db'}-missing").exists()
    enrolled = trialbot_process(tmp_path, "enroll", "P002", "--timezone", "Europe/London", "--language", "en",
                                database_url=copy, study_file=str(site))
    assert enrolled.returncode == 0, enrolled.stderr
    assert "  code: " in enrolled.stdout and "Traceback" not in enrolled.stderr
    assert len(enrolled.stderr.strip().splitlines()) == 1 and "trialbot invite P002" in enrolled.stderr


@pytest.mark.timeout(90)
async def test_run_outlives_the_network_going_away(site: Path, seeded: Path, tmp_path: Path) -> None:
    """Once serving, Telegram out of reach is a warning, not the end: PTB polls again."""
    from datetime import UTC, datetime, timedelta

    from study import invites, participants

    shutil.copy(seeded, tmp_path / "copy.db")
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'copy.db'}"
    db = Database(database_url)
    async with db.transaction() as session:
        participant = await participants.by_study_id(session, "P005")
        assert participant is not None
        code = (await invites.issue(session, participant, valid_for=timedelta(days=1), actor=COORDINATOR,
                                    now=datetime.now(UTC))).code
    await db.dispose()
    world = TelegramWorld(token=TOKEN)
    server = BotApiServer(world)
    await server.start()
    env = {**os.environ, "TELEGRAM_BOT_TOKEN": TOKEN, "DATABASE_URL": database_url, "STUDY_FILE": str(site),
           "TELEGRAM_API_URL": server.base_url.removesuffix("/bot"), "LOG_LEVEL": "INFO"}
    env.pop("TELEGRAM_BOT_USERNAME", None)
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", "run", cwd=tmp_path, env=env,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    lines: list[str] = []
    try:
        user = world.add_user(user_id=1001, first_name="Pat")
        await user.send_text(f"/start {code}")
        await user.next_bot_event(timeout=30)  # serving
        await server.stop()

        async def polling_failed() -> None:
            assert process.stdout is not None
            while not any("polling for updates failed" in line for line in lines):
                line = await process.stdout.readline()
                assert line, "trialbot run ended:\n" + "".join(lines)
                lines.append(line.decode())

        await asyncio.wait_for(polling_failed(), 30)
        assert process.returncode is None  # still running, trying again
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        rest = (await asyncio.wait_for(process.communicate(), 30))[0].decode()
        await server.stop()
    output = "".join(lines) + rest
    assert process.returncode == 0, output
    assert "Traceback" not in output and TOKEN not in output
