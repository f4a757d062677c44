"""Copies of the shipped study.toml for tests: confirmed, as a site confirms it against the approved
protocol before `trialbot run` accepts it, and written next to a copy of screening.toml, which
study.toml names relative to itself."""

from __future__ import annotations

import re
from pathlib import Path

from study.protocol import EXAMPLE_PROTOCOL, EXAMPLE_SCREENING

REPO = Path(__file__).resolve().parent.parent

# What a site writes into [protocol] once it has checked the file against the approved protocol.
CONFIRMATION = {"version": '"2.0, 2026-10-01"', "confirmed_by": '"Dana Lee"', "confirmed_on": "2026-10-02",
                "example": "false"}


def confirmed(text: str) -> str:
    """study.toml's text with its [protocol] section filled in and `example = false`."""
    start = text.index("\n[protocol]\n")
    end = text.find("\n[", start + 1)
    end = len(text) if end == -1 else end
    section = text[start:end]
    for key, value in CONFIRMATION.items():
        section, found = re.subn(rf"^{key} = .*$", f"{key} = {value}", section, count=1, flags=re.MULTILINE)
        assert found == 1, f"no `{key} = ...` line in study.toml's [protocol]"
    return text[:start] + section + text[end:]


def write_study_file(folder: Path, text: str | None = None) -> Path:
    """`text` (default: the shipped study.toml, confirmed) as folder/study.toml, with screening.toml."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "study.toml"
    path.write_text(confirmed(EXAMPLE_PROTOCOL.read_text(encoding="utf-8")) if text is None else text,
                    encoding="utf-8")
    (folder / "screening.toml").write_text(EXAMPLE_SCREENING.read_text(encoding="utf-8"), encoding="utf-8")
    return path
