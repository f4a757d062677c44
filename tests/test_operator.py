"""Every change at the server names a person on the staff list, never an operating-system login (issue 15)."""

from __future__ import annotations

import getpass
import sqlite3
from pathlib import Path

import pytest


def rows(db: Path, query: str) -> list[tuple]:
    with sqlite3.connect(db) as connection:
        return connection.execute(query).fetchall()


def refused(result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    return lines[0]


@pytest.fixture
def team(cli) -> None:
    """Dana Lee (coordinator, staff 1, TRIALBOT_OPERATOR), Dr Gray (investigator), Mo (monitor)."""
    assert cli("staff", "add", "--telegram-id", "7002", "--name", "Dr Gray", "--role", "investigator").exit_code == 0
    # The team has an investigator now: they manage it (study/roles.py MANAGE_STAFF).
    assert cli("staff", "add", "--telegram-id", "7003", "--name", "Mo", "--role", "monitor",
               "--as", "Dr Gray").exit_code == 0


def test_no_name_no_change(cli, team, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRIALBOT_OPERATOR")
    line = refused(cli("enroll", "P001", "--timezone", "UTC", "--language", "en"))
    assert line.startswith("Nothing done: Say who you are to enrol participants: --as")
    assert rows(tmp_path / "cli.db", "SELECT study_id FROM participants") == []
    assert refused(cli("export", "--format", "csv", "--out", str(tmp_path / "out"))).startswith(
        "Nothing done: Say who you are to export the study record")
    assert not (tmp_path / "out").exists()
    assert "--as" in refused(cli("staff", "add", "--telegram-id", "7004", "--name", "Al", "--role", "monitor"))


@pytest.mark.parametrize(("who", "says"), [
    ("Nobody", "Nothing done: --as: no active staff member 'Nobody' (see `trialbot staff list`)."),
    ("99", "Nothing done: --as: no active staff member '99' (see `trialbot staff list`)."),
    ("Mo", "Nothing done: --as: Mo is a monitor, who may not enrol participants."),
])
def test_only_a_staff_member_whose_role_allows_it(cli, team, tmp_path: Path, who: str, says: str) -> None:
    assert refused(cli("enroll", "P001", "--timezone", "UTC", "--language", "en", "--as", who)) == says
    assert rows(tmp_path / "cli.db", "SELECT study_id FROM participants") == []


def test_the_audit_trail_names_the_person(cli, team, tmp_path: Path) -> None:
    assert cli("enroll", "P001", "--timezone", "UTC", "--language", "en", "--as", "dr gray").exit_code == 0
    assert cli("participant", "timezone", "P001", "Europe/Madrid").exit_code == 0  # TRIALBOT_OPERATOR
    exported = cli("export", "--format", "csv", "--out", str(tmp_path / "out"), "--as", "Mo")  # a monitor may export
    assert exported.exit_code == 0, exported.output
    actors = rows(tmp_path / "cli.db", "SELECT actor, action, entity FROM audit_entries ORDER BY seq")
    assert ("staff:2", "create", "participant") in actors
    assert ("staff:1", "update", "participant") in actors
    assert ("staff:3", "export", "study_record") in actors
    assert not [a for a, _, _ in actors if a.startswith("operator:") or getpass.getuser() in a]
    shown = cli("audit", "show").output
    assert "staff:2 (Dr Gray)" in shown and "staff:1 (Dana Lee)" in shown


def test_the_first_member_adds_themselves_and_must_be_able_to_add_others(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from bot.cli import app
    from tests.study_files import write_study_file

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'new.db'}")
    monkeypatch.setenv("STUDY_FILE", str(write_study_file(tmp_path / "site")))
    monkeypatch.delenv("TRIALBOT_OPERATOR", raising=False)
    runner = CliRunner()

    def cli(*args: str):
        return runner.invoke(app, list(args))

    assert cli("db", "upgrade").exit_code == 0

    assert "not a monitor" in refused(cli("staff", "add", "--telegram-id", "1", "--name", "Mo", "--role", "monitor"))
    first = cli("staff", "add", "--telegram-id", "1", "--name", "Ana Ruiz", "--role", "investigator")
    assert first.exit_code == 0, first.output
    assert rows(tmp_path / "new.db", "SELECT actor, reason FROM audit_entries WHERE entity = 'staff'") == [
        ("staff:1", "first member of the study team, added themselves")]
    second = refused(cli("staff", "add", "--telegram-id", "2", "--name", "Bo", "--role", "coordinator"))
    assert second.startswith("Nothing done: Say who you are to add or change staff")
    assert cli("staff", "add", "--telegram-id", "2", "--name", "Bo", "--role", "coordinator",
               "--as", "Ana Ruiz").exit_code == 0
