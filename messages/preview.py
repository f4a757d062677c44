"""A template rendered with its catalog samples, or one of its variants (`messages.variants`), for
`trialbot messages preview` and the review packet. Drafts are rendered too, and marked DRAFT."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from messages.catalog import PARTICIPANT_COMMANDS, Catalog, TemplateSpec
from messages.ledger import Ledger
from messages.renderer import Button, MessageCatalog
from messages.telegram_html import parse_html
from messages.variants import Variant, button_variants, values_for


@dataclass(frozen=True)
class Preview:
    template_id: str
    language: str
    kind: str
    text: str  # Telegram HTML for messages; empty for labels and commands
    draft: bool
    buttons: list[str]  # button labels, or "name: label" lines for labels/commands


def _in_zone(value: Any, zone: ZoneInfo | None) -> Any:
    if zone is None:
        return value
    if isinstance(value, datetime):
        return value.astimezone(zone)
    if isinstance(value, dict):
        return {k: _in_zone(v, zone) for k, v in value.items()}
    if isinstance(value, list):
        return [_in_zone(v, zone) for v in value]
    return value


def build_preview(root: Path, template_id: str, language: str, *, study_globals: Mapping[str, Any] | None = None,
                  timezone: str | None = None, catalog: Catalog | None = None,
                  renderer: MessageCatalog | None = None, variant: Variant | None = None,
                  ledger: Ledger | None = None) -> Preview:
    """The template with its samples (or a variant's); DRAFT unless `ledger` approves it with
    these study values."""
    catalog = catalog or Catalog.load(root)
    renderer = renderer or MessageCatalog(root, allow_drafts=True, ledger=ledger, study_values=study_globals)
    spec: TemplateSpec = catalog.templates[template_id]
    zone = ZoneInfo(timezone) if timezone else None
    draft = not renderer.verdict(template_id, language).approved
    if spec.kind == "labels":
        names = renderer.block_names(template_id, language)
        labels = [f"{b.removeprefix('button_')}: {renderer.render_block(template_id, language, b)}" for b in names]
        return Preview(template_id, language, spec.kind, "", draft, labels)
    if spec.kind == "figure":
        lines = [f"{b.removeprefix('label_')}: {renderer.render_block(template_id, language, b)}"
                 for b in renderer.block_names(template_id, language)]
        return Preview(template_id, language, spec.kind, "", draft, lines)
    if spec.kind == "commands":
        lines = [f"/{c}: {renderer.render_block(template_id, language, f'command_{c}')}" for c in PARTICIPANT_COMMANDS]
        return Preview(template_id, language, spec.kind, "", draft, lines)
    variables = _in_zone(values_for(catalog, spec, variant, "sample", study_globals), zone)
    rows = [[Button(name, catalog.buttons.get(name, "x"), _in_zone(sample, zone))]
            for name in spec.buttons for sample in button_variants(spec, name)]
    rendered = renderer.render(template_id, language, variables, rows)
    labels = [b.label for row in rendered.buttons for b in row]
    return Preview(template_id, language, spec.kind, rendered.text, rendered.draft, labels)


def preview_lines(root: Path, template_id: str, language: str, *, study_globals: Mapping[str, Any] | None = None,
                  timezone: str | None = None, markup: bool = False, variant: Variant | None = None,
                  ledger: Ledger | None = None) -> list[str]:
    preview = build_preview(root, template_id, language, study_globals=study_globals, timezone=timezone,
                            variant=variant, ledger=ledger)
    lines = []
    if preview.kind != "message":
        if preview.draft:
            lines.append("[DRAFT, not approved]")
        return lines + preview.buttons
    lines += (preview.text if markup else parse_html(preview.text)[0]).splitlines()
    if preview.buttons:
        lines.append("")
        lines += [f"  [ {label} ]" for label in preview.buttons]
    return lines
