"""Parameters many `trialbot` commands take, each read and checked once, as it enters: a study id
(trimmed and in capitals, so p001 is P001, and refused in one line if it cannot be one) and a time
zone (an IANA Area/Location name such as America/New_York, as IANA spells it; an abbreviation, a
fixed offset or an old name refused in one line, with the zones it may mean: study/zones.py)."""

from __future__ import annotations

from typing import Annotated

import typer

from bot.cli.common import fail

STUDY_ID_HELP = "The participant's study id, e.g. P001 (letters are read as capitals: p001 is P001)."
ZONE_HELP = "The participant's time zone, an IANA Area/Location name, e.g. America/New_York or Europe/Madrid."


def study_id(value: str | None) -> str | None:
    """A typed study id as the study stores it, or one line and exit code 2."""
    from study.participants import EnrolmentError, check_study_id

    if value is None:
        return None
    try:
        return check_study_id(value)
    except EnrolmentError as exc:
        raise fail(str(exc)) from None


def time_zone(value: str | None) -> str | None:
    """A typed time zone as IANA spells it, or one line (why not, and the zones it may mean) and exit code 2."""
    from study import zones

    if value is None:
        return None
    try:
        return zones.check(value)
    except zones.ZoneError as exc:
        raise fail(str(exc)) from None


StudyIdArgument = Annotated[str, typer.Argument(help=STUDY_ID_HELP, callback=study_id, show_default=False)]


def study_id_option(help: str) -> typer.models.OptionInfo:
    """`--participant P001`, normalised as the argument is."""
    return typer.Option("--participant", help=help, callback=study_id)
