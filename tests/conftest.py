"""Shared fixtures: a real database (SQLite always, PostgreSQL when configured), a clock that
only moves when told, the Bot API stand-in on loopback, and the real PTB Application polling it.

PostgreSQL: set TRIALBOT_TEST_DATABASE_URL (for example
postgresql+asyncpg://postgres@127.0.0.1:5432/test). Each test gets a schema of its own. With
TRIALBOT_REQUIRE_POSTGRES=1 (as .ci/run sets) a missing URL fails the run instead of skipping.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sandbox.server import BotApiServer
from sandbox.world import TelegramWorld
from study.clock import ManualClock
from study.database import Database
from study.protocol import EXAMPLE_PROTOCOL, Protocol, load_protocol
from tests.databases import PG_URL, REQUIRE_PG, empty_database_url, migrated  # noqa: F401 - a fixture for every module
from tests.redelivery import HandledUpdates, watching
from tests.study_files import write_study_file
from tests.trial import Trial

REPO = Path(__file__).resolve().parent.parent
# Tuesday 24 November 2026, 10:00 in New York: a plain weekday morning.
START = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        async with migrated(f"sqlite+aiosqlite:///{tmp_path / 'trial.db'}") as database:
            yield database
        return
    if not PG_URL:
        if REQUIRE_PG:
            pytest.fail("TRIALBOT_REQUIRE_POSTGRES=1 but TRIALBOT_TEST_DATABASE_URL is not set")
        pytest.skip("PostgreSQL tests need TRIALBOT_TEST_DATABASE_URL")
    async with migrated(PG_URL) as database:
        yield database


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def protocol() -> Protocol:
    return load_protocol(EXAMPLE_PROTOCOL)


@pytest.fixture
def telegram(clock: ManualClock) -> TelegramWorld:
    return TelegramWorld(now=clock.now)


@pytest.fixture
async def bot_api(telegram: TelegramWorld) -> AsyncIterator[BotApiServer]:
    async with BotApiServer(telegram) as server:
        yield server


@pytest.fixture
async def trial(db: Database, clock: ManualClock, protocol: Protocol, telegram: TelegramWorld,
                bot_api: BotApiServer, request: pytest.FixtureRequest) -> AsyncIterator[Trial]:
    """The whole product running: real Application, polling the stand-in, on a real database."""
    async with Trial.running(db=db, clock=clock, protocol=protocol, world=telegram, server=bot_api) as running_trial:
        yield running_trial
    if "rejections_expected" not in request.keywords:
        assert telegram.rejected_calls == [], "the bot made calls Telegram would reject"


@pytest.fixture
def handled() -> Iterator[HandledUpdates]:
    """The bot's "update N handled" lines during the test (tests/redelivery.py)."""
    with watching() as watcher:
        yield watcher


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """`trialbot ...` as a coordinator runs it at the server: a SQLite file of its own, a study
    file the site has confirmed, no Telegram token, and the coordinator Dana Lee (staff 1) named in
    TRIALBOT_OPERATOR. Call it with the arguments: cli("enroll", ...)."""
    from typer.testing import CliRunner

    from bot.cli import app

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("STUDY_FILE", str(write_study_file(tmp_path / "site")))  # confirmed by the site
    monkeypatch.setenv("TELEGRAM_BOT_USERNAME", "site_trial_bot")
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
    runner = CliRunner()
    upgraded = runner.invoke(app, ["db", "upgrade"])  # only run and db upgrade create the schema
    assert upgraded.exit_code == 0, upgraded.output
    # The site's first staff member, who runs these commands: every change names a person (--as).
    first = runner.invoke(app, ["staff", "add", "--telegram-id", "7001", "--name", "Dana Lee", "--role", "coordinator"])
    assert first.exit_code == 0, first.output
    monkeypatch.setenv("TRIALBOT_OPERATOR", "Dana Lee")
    return lambda *args: runner.invoke(app, list(args))
