"""Variants: the several sets of variables a template is shown with, so that the IRB sees every
branch of it (the visit reminder 7 days before, the day before and on the day; the pregnancy test
at home and at the clinic; a late reminder; a full and a short check-in).

A template's first variant is its catalog samples (`variables.<name>.sample`). More are listed in
`messages/catalog.toml` under the template, each a name and the variables it sets over the samples:

    [templates.visit_reminder]
    variables.days_before = { sample = 7, longest = 7 }
    variants."the day before" = { days_before = 1 }
    variants."on the day, no time given" = { days_before = 0, none = ["visit_at"] }

TOML has no null: `none` lists the variables that are none in the variant, or paths into them
(`"rows[0].a7"`: the first row's `a7`).

Previews, `messages lint` and the review packet render every variant; `messages lint` also checks,
with `messages.branches`, that the variants take every branch of every `{% if %}` (and every
inline `if`, and every loop) of the template, so the packet shows each wording it can send.

The catalog's reader (`messages.catalog`) does not know variants; they are read here, from the same
file, so that the catalog's approvals code is untouched by them.
"""

from __future__ import annotations

import copy
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from messages.catalog import CATALOG_FILE, Catalog, CatalogError, TemplateSpec

SAMPLE = "sample values"  # the name of every template's first variant: its catalog samples
NONE = "none"  # in a variant: the variables (or paths into them) that are none
_PATH = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)((?:\.[A-Za-z_][A-Za-z0-9_]*|\[\d+\])*)")
_PATH_PART = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")


@dataclass(frozen=True)
class Variant:
    name: str
    values: Mapping[str, Any]  # what it sets over the samples; empty for the samples themselves


def load_variants(root: Path) -> dict[str, tuple[Variant, ...]]:
    """The variants each template lists in `root/catalog.toml` (templates without any are left out).
    Raises CatalogError, naming the key, when a `variants` entry is not a table of tables."""
    path = Path(root) / CATALOG_FILE
    if not path.exists():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise CatalogError(f"{path}: {exc}") from None
    found: dict[str, tuple[Variant, ...]] = {}
    for template_id, raw in data.get("templates", {}).items():
        listed = raw.get("variants") if isinstance(raw, dict) else None
        if listed is None:
            continue
        if not isinstance(listed, dict):
            raise CatalogError(f"{path}: templates.{template_id}.variants must be a table of named variable sets")
        variants = []
        for name, values in listed.items():
            if not isinstance(values, dict) or not values:
                raise CatalogError(f"{path}: templates.{template_id}.variants.{name!r} must set at least one "
                                   "variable, e.g. { days_before = 1 }")
            if name.strip().lower() == SAMPLE:
                raise CatalogError(f"{path}: templates.{template_id}.variants.{name!r}: {SAMPLE!r} is the "
                                   "name of the samples themselves")
            where = f"{path}: templates.{template_id}.variants.{name!r}"
            variants.append(Variant(name, MappingProxyType(_with_nones(values, where))))
        found[template_id] = tuple(variants)
    return found


def _with_nones(values: dict[str, Any], where: str) -> dict[str, Any]:
    """The variant's values, with the variables (or the places in them) its `none` list names set
    to None."""
    values = copy.deepcopy(values)
    nones = values.pop(NONE, [])
    if not isinstance(nones, list) or not all(isinstance(n, str) for n in nones):
        raise CatalogError(f"{where}: `none` must be a list of variable names or paths, e.g. [\"visit_at\"]")
    for target in nones:
        whole = _PATH.fullmatch(target)
        if whole is None:
            raise CatalogError(f"{where}: none: {target!r} is not a variable name or a path like \"rows[0].a7\"")
        name = whole.group(1)
        steps = [(m.group(1), m.group(2)) for m in _PATH_PART.finditer(whole.group(2))]
        if not steps:
            values[name] = None
            continue
        try:
            place: Any = values[name]
            for key, index in steps[:-1]:
                place = place[key] if key is not None else place[int(index)]
            key, index = steps[-1]
            if key is not None:
                place[key] = None
            else:
                place[int(index)] = None
        except (KeyError, IndexError, TypeError):
            raise CatalogError(f"{where}: none: {target!r} is not a place in what the variant sets") from None
    return values


def variants_of(template_id: str, listed: Mapping[str, tuple[Variant, ...]]) -> list[Variant]:
    """The samples first, then the template's listed variants."""
    return [Variant(SAMPLE, MappingProxyType({})), *listed.get(template_id, ())]


def values_for(catalog: Catalog, spec: TemplateSpec, variant: Variant | None = None, which: str = "sample",
               study_globals: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The variables a template is rendered with: the catalog's globals (or, for the samples, the
    study's own values from study.toml), the template's `sample` (or `longest`) values, and over
    them what the variant sets."""
    values = {name: getattr(v, which) for name, v in catalog.globals.items()}
    if study_globals and which == "sample":
        values.update(study_globals)
    values.update({name: getattr(v, which) for name, v in spec.variables.items()})
    if variant is not None:
        values.update(variant.values)
    return values


def button_variants(spec: TemplateSpec, name: str) -> list[dict[str, Any]]:
    """The label variants a button is shown with (`button_samples.<name>`), or one without variables."""
    return spec.button_samples.get(name) or [{}]


def unknown_names(catalog: Catalog, spec: TemplateSpec, variant: Variant) -> list[str]:
    """Variables a variant sets that the template does not take (a misspelt name would otherwise
    leave the samples in place and the branch unseen)."""
    known = set(spec.variables) | set(catalog.globals)
    return sorted(name for name in variant.values if name not in known)


def describe(variant: Variant) -> str:
    """What a variant sets, for people: `days_before = 1, confirmed = true`."""
    return ", ".join(f"{name} = {_show(value)}" for name, value in variant.values.items())


def _show(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_show(v)}" for k, v in value.items()) + "}"
    return str(value)
