"""`trialbot participant ...` and `trialbot deliveries`: one participant's settings and standing,
and the life of each message the bot started for them."""

from __future__ import annotations

from typing import Annotated

import typer

from bot.cli.arguments import StudyIdArgument, time_zone
from bot.cli.common import actor_for, fail, now, with_database
from bot.operator import AsOption
from study import roles

participant_app = typer.Typer(help="One participant's settings and standing.", no_args_is_help=True)


def _change_participant(study_id: str, as_: str | None, change) -> None:
    """`change(session, participant, actor)` in one transaction, by a staff member who may enrol."""
    from study import participants
    from study.participants import EnrolmentError

    async def work(db) -> None:
        async with db.transaction() as session:
            actor = await actor_for(session, as_, roles.ENROL, "change a participant's record")
            participant = await participants.by_study_id(session, study_id)
            if participant is None:
                raise fail(f"No participant {study_id}.")
            await change(session, participant, actor)

    try:
        with_database(work)
    except EnrolmentError as exc:
        raise fail(str(exc)) from None


@participant_app.command("timezone")
def participant_timezone(
    study_id: StudyIdArgument,
    timezone: Annotated[str, typer.Argument(help="The new time zone, an IANA Area/Location name, e.g. Europe/Madrid.",
                                            callback=time_zone)],
    as_: AsOption = None,
) -> None:
    """Move a participant to another time zone; reminders follow from now on (audited)."""
    from study import participants

    _change_participant(study_id, as_, lambda session, p, actor: participants.move_to_zone(
        session, p, timezone, actor=actor, now=now()))
    typer.echo(f"{study_id} is now in {timezone}.")


@participant_app.command("pause")
def participant_pause(study_id: StudyIdArgument, as_: AsOption = None) -> None:
    """Pause the bot's messages to a participant, as their own /stop does: what is queued is not
    sent and the study team is told; they turn messages back on with /resume (audited)."""
    from study import participants

    async def pause(session, p, actor) -> None:
        participants.check_can_pause(p)
        await participants.pause_messages(session, p, actor=actor, now=now(),
                                          why=f"messages paused by the study team ({actor})")

    _change_participant(study_id, as_, pause)
    typer.echo(f"Messages to {study_id} are paused; they turn them back on with /resume.")


@participant_app.command("end")
def participant_end(
    study_id: StudyIdArgument,
    status: Annotated[str, typer.Argument(help="withdrawn or completed")],
    reason: Annotated[str, typer.Option(help="Why, for the audit trail.")],
    as_: AsOption = None,
) -> None:
    """Withdraw a participant or mark them completed: the bot no longer writes to them."""
    from study import participants

    _change_participant(study_id, as_, lambda session, p, actor: participants.leave_study(
        session, p, status, reason=reason, actor=actor, now=now()))
    typer.echo(f"{study_id} is now {status}.")


def deliveries(
    study_id: StudyIdArgument,
    limit: Annotated[int, typer.Option(help="Show at most this many of the newest messages.")] = 30,
) -> None:
    """The life of each message the bot started for a participant: queued, sent, answered, skipped..."""
    from study import outbox, participants

    async def work(db):
        async with db.transaction() as session:
            participant = await participants.by_study_id(session, study_id)
            if participant is None:
                raise fail(f"No participant {study_id}.")
            found, _ = await outbox.ledger(session, participant.id, limit=limit)
            return participant, found

    participant, found = with_database(work, migrate=False)
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

