"""`trialbot correct ...`: the study team's corrections at the server, as /correct does in Telegram.

    trialbot correct list P001 [--days 7]
    trialbot correct entry P001 123 --time "2026-11-24 09:00" --reason "participant called: applied at 9"
    trialbot correct entry P001 123 --kind missed --missed-reason forgot --reason "..."
    trialbot correct entry P001 123 --withdraw --reason "it did not happen"
    trialbot correct checkin P001 45 --itch 3 --reason "typed 8 for 3" --as "Dana Lee"

The actor is the coordinator or investigator named by `--as` (or TRIALBOT_OPERATOR; by staff
number or name, as `trialbot staff list` shows them; bot/operator.py). Every operator mistake is one line on stderr
and exit code 2; nothing is written then. The record stays as recorded (study/corrections.py).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated
from zoneinfo import ZoneInfo

import typer

from bot.cli.arguments import StudyIdArgument
from bot.operator import AsOption

correct_app = typer.Typer(help="Correct a diary entry or a check-in (never overwriting it; audited).",
                          no_args_is_help=True)

ReasonOption = Annotated[str | None, typer.Option(help="Why it is corrected (required; goes into the audit trail).")]


def _fail(message: str) -> typer.Exit:
    typer.secho(message, fg=typer.colors.RED, err=True)
    return typer.Exit(2)


def _record_id(value: str, what: str) -> int:
    if not value.isdigit() or len(value) > 9:
        raise _fail(f"{what} {value!r} is not a number (see: trialbot correct list STUDY_ID).")
    return int(value)


def _reason(reason: str | None) -> str:
    if reason is None or not reason.strip():
        raise _fail("--reason is required: say why the record is corrected (it goes into the audit trail).")
    return reason


def _run(study_id: str, work, as_: str | None):
    """`work(session, protocol, participant, actor, now)` in one transaction by the staff member named
    (who must be allowed to correct), every refusal one line."""
    from bot.cli.common import participant_work
    from study import roles
    from study.corrections import CorrectionRefused

    return participant_work(study_id, lambda session, protocol, person, actor: work(session, protocol, person, actor,
                                                                                      datetime.now(UTC)),
                            refusals=(CorrectionRefused,), describe=lambda refused: refused.describe(),
                            acting=(as_, roles.CORRECT, "correct records"))


def _report(done, actor) -> None:
    what = "check-in" if done.entity == "checkin" else "diary entry"
    changes = "; ".join(f"{field} {old or 'none'} -> {new or 'none'}" for field, old, new in done.changes())
    typer.echo(f"Corrected {done.study_id} {what} {done.record_id} ({actor}): {changes}. "
               f"Reason: {done.rows[0].reason}")


@correct_app.command("list")
def correct_list(
    study_id: StudyIdArgument,
    days: Annotated[int, typer.Option(help="How many local days back, today included.")] = 7,
) -> None:
    """A participant's diary entries and check-ins, with the ids to correct them by (newest first)."""
    from study import corrections

    if not 1 <= days <= 3660:
        raise _fail("--days must be between 1 and 3660.")

    async def read(session, protocol, person):
        return person, *await corrections.recent(session, person, now=datetime.now(UTC), days=days)

    from bot.cli.common import participant_work

    person, entries, checkins = participant_work(study_id, read)
    zone = ZoneInfo(person.timezone)
    typer.echo(f"{person.study_id}: diary entries and check-ins of the last {days} day(s); times in {person.timezone}")
    for v in entries:
        when = (v.local_date.isoformat() if v.kind == "missed" or v.occurred_at is None
                else v.occurred_at.astimezone(zone).strftime("%Y-%m-%d %H:%M"))
        flags = [flag for flag, on in (("late", v.late), ("corrected", v.corrected),
                                       ("taken back by the participant", v.undone),
                                       ("withdrawn by the study team", v.withdrawn_by_staff),
                                       (f"recorded by the participant as entry {v.superseded_by}",
                                        v.superseded_by is not None)) if on]
        reason = f" ({v.missed_reason})" if v.missed_reason else ""
        typer.echo(f"  entry {v.id:<8} {v.kind:<8} {when}{reason}{'  [' + ', '.join(flags) + ']' if flags else ''}")
    for c in checkins:
        answers = ", ".join(f"{name} {c[name]}" for name in ("itch", "pain", "reaction", "reaction_severity",
                                                             "medicines") if c[name] is not None)
        typer.echo(f"  checkin {c.id:<6} {c.checkin.local_date.isoformat()}  {c.checkin.kind}: {answers}"
                   f"{'  [corrected]' if c.corrected else ''}")
    if not entries and not checkins:
        typer.echo("  nothing recorded")


@correct_app.command("entry")
def correct_entry(
    study_id: StudyIdArgument,
    entry_id: Annotated[str, typer.Argument(help="The diary entry's id (see: trialbot correct list).")],
    reason: ReasonOption = None,
    time: Annotated[str | None, typer.Option(help="When it was put on, participant-local: HH:MM or 'YYYY-MM-DD HH:MM'.")] = None,
    day: Annotated[str | None, typer.Option(help="The participant's local day, YYYY-MM-DD.")] = None,
    kind: Annotated[str | None, typer.Option(help="applied or missed (applied needs --time).")] = None,
    missed_reason: Annotated[str | None, typer.Option(help="A missed dose's reason (study.toml), or none.")] = None,
    withdraw: Annotated[bool, typer.Option("--withdraw", help="It did not happen.")] = False,
    restore: Annotated[bool, typer.Option("--restore", help="It did happen after all (undoes --withdraw).")] = False,
    as_: AsOption = None,
) -> None:
    """Correct a diary entry: its time or day, applied or missed, a missed dose's reason, or that it did not happen."""
    from study import corrections

    why = _reason(reason)
    record = _record_id(entry_id, "entry id")
    asked = [(word, value) for word, value in (("kind", kind), ("time", time), ("day", day),
                                               ("missed_reason", missed_reason)) if value is not None]
    asked += [(word, "") for word, on in (("withdraw", withdraw), ("restore", restore)) if on]
    if not asked:
        raise _fail("say what to correct: --time, --day, --kind, --missed-reason, --withdraw or --restore.")

    async def work(session, protocol, person, actor, now):
        done = await corrections.correct_entry(session, protocol, person, record, asked, reason=why, actor=actor,
                                               now=now)
        return done, actor

    done, actor = _run(study_id, work, as_)
    _report(done, actor)


@correct_app.command("checkin")
def correct_checkin(
    study_id: StudyIdArgument,
    checkin_id: Annotated[str, typer.Argument(help="The check-in's id (see: trialbot correct list).")],
    reason: ReasonOption = None,
    itch: Annotated[str | None, typer.Option(help="Worst itch, 0-10.")] = None,
    pain: Annotated[str | None, typer.Option(help="Worst skin pain, 0-10.")] = None,
    reaction: Annotated[str | None, typer.Option(help="none, redness, burning, itching, acne or other.")] = None,
    severity: Annotated[str | None, typer.Option(help="mild, moderate, severe, or none.")] = None,
    medicines: Annotated[str | None, typer.Option(help="no, medicines, other_cream or both.")] = None,
    new_problem: Annotated[str | None, typer.Option(help="A new health problem, in words, or none.")] = None,
    medicines_change: Annotated[str | None, typer.Option(help="What changed in medicines, in words, or none.")] = None,
    as_: AsOption = None,
) -> None:
    """Correct a check-in's answers."""
    from study import corrections

    why = _reason(reason)
    record = _record_id(checkin_id, "check-in id")
    asked = [(word, value) for word, value in (("itch", itch), ("pain", pain), ("reaction", reaction),
                                               ("severity", severity), ("medicines", medicines),
                                               ("new_problem", new_problem), ("medicines_change", medicines_change))
             if value is not None]
    if not asked:
        raise _fail("say what to correct: --itch, --pain, --reaction, --severity, --medicines, --new-problem or "
                    "--medicines-change.")

    async def work(session, protocol, person, actor, now):
        return await corrections.correct_checkin(session, person, record, asked, reason=why, actor=actor,
                                                 now=now), actor

    done, actor = _run(study_id, work, as_)
    _report(done, actor)
