"""`trialbot export`: the study record as CSV files with a data dictionary, or for REDCap (audited)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bot.cli.common import actor_for, context, fail, now, with_database, writable_folder
from bot.operator import AsOption
from study import roles


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
        raise fail(f"--format must be one of {', '.join(exporting.FORMATS)}")
    writable_folder(out, "--out")  # before the record is read, or the export audited
    _, protocol, _ = context()  # its lists (missed-dose reasons, red flags, languages) are choice lists

    async def work(db):
        async with db.transaction() as session:  # who exports is checked before anything is read
            actor = await actor_for(session, as_, roles.EXPORT, "export the study record")
        with Progress(transient=True) as progress:
            task = progress.add_task("Exporting", total=exporting.STEPS)
            return await exporting.run(db, protocol=protocol, fmt=fmt, out=out, include_contact=include_contact,
                                       actor=actor, now=now(), tick=lambda rows: progress.advance(task))

    datasets, written = with_database(work)
    for ds in datasets:
        typer.echo(f"{ds.name}: {len(ds.rows)} row(s)")
    for path in written:
        typer.echo(f"wrote {path}")
