"""The approvals ledger cannot be forged (issue 15): a hash pasted into catalog.toml, an edited
template, a changed study phone and a placeholder reference each stop `trialbot run`, naming the
template; an approval is an audit entry by a named staff member, shown by `audit show`."""

from __future__ import annotations

import asyncio
import re
import shutil
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from messages.catalog import MESSAGES_ROOT, ROOT_ENV
from messages.ledger import DEMO_REF, is_placeholder, sha256_text
from study import audit
from study.audit import Actor
from study.database import Database
from study.protocol import load_protocol
from tests.ledger import approve_all

TOKEN = "123:never-used-because-it-never-starts"


@pytest.fixture
def site(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of messages/ the site edits, every template approved by Dana Lee (staff 1), a token."""
    root = tmp_path / "messages"
    shutil.copytree(MESSAGES_ROOT, root, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    monkeypatch.setenv(ROOT_ENV, str(root))
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TOKEN)
    import os

    protocol = load_protocol(os.environ["STUDY_FILE"])

    async def approve() -> None:
        db = Database(os.environ["DATABASE_URL"])
        await approve_all(db, protocol, actor=Actor.staff(1), root=root)
        await db.dispose()

    asyncio.run(approve())
    return root


def refused_to_start(result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    return result.output


def test_everything_approved_passes_the_message_check(cli, site: Path) -> None:
    status = cli("messages", "status")
    assert status.exit_code == 0, status.output
    assert "all templates approved" in status.output


def test_an_edited_template_with_its_hash_pasted_into_the_catalog_refuses_to_start(cli, site: Path) -> None:
    path = site / "en" / "safety_message.html.j2"
    reworded = path.read_text(encoding="utf-8").replace("call {{ emergency_number }} now", "consider calling {{ emergency_number }}", 1)
    path.write_text(reworded, encoding="utf-8")
    forged = f'approval.en = {{ sha256 = "{sha256_text(reworded.encode())}", irb_ref = "IRB 26-1042", date = 2026-11-29 }}'
    catalog = site / "catalog.toml"
    catalog.write_text(catalog.read_text(encoding="utf-8").replace(
        "[templates.safety_message]\n", f"[templates.safety_message]\n{forged}\n"), encoding="utf-8")
    output = refused_to_start(cli("run"))
    assert "templates.safety_message: approvals are not kept in catalog.toml" in output

    catalog.write_text(catalog.read_text(encoding="utf-8").replace(forged + "\n", ""), encoding="utf-8")
    output = refused_to_start(cli("run"))
    assert "will not start" in output
    assert "en/safety_message: text changed since its approval (IRB 26-1042 amendment 1)" in output
    assert "es/safety_message" not in output


def test_a_changed_study_phone_refuses_to_start_naming_the_templates_that_show_it(cli, site: Path) -> None:
    import os

    study = Path(os.environ["STUDY_FILE"])
    text = study.read_text(encoding="utf-8")
    phone = load_protocol(study).study.phone
    study.write_text(text.replace(f'"{phone}"', '"216 445-0000"', 1), encoding="utf-8")
    assert load_protocol(study).study.phone == "216 445-0000"
    output = refused_to_start(cli("run"))
    assert "en/contact: study values changed since its approval (study_phone;" in output
    assert "es/contact: study values changed since its approval (study_phone;" in output
    assert "en/undo_nothing" not in output  # a template without the phone is unaffected
    status = cli("messages", "status", "-l", "en")
    assert status.exit_code == 1 and re.search(r"en\s+contact\s+changed since approval \(study values\).*study_phone",
                                               status.output)
    # Approving again with the new number (the IRB saw it) makes it sendable.
    assert cli("messages", "approve", "contact", "--irb-ref", "IRB 26-1042 amendment 2").exit_code == 0
    assert "en/contact" not in cli("run").output


def test_a_placeholder_reference_neither_approves_nor_starts(cli, site: Path, tmp_path: Path) -> None:
    for reference in ("DEMO", "placeholder", "TBD", "IRB XXXX", " ", "n/a", DEMO_REF):
        assert is_placeholder(reference), reference
        result = cli("messages", "approve", "contact", "--irb-ref", reference)
        assert result.exit_code == 2 and "Not approved" in result.output and "Traceback" not in result.output
    assert not is_placeholder("IRB 26-1042 amendment 1") and not is_placeholder("HRP-503 #2026-0117")

    async def slip_one_in() -> None:  # as if written past the CLI, straight into the trail
        import os

        db = Database(os.environ["DATABASE_URL"])
        async with db.transaction() as session:
            latest = (await audit.entries(session, entity="template_approval"))[-1]
            await audit.record(session, actor=Actor.staff(1), action="approve", entity="template_approval",
                               entity_id=latest.entity_id, now=datetime.now(UTC),
                               new={**latest.new_values, "irb_ref": DEMO_REF})
        await db.dispose()

    asyncio.run(slip_one_in())
    output = refused_to_start(cli("run"))
    assert f"approved under {DEMO_REF!r}, which is not a real IRB reference" in output


def test_an_approval_names_the_staff_member_in_the_audit_trail(cli, site: Path, tmp_path: Path) -> None:
    path = site / "es" / "undo_nothing.html.j2"
    path.write_text(path.read_text(encoding="utf-8").replace("No hay nada que quitar.", "Nada que quitar."),
                    encoding="utf-8")
    refused = cli("messages", "approve", "undo_nothing", "-l", "es", "--irb-ref", "IRB 26-1042 amendment 2", "--as", "Mo")
    assert refused.exit_code == 2 and "no active staff member 'Mo'" in refused.output
    assert cli("staff", "add", "--telegram-id", "7003", "--name", "Mo", "--role", "monitor").exit_code == 0
    refused = cli("messages", "approve", "undo_nothing", "-l", "es", "--irb-ref", "IRB 26-1042 amendment 2", "--as", "Mo")
    assert refused.output.strip() == "Nothing done: --as: Mo is a monitor, who may not approve texts."
    done = cli("messages", "approve", "undo_nothing", "-l", "es", "--irb-ref", "IRB 26-1042 amendment 2",
               "--date", "2026-12-15")
    assert done.exit_code == 0, done.output
    shown = cli("audit", "show", "--limit", "1").output
    assert "staff:1 (Dana Lee)" in shown and "approve" in shown and "template_approval es/undo_nothing" in shown
    assert '"irb_ref": "IRB 26-1042 amendment 2"' in shown and '"approved_on": "2026-12-15"' in shown
    with sqlite3.connect(tmp_path / "cli.db") as db:
        assert db.execute("SELECT count(*) FROM audit_entries WHERE entity = 'template_approval' "
                          "AND actor NOT LIKE 'staff:%'").fetchone() == (0,)
    assert cli("audit", "verify").exit_code == 0


async def test_a_running_bot_takes_up_a_new_approval_without_a_restart(trial) -> None:
    """`trialbot run` re-reads the ledger (bot.app.refresh_ledger, every minute): here with the
    database's ledger in place of the demo one."""
    from bot.app import refresh_ledger
    from study import approvals

    svc = trial.app.runtime.services
    async with trial.db.transaction() as session:
        svc.messages.use_ledger(await approvals.load(session))  # nothing approved in this database yet
    assert not svc.messages.verdict("help", "en").approved
    assert await refresh_ledger(svc) is False  # nothing new
    await approve_all(trial.db, trial.protocol, actor=Actor.staff(1))
    assert await refresh_ledger(svc) is True
    assert svc.messages.verdict("help", "en").approved
    assert svc.messages.ledger.current("help", "en").irb_ref == "IRB 26-1042 amendment 1"
