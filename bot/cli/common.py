"""What every `trialbot` command shares: settings, protocol and database for one command, the staff
member acting, and failures as one line with exit code 2 instead of a traceback."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import typer

from bot.settings import Settings
from study.audit import Actor


def fail(message: str, code: int = 2) -> typer.Exit:
    typer.secho(message, fg=typer.colors.RED, err=True)
    return typer.Exit(code)


async def actor_for(session, named: str | None, permission: str, doing: str) -> Actor:
    """The staff member running this command (--as / TRIALBOT_OPERATOR), if their role allows it."""
    from bot.operator import acting_as

    return await acting_as(session, named, permission, doing=doing)


def context():
    """Settings, protocol and database for one command, with readable errors instead of tracebacks."""
    from study.database import Database
    from study.protocol import ProtocolError, load_protocol

    settings = Settings()
    try:
        protocol = load_protocol(settings.study_file)
    except ProtocolError as exc:
        raise fail(str(exc)) from None
    return settings, protocol, Database(settings.database_url)


def refuse_unconfirmed(settings: Settings, protocol) -> None:
    """Stop, in one line, unless the site has confirmed study.toml against the approved protocol
    ([protocol]): the shipped file is an example, and these commands act for real participants."""
    problem = protocol.confirmation_problem(settings.study_file)
    if problem is not None:
        raise fail(problem)


def with_database(work, *, migrate: bool = True):
    """Run `work(db)` against the configured database, migrated first, and close it after."""
    _, _, db = context()

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
        raise fail(f"Nothing done: {exc}") from None



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

