"""The message catalog: which templates exist, what each is for, and which text the IRB approved.

`messages/catalog.toml` is the one list of every template the bot may send. For each it gives the
purpose and when it is sent, the variables it takes (a sample value each, and the longest
plausible value for the length check), the buttons it may carry, and its approval per language:
the SHA-256 of the approved file, the IRB reference and the date. A copy of each approved text is
kept under `messages/approved/<language>/` so that `trialbot messages diff` can show what changed.

The approval is the authority: a template whose file does not hash to its approved SHA-256 is not
sent (see `messages.renderer`), and `trialbot run` does not start while any template it may send
is missing, unapproved or changed since approval (`problems`).

`approve` edits `catalog.toml` in place, one line per approval, so comments and layout written by
the study team are kept.
"""

from __future__ import annotations

import hashlib
import os
import re
import tomllib
from dataclasses import dataclass, field, replace
from datetime import date
from enum import Enum
from pathlib import Path
from typing import Any

MESSAGES_ROOT = Path(__file__).parent
CATALOG_FILE = "catalog.toml"
APPROVED_DIR = "approved"
SUFFIX = ".html.j2"
# A site can keep its templates (and their catalog) outside the installed package.
ROOT_ENV = "TRIALBOT_MESSAGES_DIR"


def default_root() -> Path:
    configured = os.environ.get(ROOT_ENV)
    return Path(configured) if configured else MESSAGES_ROOT


class CatalogError(Exception):
    """The catalog file itself cannot be read or is malformed."""


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Variable:
    name: str
    sample: Any
    longest: Any


@dataclass(frozen=True)
class Approval:
    sha256: str
    irb_ref: str
    date: date


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
    approvals: dict[str, Approval]


class State(Enum):
    APPROVED = "approved"
    MODIFIED = "modified since approval"
    NEW = "new (never approved)"
    MISSING = "missing"


@dataclass(frozen=True)
class TemplateStatus:
    template_id: str
    language: str
    state: State
    path: Path
    sha256: str | None
    approval: Approval | None


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

    def approved_path(self, template_id: str, language: str) -> Path:
        return self.root / APPROVED_DIR / language / f"{template_id}{SUFFIX}"

    def approval(self, template_id: str, language: str) -> Approval | None:
        spec = self.templates.get(template_id)
        return spec.approvals.get(language) if spec else None

    def is_approved(self, template_id: str, language: str, sha256: str) -> bool:
        approval = self.approval(template_id, language)
        return approval is not None and approval.sha256 == sha256

    def status(self, template_id: str, language: str) -> TemplateStatus:
        path = self.path(template_id, language)
        approval = self.approval(template_id, language)
        if not path.exists():
            return TemplateStatus(template_id, language, State.MISSING, path, None, approval)
        digest = sha256_of(path.read_bytes())
        if approval is None:
            state = State.NEW
        elif approval.sha256 == digest:
            state = State.APPROVED
        else:
            state = State.MODIFIED
        return TemplateStatus(template_id, language, state, path, digest, approval)

    def template_ids_on_disk(self, languages: list[str] | tuple[str, ...]) -> set[str]:
        found: set[str] = set()
        for language in languages:
            folder = self.root / language
            if folder.is_dir():
                found |= {p.name[: -len(SUFFIX)] for p in folder.glob(f"*{SUFFIX}")}
        return found

    def all_ids(self, languages: list[str] | tuple[str, ...]) -> list[str]:
        return sorted(set(self.templates) | self.template_ids_on_disk(languages))

    def statuses(self, languages: list[str] | tuple[str, ...]) -> list[TemplateStatus]:
        return [self.status(tid, language) for tid in self.all_ids(languages) for language in languages]

    def problems(self, languages: list[str] | tuple[str, ...]) -> list[str]:
        """Why the bot must not start: every catalogued template, in every enabled language, must
        exist and hash to its approved text. Each problem names the file."""
        if not (self.root / CATALOG_FILE).exists():
            return [f"{self.root / CATALOG_FILE}: no message catalog, so no text is approved"]
        problems = []
        for tid in sorted(self.templates):
            for language in languages:
                status = self.status(tid, language)
                if status.state is State.MISSING:
                    problems.append(f"{status.path}: missing (every template is needed in '{language}')")
                elif status.state is State.NEW:
                    problems.append(f"{status.path}: not approved (no approval for '{language}' in the catalog)")
                elif status.state is State.MODIFIED:
                    problems.append(
                        f"{status.path}: changed since its approval ({status.approval.irb_ref}, "
                        f"{status.approval.date.isoformat()}); approve the new text or restore the approved one"
                    )
        return problems

    def changed_on_disk(self) -> bool:
        path = self.root / CATALOG_FILE
        mtime = path.stat().st_mtime if path.exists() else None
        return mtime != self._mtime

    # -- approving -------------------------------------------------------------------------

    def approve(self, template_id: str, language: str, *, irb_ref: str, on: date) -> Approval:
        """Record the current text of one template as approved: its hash in the catalog, and a
        copy of the text under `approved/` for later diffs. Returns the new approval."""
        if template_id not in self.templates:
            raise CatalogError(f"{template_id!r} is not in {self.root / CATALOG_FILE}; add it there first")
        if not re.fullmatch(r"[a-z]{2,3}", language):
            raise CatalogError(f"{language!r} is not a language code")
        irb_ref = irb_ref.strip()
        if not irb_ref:
            raise CatalogError("an approval needs the IRB reference")
        source = self.path(template_id, language)
        if not source.exists():
            raise CatalogError(f"{source}: missing, nothing to approve")
        data = source.read_bytes()
        approval = Approval(sha256_of(data), irb_ref, on)
        catalog_path = self.root / CATALOG_FILE
        text = catalog_path.read_text(encoding="utf-8")
        updated = set_approval_line(text, template_id, language, approval)
        check = tomllib.loads(updated)  # never write a catalog that does not read back
        if _spec(template_id, check["templates"][template_id]).approvals.get(language) != approval:
            raise CatalogError("internal error: the approval did not read back")
        snapshot = self.approved_path(template_id, language)
        snapshot.parent.mkdir(parents=True, exist_ok=True)
        snapshot.write_bytes(data)
        catalog_path.write_text(updated, encoding="utf-8")
        old = self.templates[template_id]
        self.templates[template_id] = replace(old, approvals={**old.approvals, language: approval})
        self._mtime = catalog_path.stat().st_mtime
        return approval


def _variables(raw: dict[str, Any]) -> dict[str, Variable]:
    variables = {}
    for name, spec in raw.items():
        if not isinstance(spec, dict) or "sample" not in spec:
            raise ValueError(f"variable {name!r} needs a table with at least `sample`")
        variables[name] = Variable(name, spec["sample"], spec.get("longest", spec["sample"]))
    return variables


def _spec(template_id: str, raw: dict[str, Any]) -> TemplateSpec:
    approvals = {}
    for language, a in raw.get("approval", {}).items():
        when = a["date"]
        if not isinstance(when, date):
            raise ValueError(f"templates.{template_id}.approval.{language}.date must be a date (2026-11-24)")
        approvals[language] = Approval(str(a["sha256"]).lower(), str(a["irb_ref"]), when)
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
        approvals=approvals,
    )


def _toml_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    escaped = re.sub(r"[\x00-\x1f\x7f]", lambda m: f"\\u{ord(m.group()):04x}", escaped)
    return f'"{escaped}"'


def approval_line(language: str, approval: Approval) -> str:
    return (f"approval.{language} = {{ sha256 = \"{approval.sha256}\", irb_ref = {_toml_string(approval.irb_ref)}, "
            f"date = {approval.date.isoformat()} }}")


_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")


def set_approval_line(text: str, template_id: str, language: str, approval: Approval) -> str:
    """Replace (or add) the `approval.<language> = {...}` line of `[templates.<id>]`."""
    lines = text.splitlines()
    header = f"templates.{template_id}"
    start = next((i for i, line in enumerate(lines) if (m := _HEADER.match(line)) and m.group(1) == header), None)
    if start is None:
        raise CatalogError(f"no [{header}] table in the catalog")
    end = next((i for i in range(start + 1, len(lines)) if _HEADER.match(lines[i])), len(lines))
    new_line = approval_line(language, approval)
    key = re.compile(rf"^\s*approval\s*\.\s*{re.escape(language)}\s*=")
    for i in range(start + 1, end):
        if key.match(lines[i]):
            lines[i] = new_line
            break
    else:
        last = end - 1
        while last > start and not lines[last].strip():
            last -= 1
        lines.insert(last + 1, new_line)
    return "\n".join(lines) + "\n"
