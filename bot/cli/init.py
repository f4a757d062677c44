"""`trialbot init DIR`: a new site's folder, from what ships inside the package.

It writes the example protocol (study.toml and its screening.toml), a .env of settings and a copy of
the message templates with their catalog, which the site edits and the IRB approves; then it prints
the next steps. It never overwrites: a folder that already holds any of these is refused.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Annotated

import typer

from bot.cli.common import fail

ENV_TEMPLATE = Path(__file__).resolve().parent.parent / "env.example"

# In the .env that init writes, these lines of env.example are replaced: the site's own copy of
# the messages, next to it, is the one the bot reads.
ENV_LINES = {
    "# TRIALBOT_MESSAGES_DIR=/srv/trialbot/messages": "TRIALBOT_MESSAGES_DIR=messages",
}

NEXT_STEPS = """\
Next, in {folder}:
  1. Try it with these files, no token needed:   cd {folder} && trialbot demo
  2. Edit study.toml against the approved protocol (study name, phone, e-mail, reminder times,
     visits, languages, safety numbers) and fill in its [protocol] section; edit the texts in
     messages/ if the IRB asks (`trialbot messages lint` checks them).
  3. Put the bot's token from @BotFather in .env (TELEGRAM_BOT_TOKEN=...) and, for a real
     deployment, a PostgreSQL DATABASE_URL (docs/deploy.md).
  4. trialbot db upgrade
  5. trialbot staff add --telegram-id ID --name "NAME" --role investigator
  6. trialbot messages status, then the IRB-approved texts: trialbot messages approve ...
  7. trialbot run
Run every trialbot command from {folder}: it reads .env there."""


def _messages_source() -> Path:
    from messages.catalog import MESSAGES_ROOT

    return MESSAGES_ROOT


def _copy_messages(source: Path, target: Path) -> int:
    """catalog.toml and every language's templates; the code beside them stays in the package."""
    target.mkdir()
    shutil.copy2(source / "catalog.toml", target / "catalog.toml")
    copied = 0
    for language in sorted(p for p in source.iterdir() if p.is_dir() and any(p.glob("*.html.j2"))):
        (target / language.name).mkdir()
        for template in sorted(language.glob("*.html.j2")):
            shutil.copy2(template, target / language.name / template.name)
            copied += 1
    return copied


def _env_text() -> str:
    lines = ENV_TEMPLATE.read_text(encoding="utf-8").splitlines()
    return "\n".join(ENV_LINES.get(line, line) for line in lines) + "\n"


def init(
    folder: Annotated[Path, typer.Argument(
        help="The site's folder to create (or an empty one to fill), e.g. /srv/trialbot/site.")],
) -> None:
    """Start a new site's folder: study.toml, screening.toml, .env and a copy of the messages to edit,
    then print the next steps. Nothing already there is overwritten."""
    from study.protocol import EXAMPLE_PROTOCOL, EXAMPLE_SCREENING

    if folder.exists() and not folder.is_dir():
        raise fail(f"{folder} is a file, not a folder: give a new folder's path.")
    names = ("study.toml", "screening.toml", ".env", "messages")
    present = [name for name in names if (folder / name).exists()]
    if present:
        raise fail(f"Nothing written: {folder} already has {', '.join(present)} (init never overwrites a site's "
                   "files; choose a new folder).")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy2(EXAMPLE_PROTOCOL, folder / "study.toml")
        shutil.copy2(EXAMPLE_SCREENING, folder / "screening.toml")
        templates = _copy_messages(_messages_source(), folder / "messages")
        env = folder / ".env"
        # The token will live here: readable by its owner only.
        descriptor = os.open(env, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as out:
            out.write(_env_text())
    except OSError as exc:
        raise fail(f"Cannot write {exc.filename or folder}: {exc.strerror or exc}") from None
    typer.echo(f"Wrote {folder}/study.toml (the example protocol: confirm it before real use), screening.toml, "
               f".env and messages/ ({templates} templates).")
    typer.echo(NEXT_STEPS.format(folder=folder))
