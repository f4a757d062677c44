"""The IRB's approvals of message texts, written into and read back from the audit trail.

An approval is an audit entry (entity `template_approval`, action `approve`), chained like every
other: who recorded it (a named coordinator or investigator), the template, the language, the
SHA-256 of the file and of the study values it renders, the values themselves, the IRB reference
and date, and the approved text. The ledger the bot sends by (messages/ledger.py) is read from
these entries alone, so an approval cannot be made by editing a file, and removing or altering
one breaks the chain (`trialbot audit verify`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from messages.ledger import (
    Approval,
    Ledger,
    is_placeholder,
    referenced,
    sha256_text,
    values_sha256,
)
from study import audit
from study.audit import Actor
from study.models import AuditEntry, StaffMember

ENTITY = "template_approval"
ACTION = "approve"


class ApprovalRefused(ValueError):
    """Not recorded: a placeholder reference, a missing file, an unknown template."""


async def approve(session: AsyncSession, *, template_id: str, language: str, path: Path,
                  study_values: Mapping[str, Any], irb_ref: str, approved_on: date, actor: Actor,
                  now: datetime) -> Approval:
    """Record that the IRB approved this file's text, with these study values in it."""
    irb_ref = irb_ref.strip()
    if not irb_ref or is_placeholder(irb_ref):
        raise ApprovalRefused(f"--irb-ref {irb_ref!r} is not an IRB reference (placeholder or demo references "
                              "cannot approve)")
    try:
        source = path.read_bytes()  # noqa: ASYNC240 - one template of a few kB, once per approval
    except FileNotFoundError:
        raise ApprovalRefused(f"{path}: missing, nothing to approve") from None
    text = source.decode("utf-8")
    values = referenced(text, study_values)
    who = await _who(session, actor)
    approval = Approval(template_id, language, sha256_text(source), values, values_sha256(values), irb_ref,
                        approved_on, who, text)
    entry = await audit.record(session, actor=actor, action=ACTION, entity=ENTITY,
                               entity_id=f"{language}/{template_id}", now=now, new=_stored(approval),
                               reason=f"IRB approval {irb_ref}")
    return Approval(**{**approval.__dict__, "seq": entry.seq})


async def load(session: AsyncSession) -> Ledger:
    """Every approval in the audit trail, oldest first (the newest of each template is in force)."""
    rows = (await session.scalars(select(AuditEntry).where(AuditEntry.entity == ENTITY, AuditEntry.action == ACTION)
                                  .order_by(AuditEntry.seq))).all()
    return Ledger([_approval(row) for row in rows], head=await head(session))


async def head(session: AsyncSession) -> int:
    """The newest approval's position in the chain (0 when none): a cheap look for a reload."""
    newest = await session.scalar(select(func.max(AuditEntry.seq)).where(AuditEntry.entity == ENTITY))
    return int(newest or 0)


def _stored(approval: Approval) -> dict[str, Any]:
    return {"template_id": approval.template_id, "language": approval.language,
            "template_sha256": approval.template_sha256, "values": approval.values,
            "values_sha256": approval.values_sha256, "irb_ref": approval.irb_ref,
            "approved_on": approval.approved_on.isoformat(), "approved_by": approval.approved_by,
            "text": approval.text}


def _approval(entry: AuditEntry) -> Approval:
    new = entry.new_values or {}
    return Approval(str(new["template_id"]), str(new["language"]), str(new["template_sha256"]),
                    dict(new.get("values") or {}), str(new["values_sha256"]), str(new["irb_ref"]),
                    date.fromisoformat(str(new["approved_on"])), str(new.get("approved_by", entry.actor)),
                    str(new.get("text", "")), entry.seq)


async def _who(session: AsyncSession, actor: Actor) -> str:
    if actor.kind == "staff" and actor.ident.isdigit():
        member = await session.get(StaffMember, int(actor.ident))
        if member is not None:
            return f"{actor} ({member.name}, {member.role})"
    return str(actor)
