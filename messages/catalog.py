"""The message catalog: which templates exist and what each is for.

`messages/catalog.toml` is the one list of every template the bot may send. For each it gives the
purpose and when it is sent, the variables it takes (a sample value each, and the longest
plausible value for the length check) and the buttons it may carry.

It does not approve anything: approvals are records in the audit trail, made by a named staff
member with `trialbot messages approve` (messages/ledger.py, study/approvals.py). A catalog that
still carries `approval.<language>` lines (the old way) is refused, naming the template, so a
hash pasted into the file can never make a text sendable.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MESSAGES_ROOT = Path(__file__).parent
CATALOG_FILE = "catalog.toml"
SUFFIX = ".html.j2"
# A site can keep its templates (and their catalog) outside the installed package.
ROOT_ENV = "TRIALBOT_MESSAGES_DIR"

# The participant's command menu, in the order Telegram shows it (bot/app.py sets it); each one's
# description is the `command_<name>` block of the `commands` template, checked by the lint.
PARTICIPANT_COMMANDS = ("log", "today", "undo", "symptoms", "urgent", "times", "nextvisit", "mystats", "help",
                        "contact", "stop", "resume")


def default_root() -> Path:
    configured = os.environ.get(ROOT_ENV)
    return Path(configured) if configured else MESSAGES_ROOT


class CatalogError(Exception):
    """The catalog file itself cannot be read or is malformed."""


@dataclass(frozen=True)
class Variable:
    name: str
    sample: Any
    longest: Any


@dataclass(frozen=True)
class TemplateSpec:
    id: str
    kind: str  # message | labels (shared button labels) | commands (the command menu) | figure (words in a picture)
    audience: str  # participant | staff | stranger | anyone
    purpose: str
    sent: str
    variables: dict[str, Variable]
    buttons: tuple[str, ...]
    button_samples: dict[str, list[dict[str, Any]]]


@dataclass
class Catalog:
    root: Path
    globals: dict[str, Variable]
    buttons: dict[str, str]  # button name -> the longest callback data the code sends with it
    templates: dict[str, TemplateSpec]
    _mtime: float | None = field(default=None, repr=False)

    # -- reading ---------------------------------------------------------------------------

    @classmethod
    def load(cls, root: Path | None = None) -> Catalog:
        root = Path(root) if root is not None else default_root()
        path = root / CATALOG_FILE
        if not path.exists():
            return cls(root, {}, {}, {})
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise CatalogError(f"{path}: {exc}") from None
        try:
            catalog = cls(
                root=root,
                globals=_variables(data.get("globals", {})),
                buttons={str(k): str(v) for k, v in data.get("buttons", {}).items()},
                templates={tid: _spec(tid, raw) for tid, raw in data.get("templates", {}).items()},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CatalogError(f"{path}: {exc}") from None
        catalog._mtime = path.stat().st_mtime
        return catalog

    def path(self, template_id: str, language: str) -> Path:
        return self.root / language / f"{template_id}{SUFFIX}"

    def template_ids_on_disk(self, languages: Iterable[str]) -> set[str]:
        found: set[str] = set()
        for language in languages:
            folder = self.root / language
            if folder.is_dir():
                found |= {p.name[: -len(SUFFIX)] for p in folder.glob(f"*{SUFFIX}")}
        return found

    def all_ids(self, languages: Iterable[str]) -> list[str]:
        return sorted(set(self.templates) | self.template_ids_on_disk(languages))

    def changed_on_disk(self) -> bool:
        path = self.root / CATALOG_FILE
        mtime = path.stat().st_mtime if path.exists() else None
        return mtime != self._mtime


def _variables(raw: dict[str, Any]) -> dict[str, Variable]:
    variables = {}
    for name, spec in raw.items():
        if not isinstance(spec, dict) or "sample" not in spec:
            raise ValueError(f"variable {name!r} needs a table with at least `sample`")
        variables[name] = Variable(name, spec["sample"], spec.get("longest", spec["sample"]))
    return variables


def _spec(template_id: str, raw: dict[str, Any]) -> TemplateSpec:
    if "approval" in raw:
        raise ValueError(f"templates.{template_id}: approvals are not kept in catalog.toml (an edited hash there "
                         "approves nothing); remove the approval lines and approve with `trialbot messages approve "
                         f"{template_id} --irb-ref ... --as ...`")
    kind = raw.get("kind", "message")
    if kind not in ("message", "labels", "commands", "figure"):
        raise ValueError(f"templates.{template_id}.kind must be message, labels, commands or figure")
    return TemplateSpec(
        id=template_id,
        kind=kind,
        audience=raw.get("audience", "participant"),
        purpose=raw.get("purpose", ""),
        sent=raw.get("sent", ""),
        variables=_variables(raw.get("variables", {})),
        buttons=tuple(raw.get("buttons", ())),
        button_samples={str(k): list(v) for k, v in raw.get("button_samples", {}).items()},
    )

