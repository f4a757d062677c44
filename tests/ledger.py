"""Approving every template in a test database, as a site does once its IRB has approved the review
packet (`trialbot messages approve ID --irb-ref R --as STAFF` for each), in one transaction."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

from messages.catalog import MESSAGES_ROOT, Catalog
from study import approvals
from study.audit import Actor
from study.database import Database
from study.protocol import Protocol

IRB_REF = "IRB 26-1042 amendment 1"


async def approve_all(db: Database, protocol: Protocol, *, actor: Actor, root: Path = MESSAGES_ROOT,
                      irb_ref: str = IRB_REF) -> None:
    """Every catalogued template in every study language, approved by `actor` (the command line
    checks that they are a coordinator or the investigator: bot/operator.py)."""
    now = datetime.now(UTC)
    async with db.transaction() as session:
        for template_id in sorted(Catalog.load(root).templates):
            for language in protocol.study.languages:
                await approvals.approve(session, template_id=template_id, language=language,
                                        path=root / language / f"{template_id}.html.j2",
                                        study_values=protocol.template_globals(), irb_ref=irb_ref,
                                        approved_on=date(2026, 11, 29), actor=actor, now=now)
