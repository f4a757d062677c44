"""The labelled corpus (tests/screening/corpus.toml) through the shipped screening.toml.

Figures: recall per flag (over the messages labelled with that flag, the share that raise it),
overall recall (a flagged message counts when EVERY labelled flag is raised), the false emergency
rate (over benign and negated-only messages, the share told to call 911 or the crisis line),
and, as extras, precision per flag, unexpected flags on benign messages, and how often the
labelled negated mentions were reported as negated.

The held-out set (tests/screening/holdout.toml, never tuned on) is measured and printed too, but
not held to the bars: it estimates recall on phrasings nobody wrote terms for, and docs/safety.md
reports it next to the corpus figures.

`pytest tests/test_screening_corpus.py -s` prints the tables; it is also written to
screening-corpus-report.txt in the test's tmp dir (the path is printed). docs/safety.md quotes it.
"""

from __future__ import annotations

import tomllib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from study.protocol import EXAMPLE_SCREENING
from study.screening import Action, Screener

REPO = Path(__file__).resolve().parent.parent
CORPUS = Path(__file__).resolve().parent / "screening" / "corpus.toml"
HOLDOUT = Path(__file__).resolve().parent / "screening" / "holdout.toml"

MIN_OVERALL_RECALL = 0.98
MAX_FALSE_EMERGENCY_RATE = 0.03
MIN_FLAG_RECALL = 0.9
EMERGENCY_ACTIONS = {Action.EMERGENCY, Action.CRISIS}


@dataclass(frozen=True)
class Case:
    group: str
    lang: str
    text: str
    flags: frozenset[str]
    negated: frozenset[str]


def load_corpus(path: Path = CORPUS) -> list[Case]:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    return [Case(group["about"], case["lang"], case["text"], frozenset(case["flags"]),
                 frozenset(case.get("negated", ()))) for group in data["group"] for case in group["cases"]]


@dataclass
class Figures:
    cases: int
    per_language: Counter[str]
    flagged: int
    recalled: int
    benign: int
    false_emergencies: int
    per_flag: dict[str, tuple[int, int, int]]  # code -> (labelled, raised when labelled, raised in all)
    negated_labelled: int
    negated_reported: int
    misses: list[str]
    false_alarms: list[str]

    @property
    def recall(self) -> float:
        return self.recalled / self.flagged

    @property
    def false_emergency_rate(self) -> float:
        return self.false_emergencies / self.benign

    def table(self) -> str:
        languages = ", ".join(f"{k} {v}" for k, v in sorted(self.per_language.items()))
        lines = [(f"corpus: {self.cases} messages ({languages}); {self.flagged} with flags, "
                  f"{self.benign} benign or negated-only"),
                 "", f"{'flag':<20} {'labelled':>8} {'raised':>7} {'recall':>7} {'precision':>9}"]
        for code, (labelled, hit, raised) in self.per_flag.items():
            recall = f"{hit / labelled:.3f}" if labelled else "-"
            precision = f"{hit / raised:.3f}" if raised else "-"
            lines.append(f"{code:<20} {labelled:>8} {hit:>7} {recall:>7} {precision:>9}")
        lines += ["", f"overall recall (every labelled flag raised): {self.recalled}/{self.flagged} = {self.recall:.3f}",
                  (f"false emergency rate (benign or negated-only told 911/crisis line): "
                   f"{self.false_emergencies}/{self.benign} = {self.false_emergency_rate:.3f}"),
                  f"labelled negated mentions reported as negated: {self.negated_reported}/{self.negated_labelled}"]
        if self.misses:
            lines += ["", "missed (labelled flags not raised):", *self.misses]
        if self.false_alarms:
            lines += ["", "raised but not labelled:", *self.false_alarms]
        return "\n".join(lines)


def measure(screener: Screener, cases: list[Case]) -> Figures:
    per_flag = {code: [0, 0, 0] for code in screener.flags}
    figures = Figures(cases=len(cases), per_language=Counter(c.lang for c in cases), flagged=0, recalled=0,
                      benign=0, false_emergencies=0, per_flag={}, negated_labelled=0, negated_reported=0,
                      misses=[], false_alarms=[])
    for case in cases:
        result = screener.screen(case.text)
        raised = set(result.flags)
        for code in raised:
            per_flag[code][2] += 1
        for code in case.flags:
            per_flag[code][0] += 1
            per_flag[code][1] += code in raised
        if case.flags:
            figures.flagged += 1
            if case.flags <= raised:
                figures.recalled += 1
            else:
                figures.misses.append(f"  [{case.lang}] {case.text!r}: missing {sorted(case.flags - raised)}")
        else:
            figures.benign += 1
            if EMERGENCY_ACTIONS & set(result.actions):
                figures.false_emergencies += 1
        if raised - case.flags:
            figures.false_alarms.append(f"  [{case.lang}] {case.text!r}: {sorted(raised - case.flags)}")
        figures.negated_labelled += len(case.negated)
        figures.negated_reported += len(case.negated & set(result.negated))
    figures.per_flag = {code: (a, b, c) for code, (a, b, c) in per_flag.items()}
    return figures


@pytest.fixture(scope="module")
def figures() -> Figures:
    return measure(Screener.load(EXAMPLE_SCREENING), load_corpus())


def test_the_corpus_is_big_enough_and_labelled_with_real_flags() -> None:
    screener = Screener.load(EXAMPLE_SCREENING)
    cases = load_corpus()
    assert len(cases) >= 300
    languages = Counter(case.lang for case in cases)
    assert set(languages) == set(screener.languages)
    assert min(languages.values()) >= 0.4 * len(cases), languages
    for case in cases:
        assert case.flags <= set(screener.flags), case
        assert case.negated <= set(screener.flags), case
        assert not case.flags & case.negated, case
    labelled = Counter(code for case in cases for code in case.flags)
    for code in screener.flags:
        for language in screener.languages:
            assert any(code in c.flags for c in cases if c.lang == language), (code, language)
        assert labelled[code] >= 5, code


def test_the_screening_meets_its_bars_on_the_corpus(figures: Figures, tmp_path_factory: pytest.TempPathFactory) -> None:
    report = figures.table()
    path = tmp_path_factory.mktemp("screening") / "screening-corpus-report.txt"
    path.write_text(report + "\n", encoding="utf-8")
    print(f"\n{report}\n(written to {path})")
    assert figures.recall >= MIN_OVERALL_RECALL, report
    assert figures.false_emergency_rate <= MAX_FALSE_EMERGENCY_RATE, report
    low = {code: hit / labelled for code, (labelled, hit, _) in figures.per_flag.items()
           if labelled and hit / labelled < MIN_FLAG_RECALL}
    assert not low, report


def test_the_held_out_set_is_measured_and_reported(tmp_path_factory: pytest.TempPathFactory) -> None:
    cases = load_corpus(HOLDOUT)
    figures = measure(Screener.load(EXAMPLE_SCREENING), cases)
    report = figures.table()
    path = tmp_path_factory.mktemp("screening") / "screening-holdout-report.txt"
    path.write_text(report + "\n", encoding="utf-8")
    print(f"\nHELD-OUT (not tuned on; reported, not gated)\n{report}\n(written to {path})")
    assert figures.cases == len(cases) >= 40
    assert not {code for case in cases for code in case.flags} - set(Screener.load(EXAMPLE_SCREENING).flags)
