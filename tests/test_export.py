"""Exports round-trip: what is written reads back with the same counts and values; the REDCap
file's columns are its data dictionary's field names; exports are audited."""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import select

from study import export as exporting
from study import participants, visits
from study.audit import Actor
from study.models import AuditEntry, CheckIn, DiaryEntry, Participant, PregnancyTest
from tests.test_oversight import add_checkin, log_now
from tests.test_broadcasts import say
from tests.trial import COORDINATOR, Trial

pytestmark = pytest.mark.timeout(120)


def read(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


async def study_with_data(trial: Trial) -> None:
    user = await trial.join("P001", user_id=2001, wocbp=True)
    await trial.join("P002", user_id=2002, language="es")
    await say(user, "/log")
    await log_now(user)
    await user.send_text("no fever\x00 but my calf is swollen")
    await user.wait_for(lambda u: "This needs attention now" in (u.last_bot_message.text or ""))
    await add_checkin(trial, "P001", date(2026, 11, 24), 7, 3)
    await add_checkin(trial, "P002", date(2026, 11, 24), None, 1)
    async with trial.db.transaction() as session:
        person = await participants.by_study_id(session, "P001")
        await visits.plan_schedule(session, trial.protocol, person, baseline=date(2026, 11, 26), actor=COORDINATOR,
                                   now=trial.clock.now())
        session.add(PregnancyTest(participant_id=person.id, result="negative", local_date=date(2026, 11, 24),
                                  timezone=person.timezone, recorded_at=trial.clock.now(), source="staff",
                                  recorded_by="staff:1"))
        (await session.scalars(select(CheckIn).where(CheckIn.participant_id == person.id))).one()
    async with trial.db.transaction() as session:  # a reaction, recorded like a check-in would
        person = await participants.by_study_id(session, "P002")
        now = trial.clock.now()
        session.add(CheckIn(participant_id=person.id, kind="full", started_at=now, submitted_at=now,
                            local_date=date(2026, 11, 24), timezone=person.timezone, source="command", itch=2, pain=2,
                            reaction="burning", reaction_severity="moderate", medicines="no", red_flags=[]))


async def test_csv_export_round_trips_and_is_audited(trial: Trial, tmp_path: Path) -> None:
    await study_with_data(trial)
    datasets, written = await exporting.run(trial.db, fmt="csv", out=tmp_path, include_contact=False,
                                            actor=Actor.cli("dana"), now=trial.clock.now())
    names = {p.name for p in written}
    assert names == {f"{n}.csv" for n in ("participants", "applications", "missed_doses", "checkins",
                                           "incomplete_checkins", "reactions", "alerts", "participant_messages",
                                           "messages_sent", "visits", "pregnancy_tests", "corrections",
                                           "audit_trail")} | {
        "data_dictionary.csv"}
    people = read(tmp_path / "participants.csv")
    assert [(p["study_id"], p["wocbp"], p["language"]) for p in people] == [("P001", "1", "en"), ("P002", "0", "es")]
    assert "telegram_user_id" not in people[0] and "telegram_chat_id" not in people[0]
    async with trial.db.transaction() as session:
        applied = (await session.scalars(select(DiaryEntry).where(DiaryEntry.kind == "applied"))).all()
        checkins = (await session.scalars(select(CheckIn).order_by(CheckIn.id))).all()
        trail_count = len((await session.scalars(select(AuditEntry))).all())
    apps = read(tmp_path / "applications.csv")
    assert [(a["entry_id"], a["study_id"], a["local_date"], a["occurred_at"]) for a in apps] == [
        (str(e.id), "P001", e.local_date.isoformat(), e.occurred_at.isoformat()) for e in applied]
    back = read(tmp_path / "checkins.csv")
    assert [(c["itch"], c["pain"]) for c in back] == [("" if c.itch is None else str(c.itch), str(c.pain))
                                                      for c in checkins]
    assert [(r["study_id"], r["reaction"], r["severity"]) for r in read(tmp_path / "reactions.csv")] == [
        ("P002", "burning", "moderate")]
    assert len(read(tmp_path / "visits.csv")) == len(trial.protocol.visits.schedule)
    assert [p["result"] for p in read(tmp_path / "pregnancy_tests.csv")] == ["negative"]
    assert len(read(tmp_path / "audit_trail.csv")) == trail_count - 1  # the export's own entry comes after
    assert len(read(tmp_path / "messages_sent.csv")) > 0
    [said] = read(tmp_path / "participant_messages.csv")
    assert (said["study_id"], said["kind"], said["context"], said["text"], said["original_length"]) == (
        "P001", "text", "free", "no fever but my calf is swollen", "32")
    assert (said["flags"], said["negated"]) == ('["leg_swelling"]', '["fever"]')
    dictionary = read(tmp_path / "data_dictionary.csv")
    for ds in datasets:
        with (tmp_path / f"{ds.name}.csv").open(newline="", encoding="utf-8") as fh:
            header = next(csv.reader(fh))
        assert header == [d["column"] for d in dictionary if d["file"] == f"{ds.name}.csv"]
        assert len(read(tmp_path / f"{ds.name}.csv")) == len(ds.rows)
    async with trial.db.transaction() as session:
        entry = (await session.scalars(select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(1))).one()
    assert (entry.actor, entry.action, entry.entity_id) == ("operator:dana", "export", "csv")
    assert entry.new_values["rows"]["participants"] == 2 and entry.new_values["include_contact"] is False


async def test_contact_data_only_when_asked(trial: Trial, tmp_path: Path) -> None:
    await trial.join("P001", user_id=2001)
    await exporting.run(trial.db, fmt="csv", out=tmp_path, include_contact=True, actor=Actor.cli("dana"),
                        now=trial.clock.now())
    [person] = read(tmp_path / "participants.csv")
    assert person["telegram_user_id"] == "2001"


async def test_redcap_export_matches_its_dictionary_and_round_trips(trial: Trial, tmp_path: Path) -> None:
    await study_with_data(trial)
    datasets, _ = await exporting.run(trial.db, fmt="redcap", out=tmp_path, include_contact=False,
                                      actor=Actor.cli("dana"), now=trial.clock.now())
    dictionary = read(tmp_path / "redcap_data_dictionary.csv")
    fields = [d["Variable / Field Name"] for d in dictionary]
    assert fields[0] == "record_id" and len(set(fields)) == len(fields)
    with (tmp_path / "redcap_import.csv").open(newline="", encoding="utf-8") as fh:
        header = next(csv.reader(fh))
    assert header == ["record_id", "redcap_repeat_instrument", "redcap_repeat_instance"] + fields[1:]
    forms = {d["Form Name"] for d in dictionary}
    rows = read(tmp_path / "redcap_import.csv")
    assert {r["redcap_repeat_instrument"] for r in rows} <= forms | {""}
    by = {ds.name: ds for ds in datasets}
    for form, dataset, repeating, instrument_fields in exporting.REDCAP_INSTRUMENTS:
        mine = [r for r in rows if r["redcap_repeat_instrument"] == (form if repeating else "")]
        assert len(mine) == len(by[dataset].rows), form
        for record in {r["record_id"] for r in mine}:
            instances = [int(r["redcap_repeat_instance"] or 0) for r in mine if r["record_id"] == record]
            assert instances == (list(range(1, len(instances) + 1)) if repeating else [0])
    p001 = next(r for r in rows if r["record_id"] == "P001" and not r["redcap_repeat_instrument"])
    assert (p001["wocbp"], p001["language"], p001["status"]) == ("1", "en", "active")
    itch = sorted(r["ci_itch"] for r in rows if r["redcap_repeat_instrument"] == "checkin")
    assert itch == sorted(cell for cell in ("7", "", "2"))
    assert [r["pt_result"] for r in rows if r["redcap_repeat_instrument"] == "pregnancy_test"] == ["negative"]
    async with trial.db.transaction() as session:
        assert len((await session.scalars(select(Participant))).all()) == 2
