"""`trialbot ...`: the command line for the study team's server and for developers.

Built with Typer (typed options, help text and shell completion for free). This is the one place
every command is registered; each group lives in a module of its own beside this one, and what
they share (settings, the database, the staff member acting, failing in one line) is in
`bot/cli/common.py`. Commands that change the study record, approve a text or export name the staff
member doing it (`--as` or TRIALBOT_OPERATOR, checked against the staff list and their role:
bot/operator.py); the audit trail records that person, never an operating-system login.
"""

from __future__ import annotations

import typer

from bot.cli import audit, enrolment, export, init, participant, serve, staff, visits
from bot.cli.common import GuardedGroup
from bot.cli.corrections import correct_app
from bot.cli.messages import messages_app
from bot.cli.treatment import treatment_app
from bot.settings import Settings

app = typer.Typer(help="trialbot: a Telegram companion for clinical-trial participants.", no_args_is_help=True,
                  add_completion=False, cls=GuardedGroup)



@app.callback()
def _settings() -> None:
    """trialbot: a Telegram companion for clinical-trial participants. Run every command from the site's
    folder (`trialbot init DIR` makes one): settings come from the environment and its .env."""
    Settings().export_messages_dir()


# Setting up and running it
app.command()(init.init)
app.command()(serve.run)
app.command()(serve.demo)
app.add_typer(serve.db_app, name="db")
# Participants
app.command()(enrolment.enroll)
app.command()(enrolment.invite)
app.add_typer(participant.participant_app, name="participant")
app.add_typer(visits.visits_app, name="visits")
app.add_typer(treatment_app, name="treatment")
app.add_typer(correct_app, name="correct")
app.command()(participant.deliveries)
# The study team, the texts and the record
app.add_typer(staff.staff_app, name="staff")
app.add_typer(messages_app, name="messages")
app.add_typer(audit.audit_app, name="audit")
app.command()(export.export)


def main() -> None:
    """The `trialbot` command. GuardedGroup turns what a command raises into one line; this is the
    last resort for anything raised outside a command (TRIALBOT_DEBUG=1: the traceback instead)."""
    from bot.cli.common import debugging, fail, unexpected

    try:
        app()
    except Exception as exc:
        if debugging():
            raise
        raise SystemExit(fail(unexpected(exc), code=1).exit_code) from None
