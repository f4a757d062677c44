"""`trialbot correct ...` as an operator runs it at the server: every mistake is one clear line
(exit code 2, nothing written), a correction names who made it, and the audit chain still verifies."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from study import audit, diary, participants
from study.audit import Actor
from study.database import Database
from study.models import CheckIn
from study.protocol import EXAMPLE_PROTOCOL, load_protocol

REPO = Path(__file__).resolve().parent.parent
NOW = datetime.now(UTC)  # the command line uses the real clock
EARLIER = NOW - timedelta(hours=3)


@pytest.fixture
def study(cli, tmp_path: Path) -> Path:
    """P001 (in UTC) with one application three hours ago and one full check-in; Dana (coordinator)
    and Mo (monitor) on the team."""
    assert cli("enroll", "P001", "--timezone", "UTC", "--language", "en").exit_code == 0
    assert cli("staff", "add", "--telegram-id", "5005", "--name", "Dana", "--role", "coordinator").exit_code == 0
    assert cli("staff", "add", "--telegram-id", "5006", "--name", "Mo", "--role", "monitor").exit_code == 0

    async def seed() -> None:
        db = Database(f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}")
        protocol = load_protocol(EXAMPLE_PROTOCOL)
        async with db.transaction() as session:
            person = await participants.by_study_id(session, "P001")
            await diary.log_application(session, person, occurred_at=EARLIER, source="button", key="k1",
                                        rules=protocol.diary, now=NOW)
            checkin = CheckIn(participant_id=person.id, kind="full", started_at=NOW, submitted_at=NOW,
                              local_date=NOW.date(), timezone="UTC", source="command", itch=8, pain=2,
                              reaction="none", medicines="no", red_flags=[])
            session.add(checkin)
            await session.flush()
            await audit.record(session, actor=Actor.participant("P001"), action="create", entity="checkin",
                               entity_id=checkin.id, now=NOW, reason="symptom check-in")
        await db.dispose()

    asyncio.run(seed())
    return tmp_path / "cli.db"


def one_line(result, code: int = 2) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    return lines[0]


def corrections(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as connection:
        return connection.execute("SELECT field, old_value, new_value, reason, corrected_by FROM corrections "
                                  "ORDER BY id").fetchall()


@pytest.mark.parametrize(("args", "says"), [
    (["entry", "P001", "1", "--time", "09:00"], "--reason is required"),
    (["entry", "P001", "1", "--time", "09:00", "--reason", "  "], "--reason is required"),
    (["entry", "P404", "1", "--time", "09:00", "--reason", "called"], "No participant P404."),
    (["entry", "P001", "999", "--time", "09:00", "--reason", "called"], "P001 has no diary entry 999"),
    (["entry", "P001", "one", "--time", "09:00", "--reason", "called"], "entry id 'one' is not a number"),
    (["entry", "P001", "1", "--reason", "called"], "say what to correct"),
    (["entry", "P001", "1", "--time", "25:00", "--reason", "called"], "time: '25:00' is not a time like 09:00"),
    (["entry", "P001", "1", "--time", "yesterday 9", "--reason", "called"], "is not a time like"),
    (["entry", "P001", "1", "--day", "2026-13-01", "--reason", "called"], "day: '2026-13-01' is not a day like"),
    (["entry", "P001", "1", "--time", (NOW + timedelta(days=1)).strftime("%Y-%m-%d %H:%M"), "--reason", "called"],
     "has not come yet"),
    (["entry", "P001", "1", "--kind", "missed", "--missed-reason", "bored", "--reason", "called"],
     "missed_reason: 'bored' is not forgot | away | skin_sore | ran_out | other | none"),
    (["entry", "P001", "1", "--missed-reason", "forgot", "--reason", "called"],
     "missed_reason does not apply to an application"),
    (["entry", "P001", "1", "--kind", "missing", "--reason", "called"], "kind: 'missing' is not applied | missed"),
    (["entry", "P001", "1", "--withdraw", "--restore", "--reason", "called"], "withdraw and restore cannot both"),
    (["entry", "P001", "1", "--restore", "--reason", "called"], "nothing to change"),
    (["entry", "P001", "1", "--time", "09:00", "--reason", "called", "--as", "Nobody"], "--as: no active staff"),
    (["entry", "P001", "1", "--time", "09:00", "--reason", "called", "--as", "Mo"],
     "--as: Mo is a monitor, who may not correct records."),
    (["entry", "P001", "1", "--time", "09:00", "--reason", "called", "--as", " "], "Say who you are to correct records"),
    (["checkin", "P001", "1", "--itch", "11", "--reason", "called"], "itch: '11' is not a whole number from 0 to 10"),
    (["checkin", "P001", "2", "--itch", "3", "--reason", "called"], "P001 has no check-in 2"),
    (["checkin", "P001", "1", "--severity", "mild", "--reason", "called"],
     "severity does not apply to a check-in without a reaction"),
    (["checkin", "P001", "1", "--itch", "8", "--reason", "called"], "nothing to change"),
])
def test_every_operator_mistake_is_one_line_and_writes_nothing(cli, study: Path, args: list[str], says: str) -> None:
    line = one_line(cli("correct", *args))
    assert says in line
    assert corrections(study) == []


def test_a_correction_at_the_server_names_who_made_it_and_the_chain_verifies(cli, study: Path) -> None:
    listing = cli("correct", "list", "P001")
    assert listing.exit_code == 0, listing.output
    assert f"entry 1        applied  {EARLIER:%Y-%m-%d %H:%M}  [late]" in listing.output
    assert "checkin 1" in listing.output and "itch 8" in listing.output

    # Another minute of the same hour: the time alone changes, whatever the hour the suite runs at
    # (an hour later crossed midnight when run between 00:00 and 03:00 UTC, and moved the day too).
    fixed_at = EARLIER.replace(minute=(EARLIER.minute + 30) % 60).strftime("%Y-%m-%d %H:%M")
    done = one_line(cli("correct", "entry", "P001", "1", "--time", fixed_at, "--reason", "participant called"), 0)
    assert done.startswith("Corrected P001 diary entry 1 (staff:1): occurred_at "), "TRIALBOT_OPERATOR: Dana Lee"
    assert done.endswith("Reason: participant called")
    done = one_line(cli("correct", "checkin", "P001", "1", "--itch", "3", "--reason", "typed 8 for 3", "--as", "dana"),
                    0)
    assert done == "Corrected P001 check-in 1 (staff:2): itch 8 -> 3. Reason: typed 8 for 3"
    assert [(field, who) for field, _, _, _, who in corrections(study)] == [("occurred_at", "staff:1"), ("itch", "staff:2")]
    assert "[late, corrected]" in cli("correct", "list", "P001").output
    verified = cli("audit", "verify")
    assert verified.exit_code == 0, verified.output
    with sqlite3.connect(study) as connection:
        assert connection.execute("SELECT occurred_at FROM diary_entries").fetchone()[0].startswith(
            EARLIER.strftime("%Y-%m-%d %H:%M")), "the entry as recorded is kept"
