"""What enters the study is checked where it enters (issue 17): a time zone is an IANA
Area/Location name (or UTC), never an abbreviation, a fixed offset or an old name, and a refusal
says what may have been meant; a study id is read in capitals (p001 is P001, one participant);
a participant who does not exist is an error, not an empty answer. On the command line, in
study.toml, and in the study team's Telegram commands alike."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from study import participants, zones
from study.models import Participant, StaffRequest
from study.protocol import EXAMPLE_PROTOCOL, ProtocolError, load_protocol
from tests.study_files import write_study_file
from tests.test_enrolment_chat import press, say
from tests.trial import Trial

pytestmark = pytest.mark.timeout(120)
REPO = Path(__file__).resolve().parent.parent


# --- time zones --------------------------------------------------------------------------------

@pytest.mark.parametrize(("typed", "zone"), [
    ("America/New_York", "America/New_York"), ("america/new york", "America/New_York"),
    (" Europe/Madrid ", "Europe/Madrid"), ("Asia/Kolkata", "Asia/Kolkata"), ("UTC", "UTC"), ("utc", "UTC"),
    ("Etc/UTC", "Etc/UTC"), ("America/Argentina/Buenos_Aires", "America/Argentina/Buenos_Aires"),
])
def test_area_location_names_and_utc_are_taken_as_iana_spells_them(typed: str, zone: str) -> None:
    assert zones.check(typed) == zone


@pytest.mark.parametrize(("typed", "problem", "first", "also"), [
    ("EST", zones.ABBREVIATION, "America/New_York", "America/Toronto"),
    ("est", zones.ABBREVIATION, "America/New_York", "America/Toronto"),
    ("EST5EDT", zones.ABBREVIATION, "America/New_York", "America/Toronto"),
    ("PST", zones.ABBREVIATION, "America/Los_Angeles", "America/Vancouver"),
    ("CET", zones.ABBREVIATION, "Europe/Paris", "Europe/Madrid"),
    ("GMT+5", zones.OFFSET, "Asia/Karachi", "Asia/Tashkent"),
    ("UTC+5", zones.OFFSET, "Asia/Karachi", "Asia/Tashkent"),
    ("UTC+05:30", zones.OFFSET, "Asia/Kolkata", "Asia/Colombo"),
    ("Etc/GMT+5", zones.OFFSET, "America/New_York", "America/Bogota"),  # POSIX: Etc/GMT+5 is UTC-5
    ("GMT", zones.OFFSET, "Europe/London", "Africa/Abidjan"),
    ("US/Eastern", zones.LEGACY, "America/New_York", None),
    ("GB", zones.LEGACY, "Europe/London", None),
    ("America/New_Yrok", zones.UNKNOWN, "America/New_York", None),
    ("Madird", zones.UNKNOWN, "Europe/Madrid", None),
])
def test_names_that_only_look_like_zones_are_refused_with_the_zones_they_may_mean(
        typed: str, problem: str, first: str, also: str | None) -> None:
    answer = zones.read(typed)
    assert (answer.zone, answer.problem, answer.suggestions[0]) == (None, problem, first)
    assert also is None or also in answer.suggestions
    assert 0 < len(answer.suggestions) <= zones.MAX_SUGGESTIONS
    assert all(zones.check(zone) == zone for zone in answer.suggestions), "only zones it takes are suggested"
    with pytest.raises(zones.ZoneError) as refused:
        zones.check(typed)
    assert refused.value.answer == answer and first in str(refused.value)


def test_an_offset_says_what_it_stands_for_and_an_old_link_is_not_suggested_twice() -> None:
    assert zones.read("Etc/GMT+5").offset == timedelta(hours=-5)
    assert "(UTC-05:00)" in zones.read("Etc/GMT+5").explain()
    assert "Asia/Calcutta" not in zones.read("+05:30").suggestions, "Asia/Kolkata's old name: the same rules"
    assert zones.read("Mars/Olympus").suggestions == ()
    assert "not a known time zone" in zones.read("Mars/Olympus").explain()


@pytest.mark.parametrize(("old", "new", "key", "says"), [
    ('default_timezone = "America/New_York"', 'default_timezone = "EST"', "study.default_timezone",
     "America/New_York"),
    ('common_timezones = ["America/New_York",', 'common_timezones = ["US/Eastern",', "enrolment.common_timezones",
     "use America/New_York"),
    ('default_timezone = "America/New_York"', 'default_timezone = "Etc/GMT+5"', "study.default_timezone",
     "fixed offset"),
])
def test_study_toml_takes_only_real_zones(tmp_path: Path, old: str, new: str, key: str, says: str) -> None:
    text = EXAMPLE_PROTOCOL.read_text()
    assert old in text
    (tmp_path / "study.toml").write_text(text.replace(old, new, 1))
    with pytest.raises(ProtocolError) as error:
        load_protocol(tmp_path / "study.toml")
    assert key in str(error.value) and says in str(error.value)


def test_study_toml_zones_are_kept_as_iana_spells_them(tmp_path: Path) -> None:
    text = EXAMPLE_PROTOCOL.read_text()
    text = text.replace('default_timezone = "America/New_York"', 'default_timezone = "america/new_york"', 1)
    protocol = load_protocol(write_study_file(tmp_path, text.replace('common_timezones = ["America/New_York",',
                                                                     'common_timezones = ["america/new york",', 1)))
    assert protocol.study.default_timezone == "America/New_York"
    assert protocol.enrolment.common_timezones[0] == "America/New_York"


# --- study ids ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("typed", "stored"), [("P001", "P001"), ("p001", "P001"), (" P001 ", "P001"),
                                               ("site1-arm_2", "SITE1-ARM_2"), ("x" * 32, "X" * 32)])
def test_a_study_id_is_read_trimmed_and_in_capitals(typed: str, stored: str) -> None:
    assert participants.check_study_id(typed) == stored


@pytest.mark.parametrize("typed", ["", "   ", "P 001", "P.001", "-P001", "_P001", "x" * 33, "PÉ01", "P001;"])
def test_what_cannot_be_a_study_id_is_refused_saying_what_one_is(typed: str) -> None:
    with pytest.raises(participants.EnrolmentError, match="cannot be a study id: use 1 to 32 letters") as refused:
        participants.check_study_id(typed)
    assert refused.value.code == "study_id"


# --- the command line --------------------------------------------------------------------------

def test_enrol_refuses_an_abbreviation_saying_which_zones_it_may_mean(cli) -> None:
    refused = cli("enroll", "P001", "--timezone", "EST", "--language", "en")
    assert refused.exit_code == 2
    assert refused.output.strip().splitlines() == [(
        "'EST' is an abbreviation, not a time zone: it does not follow a place's summer time. Use the "
        "participant's Area/Location zone, e.g. America/New_York, America/Toronto or America/Detroit")]
    for zone in ("PST", "CET", "GMT+5", "Etc/GMT+5", "US/Eastern", "EST5EDT", "America/New_Yrok"):
        result = cli("enroll", "P001", "--timezone", zone, "--language", "en")
        assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, (zone, result.output)
    assert "No participant P001." in cli("visits", "list", "P001").output, "nothing was enrolled"
    enrolled = cli("enroll", "P001", "--timezone", "america/new york", "--language", "en")
    assert enrolled.exit_code == 0 and "Enrolled P001 (America/New_York, en)." in enrolled.output


def test_a_study_id_is_one_participant_whatever_its_case(cli) -> None:
    enrolled = cli("enroll", "p001", "--timezone", "America/New_York", "--language", "en")
    assert enrolled.exit_code == 0 and "Enrolled P001" in enrolled.output and "Invite for P001" in enrolled.output
    for typed in ("P001", " P001 ", "p001"):
        again = cli("enroll", typed, "--timezone", "America/New_York", "--language", "en")
        assert (again.exit_code, again.output.strip()) == (2, "Not enrolled: P001 is already enrolled"), typed
    bad = cli("enroll", "P 001", "--timezone", "America/New_York", "--language", "en")
    assert bad.exit_code == 2 and "'P 001' cannot be a study id" in bad.output
    assert cli("participant", "timezone", "p001", "europe/madrid").output.strip() == "P001 is now in Europe/Madrid."
    shown = cli("audit", "show", "--participant", "p001")
    assert shown.exit_code == 0 and '"timezone": "Europe/Madrid"' in shown.output
    assert cli("treatment", "show", "p001").output.startswith("P001: on treatment")
    assert cli("visits", "list", "p001").exit_code == 0


def test_moving_a_participant_to_a_zone_that_is_not_one_is_refused(cli) -> None:
    assert cli("enroll", "P001", "--timezone", "America/New_York", "--language", "en").exit_code == 0
    for zone, says in (("GMT+5", "'GMT+5' is a fixed offset (UTC+05:00)"), ("US/Eastern", "use America/New_York"),
                       ("EST", "America/New_York")):
        result = cli("participant", "timezone", "P001", zone)
        assert result.exit_code == 2 and says in result.output, zone
    assert '"timezone": "America/New_York"' in cli("audit", "show", "--participant", "P001").output


@pytest.mark.parametrize("command", [
    ("audit", "show", "--participant", "P999"), ("deliveries", "P999"), ("visits", "list", "P999"),
    ("visits", "done", "P999", "week4"), ("treatment", "show", "P999"),
    ("treatment", "interrupt", "P999", "--reason", "other"), ("correct", "list", "P999"),
    ("correct", "entry", "P999", "1", "--withdraw", "--reason", "x"), ("participant", "pause", "P999"),
    ("participant", "timezone", "P999", "Europe/Madrid"), ("messages", "sent", "--participant", "P999"),
    ("messages", "preview", "reminder_application", "--participant", "P999"), ("invite", "P999"),
    ("audit", "show", "--participant", "p999"),
])
def test_a_participant_who_does_not_exist_is_one_line_and_exit_code_2(cli, command: tuple[str, ...]) -> None:
    assert cli("enroll", "P001", "--timezone", "America/New_York", "--language", "en").exit_code == 0
    result = cli(*command)
    assert result.exit_code == 2, result.output
    [line] = result.output.strip().splitlines()
    assert line.startswith("No participant P999."), line


# --- the study team in Telegram ----------------------------------------------------------------

async def test_timezone_in_telegram_refuses_abbreviations_offsets_and_old_names(trial: Trial) -> None:
    await trial.join("P001", user_id=2001)
    dana = await trial.add_staff(5005, name="Dana")
    await say(dana, "/timezone P001 EST")
    told = dana.last_bot_message.text
    assert "“EST” is an abbreviation, not a time zone" in told
    assert "/timezone P001 America/New_York" in told and "/timezone P001 America/Toronto" in told
    await say(dana, "/timezone p001 GMT+5")
    assert "“GMT+5” is a fixed offset from UTC" in dana.last_bot_message.text
    assert "/timezone P001 Asia/Karachi" in dana.last_bot_message.text
    await say(dana, "/timezone P001 US/Eastern")
    assert "“US/Eastern” is an old name" in dana.last_bot_message.text
    assert "/timezone P001 America/New_York" in dana.last_bot_message.text
    async with trial.db.read() as session:
        assert (await session.scalars(select(StaffRequest))).all() == [], "nothing was asked for"
    await say(dana, "/timezone p001 europe/london")  # any case: the zone as IANA spells it
    assert "move them from America/New_York to Europe/London" in dana.last_bot_message.text
    await press(dana, "✅ Confirm")
    assert (await trial.participant()).timezone == "Europe/London"


async def test_staff_commands_read_study_ids_in_capitals_and_name_an_unknown_one(trial: Trial) -> None:
    await trial.join("P001", user_id=2001)
    dana = await trial.add_staff(5005, name="Dana")
    await say(dana, "/visits p001")
    assert "P001" in dana.last_bot_message.text and "No visits planned yet" in dana.last_bot_message.text
    for command in ("/visits p999", "/deliveries p999", "/pause p999", "/timezone p999 Europe/Madrid"):
        await say(dana, command)
        assert dana.last_bot_message.text == "There is no participant P999.", command
    await say(dana, "/treatment p999")
    assert "P999" in dana.last_bot_message.text and "p999" not in dana.last_bot_message.text
    await say(dana, "/enroll p001")
    assert "P001 is already enrolled" in dana.last_bot_message.text


async def test_enroll_in_telegram_stores_the_id_in_capitals_and_refuses_a_zone_that_is_not_one(
        trial: Trial) -> None:
    dana = await trial.add_staff(5005, name="Dana")
    await say(dana, "/enroll p002")
    assert "Which time zone does P002 live in?" in dana.last_bot_message.text
    await say(dana, "EST")
    question = dana.last_bot_message
    assert "“EST” is an abbreviation, not a time zone" in question.text and "Did you mean one of these?" in question.text
    assert question.button_labels[:3] == ["🕒 America/New_York", "🕒 America/Toronto", "🕒 America/Detroit"]
    await say(dana, "UTC+1")
    assert "“UTC+1” is a fixed offset from UTC" in dana.last_bot_message.text
    await press(dana, "🕒 Europe/Madrid")
    assert "In which language should P002" in dana.last_bot_message.text
    await press(dana, "English")
    await press(dana, "No")
    await press(dana, "⏰ 08:00,20:00 (the protocol's times)")
    await press(dana, "✅ Confirm")
    async with trial.db.read() as session:
        person = await session.scalar(select(Participant))
    assert (person.study_id, person.timezone) == ("P002", "Europe/Madrid")
