"""study.toml: the shipped protocol is valid, and mistakes are reported by key."""

from __future__ import annotations

from pathlib import Path

import pytest

from study.protocol import ProtocolError, load_protocol

REPO = Path(__file__).resolve().parent.parent


def test_the_shipped_protocol_describes_this_trial() -> None:
    protocol = load_protocol(REPO / "study.toml")
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
    ],
)
def test_each_mistake_names_its_key(tmp_path: Path, change: tuple[str, str], key: str) -> None:
    text = (REPO / "study.toml").read_text()
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
