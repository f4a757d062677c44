"""Anchors: the audit chain's head written down where the database cannot change it.

The chain shows an entry altered or removed in the middle, but not the newest entries removed:
what is left is a shorter chain, intact. An anchor (how many entries there were, the last one's
hash, when) kept outside the database closes that gap: later, the entry at that position must
still have that hash. `trialbot audit anchor` prints one, or appends it to a file; the scheduler
sends one to the investigator every day (scheduler/audit_anchor.py).

One line, so it can be copied, pasted and kept in a plain file:
    trialbot-anchor v1 count=1234 head=<64 hex digits> at=2026-11-29T12:00:00Z
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from study.audit import GENESIS
from study.models import AuditEntry

PREFIX = "trialbot-anchor v1"
_LINE = re.compile(r"trialbot-anchor v1 count=(?P<count>\d+) head=(?P<head>[0-9a-f]{64}) "
                   r"at=(?P<at>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)")


class AnchorError(ValueError):
    """Not an anchor line (or no such file holding one)."""


@dataclass(frozen=True)
class Anchor:
    count: int  # entries in the chain; the last one's seq
    head: str  # the last entry's hash (GENESIS for an empty trail)
    at: datetime  # when it was taken, UTC

    def line(self) -> str:
        return f"{PREFIX} count={self.count} head={self.head} at={self.at.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"

    @classmethod
    def parse(cls, line: str) -> Anchor:
        match = _LINE.fullmatch(line.strip())
        if match is None:
            raise AnchorError(f"not an anchor line (expected '{PREFIX} count=N head=<64 hex> at=YYYY-MM-DDTHH:MM:SSZ'): "
                              f"{line.strip()[:100]!r}")
        at = datetime.strptime(match["at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        return cls(int(match["count"]), match["head"], at)


def read(line_or_file: str) -> Anchor:
    """An anchor given as a line, or as a file of them (its last line that is not blank)."""
    path = Path(line_or_file)
    if not line_or_file.startswith(PREFIX) and path.is_file():
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if not lines:
            raise AnchorError(f"{path}: holds no anchor line")
        return Anchor.parse(lines[-1])
    if not line_or_file.startswith(PREFIX):
        raise AnchorError(f"{line_or_file[:100]!r} is neither an anchor line nor a file")
    return Anchor.parse(line_or_file)


async def take(session: AsyncSession, now: datetime) -> Anchor:
    """The chain's head now."""
    last = (await session.execute(select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc())
                                  .limit(1))).first()
    return Anchor(last.seq, last.hash, now) if last else Anchor(0, GENESIS, now)


async def check(session: AsyncSession, anchor: Anchor) -> list[str]:
    """What in the trail contradicts the anchor, one line each: entries up to it removed, the
    newest entries removed (the trail ends before the entry it names), or the trail rewritten
    (that entry has another hash)."""
    if anchor.count == 0:
        return []
    taken = f"the anchor of {anchor.at:%Y-%m-%d %H:%M} UTC"
    last = await session.scalar(select(func.max(AuditEntry.seq))) or 0
    end = min(last, anchor.count)
    present = await session.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.seq <= end)) or 0
    problems = []
    if present < end:
        problems.append(f"anchor: {end - present} of the first {end} entries {taken} counts are gone "
                        "(audit entries were removed)")
    if last < anchor.count:
        problems.append(f"anchor: the trail ends at entry {last}, before entry {anchor.count} that {taken} names "
                        "(the newest entries were removed)")
    else:
        head = await session.scalar(select(AuditEntry.hash).where(AuditEntry.seq == anchor.count))
        if head is not None and head != anchor.head:
            problems.append(f"anchor: entry {anchor.count} is not the entry {taken} names (its hash differs: "
                            "the trail was rewritten)")
    return problems
