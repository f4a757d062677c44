"""`trialbot visits ...`: study visits planned from the protocol, added, moved, cancelled, listed."""

from __future__ import annotations

from typing import Annotated

import typer

from bot.cli.arguments import StudyIdArgument
from bot.cli.common import context, fail, now, parse_date, parse_time, participant_work, refuse_unconfirmed
from bot.operator import AsOption
from study import roles
from study.models import VisitStatus

VisitArgument = Annotated[str, typer.Argument(help="The visit's name, as `trialbot visits list` shows it, e.g. week4.")]

visits_app = typer.Typer(help="Study visits: plan from the protocol, add, move, cancel, list.", no_args_is_help=True)


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
        raise fail(f"{participant.study_id} has no visit named {name} (see: trialbot visits list {participant.study_id})")
    return visit


@visits_app.command("plan")
def visits_plan(
    study_id: StudyIdArgument,
    baseline: Annotated[str, typer.Option(help="The baseline date the protocol's day offsets count from, e.g. 2026-11-24.")],
    as_: AsOption = None,
) -> None:
    """Create the protocol's visit schedule for a participant (once; audited)."""
    from study import visits

    day = parse_date(baseline, "--baseline")
    refuse_unconfirmed(*context()[:2])  # the plan copies [visits] into the participant's record

    async def work(session, protocol, participant, actor):
        return await visits.plan_schedule(session, protocol, participant, baseline=day, actor=actor, now=now())

    created = _visit_work(study_id, work, as_)
    typer.echo(f"Planned {len(created)} visits for {study_id} from baseline {day.isoformat()}:")
    for visit in created:
        typer.echo("  " + _visit_line(visit))


@visits_app.command("add")
def visits_add(
    study_id: StudyIdArgument,
    name: Annotated[str, typer.Option(help="A short name for the visit, e.g. extra1.")],
    date: Annotated[str, typer.Option(help="The visit's day, e.g. 2026-12-02.")],
    time: Annotated[str | None, typer.Option(help="The visit's time, participant-local, e.g. 09:30.")] = None,
    label: Annotated[str | None, typer.Option(help="What the study team calls it (default: the name).")] = None,
    reason: Annotated[str | None, typer.Option(help="Why, for the audit trail.")] = None,
    as_: AsOption = None,
) -> None:
    """Add an extra visit (audited)."""
    from study import visits

    day, at = parse_date(date, "--date"), parse_time(time)

    async def work(session, protocol, participant, actor):
        return await visits.add(session, participant, name=name, day=day, at=at, label=label, actor=actor,
                                now=now(), reason=reason)

    visit = _visit_work(study_id, work, as_)
    typer.echo(f"Added for {study_id}: " + _visit_line(visit))


@visits_app.command("move")
def visits_move(
    study_id: StudyIdArgument,
    name: VisitArgument,
    date: Annotated[str, typer.Option(help="The new day, e.g. 2026-12-23.")],
    time: Annotated[str | None, typer.Option(help="The new time, participant-local, e.g. 09:30.")] = None,
    reason: Annotated[str | None, typer.Option(help="Why, for the audit trail.")] = None,
    as_: AsOption = None,
) -> None:
    """Move a visit to another day (audited); warns when the day is outside the protocol's window."""
    from study import visits

    day, at = parse_date(date, "--date"), parse_time(time)

    async def work(session, protocol, participant, actor):
        visit = await _named_visit(session, participant, name)
        return await visits.move(session, participant, visit, day=day, at=at, actor=actor, now=now(),
                                 reason=reason)

    result = _visit_work(study_id, work, as_)
    typer.echo(f"Moved for {study_id}: " + _visit_line(result.visit))
    if result.outside_window:
        typer.secho(f"Warning: {day.isoformat()} is outside the protocol's window for {name} "
                    f"({result.visit.target_date.isoformat()} ±{result.visit.window_days} days).",
                    fg=typer.colors.YELLOW, err=True)


@visits_app.command("cancel")
def visits_cancel(
    study_id: StudyIdArgument,
    name: VisitArgument,
    reason: Annotated[str, typer.Option(help="Why, for the audit trail.")],
    as_: AsOption = None,
) -> None:
    """Cancel a visit: no more reminders for it (audited)."""
    from study import visits

    async def work(session, protocol, participant, actor):
        visit = await _named_visit(session, participant, name)
        await visits.cancel(session, participant, visit, actor=actor, now=now(), reason=reason)
        return visit

    visit = _visit_work(study_id, work, as_)
    typer.echo(f"Cancelled for {study_id}: " + _visit_line(visit))


@visits_app.command("done")
def visits_done(
    study_id: StudyIdArgument,
    name: VisitArgument,
    reason: Annotated[str, typer.Option(help="For the audit trail.")] = "visit took place",
    as_: AsOption = None,
) -> None:
    """Mark a visit as done (audited)."""
    from study import visits

    async def work(session, protocol, participant, actor):
        visit = await _named_visit(session, participant, name)
        await visits.set_status(session, participant, visit, VisitStatus.DONE, actor=actor, now=now(), reason=reason)
        return visit

    visit = _visit_work(study_id, work, as_)
    typer.echo(f"Done for {study_id}: " + _visit_line(visit))


@visits_app.command("list")
def visits_list(study_id: StudyIdArgument) -> None:
    """A participant's visits, in date order."""
    from study import visits

    async def work(session, protocol, participant):
        return await visits.for_participant(session, participant)

    rows = participant_work(study_id, work)
    if not rows:
        typer.echo(f"{study_id} has no visits yet. Plan them: trialbot visits plan {study_id} --baseline YYYY-MM-DD")
    for visit in rows:
        typer.echo(_visit_line(visit))
