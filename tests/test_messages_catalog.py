"""The IRB-approved message catalog: lint passes on what ships, every template renders in every
language within Telegram's limits, the sandbox holds, an edited-but-unapproved template stops
start-up and is never sent, approve makes it sendable, and the review packet has everything.
(The approvals ledger itself, and what cannot forge it: tests/test_approvals_ledger.py.)

Tests that edit templates work on a copy of messages/ in tmp_path, never on the repository.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import app as cli_app
from messages.catalog import MESSAGES_ROOT, ROOT_ENV, Catalog
from messages.ledger import DEMO_REF, Ledger
from messages.lint import button_variants, lint, sample_values
from messages.renderer import Button, CatalogNotReady, MessageCatalog, MessageError, NotApprovedError, demo_catalog
from messages.review_packet import build_review_packet
from sandbox.limits import MAX_CALLBACK_DATA_BYTES
from sandbox.rendering import MAX_TEXT_LENGTH, render_text
from study.protocol import EXAMPLE_PROTOCOL
from tests.study_files import write_study_file

REPO = Path(__file__).resolve().parent.parent
LANGUAGES = ["en", "es"]
CATALOG = Catalog.load(MESSAGES_ROOT)
MESSAGE_IDS = sorted(t for t, s in CATALOG.templates.items() if s.kind == "message")


@pytest.fixture
def messages_copy(tmp_path: Path) -> Path:
    root = tmp_path / "messages"
    shutil.copytree(MESSAGES_ROOT, root, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    return root


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, messages_copy: Path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("STUDY_FILE", str(write_study_file(tmp_path / "site")))
    monkeypatch.setenv(ROOT_ENV, str(messages_copy))
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
    runner = CliRunner()
    assert runner.invoke(cli_app, ["db", "upgrade"]).exit_code == 0
    first = runner.invoke(cli_app, ["staff", "add", "--telegram-id", "7001", "--name", "Dana Lee", "--role", "coordinator"])
    assert first.exit_code == 0, first.output
    monkeypatch.setenv("TRIALBOT_OPERATOR", "Dana Lee")
    return lambda *args: runner.invoke(cli_app, list(args))


def _demo(root: Path) -> MessageCatalog:
    """The templates under `root` as they are now, under the demo ledger; the callers' values."""
    return demo_catalog({}, LANGUAGES, root=root)


def _edit(root: Path, language: str, template_id: str, old: str, new: str) -> Path:
    path = root / language / f"{template_id}.html.j2"
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")
    return path


# -- What ships ---------------------------------------------------------------------------------


def test_lint_passes_on_the_shipped_catalog(cli) -> None:
    assert lint(MESSAGES_ROOT, LANGUAGES) == []
    result = cli("messages", "lint")
    assert result.exit_code == 0, result.output
    assert "OK" in result.output and "en, es" in result.output


def test_nothing_ships_approved() -> None:
    """A new site's IRB has seen none of these texts: the catalog approves nothing, and without a
    ledger nothing is sendable."""
    assert "approval." not in (MESSAGES_ROOT / "catalog.toml").read_text(encoding="utf-8").replace(
        "approval.<language>", "")
    assert not (MESSAGES_ROOT / "approved").exists()
    assert set(CATALOG.templates) == {p.name.removesuffix(".html.j2") for p in (MESSAGES_ROOT / "en").glob("*.html.j2")}
    unapproved = MessageCatalog(MESSAGES_ROOT).problems(LANGUAGES)
    assert len(unapproved) == 2 * len(CATALOG.templates)
    assert all(": never approved (trialbot messages approve" in p for p in unapproved)
    assert _demo(MESSAGES_ROOT).problems(LANGUAGES) == []
    refused = _demo(MESSAGES_ROOT).problems(LANGUAGES, for_participants=True)
    assert len(refused) == 2 * len(CATALOG.templates) and f"approved under {DEMO_REF!r}" in refused[0]


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("template_id", MESSAGE_IDS)
def test_every_template_renders_within_telegrams_limits(template_id: str, language: str) -> None:
    renderer = _demo(MESSAGES_ROOT)  # strict: only approved text renders
    spec = CATALOG.templates[template_id]
    for which in ("sample", "longest"):
        buttons = [[Button(name, CATALOG.buttons[name], variant)]
                   for name in spec.buttons for variant in button_variants(spec, name)]
        rendered = renderer.render(template_id, language, sample_values(CATALOG, spec, which), buttons)
        assert not rendered.draft and rendered.language == language
        plain, _ = render_text(rendered.text, "HTML", limit=MAX_TEXT_LENGTH, too_long="too long", empty="empty")
        assert plain.strip()
        for row in rendered.buttons:
            for button in row:
                assert button.label.strip() and "<" not in button.label
                assert len(button.data.encode()) <= MAX_CALLBACK_DATA_BYTES


def test_spanish_dates_and_times_are_written_the_spanish_way() -> None:
    renderer = _demo(MESSAGES_ROOT)
    spec = CATALOG.templates["applied_logged"]
    text = renderer.render("applied_logged", "es", sample_values(CATALOG, spec)).text
    assert "a las 10:03 el martes 24 de noviembre" in text
    english = renderer.render("applied_logged", "en", sample_values(CATALOG, spec)).text
    assert "10:03\u202fAM on Tuesday, November 24" in english


def test_every_command_in_a_menu_or_the_roles_table_has_its_handler() -> None:
    """The participant's menu (messages/catalog.py) and the staff commands (study/roles.py) are the
    lists; a name in either that no CommandHandler answers would be a dead end."""
    from telegram.ext import CommandHandler

    from bot.app import register_handlers
    from messages.catalog import PARTICIPANT_COMMANDS
    from study.roles import STAFF_COMMANDS

    registry = _Registry()
    register_handlers(registry)
    handled = {name for h in registry.handlers if isinstance(h, CommandHandler) for name in h.commands}
    listed = set(PARTICIPANT_COMMANDS) | {name for name, _ in STAFF_COMMANDS}
    # STAFF_COMMANDS also lists what staff do with buttons or a command's variant (a line of /help each)
    buttons_and_variants = {"acknowledge", "approve_broadcast", "visits_change", "visits_participant",
                            "resume_treatment"}
    assert listed - handled == buttons_and_variants


class _Registry:
    """What register_handlers registers, without building a bot."""

    def __init__(self) -> None:
        self.handlers: list = []

    def add_handler(self, handler, group: int = 0) -> None:
        self.handlers.append(handler)

    def add_error_handler(self, _) -> None:
        pass


def test_the_catalogs_callback_data_examples_are_what_the_handlers_accept() -> None:
    from telegram.ext import CallbackQueryHandler

    from bot.app import register_handlers

    registry = _Registry()
    register_handlers(registry)
    patterns = [h.pattern for h in registry.handlers if isinstance(h, CallbackQueryHandler) and h.pattern]
    for name, data in CATALOG.buttons.items():
        assert any(p.match(data) if hasattr(p, "match") else re.match(p, data) for p in patterns), \
            f"{name}: {data!r} matches no handler"


def test_every_template_the_code_sends_is_in_the_catalog() -> None:
    sources = [*(REPO / "bot").rglob("*.py"), *(REPO / "scheduler").rglob("*.py"), *(REPO / "study").rglob("*.py")]
    named = set()
    for source in sources:
        text = source.read_text(encoding="utf-8")
        named |= set(re.findall(r'render\(context, "([a-z_]+)"', text))
        named |= set(re.findall(r'template_id="([a-z_]+)"', text))
        named |= set(re.findall(r'(?:LogStatus|UndoStatus|ConsentOutcome)\.[A-Z_]+: "([a-z_]+)"', text))
        for line in text.splitlines():
            if "template" in line:
                named |= set(re.findall(r'"([a-z_]+)" if ', line)) | set(re.findall(r' else "([a-z_]+)"', line))
    assert named, "the scan found nothing: update this test"
    assert named <= set(CATALOG.templates), named - set(CATALOG.templates)


# -- The sandbox --------------------------------------------------------------------------------


@pytest.mark.parametrize("expression", [
    "''.__class__.__mro__",
    "''.__class__.__mro__[1].__subclasses__()",
    "cycler.__init__.__globals__",
    "self.__init__.__globals__",
    "lipsum.__globals__",
    "study_name.__class__.__base__",
    "(1).__class__.__subclasses__()",
    "range.__globals__",
])
def test_a_template_cannot_reach_python_internals(messages_copy: Path, expression: str) -> None:
    _edit(messages_copy, "en", "contact", "<b>Your study team</b>", "{{ " + expression + " }}")
    with pytest.raises(MessageError):  # "approved" as it is: approval is not the guard here
        _demo(messages_copy).render("contact", "en", {"study_phone": "1", "study_email": "e",
                                                              "study_name": "n"})


def test_a_template_cannot_include_another_file(messages_copy: Path) -> None:
    _edit(messages_copy, "en", "contact", "<b>Your study team</b>", "{% include 'help.html.j2' %}")
    with pytest.raises(MessageError):
        _demo(messages_copy).render("contact", "en", {"study_phone": "1", "study_email": "e"})
    assert any("include" in f.message for f in lint(messages_copy, LANGUAGES))


# -- Failing closed -----------------------------------------------------------------------------


def test_an_edited_template_is_not_sent_until_approved(messages_copy: Path) -> None:
    renderer = _demo(messages_copy)  # approved as the files are before the edit
    _edit(messages_copy, "es", "help", "Cómo funciona", "Cómo funciona (nuevo)")
    with pytest.raises(CatalogNotReady) as refused:
        renderer.check_ready(LANGUAGES)
    assert refused.value.problems == [
        f"es/help: text changed since its approval ({DEMO_REF}); "
        "approve the new text or restore the approved one (trialbot messages diff)"]
    variables = {"undo_minutes": 15, "backfill_days": 1, "emergency_number": "911"}
    with pytest.raises(NotApprovedError, match="es/help: text changed"):
        renderer.render("help", "es", variables)
    assert "How this works" in renderer.render("help", "en", variables).text  # English is untouched

    draft = MessageCatalog(messages_copy, allow_drafts=True).render("help", "es", variables)
    assert draft.draft and draft.text.startswith("⚠️ <b>DRAFT") and "(nuevo)" in draft.text

    renderer.use_ledger(Ledger.demo(messages_copy, LANGUAGES, {}))  # what a re-read ledger does
    renderer.check_ready(LANGUAGES)
    sent = renderer.render("help", "es", variables)
    assert "(nuevo)" in sent.text and not sent.draft


def test_no_silent_fallback_to_english(messages_copy: Path) -> None:
    missing = messages_copy / "es" / "contact.html.j2"
    missing.unlink()
    renderer = _demo(messages_copy)
    with pytest.raises(MessageError, match="no template 'contact' for language 'es'"):
        renderer.render("contact", "es", {"study_phone": "1", "study_email": "e"})
    with pytest.raises(CatalogNotReady, match=re.escape("es/contact: missing")):
        renderer.check_ready(LANGUAGES)
    with pytest.raises(CatalogNotReady):  # drafts do not excuse a missing language
        MessageCatalog(messages_copy, allow_drafts=True).check_ready(LANGUAGES)


def test_the_app_builder_refuses_an_unapproved_catalog(messages_copy: Path, protocol, clock) -> None:
    from bot.app import build_application
    from study.database import Database

    messages = _demo(messages_copy)
    _edit(messages_copy, "en", "buttons", "I put it on now", "I just put it on")
    with pytest.raises(CatalogNotReady, match=re.escape("en/buttons: text changed since its approval")):
        build_application(token="1:x", base_url="http://127.0.0.1:9/bot", base_file_url="http://127.0.0.1:9/file/bot",
                          protocol=protocol, db=Database("sqlite+aiosqlite://"), clock=clock, messages=messages)


def test_status_diff_and_audited_approve(cli, messages_copy: Path, tmp_path: Path) -> None:
    result = cli("messages", "status", "--language", "es")
    assert result.exit_code == 1 and re.search(r"es\s+undo_nothing\s+never approved", result.output)
    result = cli("messages", "approve", "undo_nothing", "--irb-ref", "IRB 26-1042 amendment 1", "--date", "2026-12-01",
                 "--language", "es")
    assert result.exit_code == 0, result.output
    assert re.search(r"es\s+undo_nothing\s+approved  \[IRB 26-1042 amendment 1, 2026-12-01, by staff:1 "
                     r"\(Dana Lee, coordinator\)\]", cli("messages", "status", "-l", "es").output)

    _edit(messages_copy, "es", "undo_nothing", "No hay nada que quitar.", "No hay nada para quitar.")
    (messages_copy / "es" / "brand_new.html.j2").write_text("{% block text %}Hola{% endblock %}\n", encoding="utf-8")
    result = cli("messages", "status", "--language", "es")
    assert result.exit_code == 1
    assert re.search(r"es\s+undo_nothing\s+changed since approval \(the text\)", result.output)
    assert re.search(r"es\s+brand_new \(not in catalog\)\s+never approved", result.output)

    result = cli("messages", "diff", "undo_nothing", "--language", "es")
    assert "-No hay nada que quitar." in result.output and "+No hay nada para quitar." in result.output
    assert "IRB 26-1042 amendment 1" in result.output  # the approved text is the ledger's, not a file's

    result = cli("messages", "approve", "undo_nothing", "--irb-ref", "IRB 26-1042 amendment 2",
                 "--date", "2026-12-15", "--language", "es")
    assert result.exit_code == 0, result.output
    assert "es/undo_nothing: approved (IRB 26-1042 amendment 2, 2026-12-15" in result.output
    assert "unchanged since approval" in cli("messages", "diff", "undo_nothing", "-l", "es").output
    assert "approval" not in (messages_copy / "catalog.toml").read_text(encoding="utf-8").split("[templates.undo_nothing]")[1][:600]

    with sqlite3.connect(tmp_path / "cli.db") as db:
        actor, action, entity, entity_id, new = db.execute(
            "SELECT actor, action, entity, entity_id, new_values FROM audit_entries ORDER BY seq DESC").fetchone()
    assert (actor, action, entity, entity_id) == ("staff:1", "approve", "template_approval", "es/undo_nothing")
    assert '"irb_ref": "IRB 26-1042 amendment 2"' in new and "No hay nada para quitar." in new


def test_lint_of_a_folder_without_a_catalog_is_a_finding_not_ok(cli, tmp_path: Path, monkeypatch) -> None:
    """TRIALBOT_MESSAGES_DIR naming a wrong folder: nothing to lint is a problem, never "OK"."""
    monkeypatch.setenv("TRIALBOT_MESSAGES_DIR", str(tmp_path / "nowhere"))
    result = cli("messages", "lint")
    assert result.exit_code != 0 and "no catalog.toml here" in result.output, result.output


def test_approve_refuses_a_template_that_fails_lint(cli, messages_copy: Path) -> None:
    _edit(messages_copy, "en", "contact", "{{ study_email }}", "{{ study_emial }}")
    result = cli("messages", "approve", "contact", "--irb-ref", "IRB 1")
    assert result.exit_code == 2
    assert "study_emial" in result.output and "Not approved" in result.output
    assert re.search(r"en\s+contact\s+never approved", cli("messages", "status", "-l", "en").output)


def test_lint_finds_what_the_irb_and_telegram_would_refuse(messages_copy: Path) -> None:
    _edit(messages_copy, "es", "contact", "<b>Su equipo del estudio</b>", "<div>Su equipo</div>")
    _edit(messages_copy, "en", "staff_welcome", "Hello {{ name }}.", "Hello.")
    _edit(messages_copy, "en", "undo_nothing", "There is nothing", "{{ 'x' * 5000 }}")
    _edit(messages_copy, "es", "paused", "{% block text %}", "{% block text %}{{ nombre }}")
    (messages_copy / "es" / "resumed.html.j2").unlink()
    findings = [str(f) for f in lint(messages_copy, LANGUAGES)]
    assert any(f.startswith("es/contact.html.j2: Telegram would refuse the HTML") for f in findings), findings
    assert any(f.startswith("en/staff_welcome.html.j2: does not use the declared variable 'name'") for f in findings)
    assert any(f.startswith("en/undo_nothing.html.j2: is 5") and "4096" in f for f in findings)
    assert any(f.startswith("es/paused.html.j2: uses {{ nombre }}") for f in findings)
    assert any(f.startswith("es/resumed.html.j2: missing") for f in findings)


def test_preview_shows_the_participants_view(cli) -> None:
    result = cli("messages", "preview", "pick_day_applied", "--language", "es")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("⚠️ DRAFT, not approved") and "[ [DRAFT] ⬅️ Volver ]" in result.output
    for template_id in ("pick_day_applied", "buttons"):
        assert cli("messages", "approve", template_id, "--irb-ref", "IRB 26-1042 amendment 1", "-l", "es").exit_code == 0
    result = cli("messages", "preview", "pick_day_applied", "--language", "es")
    assert "¿Qué día se puso la crema?" in result.output and "DRAFT" not in result.output
    assert "[ Hoy ]" in result.output and "[ Ayer ]" in result.output and "[ ⬅️ Volver ]" in result.output
    assert "<b>" not in cli("messages", "preview", "help", "-l", "en").output


def test_the_review_packet_contains_every_template_in_both_languages(cli, messages_copy: Path, tmp_path: Path) -> None:
    _edit(messages_copy, "es", "resumed", "activados otra vez", "encendidos otra vez")
    result = cli("messages", "review-packet", "--out", str(tmp_path / "packet.html"))
    assert result.exit_code == 0, result.output
    packet = (tmp_path / "packet.html").read_text(encoding="utf-8")
    renderer = MessageCatalog(messages_copy, allow_drafts=True)
    assert "never approved" in packet
    for template_id, spec in CATALOG.templates.items():
        assert f"<h2 id='{template_id}'>" in packet
        assert spec.purpose.replace("'", "&#x27;") in packet or spec.purpose in packet
        for language in LANGUAGES:
            assert f"{language}/{template_id}.html.j2" in packet
            if spec.kind == "message":
                text = renderer.render(template_id, language, sample_values(CATALOG, spec)).text
                first_line = text.removeprefix("⚠️ <b>DRAFT, not approved</b>\n\n").splitlines()[0]
                assert first_line in packet, (template_id, language)
    assert "✅ Sí, estoy de acuerdo" in packet and "Me la puse ahora" in packet
    assert build_review_packet(messages_copy, LANGUAGES).count("<h2 id=") == len(CATALOG.templates)


def test_the_review_packet_lists_the_screening_words(cli, tmp_path: Path) -> None:
    from study.protocol import load_protocol

    result = cli("messages", "review-packet", "--out", str(tmp_path / "packet.html"))
    assert result.exit_code == 0, result.output
    packet = (tmp_path / "packet.html").read_text(encoding="utf-8")
    assert "<h2 id='screening'>" in packet
    screener = load_protocol(EXAMPLE_PROTOCOL).screener
    for code, flag in screener.flags.items():
        assert f"<tr><td>{code}</td>" in packet
        for language in LANGUAGES:
            assert flag.terms[language][0].replace("'", "&#x27;") in packet, (code, language)
    assert "Stop the study cream and call the study team today" in packet
    assert "<h2 id='screening'>" not in build_review_packet(MESSAGES_ROOT, LANGUAGES)  # optional, as before
