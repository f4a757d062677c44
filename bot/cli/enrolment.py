"""`trialbot enroll` and `trialbot invite`: a participant into the study, and their single-use invite."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bot.cli.arguments import ZONE_HELP, StudyIdArgument, time_zone
from bot.cli.common import (
    actor_for,
    context,
    explain,
    fail,
    now,
    refuse_unconfirmed,
    telegram_problem,
    with_database,
    writable_folder,
)
from bot.operator import AsOption
from bot.settings import Settings
from study import roles


def enroll(
    study_id: StudyIdArgument,
    timezone: Annotated[str, typer.Option(help=ZONE_HELP, callback=time_zone)],
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
        raise fail(f"--reminder-times: {exc}") from None
    request = EnrolmentRequest(study_id=study_id, timezone=timezone, language=language, wocbp=wocbp,
                               reminder_times=times)
    from study import participants

    settings, protocol, _ = context()
    refuse_unconfirmed(settings, protocol)
    writable_folder(qr_dir, "--qr-dir")  # before anything is saved: the QR code goes there

    async def enrol_and_invite(db) -> None:
        async with db.transaction() as session:
            actor = await actor_for(session, as_, roles.ENROL, "enrol participants")
            participant = await participants.enroll(session, protocol, request, actor=actor, now=now())
        typer.echo(f"Enrolled {participant.study_id} ({participant.timezone}, {participant.language}).")
        # Saved: from here on a failure must say so, and how to get the invite (enrolling again is refused).
        try:
            await _issue_invite(settings, protocol, db, request.study_id, qr_dir, as_)
        except typer.Exit:  # said in one line already
            raise
        except Exception as exc:  # noqa: BLE001 - whatever it was, the participant is enrolled: say so
            problem = explain(exc, database=db)
            why = problem.message if problem is not None else type(exc).__name__
            raise fail(f"{request.study_id} is enrolled, but no invite was issued ({why}); "
                       f"for one: trialbot invite {request.study_id}") from None

    try:
        with_database(enrol_and_invite)
    except EnrolmentError as exc:
        raise fail(f"Not enrolled: {exc}") from None


def invite(
    study_id: StudyIdArgument,
    qr_dir: Annotated[Path, typer.Option(help="Where to write the invite QR code.")] = Path("invites"),
    as_: AsOption = None,
) -> None:
    """Issue a new invite for a participant; any earlier unused invite stops working."""
    settings, protocol, _ = context()
    writable_folder(qr_dir, "--qr-dir")
    with_database(lambda db: _issue_invite(settings, protocol, db, study_id, qr_dir, as_))


async def _issue_invite(settings: Settings, protocol, db, study_id: str, qr_dir: Path, as_: str | None) -> None:
    from datetime import timedelta

    from telegram.error import TelegramError

    from bot.invite_link import bot_username, invite_link, write_qr
    from study import invites, participants

    async with db.transaction() as session:
        actor = await actor_for(session, as_, roles.ENROL, "invite participants")
        participant = await participants.by_study_id(session, study_id)
        if participant is None:
            raise fail(f"No participant {study_id}. Enrol them first: trialbot enroll {study_id} ...")
        try:
            issued = await invites.issue(session, participant,
                                         valid_for=timedelta(days=protocol.enrolment.invite_valid_days),
                                         actor=actor, now=now())
        except invites.InviteRefused as exc:
            raise fail(f"No invite: {exc}") from None
    expires = issued.invite.expires_at.strftime("%Y-%m-%d %H:%M UTC")
    typer.echo(f"Invite for {study_id} (single use, valid until {expires}):")
    try:
        username = await bot_username(settings)
    except TelegramError as exc:  # the code is issued and good: print it, and why there is no link
        typer.echo(f"  code: {issued.code}")
        typer.secho(f"  No link or QR code yet: the bot's username comes from Telegram ({telegram_problem(exc).message}) "
                    f"Set TELEGRAM_BOT_USERNAME, or once Telegram answers, `trialbot invite {study_id}` gives a new "
                    "invite with its link (this code then stops working).", fg=typer.colors.YELLOW, err=True)
        return
    if username is None:
        typer.echo(f"  code: {issued.code}")
        typer.echo("  Set TELEGRAM_BOT_USERNAME (or TELEGRAM_BOT_TOKEN) to get the link and its QR code.")
        return
    link = invite_link(username, issued.code)
    typer.echo(f"  {link}")
    try:
        path = write_qr(link, qr_dir / f"{study_id}-invite.png")
    except OSError as exc:
        raise fail(f"  No QR code: cannot write in {qr_dir} ({exc.strerror or exc}). The link above works without it; "
                   f"`trialbot invite {study_id} --qr-dir FOLDER` gives a new one with its QR code.") from None
    typer.echo(f"  QR code: {path}")
    typer.echo("Hand it over at the consent visit, then delete the file. Anyone with it can join as this participant.")
