"""Renders participant- and staff-visible text from the templates under `messages/<language>/`.

A template is one message: its `text` block, and a `button_<name>` block for each button it may
carry. Code decides which buttons a message has and what they do (callback data); the template
decides every word. Templates are edited by non-developers, so they run in Jinja's sandbox with
StrictUndefined (a misspelt variable is an error, not an empty string) and autoescaping for
Telegram's HTML parse mode.

Fail closed (issues 3 and 15): a template is rendered only from the exact text the IRB approved,
in the language asked for, with the study values (phone, e-mail, study name...) it was approved
with. The file is read, hashed and checked against the approvals ledger (messages/ledger.py, read
from the audit trail) at every render, and the text compiled is that same text, so an edit made
while the bot runs is refused rather than sent. The study values are the catalog's own (given at
construction), never a caller's. There is no fallback to another language. `allow_drafts=True`
(previews, the review packet) renders unapproved text too, but marks every such message DRAFT.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

from babel.dates import format_date, format_skeleton, format_time
from babel.numbers import format_decimal
from jinja2 import StrictUndefined, Template, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from messages.catalog import SUFFIX, Catalog, CatalogError, default_root
from messages.ledger import (
    Ledger,
    State,
    Verdict,
    is_placeholder,
    referenced,
    values_sha256,
)

TEMPLATES = Path(__file__).parent
DRAFT_MARK = "⚠️ <b>DRAFT, not approved</b>"
DRAFT_LABEL = "[DRAFT] "
# Labels shared by many messages ("Applied now", "Back") live in one template; a message may
# still define its own `button_<name>` block, which then wins.
SHARED_BUTTONS = "buttons"


class MessageError(Exception):
    """A message cannot be rendered (missing, unapproved or broken template, block or variable);
    nothing is sent."""


class NotApprovedError(MessageError):
    """The template's text is not the text the IRB approved (or was never approved)."""


class CatalogNotReady(MessageError):
    """At start-up: templates the bot may send are missing or not approved. `problems` names each file."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("the messages are not ready to send:\n" + "\n".join(f"  {p}" for p in problems))


@dataclass(frozen=True)
class Button:
    """A button the code wants on a message: which label block, and the callback data it sends."""

    name: str
    data: str
    variables: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RenderedButton:
    label: str
    data: str


@dataclass(frozen=True)
class RenderedMessage:
    template_id: str
    language: str
    text: str
    buttons: tuple[tuple[RenderedButton, ...], ...]
    template_hash: str  # SHA-256 of the template file as rendered, for the record of what was sent
    draft: bool = False  # rendered from unapproved text (only ever with allow_drafts)


# Dates as people write them in each language; other languages get Babel's pattern for the skeleton.
_DATE_PATTERNS = {
    "en": {"long": "EEEE, MMMM d", "short": "MMM d"},
    "es": {"long": "EEEE d 'de' MMMM", "short": "d MMM"},
}
_DATE_SKELETONS = {"long": "MMMMEEEEd", "short": "MMMd"}


def _formatters(language: str) -> dict[str, Any]:
    def fmt_time(value: datetime | time) -> str:
        if isinstance(value, datetime):
            return format_time(value, "short", tzinfo=value.tzinfo, locale=language)
        return format_time(value, "short", locale=language)

    def fmt_date(value: date | datetime, style: str = "long") -> str:
        if isinstance(value, datetime):
            value = value.date()
        pattern = _DATE_PATTERNS.get(language, {}).get(style)
        if pattern is None and style in _DATE_SKELETONS:
            return format_skeleton(_DATE_SKELETONS[style], value, locale=language)
        return format_date(value, pattern or style, locale=language)

    def fmt_number(value: float) -> str:
        return format_decimal(value, locale=language)

    return {"time": fmt_time, "date": fmt_date, "number": fmt_number}


def new_environment(language: str) -> SandboxedEnvironment:
    """The sandbox every template runs in. No loader: a template cannot include another file,
    so the hash of one file covers every word of its message."""
    env = SandboxedEnvironment(autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(_formatters(language))
    return env


@dataclass(frozen=True)
class _Loaded:
    template: Template
    sha256: str
    approved: bool


class MessageCatalog:
    """Templates rendered for sending. `ledger` is what the IRB approved (none: nothing is);
    `study_values` the study's own values every template may use (Protocol.template_globals)."""

    def __init__(self, root: Path | None = None, *, default_language: str = "en", allow_drafts: bool = False,
                 ledger: Ledger | None = None, study_values: Mapping[str, Any] | None = None) -> None:
        self.root = Path(root) if root is not None else default_root()
        self.default_language = default_language  # kept for callers; there is no fallback any more
        self.allow_drafts = allow_drafts
        self.study_values = dict(study_values or {})
        self._ledger = ledger if ledger is not None else Ledger()
        self._verdicts: dict[tuple[str, str, bytes], Verdict] = {}
        self._environments: dict[str, SandboxedEnvironment] = {}
        self._compiled: dict[tuple[str, str], Template] = {}
        self._catalog: Catalog | None = None

    @property
    def ledger(self) -> Ledger:
        return self._ledger

    def use_ledger(self, ledger: Ledger) -> None:
        """Send by these approvals from now on (a reload after `trialbot messages approve`)."""
        self._ledger = ledger
        self._verdicts = {}

    def verdict(self, template_id: str, language: str, source: bytes | None = None) -> Verdict:
        """What the ledger says of the file as it is now (or of `source`), with this study's values."""
        if source is None:
            path = self.path(template_id, language)
            source = path.read_bytes() if path.exists() else None
        if source is None:
            return self._ledger.verdict(template_id, language, None, self.study_values)
        key = (template_id, language, source)
        verdict = self._verdicts.get(key)
        if verdict is None:
            verdict = self._verdicts[key] = self._ledger.verdict(template_id, language, source, self.study_values)
        return verdict

    def still_approved(self, template_id: str, language: str, template_hash: str) -> bool:
        """Is this version of the template (a text sent before) the one approved now, with the
        study values approved now? (Repeating an earlier answer: bot/exactly_once.py.)"""
        approval = self._ledger.current(template_id, language)
        return (approval is not None and approval.template_sha256 == template_hash
                and values_sha256(referenced(approval.text, self.study_values)) == approval.values_sha256)

    @property
    def catalog(self) -> Catalog:
        """The catalog file, re-read when it changes on disk (an approval takes effect at once)."""
        if self._catalog is None or self._catalog.changed_on_disk():
            try:
                self._catalog = Catalog.load(self.root)
            except CatalogError as exc:
                raise MessageError(f"message catalog: {exc}") from None
        return self._catalog

    def environment(self, language: str) -> SandboxedEnvironment:
        env = self._environments.get(language)
        if env is None:
            env = self._environments[language] = new_environment(language)
        return env

    def path(self, template_id: str, language: str) -> Path:
        return self.root / language / f"{template_id}{SUFFIX}"

    def problems(self, languages: Sequence[str], *, for_participants: bool = False) -> list[str]:
        """What stops start-up: missing, never approved or changed templates (text or study
        values), each naming the template. With drafts allowed only missing templates count
        (drafts are rendered, marked DRAFT). `for_participants` (trialbot run) also refuses
        approvals under a placeholder or demo reference."""
        catalog = self.catalog
        if not (catalog.root / "catalog.toml").exists():
            return [f"{catalog.root / 'catalog.toml'}: no message catalog, so no text is known"]
        problems = []
        for template_id in sorted(catalog.templates):
            for language in languages:
                verdict = self.verdict(template_id, language)
                if verdict.state is State.MISSING or (not verdict.approved and not self.allow_drafts):
                    problems.append(verdict.describe())
                elif for_participants and verdict.approval is not None and is_placeholder(verdict.approval.irb_ref):
                    problems.append(f"{language}/{template_id}: approved under {verdict.approval.irb_ref!r}, which is "
                                    "not a real IRB reference; approve the IRB-approved text under its reference")
        return problems

    def check_ready(self, languages: Sequence[str], *, for_participants: bool = False) -> None:
        problems = self.problems(languages, for_participants=for_participants)
        if problems:
            raise CatalogNotReady(problems)

    def _load(self, template_id: str, language: str) -> _Loaded:
        if not template_id.replace("_", "").isalnum():
            raise MessageError(f"not a template id: {template_id!r}")
        path = self.path(template_id, language)
        try:
            source = path.read_bytes()
        except FileNotFoundError:
            raise MessageError(f"no template {template_id!r} for language {language!r} ({path})") from None
        verdict = self.verdict(template_id, language, source)
        digest, approved = verdict.template_sha256 or "", verdict.approved
        if not approved and not self.allow_drafts:
            raise NotApprovedError(f"{verdict.describe()}; not sent")
        template = self._compiled.get((language, digest))
        if template is None:
            try:
                template = self.environment(language).from_string(source.decode("utf-8"))
            except (TemplateError, UnicodeDecodeError) as exc:
                raise MessageError(f"template {template_id!r} ({language}): {exc}") from None
            self._compiled[(language, digest)] = template
        return _Loaded(template, digest, approved)

    def render(
        self,
        template_id: str,
        language: str,
        variables: Mapping[str, Any] | None = None,
        buttons: Sequence[Sequence[Button]] = (),
    ) -> RenderedMessage:
        # The study's own values win: they are part of what the IRB approved.
        variables = {**(variables or {}), **self.study_values}
        loaded = self._load(template_id, language)
        draft = not loaded.approved
        try:
            text = self._block(loaded.template, "text", variables, template_id).strip()
            rows = []
            shared: dict[str, _Loaded] = {}  # the shared labels' template, read once per render
            for row in buttons:
                if not row:
                    continue
                labels = []
                for button in row:
                    label, label_draft = self._label(loaded.template, language, button, variables, template_id,
                                                     shared)
                    draft = draft or label_draft
                    labels.append(RenderedButton(label, button.data))
                rows.append(tuple(labels))
        except MessageError:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever a template does wrong, nothing is sent
            raise MessageError(f"template {template_id!r} ({language}): {type(exc).__name__}: {exc}") from None
        if draft:
            text = f"{DRAFT_MARK}\n\n{text}"
        return RenderedMessage(template_id, language, text, tuple(rows), loaded.sha256, draft)

    def render_block(self, template_id: str, language: str, block: str, variables: Mapping[str, Any] | None = None) -> str:
        """One named block as plain text (command descriptions, callback toasts)."""
        loaded = self._load(template_id, language)
        try:
            values = {**(variables or {}), **self.study_values}
            text = html.unescape(self._block(loaded.template, block, values, template_id)).strip()
        except MessageError:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever a template does wrong, nothing is sent
            raise MessageError(f"template {template_id!r} ({language}): {type(exc).__name__}: {exc}") from None
        return text if loaded.approved else DRAFT_LABEL + text

    def block_names(self, template_id: str, language: str) -> list[str]:
        return list(self._load(template_id, language).template.blocks)

    @staticmethod
    def _block(template: Any, block: str, variables: dict[str, Any], template_id: str = "?") -> str:
        render = template.blocks.get(block)
        if render is None:
            raise MessageError(f"template {template_id!r} has no block {block!r}")
        return "".join(render(template.new_context(variables)))

    def _label(self, template: Any, language: str, button: Button, variables: dict[str, Any],
               template_id: str, shared: dict[str, _Loaded]) -> tuple[str, bool]:
        block = f"button_{button.name}"
        draft = False
        if block not in template.blocks:
            if SHARED_BUTTONS not in shared:
                shared[SHARED_BUTTONS] = self._load(SHARED_BUTTONS, language)
            labels = shared[SHARED_BUTTONS]
            template, template_id, draft = labels.template, SHARED_BUTTONS, not labels.approved
        # Button labels are plain text on Telegram, not HTML: undo the autoescaping.
        label = html.unescape(self._block(template, block, {**variables, **button.variables}, template_id)).strip()
        return (DRAFT_LABEL + label if draft else label), draft


def demo_catalog(study_values: Mapping[str, Any], languages: Sequence[str], *, root: Path | None = None,
                 default_language: str = "en") -> MessageCatalog:
    """Templates sendable under the demo ledger: every file as it is now, "approved" under
    messages.ledger.DEMO_REF. For the web demo, the sandbox drills, the benches and the tests;
    `trialbot run` builds its catalog from the database's ledger and refuses that reference."""
    root = Path(root) if root is not None else default_root()
    return MessageCatalog(root, default_language=default_language, study_values=study_values,
                          ledger=Ledger.demo(root, languages, study_values))
