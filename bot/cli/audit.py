"""`trialbot audit verify|anchor|show`: the audit trail, checked, anchored and read."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bot.cli.arguments import study_id_option
from bot.cli.common import fail, now, with_database, writable_file

audit_app = typer.Typer(help="The audit trail.", no_args_is_help=True)


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
        raise fail(f"--anchor: {exc}") from None

    async def verify(db) -> audit.VerifyReport:  # the schema is checked first (with_database), never migrated
        async with db.read() as session:
            if not db.is_sqlite:  # one snapshot of chain and records, though the bot writes meanwhile
                await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            report = await audit.verify(session)
            if expected is not None:
                report.problems += await audit_anchor.check(session, expected)
            return report

    report = with_database(verify, migrate=False)
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

    if append is not None:
        writable_file(append, "--append")

    async def take(db) -> audit_anchor.Anchor:
        async with db.read() as session:
            return await audit_anchor.take(session, now())

    line = with_database(take, migrate=False).line()
    if append is not None:
        try:
            with append.open("a", encoding="utf-8") as out:
                out.write(line + "\n")
        except OSError as exc:
            raise fail(f"--append: cannot write {append}: {exc.strerror or exc}") from None
    typer.echo(line)


@audit_app.command("show")
def audit_show(
    participant: Annotated[str | None, study_id_option("Only this participant's records, e.g. P001.")] = None,
    limit: Annotated[int, typer.Option(help="Show at most this many of the newest entries.")] = 50,
) -> None:
    """Print the audit trail: when (UTC and the participant's zone), who, what, and why."""
    from bot.audit_report import format_entries, participant_entries, staff_names
    from study import audit, participants

    async def entries(db) -> tuple[list, dict[str, str]]:
        async with db.transaction() as session:
            names = await staff_names(session)
            if participant and await participants.by_study_id(session, participant) is None:
                raise fail(f"No participant {participant}.")
            if participant:
                return await participant_entries(session, participant, limit=limit), names
            return await audit.entries(session, limit=limit), names

    rows, names = with_database(entries, migrate=False)
    for line in format_entries(rows, names):
        typer.echo(line)

