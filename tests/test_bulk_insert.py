"""`study.database.insert_new_counted`, the wave's insert: each distinct value is converted once by
its column's type and the rows go to the driver as one batch. It must store exactly what
SQLAlchemy's own insert of the same rows stores (instants given in any zone, JSON payloads shared
by many rows, None in a JSON column as JSON null, booleans), skip keys already taken and count
only the rows it added."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from sqlalchemy import insert, text

from study.database import insert_new_counted
from study.models import OutboxKind, OutboxMessage, OutboxStatus

NOW = datetime(2026, 11, 24, 13, 0, tzinfo=UTC)
SHARED_VARIABLES = {"slot_at": NOW.isoformat(), "ü": "é"}
SHARED_BUTTONS = [[["applied_now", "d:n:s2611240800", {}]]]


def rows(prefix: str, count: int = 12) -> list[dict]:
    elsewhere = NOW.astimezone(timezone(timedelta(hours=-5)))  # the same instants, another offset
    return [dict(dedup_key=f"{prefix}{n}", kind=OutboxKind.REMINDER, participant_id=None, staff_id=None,
                 template_id="reminder_application", variables=SHARED_VARIABLES if n % 2 else {"n": n},
                 buttons=SHARED_BUTTONS if n % 3 else None, status=OutboxStatus.PENDING, created_at=NOW,
                 not_before=elsewhere + timedelta(seconds=n % 2), due_at=NOW if n % 4 else None,
                 late_after=elsewhere, stale_after=NOW, attempts=0, disable_notification=bool(n % 2),
                 last_error=None if n % 5 else "note")
            for n in range(count)]


async def test_stores_what_sqlalchemys_insert_stores_and_counts_only_new_rows(db) -> None:
    async with db.transaction() as session:
        await session.execute(insert(OutboxMessage), rows("sa:"))
        assert await insert_new_counted(session, OutboxMessage.__table__, rows("fast:"), unique="dedup_key") == 12
    async with db.transaction() as session:
        again = rows("fast:")[:5] + rows("more:")[:3]
        assert await insert_new_counted(session, OutboxMessage.__table__, again, unique="dedup_key") == 3
    async with db.read() as session:
        # As stored: no conversion on the way back, so a difference in what was written shows.
        stored = (await session.execute(text(
            "SELECT dedup_key, kind, template_id, CAST(variables AS TEXT), status, CAST(created_at AS TEXT), "
            "CAST(not_before AS TEXT), CAST(due_at AS TEXT), CAST(late_after AS TEXT), CAST(stale_after AS TEXT), "
            "CAST(buttons AS TEXT), disable_notification, attempts, last_error, participant_id "
            "FROM outbox ORDER BY id"))).all()
    by_key = {row[0]: row[1:] for row in stored}
    assert len(by_key) == 27
    for n in range(12):
        assert by_key[f"fast:{n}"] == by_key[f"sa:{n}"], n
    assert by_key["sa:0"][9] == "null"  # None in a JSON column: JSON null, as SQLAlchemy writes it
