"""Exports: what is written reads back with the same counts and values; no Telegram id leaves
without --include-contact (the audit trail's values masked); the REDCap files pass REDCap's own
data dictionary and import rules (tests/redcap_rules.py), coded from the study's own lists; every
date and time says its zone; exports are audited."""

from __future__ import annotations

import csv
import json
import re
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from study import alerts, participants, treatment, visits
from study import export as exporting
from study.audit import Actor
from study.models import (
    Alert,
    AuditEntry,
    Base,
    CheckIn,
    ContraceptionAnswer,
    DiaryEntry,
    Participant,
    PregnancyTest,
    StaffMember,
    TreatmentReason,
    TreatmentState,
)
from tests import redcap_rules
from tests.test_broadcasts import say
from tests.test_corrections import MISSED, press
from tests.test_oversight import add_checkin, log_now
from tests.test_safety import full_checkin
from tests.trial import COORDINATOR, Trial

pytestmark = pytest.mark.timeout(180)
# Telegram ids as long as real ones, so that none turns up by chance inside a hash or a date.
MAYA, LUCIA, SAM, DANA = 7301234561, 7301234562, 7301234563, 7309876541


def read(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


async def export(trial: Trial, out: Path, fmt: str, *, include_contact: bool = False) -> list[exporting.Dataset]:
    datasets, _ = await exporting.run(trial.db, protocol=trial.protocol, fmt=fmt, out=out,
                                      include_contact=include_contact, actor=Actor.cli("dana"), now=trial.clock.now())
    return datasets


async def study_with_data(trial: Trial) -> None:
    user = await trial.join("P001", user_id=2001, wocbp=True)
    await trial.join("P002", user_id=2002, language="es")
    await say(user, "/log")
    await log_now(user)
    await user.send_text("no fever\x00 but my calf is swollen")
    await user.wait_for(lambda u: "This needs attention now" in ((u.last_bot_message and u.last_bot_message.text) or ""))
    await add_checkin(trial, "P001", date(2026, 11, 24), 7, 3)
    await add_checkin(trial, "P002", date(2026, 11, 24), None, 1)
    async with trial.db.transaction() as session:
        person = await participants.by_study_id(session, "P001")
        assert person is not None
        await visits.plan_schedule(session, trial.protocol, person, baseline=date(2026, 11, 26), actor=COORDINATOR,
                                   now=trial.clock.now())
        session.add(PregnancyTest(participant_id=person.id, result="negative", local_date=date(2026, 11, 24),
                                  timezone=person.timezone, recorded_at=trial.clock.now(), source="staff",
                                  recorded_by="staff:1"))
    async with trial.db.transaction() as session:  # a reaction, recorded like a check-in would
        person = await participants.by_study_id(session, "P002")
        assert person is not None
        now = trial.clock.now()
        session.add(CheckIn(participant_id=person.id, kind="full", started_at=now, submitted_at=now,
                            local_date=date(2026, 11, 24), timezone=person.timezone, source="command", itch=2, pain=2,
                            reaction="burning", reaction_severity="moderate", medicines="no", red_flags=[]))


async def realistic_study(trial: Trial) -> None:
    """Three participants and a coordinator, a month of the study: diary entries (applied, missed,
    missing), a full check-in with a red flag and its alert acknowledged, a message with a red flag
    whose alert stays open, a reply, corrections of an entry and a check-in, an unfinished
    check-in, visits, a treatment interrupted and resumed, a pregnancy test answered on its
    reminder, and an answer to the contraception question."""
    coordinator = await trial.add_staff(DANA, name="Dana")
    maya = await trial.join("P001", user_id=MAYA, wocbp=True)
    await trial.join("P002", user_id=LUCIA, language="es")
    sam = await trial.join("P003", user_id=SAM, timezone="America/Los_Angeles")
    await say(maya, "/log")
    await log_now(maya)
    await say(sam, "/log")
    await press(sam, MISSED)
    await press(sam, "Today")
    await press(sam, "I forgot")
    await full_checkin(maya, itch="8", reaction="Burning or stinging", severity="Moderate", flags=["Fever or chills"])
    await sam.send_text("no fever but my calf is swollen")
    await sam.wait_for(lambda u: "This needs attention now" in ((u.last_bot_message and u.last_bot_message.text) or ""))
    await say(coordinator, "/reply P001 Thank you, the study nurse will call you this afternoon.")
    async with trial.db.transaction() as session:
        member = (await session.scalars(select(StaffMember))).one()
        entry = (await session.scalars(select(DiaryEntry).where(DiaryEntry.kind == "applied"))).one()
        checkin = (await session.scalars(select(CheckIn))).one()
        first = (await session.scalars(select(Alert).order_by(Alert.id))).first()
        assert first is not None and first.source == "checkin"
        await alerts.acknowledge(session, first.id, member, now=trial.clock.now())
    await say(coordinator, f"/correct P001 entry {entry.id} time 09:00 reason participant called: applied at 9")
    await say(coordinator, f"/correct P001 checkin {checkin.id} itch 3 reason typed 8 for 3")
    async with trial.db.transaction() as session:
        people = {p.study_id: p for p in (await session.scalars(select(Participant))).all()}
        await visits.plan_schedule(session, trial.protocol, people["P001"], baseline=date(2026, 11, 26),
                                   actor=COORDINATOR, now=trial.clock.now())
        staff = Actor.staff(member.id)
        await treatment.change(session, trial.protocol, people["P002"], TreatmentState.INTERRUPTED,
                               TreatmentReason.INFECTION, actor=staff, now=trial.clock.now(), text="skin infection")
        await treatment.change(session, trial.protocol, people["P002"], TreatmentState.ON_TREATMENT,
                               TreatmentReason.INVESTIGATOR_DECISION, actor=staff, now=trial.clock.now(),
                               text="infection cleared")
    await say(maya, "/symptoms")
    await press(maya, "4")  # and no more: it expires at the end of her day
    # Her first pregnancy test is due 28 days after her baseline visit, reminded at 09:00 local.
    trial.clock.set(datetime(2026, 12, 24, 14, 0, tzinfo=UTC))
    await trial.tick()
    reminder = next(m for m in reversed(maya.bot_messages) if "✅ Done — negative" in m.button_labels)
    await maya.press("✅ Done — negative", message_id=reminder.message_id)
    await maya.wait_for(lambda u: "We saved your result" in ((u.message(reminder.message_id) or reminder).text or ""))
    async with trial.db.transaction() as session:
        session.add(ContraceptionAnswer(participant_id=people["P001"].id, uses=True, due_date=date(2026, 12, 24),
                                        local_date=date(2026, 12, 24), timezone="America/New_York",
                                        recorded_at=trial.clock.now(), recorded_by="participant:P001",
                                        idempotency_key="contraception:P001:20261224"))


async def telegram_ids(trial: Trial) -> set[str]:
    """Every Telegram user id and chat id the database holds, in any table, as text."""
    found: set[str] = set()
    async with trial.db.transaction() as session:
        for table in Base.metadata.sorted_tables:
            for column in table.columns:
                if column.name.endswith(("user_id", "chat_id")):
                    found |= {str(v) for v in (await session.scalars(select(column))).all() if v is not None}
    return found


def files_holding(directory: Path, number: str) -> list[str]:
    pattern = re.compile(rf"(?<!\d){number}(?!\d)")
    return [p.name for p in sorted(directory.iterdir()) if pattern.search(p.read_text(encoding="utf-8"))]


# -- Round trips ----------------------------------------------------------------------------------


async def test_csv_export_round_trips_and_is_audited(trial: Trial, tmp_path: Path) -> None:
    await study_with_data(trial)
    datasets, written = await exporting.run(trial.db, protocol=trial.protocol, fmt="csv", out=tmp_path,
                                            include_contact=False, actor=Actor.cli("dana"), now=trial.clock.now())
    assert {p.name for p in written} == {f"{spec.name}.csv" for spec in exporting.DATASETS} | {"data_dictionary.csv"}
    assert {"participants.csv", "participant_messages.csv", "alerts.csv", "treatment_changes.csv",
            "audit_trail.csv"} <= {p.name for p in written}
    people = read(tmp_path / "participants.csv")
    assert [(p["study_id"], p["wocbp"], p["language"], p["treatment"]) for p in people] == [
        ("P001", "1", "en", "on_treatment"), ("P002", "0", "es", "on_treatment")]
    assert "telegram_user_id" not in people[0] and "telegram_chat_id" not in people[0]
    async with trial.db.transaction() as session:
        applied = (await session.scalars(select(DiaryEntry).where(DiaryEntry.kind == "applied"))).all()
        checkins = (await session.scalars(select(CheckIn).order_by(CheckIn.id))).all()
        trail_count = len((await session.scalars(select(AuditEntry))).all())
    apps = read(tmp_path / "applications.csv")
    assert [(a["entry_id"], a["study_id"], a["local_date"], a["occurred_at"], a["recorded_at"]) for a in apps] == [
        (str(e.id), "P001", e.local_date.isoformat(), e.occurred_at and e.occurred_at.isoformat(),
         e.recorded_at.isoformat()) for e in applied]
    back = read(tmp_path / "checkins.csv")
    assert [(c["itch"], c["pain"], c["submitted_at"], c["timezone"]) for c in back] == [
        ("" if c.itch is None else str(c.itch), str(c.pain), c.submitted_at.isoformat(), c.timezone)
        for c in checkins]
    assert [(r["study_id"], r["reaction"], r["severity"]) for r in read(tmp_path / "reactions.csv")] == [
        ("P002", "burning", "moderate")]
    visits_back = read(tmp_path / "visits.csv")
    assert len(visits_back) == len(trial.protocol.visits.schedule)
    assert all(v["window_start"] <= v["scheduled_date"] <= v["window_end"] and v["in_window"] == "1"
               for v in visits_back if v["target_date"])
    assert [(p["result"], p["source"]) for p in read(tmp_path / "pregnancy_tests.csv")] == [("negative", "staff")]
    assert len(read(tmp_path / "audit_trail.csv")) == trail_count - 1  # the export's own entry comes after
    assert len(read(tmp_path / "messages_sent.csv")) > 0
    [said] = read(tmp_path / "participant_messages.csv")
    assert (said["study_id"], said["kind"], said["context"], said["text"], said["original_length"]) == (
        "P001", "text", "free", "no fever but my calf is swollen", "32")
    assert (said["flags"], said["negated"]) == ('["leg_swelling"]', '["fever"]')
    [alert] = read(tmp_path / "alerts.csv")
    assert (alert["source"], alert["red_flags"], alert["status"], alert["message_id"]) == (
        "message", '["leg_swelling"]', "open", said["message_id"])
    dictionary = read(tmp_path / "data_dictionary.csv")
    for ds in datasets:
        with (tmp_path / f"{ds.name}.csv").open(newline="", encoding="utf-8") as fh:
            header = next(csv.reader(fh))
        assert header == [d["column"] for d in dictionary if d["file"] == f"{ds.name}.csv"]
        assert len(read(tmp_path / f"{ds.name}.csv")) == len(ds.rows)
    async with trial.db.transaction() as session:
        entry = (await session.scalars(select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(1))).one()
    assert (entry.actor, entry.action, entry.entity_id) == ("operator:dana", "export", "csv")
    assert entry.new_values is not None
    assert entry.new_values["rows"]["participants"] == 2 and entry.new_values["include_contact"] is False


async def test_every_date_and_time_in_the_csv_dictionary_says_its_zone(trial: Trial, tmp_path: Path) -> None:
    await study_with_data(trial)
    await export(trial, tmp_path, "csv")
    dictionary = read(tmp_path / "data_dictionary.csv")
    columns = {(d["file"], d["column"]) for d in dictionary}
    local = re.compile(r"participant's local (day|time) \(zone in column (\w+)\)")
    for d in dictionary:
        if d["type"] in ("datetime", "date", "time"):
            found = local.fullmatch(d["zone"])
            where = (d["file"], d["column"], d["zone"])
            assert d["zone"] == "UTC" or (found and (d["file"], found[2]) in columns), where
        else:
            assert d["zone"] == "", (d["file"], d["column"])
    zones = {(d["file"], d["column"]): d["zone"] for d in dictionary}
    assert zones["applications.csv", "occurred_at"] == "UTC"
    assert zones["applications.csv", "local_date"] == "participant's local day (zone in column timezone)"
    assert zones["corrections.csv", "corrected_at_local"] == "participant's local time (zone in column timezone)"
    assert zones["visits.csv", "scheduled_time"] == "participant's local time (zone in column timezone)"
    values = {(d["file"], d["column"]): d["values"] for d in dictionary}
    assert values["missed_doses.csv", "missed_reason"] == " | ".join(trial.protocol.diary.missed_reasons)
    assert values["checkins.csv", "itch"] == "0 to 10"


# -- Contact data ---------------------------------------------------------------------------------


async def test_no_telegram_id_leaves_without_include_contact_in_either_format(trial: Trial, tmp_path: Path) -> None:
    await realistic_study(trial)
    ids = await telegram_ids(trial)
    assert {str(MAYA), str(LUCIA), str(SAM), str(DANA)} <= ids, "the database holds them all"
    for fmt in exporting.FORMATS:
        await export(trial, tmp_path / fmt, fmt)
        for number in ids:
            assert files_holding(tmp_path / fmt, number) == [], f"{number} in the {fmt} export"
    trail = read(tmp_path / "csv" / "audit_trail.csv")
    consent = [json.loads(e["new_values"]) for e in trail
               if e["entity"] == "participant" and "telegram_chat_id" in e["new_values"]]
    assert len(consent) == 3 and all(values["telegram_chat_id"] == values["telegram_user_id"] == exporting.MASKED
                                     for values in consent)

    for fmt in exporting.FORMATS:
        await export(trial, tmp_path / f"{fmt}-contact", fmt, include_contact=True)
    assert files_holding(tmp_path / "csv-contact", str(MAYA)) == ["audit_trail.csv", "participants.csv"]
    assert files_holding(tmp_path / "redcap-contact", str(MAYA)) == ["redcap_import.csv"]
    people = {p["study_id"]: p for p in read(tmp_path / "csv-contact" / "participants.csv")}
    assert (people["P001"]["telegram_user_id"], people["P003"]["telegram_chat_id"]) == (str(MAYA), str(SAM))
    with_contact = redcap_rules.read(tmp_path / "redcap-contact")
    assert redcap_rules.check(with_contact) == []
    assert {d["Variable / Field Name"] for d in with_contact.dictionary if d["Identifier?"] == "y"} == set(
        exporting.CONTACT_FIELDS), "REDCap knows them as identifiers (its de-identified exports leave them out)"
    # Staff members' ids are in no export, with or without contact data.
    assert files_holding(tmp_path / "csv-contact", str(DANA)) == files_holding(tmp_path / "redcap-contact",
                                                                                str(DANA)) == []
    async with trial.db.transaction() as session:
        flags = [e.new_values["include_contact"] for e in (await session.scalars(
            select(AuditEntry).where(AuditEntry.action == "export").order_by(AuditEntry.seq))).all()
            if e.new_values is not None]
    assert flags == [False, False, True, True]


# -- REDCap -----------------------------------------------------------------------------------------


def codes(dictionary: list[dict], field: str) -> dict[str, str]:
    """A coded field's labels by code."""
    [row] = [d for d in dictionary if d["Variable / Field Name"] == field]
    return dict(redcap_rules.choices_of(row))


async def test_a_realistic_redcap_export_passes_redcaps_rules(trial: Trial, tmp_path: Path) -> None:
    await realistic_study(trial)
    datasets = await export(trial, tmp_path, "redcap")
    files = redcap_rules.read(tmp_path)
    assert redcap_rules.check(files) == []

    dictionary, rows = files.dictionary, files.data
    by_name = {d["Variable / Field Name"]: d for d in dictionary}
    choices = exporting.resolved_choices(trial.protocol, datasets)
    # Every categorical column is coded from its one source, in the data and the dictionary alike.
    for ds in datasets:
        if ds.instrument is None:
            continue
        for column in ds.columns:
            if column.name == "study_id":
                continue
            name = ds.instrument.field(column.name)
            row = by_name[name]
            expected = {"choice": ("radio", "dropdown"), "choices": ("checkbox",), "boolean": ("yesno",)}.get(
                column.type, ("text", "notes"))
            assert row["Field Type"] in expected, name
            if column.choices:
                assert row["Choices, Calculations, OR Slider Labels"] == choices[column.choices].redcap()
    assert codes(dictionary, "app_source")["1"] == "Button"
    reasons = trial.protocol.diary.missed_reasons
    assert codes(dictionary, "md_missed_reason") == {
        str(i): reason.replace("_", " ").capitalize() for i, reason in enumerate(reasons, 1)}
    for score in ("ci_itch", "ci_pain"):
        assert [by_name[score][k] for k in ("Text Validation Type OR Show Slider Number", "Text Validation Min",
                                             "Text Validation Max")] == ["integer", "0", "10"]
    assert by_name["app_local_date"]["Text Validation Type OR Show Slider Number"] == "date_ymd"
    assert by_name["app_occurred_at"]["Text Validation Type OR Show Slider Number"] == "datetime_seconds_ymd"
    assert by_name["app_occurred_at"]["Field Note"] == "UTC"
    assert by_name["corr_corrected_at_local"]["Field Note"] == "participant's local time (zone in field corr_timezone)"
    forms = list(dict.fromkeys(d["Form Name"] for d in dictionary))
    assert forms[0] == "participant" and {"participant_message", "safety_alert", "treatment_change"} <= set(forms)
    assert [r["form_name"] for r in files.repeating] == forms[1:]
    assert {f"{form}_complete" for form in forms} <= set(files.data_header)

    def instrument(form: str, record: str) -> list[dict]:
        return [r for r in rows if r["redcap_repeat_instrument"] == form and r["record_id"] == record]

    def value(field: str, code: str) -> str:
        return choices[next(c.choices for ds in datasets if ds.instrument for c in ds.columns
                            if ds.instrument.field(c.name) == field and c.choices)].value(code)

    [maya] = [r for r in rows if r["record_id"] == "P001" and not r["redcap_repeat_instrument"]]
    assert (value("status", maya["status"]), value("language", maya["language"]), maya["wocbp"]) == (
        "active", "en", "1")
    assert maya["participant_complete"] == "2" and "telegram_user_id" not in files.data_header
    [app] = instrument("application", "P001")
    assert (value("app_source", app["app_source"]), app["app_corrected"], app["app_occurred_at"]) == (
        "button", "1", "2026-11-24 14:00:00")
    assert app["app_recorded_at"] == "2026-11-24 15:00:00" and app["app_timezone"] == "America/New_York"
    missed = instrument("missed_dose", "P003")
    said = [m for m in missed if value("md_kind", m["md_kind"]) == "missed"]
    assert [value("md_missed_reason", m["md_missed_reason"]) for m in said] == ["forgot"]
    assert any(value("md_kind", m["md_kind"]) == "missing" for r in ("P001", "P003")
               for m in instrument("missed_dose", r)), "a month passed: slots were recorded missing"
    [checkin] = instrument("checkin", "P001")
    fever = choices["red_flag"].code("fever")
    assert (checkin["ci_itch"], checkin["ci_corrected"], checkin[f"ci_red_flags___{fever}"]) == ("3", "1", "1")
    assert value("ci_reaction", checkin["ci_reaction"]) == "burning" and checkin["ci_submitted_at"]
    assert [value("ic_reason", r["ic_reason"]) for r in instrument("incomplete_checkin", "P001")] == ["expired"]
    acknowledged, still_open = instrument("safety_alert", "P001"), instrument("safety_alert", "P003")
    assert [(value("al_status", a["al_status"]), a["al_acknowledged_by"], bool(a["al_acknowledged_at"]),
             a[f"al_red_flags___{fever}"]) for a in acknowledged] == [("acknowledged", "Dana", True, "1")]
    swelling = choices["red_flag"].code("leg_swelling")
    assert [(value("al_status", a["al_status"]), a["al_acknowledged_by"], a[f"al_red_flags___{swelling}"])
            for a in still_open] == [("open", "", "1")]
    [words] = instrument("participant_message", "P003")
    assert (words["msg_text"], words[f"msg_flags___{swelling}"], words[f"msg_negated___{fever}"]) == (
        "no fever but my calf is swollen", "1", "1")
    [reply] = [m for m in instrument("participant_message", "P001")
               if value("msg_direction", m["msg_direction"]) == "out"]
    assert reply["msg_staff"] == "Dana" and "nurse will call" in reply["msg_text"]
    assert [(value("tc_state", c["tc_state"]), value("tc_reason", c["tc_reason"]), c["tc_reason_text"])
            for c in instrument("treatment_change", "P002")] == [
        ("interrupted", "infection", "skin infection"), ("on_treatment", "investigator_decision", "infection cleared")]
    [test] = instrument("pregnancy_test", "P001")
    assert (value("pt_result", test["pt_result"]), value("pt_source", test["pt_source"]),
            value("pt_place", test["pt_place"]), test["pt_local_date"]) == (
        "negative", "reminder", "home", "2026-12-24")
    [answer] = instrument("contraception", "P001")
    assert (answer["cc_uses"], answer["cc_due_date"]) == ("1", "2026-12-24")
    windows = instrument("visit", "P001")
    assert windows and all(w["vis_window_start"] <= w["vis_scheduled_date"] <= w["vis_window_end"]
                           for w in windows if w["vis_target_date"])
    assert {value("corr_field", c["corr_field"]) for c in instrument("correction", "P001")} == {"occurred_at", "itch"}
    for row in rows:  # each instrument's rows, and only those, say Complete
        form = row["redcap_repeat_instrument"] or "participant"
        assert [c for c in files.data_header if c.endswith("_complete") and row[c]] == [f"{form}_complete"]
        assert row[f"{form}_complete"] == "2"


async def test_a_value_outside_its_source_list_is_coded_after_it(trial: Trial, tmp_path: Path) -> None:
    """A reason the protocol offered once and no longer does keeps a code of its own."""
    await trial.join("P001", user_id=2001)
    async with trial.db.transaction() as session:
        person = await participants.by_study_id(session, "P001")
        assert person is not None
        now = trial.clock.now()
        session.add(DiaryEntry(participant_id=person.id, kind="missed", occurred_at=None, local_date=date(2026, 11, 24),
                               timezone=person.timezone, recorded_at=now, source="button", late=False,
                               missed_reason="retired", recorded_by="participant:P001"))
    await export(trial, tmp_path, "redcap")
    files = redcap_rules.read(tmp_path)
    assert redcap_rules.check(files) == []
    reasons = codes(files.dictionary, "md_missed_reason")
    assert list(reasons.values())[-1] == "Retired" and len(reasons) == len(trial.protocol.diary.missed_reasons) + 1
    [row] = [r for r in files.data if r["redcap_repeat_instrument"] == "missed_dose"]
    assert reasons[row["md_missed_reason"]] == "Retired"


async def test_the_redcap_files_match_the_csv_and_round_trip(trial: Trial, tmp_path: Path) -> None:
    await study_with_data(trial)
    datasets = await export(trial, tmp_path, "redcap")
    files = redcap_rules.read(tmp_path)
    assert redcap_rules.check(files) == []
    rows = files.data
    by = {ds.name: ds for ds in datasets}
    for spec in exporting.DATASETS:
        if spec.instrument is None:
            continue
        mine = [r for r in rows if r["redcap_repeat_instrument"] == (spec.instrument.form if spec.instrument.repeating
                                                                      else "")]
        assert len(mine) == len(by[spec.name].rows), spec.name
        for record in {r["record_id"] for r in mine}:
            instances = [int(r["redcap_repeat_instance"] or 0) for r in mine if r["record_id"] == record]
            assert instances == (list(range(1, len(instances) + 1)) if spec.instrument.repeating else [0])
    itch = sorted(r["ci_itch"] for r in rows if r["redcap_repeat_instrument"] == "checkin")
    assert itch == sorted(("7", "", "2"))
    async with trial.db.transaction() as session:
        assert len((await session.scalars(select(Participant))).all()) == 2


# -- The rules check itself ---------------------------------------------------------------------------


def valid_files() -> redcap_rules.Files:
    """A small project that keeps every rule: a participant form, and a repeating visit form."""
    header = redcap_rules.DICTIONARY_HEADER

    def field(name: str, form: str, kind: str, choices: str = "", validation: str = "", low: str = "",
              high: str = "") -> dict[str, str]:
        values = {"Variable / Field Name": name, "Form Name": form, "Field Type": kind, "Field Label": name,
                  "Choices, Calculations, OR Slider Labels": choices, "Text Validation Type OR Show Slider Number":
                  validation, "Text Validation Min": low, "Text Validation Max": high}
        return {h: values.get(h, "") for h in header}

    dictionary = [field("record_id", "person", "text"), field("status", "person", "radio", "1, Active | 2, Ended"),
                  field("enrolled", "person", "text", validation="date_ymd", low="2026-01-01"),
                  field("itch", "visit", "text", validation="integer", low="0", high="10"),
                  field("flags", "visit", "checkbox", "1, Fever | 2, Rash"), field("ok", "visit", "yesno"),
                  field("at", "visit", "text", validation="datetime_seconds_ymd")]
    data_header = ["record_id", "redcap_repeat_instrument", "redcap_repeat_instance", "status", "enrolled",
                   "person_complete", "itch", "flags___1", "flags___2", "ok", "at", "visit_complete"]
    data = [dict(zip(data_header, row, strict=True)) for row in (
        ["P1", "", "", "1", "2026-11-24", "2", "", "", "", "", "", ""],
        ["P1", "visit", "1", "", "", "", "7", "1", "0", "1", "2026-11-24 15:00:00", "2"],
        ["P1", "visit", "2", "", "", "", "0", "0", "0", "0", "2026-11-25 15:00:00", "2"])]
    return redcap_rules.Files(list(header), dictionary, data_header, data, ["form_name", "custom_form_label"],
                              [{"form_name": "visit", "custom_form_label": ""}])


def _set(rows: list[dict], index: int, **values: str) -> list[dict]:
    rows[index].update(values)
    return rows


def _dd(files: redcap_rules.Files, index: int, column: str, value: str) -> redcap_rules.Files:
    files.dictionary[index][column] = value
    return files


# Each rule, broken once: the check must name that rule.
BREAKAGES = {
    "columns": lambda f: f.dictionary_header.reverse(),
    "field_name": lambda f: _dd(f, 3, "Variable / Field Name", "2itch"),
    "unique_field": lambda f: _dd(f, 6, "Variable / Field Name", "ok"),
    "form_name": lambda f: [_dd(f, i, "Form Name", "Visit Form") for i in range(3, 7)],
    "contiguous_form": lambda f: _dd(f, 5, "Form Name", "person"),
    "first_field": lambda f: f.dictionary.insert(0, f.dictionary.pop(1)),
    "reserved_name": lambda f: _dd(f, 5, "Variable / Field Name", "person_complete"),
    "field_type": lambda f: _dd(f, 5, "Field Type", "boolean"),
    "field_label": lambda f: _dd(f, 2, "Field Label", " "),
    "choices": lambda f: _dd(f, 1, "Choices, Calculations, OR Slider Labels", "Active | Ended"),
    "choice_codes": lambda f: _dd(f, 4, "Choices, Calculations, OR Slider Labels", "1, Fever | 1, Rash"),
    "validation": lambda f: _dd(f, 3, "Text Validation Type OR Show Slider Number", "whole_number"),
    "min_max": lambda f: (_dd(f, 3, "Text Validation Min", "10"), _dd(f, 3, "Text Validation Max", "0")),
    "yes_columns": lambda f: _dd(f, 0, "Identifier?", "yes"),
    "repeating_setup": lambda f: f.repeating.append({"form_name": "diary", "custom_form_label": ""}),
    "data_column": lambda f: f.data_header.append("itch_score"),
    "record": lambda f: _set(f.data, 1, record_id=""),
    "repeat": lambda f: _set(f.data, 2, redcap_repeat_instance="1"),
    "choice_value": lambda f: _set(f.data, 0, status="active"),
    "complete": lambda f: _set(f.data, 1, visit_complete="3"),
    "value_format": lambda f: _set(f.data, 0, enrolled="11/24/2026"),
    "value_range": lambda f: _set(f.data, 1, itch="11"),
}


def test_the_rules_check_passes_a_valid_project() -> None:
    assert redcap_rules.check(valid_files()) == []
    assert set(BREAKAGES) == set(redcap_rules.RULES), "every rule is shown to complain"


@pytest.mark.parametrize("rule", redcap_rules.RULES)
def test_each_rule_of_the_check_complains_about_what_it_forbids(rule: str) -> None:
    files = valid_files()
    BREAKAGES[rule](files)
    problems = redcap_rules.check(files)
    assert any(p.startswith(f"{rule}: ") for p in problems), problems
