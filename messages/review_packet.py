"""The review packet for an IRB submission: one self-contained HTML document with every template
in every language rendered with its sample values and with each of its variants (the catalog's
named variable sets that take every branch of the template: each visit-reminder day, the clinic
and home pregnancy tests, short and full check-ins, a late reminder; see `messages.variants`), its
buttons, its purpose and when it is sent, its approval, and what changed since that approval (a
diff of the template text). With the protocol's screening, a last section lists the words that
trigger safety messages, per flag and language, with what each makes the bot do.

HTML only: printing it to PDF from a browser gives the IRB a PDF without another dependency.
"""

from __future__ import annotations

import difflib
import html
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from messages.catalog import Catalog, TemplateSpec
from messages.ledger import Ledger, State, Verdict
from messages.preview import build_preview
from messages.renderer import DRAFT_MARK, MessageCatalog
from messages.variants import Variant, describe, load_variants, variants_of

if TYPE_CHECKING:
    from study.screening import Screener

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 72rem; margin: 2rem auto; padding: 0 1rem; color: #111; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.2rem; margin-top: 2.5rem; border-top: 2px solid #999; padding-top: 1rem; }
table { border-collapse: collapse; } td, th { border: 1px solid #ccc; padding: .25rem .5rem; text-align: left; vertical-align: top; }
.langs { display: grid; grid-template-columns: repeat(auto-fit, minmax(20rem, 1fr)); gap: 1rem; }
.message { white-space: pre-wrap; background: #eef6ee; border-radius: .6rem; padding: .75rem; font-size: 1rem; }
.button { display: block; border: 1px solid #7a7; border-radius: .4rem; margin: .25rem 0; padding: .3rem; text-align: center; background: #fff; }
.state-approved { color: #060; } .state-modified, .state-new, .state-missing { color: #a00; font-weight: bold; }
pre.diff { background: #f6f6f6; padding: .5rem; overflow-x: auto; } .add { color: #060; } .del { color: #a00; }
.meta { color: #444; overflow-wrap: anywhere; } details { margin-top: .5rem; } summary { overflow-wrap: anywhere; }
h3.variant { font-size: 1rem; margin: 1.5rem 0 .25rem; } h4 { margin: .5rem 0 .25rem; }
@media print { h2 { page-break-before: always; } }
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _state_class(state: State) -> str:
    return {State.APPROVED: "approved", State.TEXT_CHANGED: "modified", State.VALUES_CHANGED: "modified",
            State.NEVER: "new", State.MISSING: "missing"}[state]


def _diff(catalog: Catalog, verdict: Verdict) -> str:
    if verdict.state is State.APPROVED:
        return "<p>Unchanged since approval.</p>"
    if verdict.state is State.MISSING:
        return "<p class='state-missing'>The template file is missing.</p>"
    if verdict.state is State.NEVER or verdict.approval is None:
        return "<p>New: never approved. The whole text is for review.</p>"
    if verdict.state is State.VALUES_CHANGED:
        return (f"<p>The text is as approved; the study values in it changed: {_e(', '.join(verdict.changed_values))}"
                "</p>")
    current = catalog.path(verdict.template_id, verdict.language).read_text(encoding="utf-8").splitlines(keepends=True)
    before = verdict.approval.text.splitlines(keepends=True)
    lines = []
    for line in difflib.unified_diff(before, current, fromfile="approved", tofile="proposed"):
        css = "add" if line.startswith("+") and not line.startswith("+++") else (
            "del" if line.startswith("-") and not line.startswith("---") else "")
        lines.append(f"<span class='{css}'>{_e(line.rstrip(chr(10)))}</span>")
    return "<p>Changed since approval:</p><pre class='diff'>" + "\n".join(lines) + "</pre>"


_ACTION_TEXT = {
    "emergency": "Emergency: call the emergency number now (and the study team)",
    "crisis": "Crisis: the crisis line and the emergency number",
    "stop_cream_call_today": "Stop the study cream and call the study team today",
    "call_today": "Call the study team today",
    "message_team": "Nothing to do now; the study team is told",
}


def _screening_section(screener: Screener, languages: Sequence[str]) -> list[str]:
    """The words that trigger safety messages, per flag and language, for the IRB."""
    out = [
        "<h2 id='screening'>Red-flag screening: the words that trigger safety messages</h2>",
        ("<p>Every message a participant writes is screened for these warning signs (terms of every language "
        "are searched in every message). Matching ignores case, accents and invisible characters, accepts "
        "listed misspellings, and does not act on a negated mention (“no fever”), which the study team still "
        "sees. In a term, <code>word*</code> means any word starting so, <code>a|b</code> either word, and "
        "<code>..</code> up to three words in between. The screening routes messages; it does not diagnose. "
        "Source: screening.toml, explained in docs/safety.md.</p>"),
        ("<table><tr><th>Code</th><th>Warning sign (for staff)</th><th>What the participant is told</th>"
        "<th>Team alerted</th>"), *[f"<th>Terms ({_e(language)})</th>" for language in languages], "</tr>",
    ]
    for code, flag in screener.flags.items():
        cells = "".join(f"<td>{_e(', '.join(flag.terms.get(language, ())))}</td>" for language in languages)
        out.append(f"<tr><td>{_e(code)}</td><td>{_e(flag.label)}</td><td>{_e(_ACTION_TEXT.get(flag.action.value, flag.action.value))}"
                   f"</td><td>{'yes' if flag.alerts else 'no'}</td>{cells}</tr>")
    out.append("</table>")
    return out


def _study_values(study_globals: Mapping[str, Any]) -> list[str]:
    """The study's own values (study.toml) that the texts are rendered with: part of what is approved."""
    rows = []
    for name, value in study_globals.items():
        if isinstance(value, Mapping):
            shown = "<br>".join(f"{_e(key)}: {_e(item)}" for key, item in value.items())
        else:
            shown = _e(value)
        rows.append(f"<tr><td>{_e(name)}</td><td>{shown}</td></tr>")
    return ["<h2 style='page-break-before: avoid'>Study values in the texts</h2>",
            "<p>From study.toml, rendered into the messages below wherever a template uses them.</p>",
            f"<table><tr><th>Value</th><th>As rendered</th></tr>{''.join(rows)}</table>"]


def _variant_section(root: Path, catalog: Catalog, renderer: MessageCatalog, spec: TemplateSpec, variant: Variant,
                     languages: Sequence[str], study_globals: Mapping[str, Any] | None) -> list[str]:
    """One variant of a message, side by side in every language."""
    title = "With the sample values" if not variant.values else f"Variant: {variant.name}"
    out = [f"<h3 class='variant'>{_e(title)}</h3>"]
    if variant.values:
        out.append(f"<p class='meta'>Differs from the samples in: {_e(describe(variant))}</p>")
    out.append("<div class='langs'>")
    for language in languages:
        out.append(f"<div><h4>{_e(language)}</h4>")
        if not catalog.path(spec.id, language).exists():
            out.append(f"<p class='state-missing'>No {language} text.</p></div>")
            continue
        out.append(_shown(root, catalog, renderer, spec, variant, language, study_globals) + "</div>")
    out.append("</div>")
    return out


def _shown(root: Path, catalog: Catalog, renderer: MessageCatalog, spec: TemplateSpec, variant: Variant | None,
           language: str, study_globals: Mapping[str, Any] | None) -> str:
    """A message as the participant (or staff member) sees it, or a list of labels or words."""
    try:
        preview = build_preview(root, spec.id, language, study_globals=study_globals, catalog=catalog,
                                renderer=renderer, variant=variant)
    except Exception as exc:  # noqa: BLE001 - a broken template is shown as broken
        return f"<p class='state-missing'>Does not render: {_e(exc)}</p>"
    if preview.kind == "message":
        text = preview.text.removeprefix(DRAFT_MARK).lstrip("\n") if preview.draft else preview.text
        # Telegram HTML is a subset of HTML, already escaped
        buttons = "".join(f"<span class='button'>{_e(label.removeprefix('[DRAFT] '))}</span>"
                          for label in preview.buttons)
        return f"<div class='message'>{text}{buttons}</div>"
    items = "".join(f"<li>{_e(line)}</li>" for line in preview.buttons)
    return f"<ul>{items}</ul>"


def build_review_packet(root: Path, languages: Sequence[str], *, study_globals: Mapping[str, Any] | None = None,
                        study_name: str = "", now: datetime | None = None, screener: Screener | None = None,
                        ledger: Ledger | None = None) -> str:
    """The packet's HTML. With `screener` (the protocol's red-flag screening), a last section lists
    every flag with its action and its terms per language; `ledger` says what is approved."""
    catalog = Catalog.load(root)
    renderer = MessageCatalog(root, allow_drafts=True, ledger=ledger, study_values=study_globals)
    listed = load_variants(catalog.root)
    now = now or datetime.now(UTC)
    ids = sorted(catalog.templates, key=lambda t: (catalog.templates[t].kind != "message", t))
    out = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>Participant messages: review packet</title><style>{_STYLE}</style></head><body>",
        "<h1>Participant messages: review packet</h1>",
        (f"<p class='meta'>{_e(study_name)}<br>Generated {now:%Y-%m-%d %H:%M} UTC. Languages: {_e(', '.join(languages))}. "
        f"{len(ids)} templates. Each message is shown with sample values, and once more for each of its "
        "variants: the same template with other values, so that every wording it can send is shown (every "
        "branch of the template; `trialbot messages lint` checks that none is left out). The exact template "
        "text (what the approval's SHA-256 covers) is under “Template text”.</p>"),
        "<h2 style='page-break-before: avoid'>Summary</h2><table><tr><th>Template</th><th>Sent when</th><th>Shown as</th>",
        *[f"<th>{_e(language)}</th>" for language in languages],
        "</tr>",
    ]
    for tid in ids:
        spec = catalog.templates[tid]
        cells = []
        for language in languages:
            verdict = renderer.verdict(tid, language)
            cells.append(f"<td class='state-{_state_class(verdict.state)}'>{_e(verdict.state.value)}</td>")
        shown = len(variants_of(tid, listed)) if spec.kind == "message" else 1
        shown_as = "sample values" if shown == 1 else f"sample values + {shown - 1} variant(s)"
        out.append(f"<tr><td><a href='#{_e(tid)}'>{_e(tid)}</a></td><td>{_e(spec.sent)}</td><td>{shown_as}</td>"
                   f"{''.join(cells)}</tr>")
    out.append("</table>")
    if study_globals:
        out += _study_values(study_globals)

    for tid in ids:
        spec = catalog.templates[tid]
        out.append(f"<h2 id='{_e(tid)}'>{_e(tid)}</h2>")
        out.append(f"<p><b>Purpose:</b> {_e(spec.purpose)}<br><b>Sent:</b> {_e(spec.sent)}<br>"
                   f"<b>Who receives it:</b> {_e(spec.audience)}</p>")
        if spec.variables:
            rows = "".join(f"<tr><td>{_e(v.name)}</td><td>{_e(v.sample)}</td></tr>" for v in spec.variables.values())
            out.append(f"<table><tr><th>Filled in by the bot</th><th>Sample</th></tr>{rows}</table>")
        if spec.kind == "message":
            for variant in variants_of(tid, listed):
                out += _variant_section(root, catalog, renderer, spec, variant, languages, study_globals)
            out.append("<h3 class='variant'>Approval and template text</h3>")
        out.append("<div class='langs'>")
        for language in languages:
            status = renderer.verdict(tid, language)
            out.append(f"<div><h3>{_e(language)} <span class='state-{_state_class(status.state)}'>"
                       f"({_e(status.state.value)})</span></h3>")
            if status.state is State.MISSING:
                out.append(f"<p class='state-missing'>No {language} text.</p></div>")
                continue
            if spec.kind != "message":
                out.append(_shown(root, catalog, renderer, spec, None, language, study_globals))
            if status.approval is not None:
                out.append(f"<p class='meta'>Approved: {_e(status.approval.irb_ref)}, "
                           f"{status.approval.approved_on.isoformat()}, recorded by {_e(status.approval.approved_by)}"
                           f"<br>sha256 {_e(status.approval.template_sha256)}</p>")
            out.append(_diff(catalog, status))
            source = catalog.path(tid, language).read_text(encoding="utf-8")
            out.append(f"<details><summary>Template text ({_e(language)}/{_e(tid)}.html.j2, sha256 "
                       f"{_e(status.template_sha256)})"
                       f"</summary><pre>{_e(source)}</pre></details></div>")
        out.append("</div>")
    if screener is not None:
        out += _screening_section(screener, languages)
    out.append("</body></html>")
    return "\n".join(out)
