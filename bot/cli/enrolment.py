"""`trialbot enroll` and `trialbot invite`: a participant into the study, and their single-use invite."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bot.cli.arguments import ZONE_HELP, StudyIdArgument, time_zone
from bot.cli.common import actor_for, context, fail, now, refuse_unconfirmed, with_database
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

    async def enrol_and_invite(db) -> None:
        async with db.transaction() as session:
            actor = await actor_for(session, as_, roles.ENROL, "enrol participants")
            participant = await participants.enroll(session, protocol, request, actor=actor, now=now())
        typer.echo(f"Enrolled {participant.study_id} ({participant.timezone}, {participant.language}).")
        await _issue_invite(settings, protocol, db, request.study_id, qr_dir, as_)

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
    with_database(lambda db: _issue_invite(settings, protocol, db, study_id, qr_dir, as_))


async def _issue_invite(settings: Settings, protocol, db, study_id: str, qr_dir: Path, as_: str | None) -> None:
    from datetime import timedelta

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
