"""The review packet shows the IRB every wording the bot can send: every template, in every
language, with its samples and with each of its variants (messages/variants.py), and the variants
together take every branch of every template (messages/branches.py, checked by `messages lint`).
It also lists the red-flag screening's words per flag and language, with what each triggers.

Tests that edit the catalog or templates work on a copy of messages/ in tmp_path.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from messages.branches import BranchRecorder, untaken_branches
from messages.catalog import MESSAGES_ROOT, Catalog, CatalogError
from messages.lint import lint
from messages.renderer import demo_catalog, new_environment
from messages.review_packet import build_review_packet
from messages.variants import SAMPLE, describe, load_variants, values_for, variants_of
from study.protocol import EXAMPLE_PROTOCOL, load_protocol

REPO = Path(__file__).resolve().parent.parent
LANGUAGES = ["en", "es"]
CATALOG = Catalog.load(MESSAGES_ROOT)
VARIANTS = load_variants(MESSAGES_ROOT)
PROTOCOL = load_protocol(EXAMPLE_PROTOCOL)
# Templates with a branch in them: an {% if %}, an inline `if`, or a loop.
BRANCHING = sorted(tid for tid in CATALOG.templates
                   if re.search(r"{%-?\s*(if|for)\b|\bif\b.+\belse\b", (MESSAGES_ROOT / "en" / f"{tid}.html.j2").read_text()))


@pytest.fixture(scope="module")
def packet() -> str:
    return build_review_packet(MESSAGES_ROOT, LANGUAGES, study_globals=PROTOCOL.template_globals(),
                               study_name=PROTOCOL.study.name, screener=PROTOCOL.screener)


@pytest.fixture
def messages_copy(tmp_path: Path) -> Path:
    root = tmp_path / "messages"
    shutil.copytree(MESSAGES_ROOT, root, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    return root


# -- Every branch is shown ----------------------------------------------------------------------


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("template_id", BRANCHING)
def test_the_variants_take_every_branch_of_the_template(template_id: str, language: str) -> None:
    """For every template with a branch, every `{% if %}` is rendered both ways (every `elif` and
    `else` taken; an optional part shown and left out), both sides of every inline `if`, every
    loop with an item (and empty, where it has an `{% else %}`), by some variant."""
    untaken = untaken_branches(CATALOG, new_environment(language), CATALOG.templates[template_id], language, VARIANTS)
    assert untaken == [], "\n".join(map(str, untaken))


def test_the_shipped_templates_with_branches_are_many_and_the_check_sees_them() -> None:
    assert len(BRANCHING) >= 45
    for tid in ("visit_reminder", "pregnancy_reminder", "checkin_due", "checkin_review", "safety_message",
                "consent", "staff_alert", "buttons"):
        assert tid in BRANCHING


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("template_id", sorted(VARIANTS))
def test_each_variant_changes_what_the_message_says(template_id: str, language: str) -> None:
    """A variant that renders the same as the samples shows the IRB nothing new."""
    spec = CATALOG.templates[template_id]
    renderer = demo_catalog({}, LANGUAGES, root=MESSAGES_ROOT)
    texts = [renderer.render(template_id, language, values_for(CATALOG, spec, v)).text
             for v in variants_of(template_id, VARIANTS)]
    assert len(set(texts)) == len(texts), [v.name for v in variants_of(template_id, VARIANTS)]


def test_the_review_packet_shows_every_variant_of_every_message(packet: str) -> None:
    renderer = demo_catalog({}, LANGUAGES, root=MESSAGES_ROOT)
    globals_ = PROTOCOL.template_globals()
    shown = 0
    for template_id, spec in CATALOG.templates.items():
        if spec.kind != "message":
            continue
        section = packet[packet.index(f"<h2 id='{template_id}'>"):]
        section = section[:section.find("<h2 ", 1)]
        for variant in variants_of(template_id, VARIANTS):
            title = "With the sample values" if variant.name == SAMPLE else f"Variant: {variant.name}"
            assert f"<h3 class='variant'>{title.replace(chr(39), '&#x27;')}</h3>" in section, (template_id, title)
            if variant.values:
                assert describe(variant).replace('"', "&quot;") in section, (template_id, variant.name)
            for language in LANGUAGES:
                text = renderer.render(template_id, language, values_for(CATALOG, spec, variant, "sample", globals_)).text
                assert text in section, (template_id, variant.name, language)
                shown += 1
    assert shown > 2 * len(CATALOG.templates)


def test_the_packet_shows_each_wording_of_the_visit_and_pregnancy_reminders_and_check_ins(packet: str) -> None:
    for words in ("Your study visit is in 7 days.", "Your study visit is tomorrow.", "Your study visit is today.",
                  "Su visita del estudio es mañana.", "Su visita del estudio es hoy.",
                  "Please do the test at home with the kit from the study team.",
                  "The test is done at the study clinic.", "gentle reminder",
                  "It has 7 short questions", "short check-in: 2 questions about itch and skin pain",
                  "(1 of 2)", "If you are thinking about hurting yourself",
                  "Please stop applying the study cream now", "Sorry, this reminder is late."):
        assert words in packet, words


def test_the_summary_counts_the_variants(packet: str) -> None:
    row = re.search(r"<tr><td><a href='#visit_reminder'>visit_reminder</a></td><td>[^<]*</td><td>([^<]*)</td>", packet)
    assert row is not None and row.group(1) == f"sample values + {len(VARIANTS['visit_reminder'])} variant(s)"


# -- A missing variant is caught ---------------------------------------------------------------


def _drop_line(root: Path, starts: str) -> None:
    path = root / "catalog.toml"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [line for line in lines if not line.startswith(starts)]
    assert len(kept) == len(lines) - 1, starts
    path.write_text("".join(kept), encoding="utf-8")


def test_without_the_variant_for_a_branch_lint_names_the_branch(messages_copy: Path) -> None:
    _drop_line(messages_copy, 'variants."the day before, sent late"')
    findings = [str(f) for f in lint(messages_copy, LANGUAGES, only="visit_reminder")]
    for language in LANGUAGES:
        assert any(f.startswith(f"{language}/visit_reminder.html.j2: line 4 `{{% elif days_before == 1 %}}`: "
                                "no variant takes this branch") for f in findings), findings
        assert any(f.startswith(f"{language}/visit_reminder.html.j2: line 18 `{{% if late %}}`: "
                                "no variant makes it true") for f in findings), findings
    assert all("add a variant under [templates.visit_reminder] in catalog.toml" in f for f in findings)


def test_a_new_branch_without_a_variant_is_caught(messages_copy: Path) -> None:
    path = messages_copy / "es" / "reminder_application.html.j2"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("{% if late %}", "{% if slot_at.hour < 6 %}¡Qué temprano!{% endif %}\n{% if late %}"),
                    encoding="utf-8")
    findings = [str(f) for f in lint(messages_copy, LANGUAGES, only="reminder_application")]
    assert findings == [(
        "es/reminder_application.html.j2: line 5 `{% if slot_at.hour < 6 %}`: no variant makes it true; add a "
        "variant under [templates.reminder_application] in catalog.toml, so the review packet shows this wording")]


def test_a_shared_label_branch_needs_a_button_sample(messages_copy: Path) -> None:
    path = messages_copy / "catalog.toml"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("button_samples.flag_fever = [{ chosen = false }, { chosen = true }]\n", ""),
                    encoding="utf-8")
    findings = [str(f) for f in lint(messages_copy, LANGUAGES, only="buttons")]
    assert any(f.startswith("en/buttons.html.j2: line 29 `{% if chosen is defined and chosen %}`: no variant makes "
                            "it true; add a button sample") for f in findings), findings


def test_a_variant_must_set_variables_the_template_takes(messages_copy: Path) -> None:
    path = messages_copy / "catalog.toml"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace('variants."the day before, sent late" = { days_before = 1, late = true }',
                                 'variants."the day before, sent late" = { days_befor = 1, late = true }'),
                    encoding="utf-8")
    findings = [str(f) for f in lint(messages_copy, ["en"], only="visit_reminder")]
    assert "en/visit_reminder.html.j2: variant 'the day before, sent late' sets 'days_befor', which " \
           "'visit_reminder' does not take" in findings


def test_a_variant_too_long_for_telegram_is_caught(messages_copy: Path) -> None:
    path = messages_copy / "catalog.toml"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace('variants."they did not say what changed" = { text = "" }',
                                 f'variants."they did not say what changed" = {{ text = "{"w" * 4000}" }}'),
                    encoding="utf-8")
    findings = [str(f) for f in lint(messages_copy, ["en"], only="staff_regimen_change")]
    assert any("with the sample + variant 'they did not say what changed' values; Telegram allows 4096" in f
               for f in findings), findings


# -- Reading variants ---------------------------------------------------------------------------


def test_variants_read_from_the_catalog_with_none_for_what_toml_cannot_say(tmp_path: Path) -> None:
    (tmp_path / "catalog.toml").write_text(
        '[templates.a]\nvariables.x = { sample = 1 }\n'
        'variants."no time" = { x = 2, none = ["at", "rows[1].a7", "answers.severity"], '
        'rows = [{ a7 = 1 }, { a7 = 2 }], answers = { severity = "mild" } }\n'
        '[templates.b]\n', encoding="utf-8")
    found = load_variants(tmp_path)
    assert list(found) == ["a"]
    (variant,) = found["a"]
    assert variant.name == "no time"
    assert dict(variant.values) == {"x": 2, "at": None, "rows": [{"a7": 1}, {"a7": None}],
                                    "answers": {"severity": None}}
    assert describe(variant) == 'x = 2, rows = [{a7 = 1}, {a7 = none}], answers = {severity = none}, at = none'


@pytest.mark.parametrize(("line", "message"), [
    ('variants = ["x"]', "must be a table of named variable sets"),
    ('variants."x" = {}', "must set at least one variable"),
    ('variants."Sample values" = { x = 1 }', "is the name of the samples themselves"),
    ('variants."x" = { none = "x" }', "`none` must be a list"),
    ('variants."x" = { none = ["rows[0]..a"] }', "is not a variable name or a path"),
    ('variants."x" = { none = ["rows[3].a"], rows = [] }', "is not a place in what the variant sets"),
])
def test_a_malformed_variant_names_its_key(tmp_path: Path, line: str, message: str) -> None:
    (tmp_path / "catalog.toml").write_text(f"[templates.a]\n{line}\n", encoding="utf-8")
    with pytest.raises(CatalogError, match=re.escape(message)):
        load_variants(tmp_path)


# -- The branch check itself ------------------------------------------------------------------


def test_the_branch_check_sees_each_kind_of_branch() -> None:
    source = ("{% block text %}{% if a %}A{% elif b %}B{% else %}C{% endif %}"
              "{% if late %}!{% endif %}{{ 'x' if c else 'y' }}"
              "{% for i in items %}{{ i }}{% else %}none{% endfor %}{% endblock %}")
    recorder = BranchRecorder(new_environment("en"), source)
    assert [(b.statement, b.missing) for b in recorder.untaken()] == [
        ("{% if a %}", "makes it true"), ("{% elif b %}", "takes this branch"),
        ("{% if a %}", "leaves all its conditions false"),
        ("{% if late %}", "makes it true"), ("{% if late %}", "makes it false (to show the message without this part)"),
        ("{% for i in items %}", "has an item for this loop"),
        ("{% for i in items %}", "has nothing for this loop (its {% else %})"),
        ("... if c else ...", "makes it true"), ("... if c else ...", "makes it false")]
    recorder.render("text", {"a": True, "b": False, "late": False, "c": True, "items": [1]})
    recorder.render("text", {"a": False, "b": True, "late": True, "c": False, "items": []})
    assert [(b.statement, b.missing) for b in recorder.untaken()] == [("{% if a %}", "leaves all its conditions false")]
    recorder.render("text", {"a": False, "b": False, "late": True, "c": False, "items": []})
    assert recorder.untaken() == []


def test_the_instrumented_copy_renders_the_same_words() -> None:
    spec = CATALOG.templates["visit_reminder"]
    source = (MESSAGES_ROOT / "en" / "visit_reminder.html.j2").read_text(encoding="utf-8")
    values = values_for(CATALOG, spec, VARIANTS["visit_reminder"][1])
    renderer = demo_catalog({}, LANGUAGES, root=MESSAGES_ROOT)
    copy = BranchRecorder(new_environment("en"), source).render("text", values)
    assert copy is not None and copy.strip() == renderer.render("visit_reminder", "en", values).text


# -- The screening terms ------------------------------------------------------------------------


def test_the_packet_lists_every_screening_term_per_flag_and_language_with_its_action(packet: str) -> None:
    section = packet[packet.index("<h2 id='screening'>"):]
    actions = {"emergency": "Emergency: call the emergency number now", "crisis": "Crisis: the crisis line",
               "stop_cream_call_today": "Stop the study cream and call the study team today",
               "call_today": "Call the study team today", "message_team": "Nothing to do now; the study team is told"}
    rows = re.findall(r"<tr><td>([a-z_]+)</td>(.*?)</tr>", section, flags=re.DOTALL)
    assert [code for code, _ in rows] == list(PROTOCOL.screener.flags)
    for (code, cells), flag in zip(rows, PROTOCOL.screener.flags.values(), strict=True):
        cells_text = re.findall(r"<td>(.*?)</td>", cells, flags=re.DOTALL)
        assert actions[flag.action.value] in cells_text[1], code
        assert cells_text[2] == ("yes" if flag.alerts else "no"), code
        for language, cell in zip(LANGUAGES, cells_text[3:], strict=True):
            listed = [t.replace("&#x27;", "'").replace("&quot;", '"') for t in cell.split(", ")]
            assert listed == list(flag.terms[language]), (code, language)


def test_the_packet_lists_the_study_values_the_texts_are_rendered_with(packet: str) -> None:
    section = packet[packet.index("<h2 style='page-break-before: avoid'>Study values in the texts</h2>"):]
    section = section[:section.index("<h2 ", 5)]
    study = PROTOCOL.study
    for value in (study.phone, study.email, study.team_hours["en"], study.team_hours["es"],
                  study.reply_within["es"], study.records_kept["en"]):
        assert value in section, value
