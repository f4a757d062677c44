"""`trialbot ... --help` describes every argument and option, and shows an on/off flag as a flag
(issue 17): with typer 0.29.0-0.29.2 the Rich help printed every flag's type, so `--wocbp <bool>`
and even `--help <bool>` read as if they took a value (pyproject.toml keeps typer below 0.29)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from bot.cli import app


def commands() -> Iterator[tuple[str, Any]]:
    """Every command of `trialbot` (the Click command Typer builds), by its words ("visits move"),
    groups and all."""
    def walk(command: Any, words: list[str]) -> Iterator[tuple[str, Any]]:
        yield " ".join(words), command
        for name, sub in (getattr(command, "commands", None) or {}).items():
            yield from walk(sub, [*words, name])

    yield from walk(typer.main.get_command(app), [])


def test_every_argument_and_option_of_every_command_is_described() -> None:
    found = list(commands())
    assert len(found) > 40, "the walk reached the commands of every group"
    undescribed = [f"trialbot {words} {param.name}" for words, command in found for param in command.params
                   if not (getattr(param, "help", None) or "").strip()]
    assert undescribed == []
    assert [words for words, command in found if not (command.help or command.short_help or "").strip()] == []


def _help(*words: str) -> str:
    result = CliRunner().invoke(app, [*words, "--help"], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("words", [(), ("enroll",), ("correct", "entry"), ("export",), ("demo",), ("visits",)])
def test_on_off_flags_are_shown_as_flags(words: tuple[str, ...]) -> None:
    shown = _help(*words)
    assert "--help" in shown and "<bool>" not in shown and "BOOLEAN" not in shown


def test_the_enrol_help_shows_its_flag_bare() -> None:
    shown = _help("enroll")
    assert re.search(r"--wocbp\s+Woman of childbearing potential", shown), shown
    assert "America/New_York" in shown and "study id" in shown
