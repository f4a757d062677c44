"""`trialbot messages lint`: everything about the templates that can be checked before the IRB sees
them and before a participant does.

For every template in the catalog and every enabled language: the file exists; it parses; it
uses only the blocks it should (`text`, and `button_<name>` for its buttons) and no
include/import/extends; every variable it uses is declared in the catalog and every declared
variable is used; it renders, with the sample values and with the longest plausible ones, to
HTML that Telegram accepts (its tag set, balanced) and to at most 4096 characters after the
markup is parsed; each button has a non-empty plain-text label and callback data within 64 bytes;
command descriptions fit Telegram's 256 characters. Every variant the catalog lists for a template
(`messages.variants`) is rendered and checked the same way, and together the variants must take
every branch of the template (`messages.branches`), so the review packet shows every wording.
Files not in the catalog are reported too. Lint renders drafts: it checks text, not approval
(that is `status`).
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jinja2 import TemplateError, TemplateSyntaxError, meta, nodes

from messages.branches import untaken_branches
from messages.catalog import PARTICIPANT_COMMANDS, SUFFIX, Catalog, CatalogError, TemplateSpec
from messages.renderer import SHARED_BUTTONS, Button, MessageCatalog, MessageError
from messages.telegram_html import MAX_TEXT_LENGTH, TelegramHtmlError, parse_html, utf16_len
from messages.variants import (
    Variant,
    button_variants,
    load_variants,
    unknown_names,
    values_for,
    variants_of,
)

MAX_CALLBACK_DATA_BYTES = 64
MAX_COMMAND_DESCRIPTION = 256
MAX_BUTTON_LABEL = 64  # Telegram documents no limit; long labels are cut off on phones anyway



@dataclass(frozen=True)
class Finding:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def sample_values(catalog: Catalog, spec: TemplateSpec, which: str = "sample",
                  study_globals: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The variables of a template's samples (its first variant)."""
    return values_for(catalog, spec, None, which, study_globals)


def lint(root, languages: Sequence[str], *, study_globals: Mapping[str, Any] | None = None,
         only: str | None = None) -> list[Finding]:
    catalog = Catalog.load(root)
    if not (catalog.root / "catalog.toml").is_file():  # an empty catalog would lint "OK" with nothing in it
        return [Finding(str(catalog.root), "no catalog.toml here: not a messages folder (check TRIALBOT_MESSAGES_DIR)")]
    renderer = MessageCatalog(root, allow_drafts=True)
    findings: list[Finding] = []
    try:
        listed = load_variants(catalog.root)
    except CatalogError as exc:
        return [Finding("catalog.toml", str(exc))]
    for tid in sorted(set(listed) - set(catalog.templates)):
        findings.append(Finding("catalog.toml", f"variants for {tid!r}, which is not a template of the catalog"))
    ids = [only] if only else catalog.all_ids(languages)
    for tid in ids:
        spec = catalog.templates.get(tid)
        for language in languages:
            path = catalog.path(tid, language)
            rel = _rel(catalog, path)
            if spec is None:
                if path.exists():
                    findings.append(Finding(rel, "not in the catalog (add it to catalog.toml with its purpose)"))
                continue
            if not path.exists():
                findings.append(Finding(rel, f"missing: every template is needed in every language ({language})"))
                continue
            findings += _lint_file(catalog, renderer, spec, language, rel, study_globals, listed)
    for name, data in catalog.buttons.items():
        if len(data.encode()) > MAX_CALLBACK_DATA_BYTES:
            findings.append(Finding("catalog.toml", f"button {name!r}: callback data is "
                                    f"{len(data.encode())} bytes, Telegram allows {MAX_CALLBACK_DATA_BYTES}"))
    return findings


def _rel(catalog: Catalog, path) -> str:
    try:
        return str(path.relative_to(catalog.root))
    except ValueError:
        return str(path)


@dataclass(frozen=True)
class _File:
    """One template in one language, with what its checks need."""

    catalog: Catalog
    renderer: MessageCatalog
    spec: TemplateSpec
    language: str
    rel: str
    study_globals: Mapping[str, Any] | None
    listed: Mapping[str, tuple[Variant, ...]]

    def finding(self, text: str) -> Finding:
        return Finding(self.rel, text)


def _no_other_files(f: _File, ast: nodes.Template, variants: list[Variant]) -> list[Finding]:
    return [f.finding(f"line {node.lineno}: a template may not include, import or extend another file")
            for node in ast.find_all((nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport))]


def _variables_declared(f: _File, ast: nodes.Template, variants: list[Variant]) -> list[Finding]:
    declared = set(f.catalog.globals) | set(f.spec.variables)
    used = meta.find_undeclared_variables(ast)
    return ([f.finding(f"uses {{{{ {name} }}}}, which the catalog does not declare for {f.spec.id!r}")
             for name in sorted(used - declared)]
            + [f.finding(f"does not use the declared variable {name!r} (remove it from the catalog, or use it)")
               for name in sorted(set(f.spec.variables) - used)])


def _variants_known(f: _File, ast: nodes.Template, variants: list[Variant]) -> list[Finding]:
    out = [f.finding(f"variant {variant.name!r} sets {name!r}, which {f.spec.id!r} does not take")
           for variant in variants for name in unknown_names(f.catalog, f.spec, variant)]
    if f.spec.kind != "message" and len(variants) > 1:
        out.append(f.finding(f"variants are for messages; {f.spec.id!r} is {f.spec.kind}"))
    return out


# What every template must get right before it is rendered at all; any finding here stops its lint.
_STRUCTURE_CHECKS = (_no_other_files, _variables_declared, _variants_known)

# How each kind of template is then rendered and checked (catalog.toml `kind`; "message" otherwise).
_KIND_CHECKS: dict[str, Callable[[_File, set[str], list[Variant]], list[Finding]]] = {
    "labels": lambda f, blocks, variants: _lint_labels(f.catalog, f.renderer, f.spec, f.language, f.rel, blocks),
    "commands": lambda f, blocks, variants: _lint_commands(f.renderer, f.spec, f.language, f.rel, blocks),
    "figure": lambda f, blocks, variants: _lint_figure(f.renderer, f.spec, f.language, f.rel, blocks),
    "message": lambda f, blocks, variants: _lint_message(f.catalog, f.renderer, f.spec, f.language, f.rel, blocks,
                                                         f.study_globals, variants),
}


def _lint_file(catalog: Catalog, renderer: MessageCatalog, spec: TemplateSpec, language: str, rel: str,
               study_globals: Mapping[str, Any] | None, listed: Mapping[str, tuple[Variant, ...]]) -> list[Finding]:
    f = _File(catalog, renderer, spec, language, rel, study_globals, listed)
    source = catalog.path(spec.id, language).read_text(encoding="utf-8")
    try:
        ast = renderer.environment(language).parse(source)
    except TemplateSyntaxError as exc:
        return [f.finding(f"line {exc.lineno}: {exc.message}")]
    variants = variants_of(spec.id, listed)
    structural = [finding for check in _STRUCTURE_CHECKS for finding in check(f, ast, variants)]
    if structural:
        return structural
    blocks = {b.name for b in ast.find_all(nodes.Block)}
    by_kind = _KIND_CHECKS.get(spec.kind, _KIND_CHECKS["message"])
    return _dedupe(by_kind(f, blocks, variants) + _lint_branches(catalog, renderer, spec, language, rel, listed))


def _lint_branches(catalog: Catalog, renderer: MessageCatalog, spec: TemplateSpec, language: str, rel: str,
                   listed: Mapping[str, tuple[Variant, ...]]) -> list[Finding]:
    """Every branch of the template is shown by some variant, so the review packet holds it."""
    where = (f"add a variant under [templates.{spec.id}] in catalog.toml" if spec.kind == "message"
             else "add a button sample to a message that carries it")
    return [Finding(rel, f"{branch}; {where}, so the review packet shows this wording")
            for branch in untaken_branches(catalog, renderer.environment(language), spec, language, listed)]


def _lint_message(catalog: Catalog, renderer: MessageCatalog, spec: TemplateSpec, language: str, rel: str,
                  blocks: set[str], study_globals: Mapping[str, Any] | None,
                  variants: list[Variant]) -> list[Finding]:
    out: list[Finding] = []
    allowed = {"text"} | {f"button_{b}" for b in spec.buttons}
    if "text" not in blocks:
        out.append(Finding(rel, "has no {% block text %}"))
    for block in sorted(blocks - allowed):
        out.append(Finding(rel, f"block {block!r} is not the text or a button the catalog lists for {spec.id!r}"))
    if out:
        return out
    for which in ("sample", "longest", "study"):
        if which == "study" and not study_globals:
            continue
        for variant in variants:
            variables = values_for(catalog, spec, variant, "sample" if which == "study" else which,
                                   study_globals if which == "study" else None)
            what = which if not variant.values else f"{which} + variant {variant.name!r}"
            rows = [[Button(name, catalog.buttons.get(name, ""), sample)]
                    for name in spec.buttons for sample in button_variants(spec, name)]
            try:
                rendered = renderer.render(spec.id, language, variables, rows)
            except (MessageError, TemplateError, TypeError, ValueError, AttributeError) as exc:
                out.append(Finding(rel, f"does not render with the {what} values: {exc}"))
                continue
            text = rendered.text.split("\n\n", 1)[1] if rendered.draft else rendered.text
            out += _check_text(rel, text, what)
            for row in rendered.buttons:
                for button in row:
                    label = button.label.removeprefix("[DRAFT] ")
                    if not label.strip():
                        out.append(Finding(rel, f"a button label is empty ({what} values)"))
                    elif len(label) > MAX_BUTTON_LABEL:
                        out.append(Finding(rel, f"button label {label[:20]!r}... is {len(label)} characters"))
                    if "<" in label and ">" in label:
                        out.append(Finding(rel, f"button label {label!r} looks like HTML; labels are plain text"))
    for name in spec.buttons:
        if name not in catalog.buttons:
            out.append(Finding(rel, f"button {name!r} has no callback data in the catalog's [buttons]"))
    return _dedupe(out)


def _check_text(rel: str, text: str, which: str) -> list[Finding]:
    try:
        plain, _entities = parse_html(text)
    except TelegramHtmlError as exc:
        return [Finding(rel, f"Telegram would refuse the HTML ({which} values): {exc}")]
    if not plain.strip():
        return [Finding(rel, f"renders to an empty message ({which} values)")]
    length = utf16_len(plain)
    if length > MAX_TEXT_LENGTH:
        return [Finding(rel, f"is {length} characters with the {which} values; Telegram allows {MAX_TEXT_LENGTH}")]
    return []


def _lint_labels(catalog: Catalog, renderer: MessageCatalog, spec: TemplateSpec, language: str, rel: str,
                 blocks: set[str]) -> list[Finding]:
    out = []
    for block in sorted(blocks):
        name = block.removeprefix("button_")
        if not block.startswith("button_"):
            out.append(Finding(rel, f"block {block!r}: shared labels are `button_<name>` blocks"))
        elif name not in catalog.buttons:
            out.append(Finding(rel, f"label {name!r} is for a button the catalog's [buttons] does not list"))
    # Every button a message may carry needs a label, of its own or shared.
    for other in catalog.templates.values():
        if other.kind != "message" or not catalog.path(other.id, language).exists():
            continue
        try:
            own = set(renderer.block_names(other.id, language))
        except MessageError:
            continue
        for name in other.buttons:
            if f"button_{name}" not in own and f"button_{name}" not in blocks:
                out.append(Finding(rel, f"no label for button {name!r}, which {other.id!r} may carry"))
    for block in sorted(blocks):
        try:
            label = renderer.render_block(spec.id, language, block).removeprefix("[DRAFT] ")
        except MessageError as exc:
            out.append(Finding(rel, str(exc)))
            continue
        if not label:
            out.append(Finding(rel, f"label {block!r} is empty"))
    return out


def _lint_commands(renderer: MessageCatalog, spec: TemplateSpec, language: str, rel: str,
                   blocks: set[str]) -> list[Finding]:
    out = []
    for name in PARTICIPANT_COMMANDS:
        block = f"command_{name}"
        if block not in blocks:
            out.append(Finding(rel, f"no description for /{name} ({{% block {block} %}})"))
            continue
        text = renderer.render_block(spec.id, language, block).removeprefix("[DRAFT] ")
        if not 1 <= len(text) <= MAX_COMMAND_DESCRIPTION:
            out.append(Finding(rel, f"/{name}: a description must be 1 to {MAX_COMMAND_DESCRIPTION} characters"))
        if html.unescape(text) != text or "<" in text:
            out.append(Finding(rel, f"/{name}: descriptions are plain text, without HTML"))
    for block in sorted(blocks - {f"command_{n}" for n in PARTICIPANT_COMMANDS}):
        out.append(Finding(rel, f"block {block!r} is not a command the bot has"))
    return out


MAX_FIGURE_LABEL = 64


def _lint_figure(renderer: MessageCatalog, spec: TemplateSpec, language: str, rel: str,
                 blocks: set[str]) -> list[Finding]:
    """The words drawn into a picture (axis labels, legend): `label_<name>` blocks of plain text."""
    out = []
    for block in sorted(blocks):
        if not block.startswith("label_"):
            out.append(Finding(rel, f"block {block!r}: words in a figure are `label_<name>` blocks"))
            continue
        text = renderer.render_block(spec.id, language, block).removeprefix("[DRAFT] ")
        if not 1 <= len(text) <= MAX_FIGURE_LABEL:
            out.append(Finding(rel, f"{block}: a label must be 1 to {MAX_FIGURE_LABEL} characters"))
        if html.unescape(text) != text or "<" in text:
            out.append(Finding(rel, f"{block}: figure labels are plain text, without HTML"))
    return out


def _dedupe(findings: list[Finding]) -> list[Finding]:
    seen, out = set(), []
    for f in findings:
        if (f.path, f.message) not in seen:
            seen.add((f.path, f.message))
            out.append(f)
    return out


__all__ = ["SHARED_BUTTONS", "SUFFIX", "Finding", "button_variants", "lint", "sample_values"]
