"""The approvals ledger: which exact texts the IRB approved, by whom recorded, under which reference.

An approval covers one template in one language: the SHA-256 of the template file, and the SHA-256
of every study value the template renders (study name, phone, e-mail, emergency number, crisis
line, the screening's flag labels), because those words are inside the approved text too. The bot
sends a text only when the newest approval of its template and language matches both hashes
exactly: an edited file, or a study phone changed in study.toml, is "changed since approval" and
refused, naming the template.

Approvals live in the database's hash-chained audit trail (`study/approvals.py` writes and reads
them; `trialbot messages approve ... --as STAFF`), never in a file anyone can edit: the catalog
(messages/catalog.toml) says what each template is for, not whether it is approved.

The web demo and the tests use a demo ledger (`Ledger.demo`): every template on disk as it is when
the ledger is built, under the reference `DEMO_REF`, which `trialbot run` refuses like any other
placeholder reference.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from enum import Enum
from pathlib import Path
from typing import Any

from jinja2 import meta
from jinja2.exceptions import TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment

DEMO_REF = "DEMO LEDGER: not approved by any IRB"
DEMO_APPROVER = "demo"
# What a reference must not look like for `trialbot run`: placeholders left from a template
# project, the demo ledger, or nothing at all.
_PLACEHOLDER = re.compile(r"demo|placeholder|example|sample|\btest\b|\btbd\b|\btodo\b|x{3,}|\?\?|^\W*$|^n/?a$",
                          re.IGNORECASE)


def is_placeholder(irb_ref: str) -> bool:
    return bool(_PLACEHOLDER.search(irb_ref.strip()))


def sha256_text(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _canonical(values: Mapping[str, Any]) -> str:
    return json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def values_sha256(values: Mapping[str, Any]) -> str:
    """The hash of the study values a template renders (name -> value); {} for a template with none."""
    return hashlib.sha256(_canonical(values).encode()).hexdigest()


_PARSER = SandboxedEnvironment()


def referenced(source: str, study_values: Mapping[str, Any]) -> dict[str, Any]:
    """The study values this template's text uses (by name), with their current values."""
    try:
        names = meta.find_undeclared_variables(_PARSER.parse(source))
    except TemplateSyntaxError:
        names = set(study_values)  # a broken template cannot be approved anyway; be conservative
    return {name: study_values[name] for name in sorted(names) if name in study_values}


@dataclass(frozen=True)
class Approval:
    """One approval in the ledger (one audit entry)."""

    template_id: str
    language: str
    template_sha256: str
    values: dict[str, Any]  # the study values rendered in it when approved
    values_sha256: str
    irb_ref: str
    approved_on: date
    approved_by: str  # "staff:3 (Dana Lee)"
    text: str  # the approved template source, for diffs and for inspectors
    seq: int = 0  # the audit entry's position in the chain (0 for the demo ledger)


class State(Enum):
    APPROVED = "approved"
    TEXT_CHANGED = "changed since approval (the text)"
    VALUES_CHANGED = "changed since approval (study values)"
    NEVER = "never approved"
    MISSING = "missing"


@dataclass(frozen=True)
class Verdict:
    """What the ledger says of one template file in one language, as it would be sent now."""

    template_id: str
    language: str
    state: State
    approval: Approval | None
    template_sha256: str | None
    changed_values: tuple[str, ...] = ()  # for VALUES_CHANGED: which study values differ

    @property
    def approved(self) -> bool:
        return self.state is State.APPROVED

    def describe(self) -> str:
        where = f"{self.language}/{self.template_id}"
        if self.state is State.VALUES_CHANGED:
            return (f"{where}: study values changed since its approval ({', '.join(self.changed_values)}; approved "
                    f"{self.approval.irb_ref if self.approval else '?'}); approve it again with the new values")
        if self.state is State.TEXT_CHANGED:
            return (f"{where}: text changed since its approval ({self.approval.irb_ref if self.approval else '?'}); "
                    "approve the new text or restore the approved one (trialbot messages diff)")
        if self.state is State.NEVER:
            return f"{where}: never approved (trialbot messages approve {self.template_id} --irb-ref ... --as ...)"
        if self.state is State.MISSING:
            return f"{where}: missing (every template is needed in '{self.language}')"
        return f"{where}: approved ({self.approval.irb_ref if self.approval else '?'})"


class Ledger:
    """Approvals by (template, language); the newest one of each is the one in force."""

    def __init__(self, approvals: Iterable[Approval] = (), *, head: int = 0) -> None:
        self._current: dict[tuple[str, str], Approval] = {}
        for approval in approvals:
            self._current[(approval.template_id, approval.language)] = approval
        self.head = head  # the newest audit entry read (a reload is needed only when the trail grew)

    @classmethod
    def demo(cls, root: Path, languages: Sequence[str], study_values: Mapping[str, Any]) -> Ledger:
        """Every template on disk as it is now, "approved" under DEMO_REF: for the web demo and the
        tests only (`trialbot run` refuses the reference)."""
        approvals = []
        for language in languages:
            for path in sorted((root / language).glob("*.html.j2")):
                source = path.read_bytes()
                values = referenced(source.decode("utf-8", errors="replace"), study_values)
                approvals.append(Approval(path.name.removesuffix(".html.j2"), language, sha256_text(source), values,
                                          values_sha256(values), DEMO_REF, date(2000, 1, 1), DEMO_APPROVER,
                                          source.decode("utf-8", errors="replace")))
        return cls(approvals)

    def current(self, template_id: str, language: str) -> Approval | None:
        return self._current.get((template_id, language))

    def all_current(self) -> list[Approval]:
        return sorted(self._current.values(), key=lambda a: (a.template_id, a.language))

    def verdict(self, template_id: str, language: str, source: bytes | None,
                study_values: Mapping[str, Any]) -> Verdict:
        approval = self.current(template_id, language)
        if source is None:
            return Verdict(template_id, language, State.MISSING, approval, None)
        digest = sha256_text(source)
        if approval is None:
            return Verdict(template_id, language, State.NEVER, None, digest)
        if approval.template_sha256 != digest:
            return Verdict(template_id, language, State.TEXT_CHANGED, approval, digest)
        values = referenced(source.decode("utf-8", errors="replace"), study_values)
        if values_sha256(values) != approval.values_sha256:
            changed = tuple(sorted(name for name in set(values) | set(approval.values)
                                   if _canonical({"v": values.get(name)}) != _canonical({"v": approval.values.get(name)})))
            return Verdict(template_id, language, State.VALUES_CHANGED, approval, digest, changed)
        return Verdict(template_id, language, State.APPROVED, approval, digest)
