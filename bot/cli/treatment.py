"""`trialbot treatment ...`: a participant's treatment course from the server, as the study team
does it in Telegram (/treatment, /interrupt, /resume, /offtreatment). Each change names the staff
member making it (--as, bot/operator.py) and is audited under their name; only an investigator
resumes. Every mistake is one line, never a traceback."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from bot.cli.arguments import StudyIdArgument
from bot.operator import AsOption
from study import roles
from study.audit import Actor

treatment_app = typer.Typer(help="A participant's treatment course: show, interrupt, resume, end.",
                            no_args_is_help=True)


def _fail(message: str) -> typer.Exit:
    from bot.cli.common import fail

    return fail(message)


def _work(study_id: str, work, acting: tuple[str | None, str, str] | None = None):
    """`work(session, protocol, participant[, actor])` in one transaction; every refusal one line."""
    from bot.cli.common import participant_work
    from study.treatment import TreatmentError

    return participant_work(study_id, work, refusals=(TreatmentError,), describe=lambda exc: f"Nothing changed: {exc}.",
                            acting=acting)


def _reason(value: str):
    from study.models import TreatmentReason

    try:
        return TreatmentReason(value)
    except ValueError:
        raise _fail(f"--reason must be one of: {', '.join(r.value for r in TreatmentReason)}") from None


def _change(study_id: str, state: str, reason: str, text: str | None, as_: str | None, *,
            permission: str = roles.TREATMENT, doing: str = "change a treatment course") -> None:
    from study import treatment
    from study.models import TreatmentState

    cause = _reason(reason)

    async def change(session, protocol, participant, actor: Actor):
        await treatment.change(session, protocol, participant, TreatmentState(state), cause, actor=actor,
                               now=datetime.now(UTC), text=text)
        return participant.treatment

    now_state = _work(study_id, change, (as_, permission, doing))
    typer.echo(f"{study_id} is now {now_state.replace('_', ' ')} ({reason}); the participant is told.")


@treatment_app.command("show")
def show(study_id: StudyIdArgument) -> None:
    """The participant's treatment course now, and its history."""
    from study import treatment

    async def read(session, protocol, participant):
        return participant.treatment, participant.treatment_reason, await treatment.history(session, participant)

    state, reason, history = _work(study_id, read)
    typer.echo(f"{study_id}: {state.replace('_', ' ')}" + (f" ({reason})" if reason else ""))
    for change in history:
        words = f": {change.reason_text}" if change.reason_text else ""
        typer.echo(f"  {change.changed_at:%Y-%m-%d %H:%M} UTC  {change.previous} -> {change.state}  "
                   f"{change.reason}  by {change.changed_by}{words}")


@treatment_app.command("interrupt")
def interrupt(
    study_id: StudyIdArgument,
    reason: Annotated[str, typer.Option(help="pregnancy, infection, adverse_event, investigator_decision or other")],
    text: Annotated[str | None, typer.Option(help="In your own words, for the record.")] = None,
    as_: AsOption = None,
) -> None:
    """Stop the cream: cream reminders stop; visits, check-ins and safety alerts go on."""
    _change(study_id, "interrupted", reason, text, as_)


@treatment_app.command("resume")
def resume(
    study_id: StudyIdArgument,
    text: Annotated[str, typer.Option(help="Why, in the investigator's words.")],
    as_: AsOption = None,
) -> None:
    """Restart an interrupted treatment: the investigator's decision (--as the investigator), with a reason."""
    if not text.strip():
        raise _fail("Resuming needs a reason (--text).")
    _change(study_id, "on_treatment", "investigator_decision", text.strip(), as_,
            permission=roles.RESUME_TREATMENT, doing="resume a treatment (only the investigator decides that)")


@treatment_app.command("off")
def off(
    study_id: StudyIdArgument,
    reason: Annotated[str, typer.Option(help="end_of_treatment, adverse_event, investigator_decision, ...")] = "end_of_treatment",
    text: Annotated[str | None, typer.Option(help="In your own words, for the record.")] = None,
    as_: AsOption = None,
) -> None:
    """The treatment period is over: the cream stops; follow-up visits and check-ins go on."""
    _change(study_id, "off_treatment", reason, text, as_)
