"""study.toml: the shipped protocol is valid, and mistakes are reported by key."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from study.protocol import (
    CONFIRMED_SECTIONS,
    EXAMPLE_PROTOCOL,
    EXAMPLE_SCREENING,
    Protocol,
    ProtocolError,
    load_protocol,
)
from tests.study_files import confirmed, write_study_file

REPO = Path(__file__).resolve().parent.parent


def test_the_shipped_protocol_describes_this_trial() -> None:
    protocol = load_protocol(EXAMPLE_PROTOCOL)
    assert protocol.study.phone == "216 445-8776"
    assert protocol.study.email == "dermatologyresearch@ccf.org"
    assert protocol.treatment.applications_per_day == 2
    assert [t.strftime("%H:%M") for t in protocol.default_reminder_times] == ["08:00", "20:00"]
    assert protocol.study.languages == ["en", "es"]


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (('applications_per_day = 2', 'applications_per_day = 0'), "treatment.applications_per_day"),
        (('languages = ["en", "es"]', 'languages = ["english"]'), "study.languages[0]"),
        (('default_timezone = "America/New_York"', 'default_timezone = "New York"'), "study.default_timezone"),
        (('undo_minutes = 15', 'undo_minutes = "soon"'), "diary.undo_minutes"),
        (('where = "home"', 'where = "pharmacy"'), "pregnancy_tests.where"),
        (('[diary]', '[diary]\nunexpected = 1'), "diary.unexpected"),
        (('anchor_visit = "baseline"', 'anchor_visit = "screening"'), "pregnancy_tests.anchor_visit"),
        (('during = ["on_treatment", "interrupted", "off_treatment"]', 'during = ["paused"]'),
         "pregnancy_tests.during"),
    ],
)
def test_each_mistake_names_its_key(tmp_path: Path, change: tuple[str, str], key: str) -> None:
    text = EXAMPLE_PROTOCOL.read_text()
    assert change[0] in text
    path = tmp_path / "study.toml"
    path.write_text(text.replace(change[0], change[1], 1))
    with pytest.raises(ProtocolError) as error:
        load_protocol(path)
    assert key in str(error.value)


def test_missing_and_malformed_files_are_explained(tmp_path: Path) -> None:
    with pytest.raises(ProtocolError, match="not found"):
        load_protocol(tmp_path / "nope.toml")
    (tmp_path / "bad.toml").write_text("[study\nname=")
    with pytest.raises(ProtocolError, match="not valid TOML"):
        load_protocol(tmp_path / "bad.toml")


# -- The red-flag screening ([safety] screening_file) ---------------------------------------------


def _copy_study(tmp_path: Path, old: str = "", new: str = "", *, screening: str | None = None) -> Path:
    text = EXAMPLE_PROTOCOL.read_text()
    if old:
        assert old in text
        text = text.replace(old, new, 1)
    (tmp_path / "study.toml").write_text(text)
    (tmp_path / "screening.toml").write_text(screening if screening is not None
                                             else EXAMPLE_SCREENING.read_text(encoding="utf-8"),
                                             encoding="utf-8")
    return tmp_path / "study.toml"


def test_the_protocol_loads_the_screening_next_to_it() -> None:
    protocol = load_protocol(EXAMPLE_PROTOCOL)
    assert protocol.safety.screening_file == "screening.toml"
    assert (protocol.safety.emergency_number, protocol.safety.crisis_line) == ("911", "988")
    assert set(protocol.safety.red_flags) <= set(protocol.screener.flags)
    assert protocol.screener.screen("I can't breathe").emergency
    assert protocol.model_copy().screener is protocol.screener  # copies keep it (tests use model_copy)


def test_a_protocol_not_built_by_load_protocol_says_so() -> None:
    protocol = load_protocol(EXAMPLE_PROTOCOL)
    bare = Protocol.model_validate(protocol.model_dump())
    with pytest.raises(ProtocolError, match="load_protocol"):
        _ = bare.screener


def test_a_red_flag_button_that_is_not_a_screening_flag_is_named(tmp_path: Path) -> None:
    path = _copy_study(tmp_path, '"blistering_rash", "pregnancy_positive"]', '"blistering_rash", "pregnancy_test"]')
    with pytest.raises(ProtocolError, match=r"safety\.red_flags\[6\]: 'pregnancy_test' is not a flag of screening\.toml"):
        load_protocol(path)


def test_a_missing_or_broken_screening_file_is_named(tmp_path: Path) -> None:
    path = _copy_study(tmp_path, 'screening_file = "screening.toml"', 'screening_file = "words.toml"')
    with pytest.raises(ProtocolError, match=r"safety\.screening_file: screening file not found: .*words\.toml"):
        load_protocol(path)
    shipped = EXAMPLE_SCREENING.read_text(encoding="utf-8")
    broken = shipped.replace('action = "emergency"', 'action = "urgent"', 1)
    path = _copy_study(tmp_path, screening=broken)
    with pytest.raises(ProtocolError, match=r"safety\.screening_file: .*flag\[2\] \(breathing_chest\)\.action"):
        load_protocol(path)


def test_the_emergency_number_and_crisis_line_are_short_numbers(tmp_path: Path) -> None:
    path = _copy_study(tmp_path, 'crisis_line = "988"', 'crisis_line = "call your mum"')
    with pytest.raises(ProtocolError, match=r"safety\.crisis_line"):
        load_protocol(path)
    path = _copy_study(tmp_path, 'emergency_number = "911"', 'emergency_number = "112"')
    assert load_protocol(path).safety.emergency_number == "112"


# -- [protocol]: the site's confirmation against the approved protocol ---------------------------


def test_the_shipped_file_is_an_unconfirmed_example() -> None:
    protocol = load_protocol(EXAMPLE_PROTOCOL)
    assert protocol.protocol.example
    assert protocol.unconfirmed_keys() == ["protocol.version", "protocol.confirmed_by", "protocol.confirmed_on",
                                           "protocol.example"]
    problem = protocol.confirmation_problem("study.toml")
    assert problem is not None and "\n" not in problem
    assert problem.startswith("study.toml is the shipped example, not confirmed for this study: set protocol.version, "
                              "protocol.confirmed_by, protocol.confirmed_on and protocol.example = false after checking "
                              "[visits], [pregnancy_tests], [checkins], [reminders], [treatment] and [safety] against "
                              "the approved protocol")


def test_a_confirmed_copy_names_nothing_to_confirm(tmp_path: Path) -> None:
    protocol = load_protocol(write_study_file(tmp_path))
    assert protocol.protocol.version == "2.0, 2026-10-01"
    assert protocol.protocol.confirmed_by == "Dana Lee"
    assert protocol.protocol.confirmed_on == date(2026, 10, 2)
    assert not protocol.protocol.example
    assert protocol.unconfirmed_keys() == [] and protocol.confirmation_problem(tmp_path / "study.toml") is None
    # Everything else is the shipped protocol.
    assert protocol.model_dump(exclude={"protocol"}) == load_protocol(EXAMPLE_PROTOCOL).model_dump(exclude={"protocol"})


def test_each_missing_confirmation_is_named(tmp_path: Path) -> None:
    text = confirmed(EXAMPLE_PROTOCOL.read_text())
    path = write_study_file(tmp_path, text.replace('confirmed_by = "Dana Lee"', 'confirmed_by = "   "'))
    protocol = load_protocol(path)
    assert protocol.unconfirmed_keys() == ["protocol.confirmed_by"]
    assert (protocol.confirmation_problem("s.toml") or "").startswith(
        "s.toml is not confirmed for this study: set protocol.confirmed_by after checking [visits]")
    path = write_study_file(tmp_path, text.replace("\nexample = false", "\nexample = true"))
    protocol = load_protocol(path)
    assert protocol.unconfirmed_keys() == ["protocol.example"]
    assert "set protocol.example = false after" in (protocol.confirmation_problem("s.toml") or "")


def test_a_file_without_the_section_is_unconfirmed(tmp_path: Path) -> None:
    text = EXAMPLE_PROTOCOL.read_text()
    start = text.index("[protocol]\n")
    without = text[:start] + text[text.index("[study]\n"):]
    protocol = load_protocol(write_study_file(tmp_path, without))
    assert protocol.protocol.example and len(protocol.unconfirmed_keys()) == 4


def test_a_confirmation_date_may_be_quoted(tmp_path: Path) -> None:
    text = confirmed(EXAMPLE_PROTOCOL.read_text()).replace("confirmed_on = 2026-10-02", 'confirmed_on = "2026-10-02"')
    assert load_protocol(write_study_file(tmp_path, text)).protocol.confirmed_on == date(2026, 10, 2)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("\nexample = false", '\nexample = "maybe"', "protocol.example"),
        ("confirmed_on = 2026-10-02", 'confirmed_on = "02/10/2026"', "protocol.confirmed_on: Value error, '02/10/2026' is not a date"),
        ("confirmed_on = 2026-10-02", "confirmed_on = 2026-10-02T09:30:00", "protocol.confirmed_on: Value error, give the day only"),
        ("confirmed_on = 2026-10-02", "confirmed_on = 20261002", "protocol.confirmed_on: Value error, 20261002 is not a date"),
        ('version = "2.0, 2026-10-01"', "version = 2.0", "protocol.version"),
        ('confirmed_by = "Dana Lee"', f'confirmed_by = "{"x" * 101}"', "protocol.confirmed_by"),
        ("\nexample = false", "\nexample = false\nsigned = true", "protocol.signed"),
    ],
)
def test_a_malformed_protocol_section_names_the_key(tmp_path: Path, old: str, new: str, message: str) -> None:
    text = confirmed(EXAMPLE_PROTOCOL.read_text())
    assert old in text
    with pytest.raises(ProtocolError) as error:
        load_protocol(write_study_file(tmp_path, text.replace(old, new, 1)))
    assert message in str(error.value)


def test_the_refusal_points_at_steps_that_exist() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    steps = readme[readme.index("\n## Running it for real\n"):]
    steps = steps[:steps.index("\n## ", 1)]
    assert "[protocol]" in steps and "example = false" in steps
    assert all(f"`[{name}]`" in steps for name in CONFIRMED_SECTIONS)
