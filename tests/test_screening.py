"""study/screening.py: normalisation, negation scope, every example of the brief, the order of
actions, the loader's refusals, speed, and robustness to any text (hypothesis)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from study.protocol import EXAMPLE_SCREENING
from study.screening import (
    URGENCY,
    Action,
    Screener,
    Screening,
    ScreeningFileError,
    most_urgent_first,
    normalise,
)

REPO = Path(__file__).resolve().parent.parent
SCREENER = Screener.load(EXAMPLE_SCREENING)
BUTTON_FLAGS = ["fever", "skin_infection", "breathing_chest", "leg_swelling", "weakness_speech",
                "blistering_rash", "pregnancy_positive"]
REQUIRED_FLAGS = [*BUTTON_FLAGS, "infection_signs", "shingles", "bleeding_bruising", "skin_lesion", "muscle_weakness", "swallowing", "skin_ulcer", "self_harm"]


def flags(text: str) -> tuple[str, ...]:
    return SCREENER.screen(text).flags


# -- normalisation --------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("FIEBRE", "fiebre"),
    ("Respiración", "respiracion"),
    ("fe\u200bver", "fever"),
    ("fe\u00adver\ufeff", "fever"),
    ("I can’t breathe", "i cant breathe"),
    ("I can´t breathe", "i cant breathe"),
    ("I'm", "im"),
    ("no fever, no infection; fine!", "no fever , no infection . fine"),
    ("¿Fiebre?  No.", "fiebre . no"),
    ("line one\nline two", "line one . line two"),
    ("short-of-breath 🙁", "short of breath"),
    ("38.5 and 38,5", "38.5 and 38,5"),
    ("ﬁne ＦＥＶＥＲ", "fine fever"),
    ("a\x00b\x07c", "abc"),
    ("  ,, . hello ,  ", "hello"),
    ("", ""),
])
def test_normalise(text: str, expected: str) -> None:
    assert normalise(text) == expected


# -- the brief's examples -------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "flag"), [
    ("chest pains", "breathing_chest"),
    ("I cant breathe", "breathing_chest"),
    ("I can not breathe", "breathing_chest"),
    ("I cannot breathe", "breathing_chest"),
    ("my legs are swollen", "leg_swelling"),
    ("swollen legs", "leg_swelling"),
    ("fe\u200bver", "fever"),
    ("I can't climb stairs, my muscles are so weak", "muscle_weakness"),
    ("I choke when I swallow", "swallowing"),
    ("new cough and I get breathless walking", "infection_signs"),
    ("new cough and I get breathless walking", "breathing_chest"),
    ("I think I have shingles", "shingles"),
    ("bruises I can't explain", "bleeding_bruising"),
    ("my calf is swollen and painful", "leg_swelling"),
    ("my leg is very swollen", "leg_swelling"),
    ("swelling in my left leg", "leg_swelling"),
    ("me cuesta respirar", "breathing_chest"),
    ("me ahogo al tragar", "swallowing"),
    ("I want to end my life", "self_harm"),
    ("no puedo respirar", "breathing_chest"),
    ("bruising", "bleeding_bruising"), ("bruised", "bleeding_bruising"),
    ("breathing is hard", "breathing_chest"), ("coughing", "infection_signs"), ("coughs", "infection_signs"),
    ("blisters", "blistering_rash"), ("shortnes of breath", "breathing_chest"),
    ("trouble brething", "breathing_chest"), ("infecshun", "skin_infection"), ("swolen leg", "leg_swelling"),
    ("diarrea", "infection_signs"), ("diarhea", "infection_signs"), ("diarrhoea", "infection_signs"),
    ("diarrhea", "infection_signs"), ("vomitting", "infection_signs"), ("fevr", "fever"), ("feaver", "fever"),
    ("me cuesta resprar", "breathing_chest"), ("fievre", "fever"), ("respiracion agitada", "breathing_chest"),
    ("pierna inchada", "leg_swelling"), ("pierna hinchada", "leg_swelling"),
])
def test_the_brief_examples_raise_their_flag(text: str, flag: str) -> None:
    assert flag in flags(text), (text, SCREENER.screen(text))


@pytest.mark.parametrize(("text", "code"), [
    ("kill myself", "self_harm"), ("suicide", "self_harm"), ("suicidal", "self_harm"), ("want to die", "self_harm"),
    ("better off dead", "self_harm"), ("hurt myself", "self_harm"), ("no quiero vivir", "self_harm"),
    ("quitarme la vida", "self_harm"), ("matarme", "self_harm"), ("suicidarme", "self_harm"),
    ("hacerme daño", "self_harm"), ("quiero morir", "self_harm"), ("quiero morirme", "self_harm"),
])
def test_self_harm_is_a_crisis(text: str, code: str) -> None:
    result = SCREENER.screen(text)
    assert result.flags == (code,) and result.actions == (Action.CRISIS,) and result.emergency and result.alert


def test_the_old_exact_phrase_list_missed_these_and_raised_911_here() -> None:
    result = SCREENER.screen("no fever, no infection, everything is fine")
    assert result.flags == () and set(result.negated) == {"fever", "skin_infection"}
    assert not result.emergency and not result.alert and result.actions == ()


# -- negation scope -------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "affirmed", "negated"), [
    ("I don't have a fever but my chest hurts", {"breathing_chest"}, {"fever"}),
    ("not pregnant", set(), {"pregnancy_positive"}),
    ("I'm not pregnant", set(), {"pregnancy_positive"}),
    ("no estoy embarazada", set(), {"pregnancy_positive"}),
    ("no pain today", set(), set()),
    ("the itch is killing me", set(), set()),
    ("I can't breathe", {"breathing_chest"}, set()),
    ("no puedo respirar", {"breathing_chest"}, set()),
    ("no tengo fiebre y no puedo respirar", {"breathing_chest"}, {"fever"}),
    ("sin fiebre", set(), {"fever"}),
    ("no tengo dolor de pecho", set(), {"breathing_chest"}),
    ("No chest pain or shortness of breath", set(), {"breathing_chest"}),
    ("Fever? No.", set(), {"fever"}),
    ("Fever? No idea, I feel hot", {"fever"}, set()),
    ("no fever and my chest hurts", {"breathing_chest"}, {"fever"}),  # "and" ends the scope
    ("no fever, chills", {"fever"}, set()),  # a comma ends it: chills (fever flag) affirmed
    ("I'm not sure if it's a fever", {"fever"}, set()),  # pseudo-negation
    ("no sé si es fiebre", {"fever"}, set()),
    ("my leg isn't swollen anymore", set(), {"leg_swelling"}),  # cue inside the term's gap
    ("I did not expect that after the cream on my arm my chest would hurt", {"breathing_chest"}, set()),
    ("never had shingles", set(), {"shingles"}),
    ("ya no tengo fiebre", set(), {"fever"}),
    ("ni fiebre ni escalofrios", set(), {"fever"}),
    ("I'm not suicidal", {"self_harm"}, set()),  # self-harm is never negated
])
def test_negation_scope(text: str, affirmed: set[str], negated: set[str]) -> None:
    result = SCREENER.screen(text)
    assert set(result.flags) == affirmed, result
    assert set(result.negated) == negated, result
    for hit in result.hits:
        assert hit.flag in (result.negated if hit.negated else result.flags) or hit.flag in result.flags


@pytest.mark.parametrize("text", ["fewer spots this week", "never better", "I'm dying to see the results",
                                  "breathing exercises help", "me muero de risa", "no veo la hora",
                                  "I'm confused about the visit time", "push the button", "the fever blister is gone"])
def test_look_alikes_raise_nothing_urgent(text: str) -> None:
    assert not SCREENER.screen(text).emergency
    assert "fever" not in flags(text)


def test_fuzzy_neighbours_of_fever_never_match() -> None:
    for word in ("fewer", "never", "fiver", "clever", "fever's"):
        expected = ("fever",) if word == "fever's" else ()
        assert flags(word) == expected, word


def test_a_spanish_speaker_writing_english_and_the_reverse() -> None:
    assert flags("tengo chest pain") == ("breathing_chest",)
    assert flags("I have fiebre") == ("fever",)


def test_hits_name_the_files_phrase_and_language() -> None:
    result = SCREENER.screen("Tengo FIEBRE")
    assert [(h.flag, h.term, h.language, h.negated) for h in result.hits] == [("fever", "fiebre*", "es", False)]


# -- actions --------------------------------------------------------------------------------------


def test_urgency_order_and_most_urgent_first() -> None:
    assert URGENCY == (Action.EMERGENCY, Action.CRISIS, Action.STOP_CREAM_CALL_TODAY, Action.CALL_TODAY,
                       Action.MESSAGE_TEAM)
    assert most_urgent_first([Action.MESSAGE_TEAM, Action.CALL_TODAY, Action.EMERGENCY, Action.CALL_TODAY]) == (
        Action.EMERGENCY, Action.CALL_TODAY, Action.MESSAGE_TEAM)
    assert most_urgent_first([]) == ()


def test_flags_and_actions_come_most_urgent_first() -> None:
    result = SCREENER.screen("I have a fever, I'm pregnant, a new mole and chest pain, and I want to die")
    assert result.flags[:3] == ("breathing_chest", "self_harm", "pregnancy_positive")
    assert result.flags[3:] == ("fever", "skin_lesion")
    assert result.actions == (Action.EMERGENCY, Action.CRISIS, Action.STOP_CREAM_CALL_TODAY, Action.CALL_TODAY,
                              Action.MESSAGE_TEAM)
    assert result.emergency and result.alert


def test_a_message_team_flag_does_not_alert() -> None:
    result = SCREENER.screen("there's a new mole on my back")
    assert result.flags == ("skin_lesion",) and result.actions == (Action.MESSAGE_TEAM,)
    assert not result.alert and not result.emergency
    assert not SCREENER.flags["skin_lesion"].alerts and SCREENER.flags["fever"].alerts


def test_a_screening_built_by_hand_alerts_by_its_actions() -> None:
    assert Screening((), ("fever",), (), (Action.CALL_TODAY,)).alert
    assert not Screening((), ("skin_lesion",), (), (Action.MESSAGE_TEAM,)).alert


def test_actions_for_buttons_and_labels() -> None:
    assert SCREENER.actions_for(["fever", "leg_swelling", "fever"]) == (Action.EMERGENCY, Action.CALL_TODAY)
    assert SCREENER.actions_for([]) == ()
    assert SCREENER.actions_for(["pregnancy_positive"]) == (Action.STOP_CREAM_CALL_TODAY,)
    assert SCREENER.label("breathing_chest") == "shortness of breath or chest pain"
    with pytest.raises(KeyError, match="other"):
        SCREENER.actions_for(["other"])
    with pytest.raises(KeyError):
        SCREENER.label("nope")


# -- the shipped file -----------------------------------------------------------------------------


def test_the_shipped_file_has_every_required_flag_with_its_action_and_language_parity() -> None:
    assert SCREENER.languages == ("en", "es")
    assert set(REQUIRED_FLAGS) <= set(SCREENER.flags)
    assert list(SCREENER.flags)[:7] == BUTTON_FLAGS
    expected = {"fever": Action.CALL_TODAY, "skin_infection": Action.CALL_TODAY,
                "breathing_chest": Action.EMERGENCY, "leg_swelling": Action.EMERGENCY,
                "weakness_speech": Action.EMERGENCY, "blistering_rash": Action.CALL_TODAY,
                "pregnancy_positive": Action.STOP_CREAM_CALL_TODAY, "infection_signs": Action.CALL_TODAY,
                "shingles": Action.CALL_TODAY, "bleeding_bruising": Action.CALL_TODAY,
                "skin_lesion": Action.MESSAGE_TEAM, "muscle_weakness": Action.CALL_TODAY,
                "swallowing": Action.CALL_TODAY, "skin_ulcer": Action.CALL_TODAY, "self_harm": Action.CRISIS}
    for code, action in expected.items():
        assert SCREENER.flags[code].action is action, code
    for flag in SCREENER.flags.values():
        assert set(flag.terms) == {"en", "es"} and all(flag.terms[lang] for lang in ("en", "es")), flag.code
        assert flag.alerts == (flag.action is not Action.MESSAGE_TEAM), flag.code


# -- the loader's refusals ------------------------------------------------------------------------

GOOD = """
languages = ["en", "es"]
[negation]
window = 5
[negation.en]
cues = ["no"]
[negation.es]
cues = ["no"]
[variants.en]
fevr = "fever"
[[flag]]
code = "fever"
label = "fever"
action = "call_today"
why = "test"
terms.en = ["fever"]
terms.es = ["fiebre"]
"""


def _load(tmp_path: Path, text: str) -> Screener:
    path = tmp_path / "screening.toml"
    path.write_text(text, encoding="utf-8")
    return Screener.load(path)


def test_a_small_good_file_loads(tmp_path: Path) -> None:
    screener = _load(tmp_path, GOOD)
    assert screener.screen("I have a fevr").flags == ("fever",)
    assert screener.screen("no fiebre").negated == ("fever",)


def test_a_flag_with_terms_in_one_language_only_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ScreeningFileError, match=r"flag\[0\] \(fever\)\.terms\.es: missing"):
        _load(tmp_path, GOOD.replace('terms.es = ["fiebre"]\n', ""))
    with pytest.raises(ScreeningFileError, match=r"terms\.es: is empty"):
        _load(tmp_path, GOOD.replace('terms.es = ["fiebre"]', "terms.es = []"))


@pytest.mark.parametrize(("change", "key"), [
    (('action = "call_today"', 'action = "call_tomorrow"'), r"flag\[0\] \(fever\)\.action"),
    (('code = "fever"', 'code = "Fever!"'), r"flag\[0\]\.code"),
    (('code = "fever"', 'code = "a_code_much_too_long_for_buttons"'), r"flag\[0\]\.code"),
    (('terms.en = ["fever"]', 'terms.en = ["fever"]\nterms.fr = ["fievre"]'), r"terms\.fr"),
    (('why = "test"', 'why = ""'), r"\(fever\)\.why"),
    (('why = "test"', 'why = "test"\nalerts = "yes"'), r"\(fever\)\.alerts"),
    (('why = "test"', 'why = "test"\ncolour = "red"'), r"flag\[0\]\.colour: unknown key"),
    (('terms.en = ["fever"]', 'terms.en = ["fever .."]'), r"terms\.en\[0\]"),
    (('terms.en = ["fever"]', 'terms.en = ["fevr"]'), r"misspelling"),
    (('terms.en = ["fever"]', 'terms.en = ["f*"]'), r"terms\.en\[0\]"),
    (('[negation.es]\ncues = ["no"]', ''), r"negation\.es: missing"),
    (('window = 5', 'window = 50'), r"negation\.window"),
    (('fevr = "fever"', 'fevr = "fevr"'), r"variants\.en\.fevr"),
    (('languages = ["en", "es"]', 'languages = ["en", "es"]\nextra = 1'), r"extra: unknown key"),
])
def test_each_mistake_names_its_key(tmp_path: Path, change: tuple[str, str], key: str) -> None:
    assert change[0] in GOOD
    with pytest.raises(ScreeningFileError, match=key):
        _load(tmp_path, GOOD.replace(change[0], change[1], 1))


def test_duplicate_codes_missing_and_malformed_files(tmp_path: Path) -> None:
    second = GOOD[GOOD.index("[[flag]]"):]
    with pytest.raises(ScreeningFileError, match=r"flag\[1\]\.code: 'fever' is used twice"):
        _load(tmp_path, GOOD + second)
    with pytest.raises(ScreeningFileError, match="not found"):
        Screener.load(tmp_path / "nope.toml")
    with pytest.raises(ScreeningFileError, match="not valid TOML"):
        _load(tmp_path, "[[flag]\ncode=")
    assert issubclass(ScreeningFileError, ValueError)


# -- speed and robustness -------------------------------------------------------------------------


def test_screening_a_300_character_message_takes_well_under_a_millisecond() -> None:
    message = ("Hi, the cream is going ok, I put it on twice most days. The itch is a bit better but I "
               "have had a fever since Tuesday night and some chills, and my calf is swollen. No chest "
               "pain. Sorry for the long message, see you at the visit on Thursday, thank you all!! ")[:300]
    runs = 200
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(runs):
            SCREENER.screen(message)
        best = min(best, (time.perf_counter() - start) / runs)
    assert best < 0.001, f"{best * 1e6:.0f} µs per message"


def test_odd_and_huge_inputs() -> None:
    for text in ("", " ", "\x00" * 100, "🙂" * 4096, "a" * 4096, "no " * 2000, ". , ; " * 1000,
                 "مرحبا لدي حمى", "e\u0301" * 2000, "\ud800fever", "x\u202efever", "fever" + "\u0301" * 50):
        SCREENER.screen(text)
    assert flags("\u202efever\u202c") == ("fever",)


ACCENTS = "\u0301\u0300\u0308\u0303"


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.text(max_size=600))
def test_any_text_is_screened_without_error(text: str) -> None:
    result = SCREENER.screen(text)
    assert set(result.flags) <= set(SCREENER.flags)
    assert not set(result.flags) & set(result.negated)


def _corpus_texts() -> list[str]:
    from tests.test_screening_corpus import load_corpus

    return [case.text for case in load_corpus()]


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(_corpus_texts()), st.randoms(use_true_random=False))
def test_screening_ignores_zero_width_spaces_case_and_accents(text: str, random) -> None:
    expected = SCREENER.screen(text)
    chars = list(text)
    zero_width = [c + ("\u200b" if random.random() < 0.2 else "") for c in chars]
    accented = [c + (random.choice(ACCENTS) if c.isascii() and c.isalpha() and random.random() < 0.3 else "")
                for c in chars]
    for variant in ("".join(zero_width), text.upper(), text.lower(), text.swapcase(), "".join(accented)):
        got = SCREENER.screen(variant)
        assert (got.flags, got.negated, got.actions) == (expected.flags, expected.negated, expected.actions), variant
