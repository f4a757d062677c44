"""Renders participant- and staff-visible text from the templates under `messages/<language>/`.

A template is one message: its `text` block, and a `button_<name>` block for each button it may
carry. Code decides which buttons a message has and what they do (callback data); the template
decides every word. Templates are edited by non-developers, so they run in Jinja's sandbox with
StrictUndefined (a misspelt variable is an error, not an empty string) and autoescaping for
Telegram's HTML parse mode.
"""

from __future__ import annotations

import hashlib
import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

from babel.dates import format_date, format_time
from babel.numbers import format_decimal
from jinja2 import FileSystemLoader, StrictUndefined, TemplateError, TemplateNotFound
from jinja2.sandbox import SandboxedEnvironment

TEMPLATES = Path(__file__).parent
SUFFIX = ".html.j2"
# Labels shared by many messages ("Applied now", "Back") live in one template; a message may
# still define its own `button_<name>` block, which then wins.
SHARED_BUTTONS = "buttons"


class MessageError(Exception):
    """A message cannot be rendered (missing template, block or variable); nothing is sent."""


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


def _formatters(language: str) -> dict[str, Any]:
    def fmt_time(value: datetime | time) -> str:
        if isinstance(value, datetime):
            return format_time(value, "short", tzinfo=value.tzinfo, locale=language)
        return format_time(value, "short", locale=language)

    def fmt_date(value: date | datetime, style: str = "long") -> str:
        if isinstance(value, datetime):
            value = value.date()
        patterns = {"long": "EEEE d MMMM" if language != "en" else "EEEE, MMMM d", "short": "d MMM" if language != "en" else "MMM d"}
        return format_date(value, patterns.get(style, style), locale=language)

    def fmt_number(value: float | int) -> str:
        return format_decimal(value, locale=language)

    return {"time": fmt_time, "date": fmt_date, "number": fmt_number}


class MessageCatalog:
    def __init__(self, root: Path = TEMPLATES, *, default_language: str = "en") -> None:
        self.root = root
        self.default_language = default_language
        self._environments: dict[str, SandboxedEnvironment] = {}

    def environment(self, language: str) -> SandboxedEnvironment:
        env = self._environments.get(language)
        if env is None:
            env = SandboxedEnvironment(
                loader=FileSystemLoader(self.root / language),
                autoescape=True,
                undefined=StrictUndefined,
                trim_blocks=True,
                lstrip_blocks=True,
            )
            env.filters.update(_formatters(language))
            self._environments[language] = env
        return env

    def path(self, template_id: str, language: str) -> Path:
        return self.root / language / f"{template_id}{SUFFIX}"

    def _language_for(self, template_id: str, language: str) -> str:
        # Until a translation exists the default language is used (issue 3 makes this fail closed).
        return language if self.path(template_id, language).exists() else self.default_language

    def render(
        self,
        template_id: str,
        language: str,
        variables: Mapping[str, Any] | None = None,
        buttons: Sequence[Sequence[Button]] = (),
    ) -> RenderedMessage:
        language = self._language_for(template_id, language)
        variables = dict(variables or {})
        try:
            template = self.environment(language).get_template(f"{template_id}{SUFFIX}")
            text = self._block(template, "text", variables).strip()
            rows = tuple(
                tuple(
                    RenderedButton(self._label(template, button, variables), button.data) for button in row
                )
                for row in buttons
                if row
            )
        except TemplateNotFound:
            raise MessageError(f"no template {template_id!r} for language {language!r}") from None
        except TemplateError as exc:
            raise MessageError(f"template {template_id!r} ({language}): {exc}") from None
        source = self.path(template_id, language).read_bytes()
        return RenderedMessage(template_id, language, text, rows, hashlib.sha256(source).hexdigest())

    def render_block(self, template_id: str, language: str, block: str, variables: Mapping[str, Any] | None = None) -> str:
        """One named block as plain text (command descriptions, callback toasts)."""
        language = self._language_for(template_id, language)
        try:
            template = self.environment(language).get_template(f"{template_id}{SUFFIX}")
            return html.unescape(self._block(template, block, dict(variables or {}))).strip()
        except TemplateNotFound:
            raise MessageError(f"no template {template_id!r} for language {language!r}") from None
        except TemplateError as exc:
            raise MessageError(f"template {template_id!r} ({language}): {exc}") from None

    def block_names(self, template_id: str, language: str) -> list[str]:
        template = self.environment(language).get_template(f"{template_id}{SUFFIX}")
        return list(template.blocks)

    @staticmethod
    def _block(template: Any, block: str, variables: dict[str, Any]) -> str:
        render = template.blocks.get(block)
        if render is None:
            raise MessageError(f"template {template.name!r} has no block {block!r}")
        return "".join(render(template.new_context(variables)))

    def _label(self, template: Any, button: Button, variables: dict[str, Any]) -> str:
        block = f"button_{button.name}"
        if block not in template.blocks:
            template = template.environment.get_template(f"{SHARED_BUTTONS}{SUFFIX}")
        # Button labels are plain text on Telegram, not HTML: undo the autoescaping.
        label = self._block(template, block, {**variables, **button.variables})
        return html.unescape(label).strip()
