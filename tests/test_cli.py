"""The command line a coordinator uses at the server, run as a coordinator would run it."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from pathlib import Path

import pytest

from sandbox.limits import is_valid_start_payload
from study.protocol import EXAMPLE_PROTOCOL, EXAMPLE_SCREENING

REPO = Path(__file__).resolve().parent.parent


def _code(output: str) -> str:
    match = re.search(r"https://t\.me/site_trial_bot\?start=(\S+)", output)
    assert match, output
    return match.group(1)


def test_enroll_prints_a_single_use_link_and_writes_its_qr_code(cli, tmp_path: Path) -> None:
    result = cli("enroll", "P001", "--timezone", "America/New_York", "--language", "en", "--wocbp",
                 "--reminder-times", "07:30,21:00")
    assert result.exit_code == 0, result.output
    code = _code(result.output)
    assert is_valid_start_payload(code) and len(code) >= 20
    png = tmp_path / "invites" / "P001-invite.png"
    assert png.read_bytes().startswith(b"\x89PNG")
    with sqlite3.connect(tmp_path / "cli.db") as db:
        stored = db.execute("SELECT code_hash FROM invites").fetchall()
        participant = db.execute("SELECT timezone, language, wocbp, reminder_times, status FROM participants").fetchone()
    assert code not in repr(stored), "only the hash of the code is stored"
    assert participant == ("America/New_York", "en", 1, "07:30,21:00", "invited")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--timezone", "Mars/Olympus", "--language", "en"], "not a known time zone"),
        (["--timezone", "America/New_York", "--language", "fr"], "not offered"),
        (["--timezone", "America/New_York", "--language", "en", "--reminder-times", "8am"], "--reminder-times"),
        (["--timezone", "America/New_York", "--language", "en", "--reminder-times", "08:00"], "2 reminder time"),
    ],
)
def test_enroll_refuses_bad_input_with_a_clear_message(cli, args: list[str], message: str) -> None:
    result = cli("enroll", "P001", *args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_enrolling_twice_and_inviting_a_stranger_are_refused(cli) -> None:
    assert cli("enroll", "P001", "--timezone", "UTC", "--language", "en").exit_code == 0
    again = cli("enroll", "P001", "--timezone", "UTC", "--language", "en")
    assert again.exit_code == 2 and "already enrolled" in again.output
    unknown = cli("invite", "P999")
    assert unknown.exit_code == 2 and "No participant P999" in unknown.output


def test_reissuing_an_invite_voids_the_old_one(cli, tmp_path: Path) -> None:
    first = _code(cli("enroll", "P001", "--timezone", "UTC", "--language", "en").output)
    second = _code(cli("invite", "P001").output)
    assert first != second
    with sqlite3.connect(tmp_path / "cli.db") as db:
        rows = db.execute("SELECT voided_at IS NOT NULL FROM invites ORDER BY id").fetchall()
    assert rows == [(1,), (0,)]


def test_staff_add_and_roles_are_audited(cli) -> None:
    assert cli("staff", "add", "--telegram-id", "5005", "--name", "Dana", "--role", "coordinator").exit_code == 0
    assert cli("staff", "add", "--telegram-id", "5005", "--name", "Dana", "--role", "investigator").exit_code == 0
    bad = cli("staff", "add", "--telegram-id", "6006", "--name", "Eve", "--role", "admin")
    assert bad.exit_code == 2 and "role must be one of" in bad.output
    listing = cli("staff", "list").output
    assert "Dana" in listing and "investigator" in listing and "Eve" not in listing
    trail = cli("audit", "show").output
    assert "staff added" in trail and '"role": "investigator"' in trail


def test_audit_verify_passes_then_fails_after_tampering(cli, tmp_path: Path) -> None:
    cli("enroll", "P001", "--timezone", "UTC", "--language", "en")
    ok = cli("audit", "verify")
    assert ok.exit_code == 0 and "chain intact" in ok.output
    with sqlite3.connect(tmp_path / "cli.db") as db:
        db.execute("DROP TRIGGER audit_entries_no_update")
        db.execute("UPDATE audit_entries SET new_values = '{\"study_id\": \"P002\"}' WHERE seq = 1")
    failed = cli("audit", "verify")
    assert failed.exit_code == 1
    assert "FAILED" in failed.output and "entry 1: content was altered" in failed.output


def test_a_webhook_must_be_https(cli) -> None:
    result = cli("run", "--webhook", "http://bot.example.org/telegram")
    assert result.exit_code == 2 and "needs an https:// URL" in result.output
    # Plain http only to this machine (a Bot API server of one's own): past the URL check, the
    # missing token is what stops it here.
    for local in ("http://127.0.0.1:8443/telegram", "http://localhost/telegram", "http://[::1]:80/t"):
        result = cli("run", "--webhook", local)
        assert result.exit_code == 2 and "TELEGRAM_BOT_TOKEN is not set" in result.output


def test_without_a_webhook_secret_every_process_derives_the_same_one_from_the_token() -> None:
    from bot.settings import Settings

    def secret(token: str, configured: str | None = None) -> str:
        return Settings(_env_file=None, telegram_bot_token=token, webhook_secret=configured).webhook_secret_value()

    token = "123456789:AAExampleExampleExampleExample"
    assert secret(token) == secret(token), "the same in every process"
    assert secret(token) != secret("123456789:AAAnotherTokenAnotherToken")
    assert re.fullmatch(r"[A-Za-z0-9_-]{32,256}", secret(token)), "what Telegram allows in a secret_token"
    assert token not in secret(token) and "AAExample" not in secret(token)
    assert secret(token, "configured-one") == "configured-one"


def test_run_without_a_token_fails_clearly(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STUDY_FILE", str(EXAMPLE_PROTOCOL))  # unconfirmed too: the token is asked for first
    result = cli("run")
    assert result.exit_code == 2
    assert "TELEGRAM_BOT_TOKEN is not set" in result.output and "trialbot demo" in result.output
    assert result.output.count("\n") == 1 and "Traceback" not in result.output


UNCONFIRMED = ("study.toml is the shipped example, not confirmed for this study: set protocol.version, "
               "protocol.confirmed_by, protocol.confirmed_on and protocol.example = false after checking [visits], "
               "[pregnancy_tests], [checkins], [reminders], [treatment] and [safety] against the approved protocol "
               '(README.md, "Running it for real")')


def test_run_refuses_the_shipped_example_in_one_line(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "study.toml").write_text(EXAMPLE_PROTOCOL.read_text())
    (tmp_path / "screening.toml").write_text(EXAMPLE_SCREENING.read_text())
    monkeypatch.setenv("STUDY_FILE", "study.toml")  # the default, next to the bot
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123:never-used-because-it-never-starts")
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'untouched.db'}")
    result = cli("run")
    assert result.exit_code == 2
    assert result.output == UNCONFIRMED + "\n"
    assert not (tmp_path / "untouched.db").exists(), "refused before touching the database"


def test_enrolling_and_planning_visits_wait_for_the_confirmation(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    assert cli("enroll", "P001", "--timezone", "UTC", "--language", "en").exit_code == 0  # confirmed copy
    monkeypatch.setenv("STUDY_FILE", str(EXAMPLE_PROTOCOL))
    shipped = UNCONFIRMED.replace("study.toml", str(EXAMPLE_PROTOCOL), 1)
    for args in (["enroll", "P002", "--timezone", "UTC", "--language", "en"],
                 ["visits", "plan", "P001", "--baseline", "2026-11-24"]):
        result = cli(*args)
        assert (result.exit_code, result.output) == (2, shipped + "\n"), args
    # What does not act on the schedule or the reminder rules works on the example too.
    assert cli("invite", "P001").exit_code == 0
    assert cli("staff", "add", "--telegram-id", "5005", "--name", "Dana Lee", "--role", "coordinator").exit_code == 0
    assert cli("visits", "list", "P001").exit_code == 0


def test_a_broken_protocol_names_the_key(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = EXAMPLE_PROTOCOL.read_text().replace('reminder_times = ["08:00", "20:00"]',
                                                        'reminder_times = ["08:00", "25:00"]')
    (tmp_path / "study.toml").write_text(broken)
    monkeypatch.setenv("STUDY_FILE", str(tmp_path / "study.toml"))
    result = cli("enroll", "P001", "--timezone", "UTC", "--language", "en")
    assert result.exit_code == 2
    assert "treatment.reminder_times" in result.output and "25:00" in result.output


def test_demo_runs_the_real_bot_in_a_terminal_chat(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from bot.demo import run_demo

    monkeypatch.setenv("STUDY_FILE", str(EXAMPLE_PROTOCOL))
    typed = iter(["1", "1", "/undo", ":quit"])
    shown: list[str] = []

    async def read_line() -> str | None:
        return next(typed, None)

    asyncio.run(run_demo(read_line=read_line, write=shown.append, workdir=tmp_path))
    output = "\n".join(shown)
    assert "You are participant DEMO01" in output
    assert "You are all set" in output and "Saved" in output and "taken back" in output
    assert "DEMO01 agreed to messages" in output  # what the study team's chat received
    assert "correct diary_entry" in output  # the audit trail printed at the end


def test_export_from_the_command_line_is_audited(cli, tmp_path: Path) -> None:
    assert cli("enroll", "P001", "--timezone", "America/New_York", "--language", "en").exit_code == 0
    result = cli("export", "--format", "csv", "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert "participants: 1 row(s)" in result.output and (tmp_path / "out" / "data_dictionary.csv").exists()
    result = cli("export", "--format", "redcap", "--out", str(tmp_path / "rc"))
    assert result.exit_code == 0 and (tmp_path / "rc" / "redcap_import.csv").exists()
    assert cli("export", "--format", "xml", "--out", str(tmp_path / "x")).exit_code == 2
    trail = cli("audit", "show").output
    assert trail.count("export") >= 2


def test_a_treatment_course_from_the_command_line_with_one_line_mistakes(cli) -> None:
    assert cli("enroll", "P001", "--timezone", "America/New_York", "--language", "en").exit_code == 0
    unknown = cli("treatment", "interrupt", "P404", "--reason", "infection")
    assert unknown.exit_code == 2 and unknown.output.strip() == "No participant P404."
    bad = cli("treatment", "interrupt", "P001", "--reason", "headache")
    assert bad.exit_code == 2 and "--reason must be one of" in bad.output and "Traceback" not in bad.output
    done = cli("treatment", "interrupt", "P001", "--reason", "infection", "--text", "shingles")
    assert done.exit_code == 0 and "P001 is now interrupted (infection)" in done.output
    again = cli("treatment", "interrupt", "P001", "--reason", "infection")
    assert again.exit_code == 2 and again.output.strip().startswith("Nothing changed:")
    assert cli("treatment", "resume", "P001", "--text", " ", "--as", "Dr Gray").exit_code == 2
    by_coordinator = cli("treatment", "resume", "P001", "--text", "healed")  # TRIALBOT_OPERATOR: Dana Lee
    assert by_coordinator.exit_code == 2
    assert by_coordinator.output.strip() == ("Nothing done: --as: Dana Lee is a coordinator, who may not resume a "
                                             "treatment (only the investigator decides that).")
    assert cli("staff", "add", "--telegram-id", "7002", "--name", "Dr Gray", "--role", "investigator").exit_code == 0
    resumed = cli("treatment", "resume", "P001", "--text", "healed", "--as", "Dr Gray")
    assert resumed.exit_code == 0, resumed.output
    shown = cli("treatment", "show", "P001")
    assert "on treatment" in shown.output and "interrupted -> on_treatment" in shown.output
    assert "by staff:2: healed" in shown.output
    ended = cli("participant", "end", "P001", "withdrawn", "--reason", "moved away")
    assert ended.exit_code == 0
    assert "withdrawn" in cli("treatment", "show", "P001").output.splitlines()[0]
