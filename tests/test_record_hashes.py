"""Records that verify: each record's creation entry holds its content hash, `trialbot audit verify`
finds a record changed, removed or slipped in with the append-only guards dropped, and an anchor
kept outside the database catches audit entries removed, the newest ones included; every morning
the investigator gets one.

The command line is driven as the study team runs it, on the database the real bot wrote. It
names its database by DATABASE_URL alone, so on PostgreSQL these tests get a database of their
own rather than the usual schema."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from study import audit, audit_anchor, pregnancy_tests
from study.audit import GENESIS, Actor
from study.database import Database
from study.models import AuditEntry
from study.protocol import EXAMPLE_PROTOCOL
from study.record_hashes import BY_TABLE, RECORDS
from tests.conftest import PG_URL, REQUIRE_PG
from tests.databases import migrated
from tests.test_corrections import applied_earlier
from tests.test_safety import full_checkin, press, say
from tests.trial import Trial

REPO = Path(__file__).resolve().parent.parent
APPLIED_NOW = "✅ I put it on now"
# Append-only, but the delivery log rather than the study record (study/record_hashes.py).
NOT_HASHED = {"audit_entries", "sent_messages", "delivery_events"}


@pytest.fixture(params=["sqlite", "postgresql"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        async with migrated(f"sqlite+aiosqlite:///{tmp_path / 'trial.db'}") as database:
            yield database
        return
    if not PG_URL:
        if REQUIRE_PG:
            pytest.fail("TRIALBOT_REQUIRE_POSTGRES=1 but TRIALBOT_TEST_DATABASE_URL is not set")
        pytest.skip("PostgreSQL tests need TRIALBOT_TEST_DATABASE_URL")
    name = f"verify_{uuid.uuid4().hex[:16]}"
    admin = create_async_engine(PG_URL, isolation_level="AUTOCOMMIT")
    async with admin.connect() as connection:
        await connection.execute(text(f"CREATE DATABASE {name}"))
    database = Database(make_url(PG_URL).set(database=name).render_as_string(hide_password=False))
    try:
        await database.migrate()
        yield database
    finally:
        await database.dispose()
        async with admin.connect() as connection:
            await connection.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
        await admin.dispose()


@pytest.fixture
def trialbot(db: Database, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """`trialbot ...` at the server, on the test's database: await trialbot("audit", "verify")."""
    from typer.testing import CliRunner

    from bot.cli import app

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", db.url.render_as_string(hide_password=False))
    monkeypatch.setenv("STUDY_FILE", str(EXAMPLE_PROTOCOL))
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)

    async def run(*args: str):
        result = await asyncio.to_thread(CliRunner().invoke, app, list(args))
        assert "Traceback" not in result.output, result.output
        return result

    return run


async def saved(user, action) -> None:
    """A diary action, once the participant sees it saved (a button's answer comes before that)."""
    def count(chat) -> int:
        return sum((m.text or "").startswith("✅ Saved") for m in chat.bot_messages)

    before = count(user)
    await action
    await user.wait_for(lambda u: count(u) > before)


async def drop_append_only_guards(db: Database) -> None:
    """What someone with the database would do first to change the record."""
    async with db.transaction() as session:
        if db.is_sqlite:
            names = (await session.scalars(text("SELECT name FROM sqlite_master WHERE type = 'trigger'"))).all()
            for name in names:
                await session.execute(text(f"DROP TRIGGER {name}"))
            return
        triggers = (await session.execute(text(
            "SELECT DISTINCT trigger_name, event_object_table FROM information_schema.triggers "
            "WHERE trigger_schema = current_schema()"))).all()
        for name, table in triggers:
            await session.execute(text(f"DROP TRIGGER {name} ON {table}"))


async def append_only_tables(db: Database) -> set[str]:
    async with db.read() as session:
        if db.is_sqlite:
            names = (await session.scalars(text("SELECT name FROM sqlite_master WHERE type = 'trigger'"))).all()
            return {name.rsplit("_no_", 1)[0] for name in names}
        return set((await session.scalars(text(
            "SELECT event_object_table FROM information_schema.triggers WHERE trigger_schema = current_schema()"))).all())


async def execute(db: Database, *statements: str) -> None:
    async with db.transaction() as session:
        for statement in statements:
            await session.execute(text(statement))


async def verified(db: Database) -> audit.VerifyReport:
    async with db.read() as session:
        return await audit.verify(session)


async def test_every_append_only_record_is_hashed_whole(db: Database) -> None:
    assert await append_only_tables(db) == set(BY_TABLE) | NOT_HASHED, \
        "a new append-only table is a record: add it to study/record_hashes.py RECORDS"
    for kind in RECORDS:
        assert list(kind.columns) == [c.key for c in kind.model.__table__.columns if c.key != "id"], \
            f"{kind.table}: every column of the record is hashed"


async def test_a_diary_entry_is_hashed_from_its_inserts_returning_as_it_reads_back(db: Database) -> None:
    """A tap's entry is hashed from what its INSERT returned (no read back): the same content
    hash a read of the stored row gives, which is what `audit verify` compares with."""
    from study import diary, participants, record_hashes
    from study.models import DiaryEntry
    from study.participants import EnrolmentRequest
    from study.protocol import load_protocol

    protocol = load_protocol(EXAMPLE_PROTOCOL)
    now = datetime(2026, 11, 25, 1, 0, 0, 123456, tzinfo=UTC)
    async with db.transaction() as session:
        person = await participants.enroll(session, protocol, EnrolmentRequest("P001", "America/New_York", "en"),
                                           actor=Actor.cli("test"), now=now)
        result = await diary.log_application(session, person, occurred_at=now, source="reminder", key="k",
                                             rules=protocol.diary, now=now)
    assert result.entry is not None
    kind = BY_TABLE["diary_entries"]
    async with db.read() as session:
        [entry] = (await session.scalars(select(AuditEntry).where(AuditEntry.entity == "diary_entry"))).all()
        stored = (await session.execute(select(*record_hashes.returned(DiaryEntry))
                                        .where(DiaryEntry.id == result.entry.id))).mappings().one()
    assert entry.content == record_hashes.content_of(stored, kind.columns)
    assert (await verified(db)).ok


async def test_every_kind_of_record_verifies_as_it_was_made(trial: Trial) -> None:
    coordinator = await trial.add_staff(5005, name="Dana")
    user = await trial.join(wocbp=True)  # a consent decision
    await saved(user, press(user, APPLIED_NOW))  # a diary entry
    await say(user, "Can I come at 11 instead of 10?")  # a participant's message
    await say(coordinator, "/reply P001 Yes, 11:00 is fine.")  # and the team's reply
    await trial.deliver()
    await user.wait_for(lambda u: "11:00 is fine" in (u.last_bot_message.text or ""))
    await full_checkin(user, itch="6")  # a check-in
    [checkin] = await _rows(trial, "checkins")
    await say(coordinator, f"/correct P001 checkin {checkin} itch 4 reason typed 6 for 4")  # a correction
    await say(user, "/symptoms")
    await press(user, "3")  # a check-in left unfinished...
    await trial.advance(hours=10)  # 20:00, the evening reminder
    await trial.advance(hours=4, minutes=30)  # 00:30: ...kept as incomplete; the 20:00 slot recorded missing
    await saved(user, applied_earlier(user, "Yesterday", "8:00 PM"))  # the participant's own entry supersedes it
    async with trial.db.transaction() as session:  # a pregnancy test and the contraception answer, by staff
        person = await session.merge(await trial.participant())
        await pregnancy_tests.record(session, person, "negative", key=None, source="staff", actor=Actor.staff(1),
                                     now=trial.clock.now())
        await pregnancy_tests.record_contraception(session, person, True, due=date(2026, 11, 25), key="k1",
                                                   actor=Actor.staff(1), now=trial.clock.now())
    await say(coordinator, "/interrupt P001 infection shingles")  # a treatment change

    counts = {table: len(await _rows(trial, table)) for table in BY_TABLE}
    assert all(counts.values()), f"every kind of record was made: {counts}"
    report = await verified(trial.db)
    assert report.ok, report.problems
    assert report.records == sum(counts.values())
    async with trial.db.read() as session:
        holding = (await session.scalars(select(AuditEntry).where(AuditEntry.content.is_not(None)))).all()
    assert len(holding) == report.records, "each record's creation entry holds its content hash"
    assert {e.action for e in holding} == {"create", "update", "correct", "supersede"}


async def _rows(trial: Trial, table: str) -> list[int]:
    async with trial.db.read() as session:
        return list((await session.scalars(text(f"SELECT id FROM {table} ORDER BY id"))).all())


async def test_records_altered_removed_or_slipped_in_are_each_reported(trial: Trial, trialbot) -> None:
    user = await trial.join()
    await saved(user, press(user, APPLIED_NOW))
    await say(user, "I have a question about the cream")
    await saved(user, applied_earlier(user, "Today", "7:00 AM"))  # a second entry, that nothing else points at
    clean = await trialbot("audit", "verify")
    assert clean.exit_code == 0, clean.output
    assert "chain intact, 4 records verified" in clean.output  # consent, two entries, the message

    [first, second] = await trial.diary()
    [message] = await _rows(trial, "participant_messages")
    created = {e.entity_id: e.seq for e in await _creations(trial, "diary_entry")}
    await drop_append_only_guards(trial.db)
    await execute(trial.db,
                  f"UPDATE diary_entries SET kind = 'missed', missed_reason = 'forgot' WHERE id = {first.id}",
                  f"UPDATE participant_messages SET at = '2026-11-23 09:00:00' WHERE id = {message}",
                  f"DELETE FROM diary_entries WHERE id = {second.id}",
                  "INSERT INTO pregnancy_tests (participant_id, result, local_date, timezone, recorded_at, source, "
                  "recorded_by) VALUES (1, 'negative', '2026-11-24', 'UTC', '2026-11-24 15:00:00', 'staff', 'staff:1')")
    result = await trialbot("audit", "verify")
    assert result.exit_code == 1
    message_created = (await _creations(trial, "participant_message"))[0].seq
    assert _problems(result.output) == [
        (f"diary_entries {first.id}: content differs from its creation entry #{created[str(first.id)]} "
         "(kind, missed_reason)"),
        f"diary_entries {second.id}: missing (audit entry #{created[str(second.id)]} created it)",
        "pregnancy_tests 1: has no creation entry in the audit trail",
        f"participant_messages {message}: content differs from its creation entry #{message_created} (at)",
    ]


async def _creations(trial: Trial, entity: str) -> list[AuditEntry]:
    async with trial.db.read() as session:
        return [e for e in await audit.entries(session, entity=entity) if e.action == "create"]


def _problems(output: str) -> list[str]:
    return [line.strip() for line in output.splitlines() if line.startswith("  ")]


async def test_removed_and_truncated_audit_entries_are_caught_against_an_anchor(trial: Trial, trialbot,
                                                                               tmp_path: Path) -> None:
    user = await trial.join()
    await saved(user, press(user, APPLIED_NOW))
    await trial.add_staff(5005, name="Dana")
    await trial.add_staff(5006, name="Eli")  # the newest entries create no record: only an anchor notices them gone
    anchors = tmp_path / "elsewhere" / "anchors.txt"
    anchors.parent.mkdir()
    taken = await trialbot("audit", "anchor", "--append", str(anchors))
    assert taken.exit_code == 0
    line = taken.output.strip()
    async with trial.db.read() as session:
        count = await audit.count(session)
        head = await session.scalar(select(AuditEntry.hash).where(AuditEntry.seq == count))
    assert line.startswith(f"trialbot-anchor v1 count={count} head={head} at=")
    assert anchors.read_text().splitlines()[-1] == line

    await saved(user, applied_earlier(user, "Today", "7:00 AM"))  # the trail grows past the anchor: still it
    later = await trialbot("audit", "verify", "--anchor", str(anchors))
    assert later.exit_code == 0 and "matches the anchor" in later.output, later.output
    assert (await trialbot("audit", "verify", "--anchor", line)).exit_code == 0, "a line, as well as a file"

    # The newest entries removed, up to and past the anchor's (the entry, and the record, made
    # since; the two staff members' creation): what is left is a chain, intact.
    async with trial.db.read() as session:
        assert [e.entity for e in (await audit.entries(session))[count - 2:]] == ["staff", "staff", "diary_entry"]
    await drop_append_only_guards(trial.db)
    await execute(trial.db, "DELETE FROM diary_entries WHERE id = (SELECT max(id) FROM diary_entries)",
                  f"DELETE FROM audit_entries WHERE seq >= {count - 1}")
    blind = await trialbot("audit", "verify")
    assert blind.exit_code == 0, "without an anchor, a trail cut short looks whole"
    truncated = await trialbot("audit", "verify", "--anchor", str(anchors))
    assert truncated.exit_code == 1
    when = f"{audit_anchor.Anchor.parse(line).at:%Y-%m-%d %H:%M}"
    assert _problems(truncated.output) == [
        (f"anchor: the trail ends at entry {count - 2}, before entry {count} that the anchor of {when} UTC names "
         "(the newest entries were removed)")]

    # An entry removed from the middle: the chain breaks, and the anchor counts one entry too few.
    await execute(trial.db, "DELETE FROM audit_entries WHERE seq = 3")
    removed = await trialbot("audit", "verify", "--anchor", line)
    assert removed.exit_code == 1
    problems = _problems(removed.output)
    assert "entry 3 is missing (found 4 next)" in problems
    assert any(p.startswith("anchor: 1 of the first") and "entries were removed" in p for p in problems)


async def test_a_rewritten_trail_does_not_match_its_anchor(db: Database, trialbot) -> None:
    async with db.transaction() as session:
        for i in range(3):
            await audit.record(session, actor=Actor.cli("dana"), action="create", entity="thing", entity_id=i,
                               now=datetime(2026, 11, 24, 15, tzinfo=UTC), new={"n": i})
    line = (await trialbot("audit", "anchor")).output.strip()
    # The last entry replaced by another, chained properly: intact, but not the trail anchored.
    await drop_append_only_guards(db)
    await execute(db, "DELETE FROM audit_entries WHERE seq = 3")
    async with db.transaction() as session:
        await audit.record(session, actor=Actor.cli("dana"), action="create", entity="thing", entity_id=2,
                           now=datetime(2026, 11, 24, 15, tzinfo=UTC), new={"n": 20})
    assert (await trialbot("audit", "verify")).exit_code == 0
    result = await trialbot("audit", "verify", "--anchor", line)
    assert result.exit_code == 1
    when = f"{audit_anchor.Anchor.parse(line).at:%Y-%m-%d %H:%M}"
    assert _problems(result.output) == [
        f"anchor: entry 3 is not the entry the anchor of {when} UTC names (its hash differs: the trail was rewritten)"]


async def test_an_anchor_that_is_not_one_is_refused_in_a_line(db: Database, trialbot, tmp_path: Path) -> None:
    result = await trialbot("audit", "verify", "--anchor", "trialbot-anchor v1 count=x")
    assert result.exit_code == 2 and result.output.count("\n") == 1 and "not an anchor line" in result.output
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    result = await trialbot("audit", "verify", "--anchor", str(empty))
    assert result.exit_code == 2 and "holds no anchor line" in result.output
    fresh = await trialbot("audit", "anchor")  # an empty trail has an anchor too, and verifies against it
    assert fresh.output.startswith(f"trialbot-anchor v1 count=0 head={GENESIS} at=")
    assert (await trialbot("audit", "verify", "--anchor", fresh.output.strip())).exit_code == 0


async def test_the_investigator_gets_the_anchor_every_morning_once(trial: Trial) -> None:
    coordinator = await trial.add_staff(5005, name="Dana")
    investigator = await trial.add_staff(6006, name="Dr Gray", role="investigator")
    user = await trial.join()
    await saved(user, press(user, APPLIED_NOW))

    def anchors(chat) -> list:
        return [m for m in chat.bot_messages if "trialbot-anchor v1" in (m.text or "")]

    trial.clock.set(datetime(2026, 11, 25, 12, 29, tzinfo=UTC))  # 07:29 New York: the digest's time not yet
    await trial.tick()
    assert anchors(investigator) == []
    await trial.advance(minutes=1)
    [sent] = anchors(investigator)
    assert anchors(coordinator) == [], "to the investigator"
    [line] = [row for row in sent.text.splitlines() if row.startswith("trialbot-anchor v1")]
    anchor = audit_anchor.Anchor.parse(line)
    assert anchor.at == datetime(2026, 11, 25, 12, 30, tzinfo=UTC)
    async with trial.db.read() as session:
        assert await audit_anchor.check(session, anchor) == [], "the head of the trail when it was taken"
        assert anchor.count == await audit.count(session)

    await trial.restart()  # once a day, whatever the restarts
    await trial.advance(minutes=30)
    assert len(anchors(investigator)) == 1
    trial.clock.set(datetime(2026, 11, 26, 12, 30, tzinfo=UTC))
    await trial.tick()
    assert len(anchors(investigator)) == 2, "and again the next morning"


async def test_records_made_before_content_hashes_are_backfilled_in_entries_of_their_own(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'site.db'}"
    async with migrated(url, revision="0009") as db:
        await _records_of_the_release_before(db)
        await db.migrate()
        report = await verified(db)
        async with db.read() as session:
            backfilled = (await session.scalars(select(AuditEntry).where(AuditEntry.action == "backfill")
                                                .order_by(AuditEntry.seq))).all()
        assert [(e.entity, e.entity_id, e.seq) for e in backfilled] == [
            ("diary_entries", "1", 2), ("participant_messages", "1", 3), ("treatment_changes", "1", 4)]
        assert report.ok and report.records == 3, report.problems
        # ...and from now on, a change shows.
        await drop_append_only_guards(db)
        await execute(db, "UPDATE treatment_changes SET reason = 'other' WHERE id = 1")
        assert (await verified(db)).problems == [
            "treatment_changes 1: content differs from its creation entry #4 (reason)"]


@pytest.mark.skipif(not PG_URL, reason="PostgreSQL tests need TRIALBOT_TEST_DATABASE_URL")
async def test_the_backfill_verifies_on_postgresql_too() -> None:
    assert PG_URL
    async with migrated(PG_URL, revision="0009") as db:
        await _records_of_the_release_before(db)
        await db.migrate()
        report = await verified(db)
        assert report.ok and report.records == 3, report.problems


async def _records_of_the_release_before(db: Database) -> None:
    """A participant, their records and the entry that enrolled them, as the release before wrote
    them: no entry held a content hash (and the treatment change's entry did not name its row)."""
    now = "2026-11-24 15:00:00"
    await execute(
        db,
        "INSERT INTO participants (id, study_id, timezone, language, wocbp, reminder_times, status, telegram_user_id, "
        f"telegram_chat_id, enrolled_at, consented_at, active_since) VALUES (1, 'P001', 'America/New_York', 'en', "
        f"false, '08:00,20:00', 'active', 11, 11, '{now}', '{now}', '{now}')",
        "INSERT INTO diary_entries (id, participant_id, kind, occurred_at, local_date, timezone, recorded_at, source, "
        f"late, recorded_by) VALUES (1, 1, 'applied', '{now}.250000', '2026-11-24', 'America/New_York', '{now}', "
        "'button', false, 'participant:P001')",
        "INSERT INTO participant_messages (id, participant_id, direction, text, at, timezone, screening) "
        f"VALUES (1, 1, 'in', 'héllo', '{now}', 'America/New_York', '{{\"flags\": [], \"negated\": []}}')",
        "INSERT INTO treatment_changes (id, participant_id, state, previous, reason, reason_text, changed_by, "
        f"changed_at, local_date, timezone) VALUES (1, 1, 'interrupted', 'on_treatment', 'infection', NULL, "
        f"'staff:1', '{now}', '2026-11-24', 'America/New_York')",
    )
    # The participant's creation, chained as the release before chained it.
    entry = SimpleNamespace(seq=1, occurred_at=datetime(2026, 11, 24, 15, tzinfo=UTC), actor="operator:dana",
                            action="create", entity="participant", entity_id="1", old_values=None,
                            new_values={"study_id": "P001"}, reason="enrolment", timezone="America/New_York",
                            prev_hash=GENESIS, content=None)
    entry.hash = audit.entry_hash(entry)
    async with db.transaction() as session:
        await session.execute(text(
            "INSERT INTO audit_entries (seq, occurred_at, actor, action, entity, entity_id, old_values, new_values, "
            "reason, timezone, prev_hash, hash) VALUES (1, :at, 'operator:dana', 'create', 'participant', '1', NULL, "
            ":new, 'enrolment', 'America/New_York', :prev, :hash)"),
            {"at": entry.occurred_at if not db.is_sqlite else "2026-11-24 15:00:00.000000",
             "new": '{"study_id": "P001"}', "prev": GENESIS, "hash": entry.hash})


def test_verify_on_a_database_not_yet_upgraded_asks_for_the_upgrade(cli, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"  # not the fixture's database, which is up to date
    monkeypatch.setenv("DATABASE_URL", url)

    async def the_release_before() -> None:
        async with migrated(url, revision="0009"):
            pass

    asyncio.run(the_release_before())
    result = cli("audit", "verify")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "run `trialbot db upgrade` first" in result.output
