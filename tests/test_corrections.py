"""Corrections that never overwrite, end to end: the real bot over HTTP, a moving clock.

A coordinator corrects a diary entry or a check-in with /correct and a reason; the record stays as
it was recorded, the correction is a row of its own and an audit-trail entry, and /today,
/adherence, /participants, the digest's counts, the planner and both exports show the corrected
value, flagged. A dose the participant records after the system recorded the slot as missing
supersedes the missing record (both kept). A monitor is refused, and the refusal audited."""

from __future__ import annotations

import csv
import json
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, text

from study import adherence, audit, corrections, oversight, participants
from study import export as exporting
from study.audit import Actor
from study.diary import standing_facts
from study.models import (
    AuditEntry,
    CheckIn,
    Correction,
    DiaryEntry,
    StaffMember,
    Supersession,
)
from tests.test_broadcasts import say
from tests.test_oversight import add_checkin, photo_after
from tests.trial import Trial

pytestmark = pytest.mark.timeout(120)
NY = ZoneInfo("America/New_York")
APPLIED_NOW = "✅ I put it on now"
APPLIED_EARLIER = "🕒 I put it on earlier"
MISSED = "✖️ I missed a dose"


def t(clock_time: str) -> str:
    return clock_time.replace(" ", "\u202f")  # Babel's narrow no-break space before AM/PM


async def press(user, label: str) -> None:
    before = len(user.callback_answers)
    await user.press(label)
    await user.wait_for(lambda u: len(u.callback_answers) > before)


async def applied_earlier(user, day: str, hour: str) -> None:
    await say(user, "/log")
    await press(user, APPLIED_EARLIER)
    await press(user, day)
    await press(user, t(hour))


async def rows(trial: Trial, model) -> list:
    async with trial.db.transaction() as session:
        return list((await session.scalars(select(model).order_by(model.id))).all())


async def trail(trial: Trial, **where) -> list[AuditEntry]:
    async with trial.db.transaction() as session:
        return await audit.entries(session, **where)


async def verified(trial: Trial) -> audit.VerifyReport:
    async with trial.db.transaction() as session:
        return await audit.verify(session)


def read(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


async def test_a_corrected_time_shows_in_today_and_the_original_stays(trial: Trial) -> None:
    user = await trial.join()
    coordinator = await trial.add_staff(5005, name="Dana")
    await applied_earlier(user, "Today", "7:00 AM")
    [entry] = await trial.diary()
    assert entry.late is True

    await say(coordinator, "/correct P001")
    listing = coordinator.last_bot_message.text
    assert f"entry {entry.id} applied 2026-11-24 07:00, recorded late" in listing
    assert "times in America/New_York" in listing

    await say(coordinator, f"/correct P001 entry {entry.id} time 09:00 reason “participant called: applied at 9”")
    done = coordinator.last_bot_message.text
    assert f"Corrected P001 diary entry {entry.id}" in done
    assert "time: 2026-11-24 07:00 → 2026-11-24 09:00" in done
    assert "Reason: participant called: applied at 9" in done

    [kept] = await trial.diary()
    assert kept.occurred_at == datetime(2026, 11, 24, 7, 0, tzinfo=NY), "the record as recorded is kept"
    [row] = await rows(trial, Correction)
    [member] = await rows(trial, StaffMember)
    member_id = member.id
    assert (row.entity, row.diary_entry_id, row.field, row.reason, row.corrected_by, row.timezone) == (
        "diary_entry", entry.id, "occurred_at", "participant called: applied at 9", f"staff:{member_id}",
        "America/New_York")
    assert (row.old_value, row.new_value) == ("2026-11-24T12:00:00+00:00", "2026-11-24T14:00:00+00:00")
    [noted] = await trail(trial, entity="diary_entry", entity_ids=[str(entry.id)], actor=f"staff:{member_id}")
    assert (noted.action, noted.reason, noted.old_values, noted.new_values) == (
        "correct", "participant called: applied at 9", {"occurred_at": "2026-11-24T12:00:00+00:00"},
        {"occurred_at": "2026-11-24T14:00:00+00:00", "correction_id": row.id})

    await say(user, "/today")
    today = user.last_bot_message.text
    assert t("9:00 AM") in today and t("7:00 AM") not in today
    assert "(corrected by the study team)" in today
    await say(coordinator, "/correct P001")
    assert f"entry {entry.id} applied 2026-11-24 09:00, recorded late ✏️ corrected" in coordinator.last_bot_message.text
    assert (await verified(trial)).ok


async def test_a_dose_corrected_to_missed_counts_in_adherence_participants_and_the_digest(trial: Trial) -> None:
    user = await trial.join()
    coordinator = await trial.add_staff(5005, name="Dana")
    await say(user, "/log")
    await press(user, APPLIED_NOW)
    [entry] = await trial.diary()
    before = await photo_after(coordinator, "/adherence P001")
    assert "50% (7 days)" in before.caption and "corrected" not in before.caption

    await say(coordinator, f"/correct P001 entry {entry.id} kind missed missed_reason forgot reason "
                           "participant called: it was yesterday's tube, not applied")
    done = coordinator.last_bot_message.text
    assert "kind: applied → missed" in done and "missed_reason: none → forgot" in done
    assert "time: 2026-11-24 10:00 → none" in done
    assert {c.field for c in await rows(trial, Correction)} == {"kind", "occurred_at", "missed_reason"}

    after = await photo_after(coordinator, "/adherence P001")
    assert "0% (7 days)" in after.caption and "✏️ 1 entry corrected by the study team" in after.caption
    await say(coordinator, "/participants")
    assert "P001 active: 0% / 0%" in coordinator.last_bot_message.text
    assert "✏️ 1 corrected by the study team" in coordinator.last_bot_message.text
    await say(user, "/today")
    assert "Nothing recorded yet today" in user.last_bot_message.text
    assert "Missed a dose (corrected by the study team)" in user.last_bot_message.text
    async with trial.db.transaction() as session:
        [day] = await adherence.on_day(session, trial.protocol, date(2026, 11, 24))
    assert (day.applied, day.missed, day.missing, day.corrected) == (0, 1, 0, 1)

    # "It did not happen" at all: withdrawn by the study team, so nothing counts; then restored.
    await say(coordinator, f"/correct P001 entry {entry.id} withdraw reason entered for the wrong participant")
    assert "withdrawn: it did not happen" in coordinator.last_bot_message.text
    await say(user, "/today")
    assert "Missed a dose" not in user.last_bot_message.text
    await say(coordinator, f"/correct P001 entry {entry.id} restore reason it was the right participant after all")
    assert "restored: it happened" in coordinator.last_bot_message.text
    await say(coordinator, f"/correct P001 entry {entry.id} kind applied time 10:00 reason applied as first said")
    assert "kind: missed → applied" in coordinator.last_bot_message.text
    async with trial.db.transaction() as session:
        [day] = await adherence.on_day(session, trial.protocol, date(2026, 11, 24))
    assert (day.applied, day.missed, day.corrected) == (1, 0, 1)
    assert [r.kind for r in await trial.diary()] == ["applied"], "nothing was written to the diary itself"
    assert (await verified(trial)).ok


async def test_a_monitor_is_refused_and_the_refusal_is_audited(trial: Trial) -> None:
    user = await trial.join()
    monitor = await trial.add_staff(5006, name="Mo", role="monitor")
    await say(user, "/log")
    await press(user, APPLIED_NOW)
    [entry] = await trial.diary()
    await say(monitor, f"/correct P001 entry {entry.id} time 09:00 reason I think so")
    assert "your role (monitor) cannot do this" in monitor.last_bot_message.text
    await say(monitor, "/correct P001")
    assert "your role (monitor) cannot do this" in monitor.last_bot_message.text
    assert await rows(trial, Correction) == []
    refusals = await trail(trial, entity="staff_command", entity_ids=["correct"])
    assert [(r.action, r.new_values) for r in refusals] == [("refused", {"role": "monitor", "needs": "correct"})] * 2


async def test_mistakes_get_a_clear_answer_and_change_nothing(trial: Trial) -> None:
    user = await trial.join()
    await trial.join("P002", user_id=1002)
    coordinator = await trial.add_staff(5005)
    await say(user, "/log")
    await press(user, APPLIED_NOW)
    [entry] = await trial.diary()
    await add_checkin(trial, "P002", date(2026, 11, 24), 4, 2)
    [other_checkin] = await rows(trial, CheckIn)

    async def answer(text: str) -> str:
        await say(coordinator, text)
        return coordinator.last_bot_message.text

    assert "/correct P001 lists their entries" in await answer("/correct")
    assert "There is no participant P404" in await answer("/correct P404")
    assert "There is no participant P404" in await answer(f"/correct P404 entry {entry.id} time 09:00 reason x")
    said = await answer(f"/correct P001 entry {entry.id} time 09:00")
    assert "needs a reason" in said and "Nothing was changed" in said
    assert "P001 has no diary entry 99999" in await answer("/correct P001 entry 99999 time 09:00 reason x")
    # Someone else's record is not theirs to be corrected through.
    assert f"P001 has no check-in {other_checkin.id}" in await answer(
        f"/correct P001 checkin {other_checkin.id} itch 3 reason x")
    assert "time “25:00”: give a time like 09:00" in await answer(f"/correct P001 entry {entry.id} time 25:00 reason x")
    assert "has not come yet" in await answer(f"/correct P001 entry {entry.id} time 23:00 reason x")
    assert "colour cannot be corrected on a diary entry" in await answer(
        f"/correct P001 entry {entry.id} colour blue reason x")
    assert "kind “sideways”: give one of applied | missed" in await answer(
        f"/correct P001 entry {entry.id} kind sideways reason x")
    assert "missed_reason does not apply to an application" in await answer(
        f"/correct P001 entry {entry.id} missed_reason forgot reason x")
    assert "Nothing to change" in await answer(f"/correct P001 entry {entry.id} time 10:00 reason x")
    assert "cannot be read as a correction" in await answer("/correct P001 banana 1 time 09:00 reason x")
    # A day with no time after it: `reason` is not taken for the time.
    assert "time “2026-11-24”: give a time like" in await answer(
        f"/correct P001 entry {entry.id} time 2026-11-24 reason x")
    # Yesterday 20:00 moved to today would be 20:00 today, which has not come yet.
    await applied_earlier(user, "Yesterday", "8:00 PM")
    evening = (await trial.diary())[-1]
    assert "day 2026-11-24 20:00 has not come yet" in await answer(
        f"/correct P001 entry {evening.id} day 2026-11-24 reason x")
    assert await rows(trial, Correction) == []

    # The participant took it back: it cannot be withdrawn or restored by the study team.
    trial.clock.advance(timedelta(minutes=5))
    await say(user, "/undo")  # takes back the newest entry, yesterday evening's
    assert "took entry" in await answer(f"/correct P001 entry {evening.id} withdraw reason x")
    assert await rows(trial, Correction) == []


async def test_a_checkin_answer_is_corrected_in_the_picture_and_both_exports(trial: Trial, tmp_path: Path) -> None:
    await trial.join()
    coordinator = await trial.add_staff(5005, name="Dana")
    async with trial.db.transaction() as session:  # a full check-in, as the participant saved it
        person = await participants.by_study_id(session, "P001")
        now = trial.clock.now()
        saved = CheckIn(participant_id=person.id, kind="full", started_at=now, submitted_at=now,
                        local_date=date(2026, 11, 24), timezone=person.timezone, source="command", itch=8, pain=2,
                        reaction="redness", reaction_severity="moderate", medicines="no", red_flags=[])
        session.add(saved)
        await session.flush()
        await audit.record(session, actor=Actor.participant("P001"), action="create", entity="checkin",
                           entity_id=saved.id, now=now, reason="symptom check-in")
    [checkin] = await rows(trial, CheckIn)
    await say(coordinator, f"/correct P001 checkin {checkin.id} itch 3 reaction none reason typed 8 for 3; no reaction")
    done = coordinator.last_bot_message.text
    assert "itch: 8 → 3" in done and "reaction: redness → none" in done and "severity: moderate → none" in done
    async with trial.db.transaction() as session:
        assert await corrections.checkin_views(session) and (await session.get(CheckIn, checkin.id)).itch == 8
        assert await oversight.scores(session, checkin.participant_id) == [(date(2026, 11, 24), 3, 2)]

    await exporting.run(trial.db, protocol=trial.protocol, fmt="csv", out=tmp_path / "csv", include_contact=False,
                        actor=Actor.cli("dana"), now=trial.clock.now())
    [row] = read(tmp_path / "csv" / "checkins.csv")
    assert (row["itch"], row["corrected"], row["correction_reason"]) == ("3", "1", "typed 8 for 3; no reaction")
    assert json.loads(row["original_value"]) == {"itch": 8, "reaction": "redness", "reaction_severity": "moderate"}
    assert read(tmp_path / "csv" / "reactions.csv") == []
    listed = read(tmp_path / "csv" / "corrections.csv")
    assert [(c["entity"], c["record_id"], c["field"], c["old_value"], c["new_value"]) for c in listed] == [
        ("checkin", str(checkin.id), "itch", "8", "3"), ("checkin", str(checkin.id), "reaction", '"redness"', '"none"'),
        ("checkin", str(checkin.id), "reaction_severity", '"moderate"', "null")]

    await exporting.run(trial.db, protocol=trial.protocol, fmt="redcap", out=tmp_path / "redcap",
                        include_contact=False, actor=Actor.cli("dana"), now=trial.clock.now())
    records = read(tmp_path / "redcap" / "redcap_import.csv")
    [ci] = [r for r in records if r["redcap_repeat_instrument"] == "checkin"]
    assert (ci["ci_itch"], ci["ci_corrected"], ci["ci_correction_reason"]) == ("3", "1", "typed 8 for 3; no reaction")
    assert len([r for r in records if r["redcap_repeat_instrument"] == "correction"]) == 3
    assert (await verified(trial)).ok


async def test_both_exports_show_the_corrected_value_and_keep_the_original(trial: Trial, tmp_path: Path) -> None:
    user = await trial.join()
    coordinator = await trial.add_staff(5005, name="Dana")
    await applied_earlier(user, "Today", "7:00 AM")
    [entry] = await trial.diary()
    await say(coordinator, f"/correct P001 entry {entry.id} time 09:00 reason participant called")
    [member] = await rows(trial, StaffMember)

    await exporting.run(trial.db, protocol=trial.protocol, fmt="csv", out=tmp_path / "csv", include_contact=False,
                        actor=Actor.cli("dana"), now=trial.clock.now())
    [app] = read(tmp_path / "csv" / "applications.csv")
    assert app["occurred_at"] == "2026-11-24T14:00:00+00:00" and app["corrected"] == "1"
    assert json.loads(app["original_value"]) == {"occurred_at": "2026-11-24T12:00:00+00:00"}
    assert (app["correction_reason"], app["corrected_by"], app["corrected_at"]) == (
        "participant called", f"Dana (staff:{member.id})", trial.clock.now().isoformat())
    [listed] = read(tmp_path / "csv" / "corrections.csv")
    assert (listed["study_id"], listed["entity"], listed["record_id"], listed["field"], listed["reason"]) == (
        "P001", "diary_entry", str(entry.id), "occurred_at", "participant called")
    assert listed["corrected_at_local"] == "2026-11-24T10:00:00-05:00"
    dictionary = read(tmp_path / "csv" / "data_dictionary.csv")
    assert {"corrected", "original_value", "correction_reason", "corrected_by", "corrected_at"} <= {
        d["column"] for d in dictionary if d["file"] == "applications.csv"}

    await exporting.run(trial.db, protocol=trial.protocol, fmt="redcap", out=tmp_path / "redcap",
                        include_contact=False, actor=Actor.cli("dana"), now=trial.clock.now())
    records = read(tmp_path / "redcap" / "redcap_import.csv")
    [app] = [r for r in records if r["redcap_repeat_instrument"] == "application"]
    assert (app["app_occurred_at"], app["app_corrected"], app["app_correction_reason"]) == (
        "2026-11-24 14:00:00", "1", "participant called")
    assert json.loads(app["app_original_value"]) == {"occurred_at": "2026-11-24T12:00:00+00:00"}
    [corr] = [r for r in records if r["redcap_repeat_instrument"] == "correction"]
    field_choices = exporting.choice_lists(trial.protocol)["corrected_field"]  # coded: 1, Kind | 2, Occurred at ...
    assert (corr["record_id"], field_choices.value(corr["corr_field"]), corr["corr_reason"]) == (
        "P001", "occurred_at", "participant called")
    fields = [d["Variable / Field Name"] for d in read(tmp_path / "redcap" / "redcap_data_dictionary.csv")]
    assert len(fields) == len(set(fields)) and "app_corrected" in fields and "corr_field" in fields
    [kept] = await trial.diary()
    assert kept.occurred_at == datetime(2026, 11, 24, 7, 0, tzinfo=NY)


async def test_a_back_filled_dose_supersedes_the_missing_record(trial: Trial, tmp_path: Path) -> None:
    user = await trial.join()
    await trial.advance(hours=10)  # 20:00: the evening reminder
    await trial.advance(hours=4, minutes=30)  # 00:30: the 20:00 slot's window closed with nothing
    [missing] = [e for e in await trial.diary() if e.kind == "missing"]
    assert missing.local_date == date(2026, 11, 24)
    async with trial.db.transaction() as session:
        [day] = await adherence.on_day(session, trial.protocol, date(2026, 11, 24))
    assert (day.applied, day.missing) == (0, 1)

    await applied_earlier(user, "Yesterday", "8:00 PM")  # "I put it on earlier": yesterday, 8 PM
    both = await trial.diary()
    assert [e.kind for e in both] == ["missing", "applied"], "both entries are kept"
    applied = both[1]
    assert applied.late is True and applied.local_date == date(2026, 11, 24)
    [link] = await rows(trial, Supersession)
    assert (link.superseded_id, link.by_entry_id) == (missing.id, applied.id)
    [noted] = await trail(trial, entity="diary_entry", entity_ids=[str(missing.id)], actor="participant:P001")
    assert noted.action == "supersede" and noted.new_values["superseded_by"] == applied.id
    for statement in ("UPDATE supersessions SET timezone = 'UTC'", "DELETE FROM supersessions"):
        with pytest.raises(Exception, match="append-only"):
            async with trial.db.transaction() as session:
                await session.execute(text(statement))

    async with trial.db.transaction() as session:
        [day] = await adherence.on_day(session, trial.protocol, date(2026, 11, 24))
        assert (await oversight.applied_per_day(session, applied.participant_id)) == {date(2026, 11, 24): 1}
        facts = await standing_facts(session, [applied.participant_id], date(2026, 11, 23))
    assert (day.applied, day.missing) == (1, 0), "the slot counts as applied, not missing"
    assert [(f.kind, f.local_date) for f in facts] == [("applied", date(2026, 11, 24))]
    report = await trial.tick()  # the planner sees the slot accounted for: nothing more is recorded
    assert report.missing == 0 and len(await trial.diary()) == 2

    await exporting.run(trial.db, protocol=trial.protocol, fmt="csv", out=tmp_path, include_contact=False,
                        actor=Actor.cli("dana"), now=trial.clock.now())
    [row] = read(tmp_path / "missed_doses.csv")
    assert (row["entry_id"], row["kind"], row["superseded_by"]) == (str(missing.id), "missing", str(applied.id))
    [app] = read(tmp_path / "applications.csv")
    assert (app["entry_id"], app["late"], app["corrected"]) == (str(applied.id), "1", "0")

    # Taken back with /undo: the missing record counts again.
    await say(user, "/undo")
    async with trial.db.transaction() as session:
        [day] = await adherence.on_day(session, trial.protocol, date(2026, 11, 24))
    assert (day.applied, day.missing) == (0, 1)
    assert (await verified(trial)).ok


async def test_a_dose_said_missed_after_the_slot_closed_supersedes_the_missing_record(trial: Trial) -> None:
    user = await trial.join()
    await trial.advance(hours=10)
    await trial.advance(hours=4, minutes=30)  # 00:30: the 20:00 slot recorded missing
    await say(user, "/log")
    await press(user, MISSED)
    await press(user, "Yesterday")
    await press(user, "I forgot")
    missing, said = await trial.diary()
    assert (missing.kind, said.kind) == ("missing", "missed")
    async with trial.db.transaction() as session:
        [day] = await adherence.on_day(session, trial.protocol, date(2026, 11, 24))
    assert (day.applied, day.missed, day.missing) == (0, 1, 0), "one dose, counted once"


async def test_missed_doses_recorded_late_are_flagged_late(trial: Trial, tmp_path: Path) -> None:
    user = await trial.join()
    await say(user, "/log")
    await press(user, MISSED)
    await press(user, "Today")
    await press(user, "I forgot")
    trial.clock.advance(timedelta(hours=15, minutes=30))  # 01:30 the next day: within 2 hours of midnight
    await say(user, "/log")
    await press(user, MISSED)
    await press(user, "Yesterday")
    await press(user, "I was away from home")
    trial.clock.advance(timedelta(hours=8))  # 09:30: long after yesterday ended
    await say(user, "/log")
    await press(user, MISSED)
    await press(user, "Yesterday")
    await press(user, "Another reason")
    assert [(e.local_date.isoformat(), e.late) for e in await trial.diary()] == [
        ("2026-11-24", False), ("2026-11-24", False), ("2026-11-24", True)]
    await exporting.run(trial.db, protocol=trial.protocol, fmt="csv", out=tmp_path, include_contact=False,
                        actor=Actor.cli("dana"), now=trial.clock.now())
    assert [r["late"] for r in read(tmp_path / "missed_doses.csv")] == ["0", "0", "1"]


async def test_a_correction_without_its_audit_entry_is_found(trial: Trial) -> None:
    user = await trial.join()
    await say(user, "/log")
    await press(user, APPLIED_NOW)
    [entry] = await trial.diary()
    async with trial.db.transaction() as session:
        person = await participants.by_study_id(session, "P001")
        session.add(Correction(participant_id=person.id, entity="diary_entry", diary_entry_id=entry.id,
                               field="kind", old_value="applied", new_value="missed", reason="slipped in",
                               corrected_by="staff:1", corrected_at=trial.clock.now(), timezone=person.timezone))
    report = await verified(trial)
    assert [p for p in report.problems if "correction" in p] == ["corrections 1: has no creation entry in the audit trail"]


async def test_the_corrections_table_is_append_only_and_checked(trial: Trial) -> None:
    user = await trial.join()
    coordinator = await trial.add_staff(5005)
    await say(user, "/log")
    await press(user, APPLIED_NOW)
    [entry] = await trial.diary()
    await say(coordinator, f"/correct P001 entry {entry.id} time 09:30 reason called")
    for statement in ("UPDATE corrections SET reason = 'other'", "DELETE FROM corrections"):
        with pytest.raises(Exception, match="append-only"):
            async with trial.db.transaction() as session:
                await session.execute(text(statement))
    async with trial.db.transaction() as session:
        person = await participants.by_study_id(session, "P001")
    for bad in ({"entity": "visit"}, {"field": "itch"}, {"reason": ""}, {"checkin_id": entry.id}):
        values = {"participant_id": person.id, "entity": "diary_entry", "diary_entry_id": entry.id,
                  "checkin_id": None, "field": "kind", "old_value": "applied", "new_value": "missed",
                  "reason": "r", "corrected_by": "staff:1", "corrected_at": trial.clock.now(), "timezone": "UTC",
                  **bad}
        with pytest.raises(Exception, match="(?i)check"):
            async with trial.db.transaction() as session:
                await session.execute(Correction.__table__.insert(), [values])
    assert len(await rows(trial, DiaryEntry)) == 1


async def test_one_participants_entries_read_in_one_statement_match_the_full_view(trial: Trial) -> None:
    """/today reads a participant's entries in one statement while nothing in their diary was
    corrected or superseded, and the full view otherwise: the same views either way, and an entry
    of another day corrected into this one is not missed."""
    await trial.enroll("P001")
    await trial.enroll("P002")
    plain, moved = await trial.participant("P001"), await trial.participant("P002")
    today, yesterday = date(2026, 11, 24), date(2026, 11, 23)
    now = datetime(2026, 11, 24, 20, 0, tzinfo=NY)

    def entry(person, kind: str, day: date, hour: int, **more) -> DiaryEntry:
        return DiaryEntry(participant_id=person.id, kind=kind, local_date=day, timezone=person.timezone,
                          occurred_at=datetime.combine(day, datetime.min.time(), NY).replace(hour=hour),
                          recorded_at=now, source="button", late=False, recorded_by="participant:test", **more)

    def seen(views) -> list[tuple]:
        return [(v.id, v.kind, v.local_date, v.occurred_at, v.undone, v.withdrawn_by_staff, v.superseded_by,
                 v.corrected) for v in views]

    async def both(person) -> tuple[list[tuple], list[tuple]]:
        async with trial.db.read() as session:
            one = await corrections.entry_views_of(session, person.id, today)
            full = await corrections.entry_views(session, [person.id], since=today)
        return seen(one), seen(full)

    one, full = await both(plain)
    assert one == full == [], "no entries: nothing, from the row of flags alone"

    async with trial.db.transaction() as session:
        kept, undone = entry(plain, "applied", today, 8), entry(plain, "applied", today, 9)
        session.add_all([entry(plain, "applied", yesterday, 8), kept, undone, entry(moved, "applied", yesterday, 20)])
        await session.flush()
        session.add(entry(plain, "withdrawal", today, 10, supersedes_id=undone.id))
    one, full = await both(plain)
    assert one == full and [(v[0], v[4]) for v in one] == [(kept.id, False), (undone.id, True)]

    [yesterdays] = await trial.diary("P002")
    async with trial.db.transaction() as session:
        session.add(Correction(participant_id=moved.id, entity="diary_entry", diary_entry_id=yesterdays.id,
                               field="local_date", old_value=yesterday.isoformat(), new_value=today.isoformat(),
                               reason="applied after midnight", corrected_by="staff:1", corrected_at=now,
                               timezone=moved.timezone))
    one, full = await both(moved)
    assert one == full and [(v[0], v[2], v[7]) for v in one] == [(yesterdays.id, today, True)], \
        "an entry corrected into the day is read through the full view"
