"""Red-flag screening of what a participant writes: which warning signs it mentions, whether each
is affirmed or negated, and what the participant should do (most urgent first).

The words live in `screening.toml` (next to study.toml), a file the safety physician reviews;
this module only knows how to match them. It is pure: no Telegram, no database, no logging (the
text of a message is never written anywhere from here), no I/O except reading that file once.

How a message is matched (docs/safety.md says the same for the study team):

1. `normalise`: NFKC, casefold, accents and invisible characters removed, apostrophes dropped
   ("can't" -> "cant"), other punctuation and emoji become word breaks. Clause ends (". ; : ! ?"
   and line breaks) become the token ".", commas the token ","; negation needs both.
2. The file's `[variants]` replace misspellings and long forms word by word ("fevr" -> "fever",
   "can not" -> "cant"). No fuzzy matching: what is accepted is listed, so a real word such as
   "fewer" or "never" can never be taken for "fever".
3. Every flag's terms, in every language, are tried at every word (`_Index`, by first word, keeps
   that to a dictionary look-up per word). Overlapping hits are all kept.
4. Each hit is negated or affirmed (`_negated`), and hits inside a flag's `exclude` phrases are
   dropped. A flag is raised when at least one of its hits is affirmed.

Matching is biased towards raising a flag: when the wording is ambiguous (a negation far away,
behind "and" or a comma, a symptom of someone else, a past tense) the flag is raised, because a
needless "call the study team" costs a phone call and a missed chest pain can cost a life.
"""

from __future__ import annotations

import re
import tomllib
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any


class Action(StrEnum):
    """What the participant is told to do; listed most urgent first."""

    EMERGENCY = "emergency"  # "if this is an emergency call 911 now" (+ call the team now)
    CRISIS = "crisis"  # self-harm: the crisis line (988 in the US) plus 911
    STOP_CREAM_CALL_TODAY = "stop_cream_call_today"  # positive pregnancy test
    CALL_TODAY = "call_today"  # call the study team today
    MESSAGE_TEAM = "message_team"  # nothing for the participant to do now; the team is told


URGENCY: tuple[Action, ...] = tuple(Action)
_RANK = {action: rank for rank, action in enumerate(URGENCY)}


def most_urgent_first(actions: Iterable[Action]) -> tuple[Action, ...]:
    """The actions without repeats, most urgent first."""
    return tuple(sorted(set(actions), key=_RANK.__getitem__))


@dataclass(frozen=True)
class Flag:
    code: str  # e.g. "breathing_chest"; [a-z_]{1,20}
    action: Action
    label: str  # for staff, English
    terms: Mapping[str, tuple[str, ...]]  # language -> phrases as written in the file
    alerts: bool  # True unless the action is MESSAGE_TEAM (or the file says otherwise)


@dataclass(frozen=True)
class Hit:
    flag: str  # flag code
    term: str  # the file's phrase that matched
    language: str  # the language of that phrase in the file (not necessarily of the message)
    negated: bool


@dataclass(frozen=True)
class Screening:
    hits: tuple[Hit, ...]
    flags: tuple[str, ...]  # flags with at least one affirmed hit, most urgent first
    negated: tuple[str, ...]  # flags mentioned ONLY negated ("no fever"); not in `flags`
    actions: tuple[Action, ...]  # actions of `flags`, deduplicated, most urgent first
    # Which of `flags` alert the team (Flag.alerts); filled in by Screener.screen. A Screening
    # built by hand without it alerts for any action other than MESSAGE_TEAM.
    _alerting: frozenset[str] | None = field(default=None, repr=False)

    @property
    def alert(self) -> bool:
        """Does the study team get a safety alert (repeated until acknowledged)?"""
        if self._alerting is None:
            return any(action is not Action.MESSAGE_TEAM for action in self.actions)
        return any(code in self._alerting for code in self.flags)

    @property
    def emergency(self) -> bool:
        return Action.EMERGENCY in self.actions or Action.CRISIS in self.actions


class ScreeningFileError(ValueError):
    """screening.toml is missing or wrong; the message names the key."""


# -- Normalisation --------------------------------------------------------------------------------

CLAUSE, COMMA = ".", ","
_BOUNDARIES = frozenset((CLAUSE, COMMA))
# Typographic apostrophes and look-alikes, dropped before NFKC (NFKC would turn the acute accent
# "´" into a space and a combining mark, splitting "can´t").
_APOSTROPHES = str.maketrans(dict.fromkeys("'’‘ʼʻ`´′＇ꞌ", ""))
# Clause ends: negation scope stops here. Line breaks too: "fever? no\nchest pain" is two lines.
_CLAUSE_ENDS = frozenset(".;:!?¡¿…。！？؟;\n\r\v\f\x85\u2028\u2029")
_COMMAS = frozenset(",،、，﹐")
_DECIMAL = re.compile(r"(?<=\d) ?([.,]) ?(?=\d)")
_CACHE_LIMIT = 20_000  # distinct characters remembered by the fold table


def _fold_char(ch: str) -> str:
    if ch in _CLAUSE_ENDS:
        return f" {CLAUSE} "
    if ch in _COMMAS:
        return f" {COMMA} "
    category = unicodedata.category(ch)
    if category[0] == "L":
        # Accents off: decompose and drop the combining marks ("é" -> "e", "ñ" -> "n").
        return "".join(c for c in unicodedata.normalize("NFKD", ch) if unicodedata.category(c)[0] != "M")
    if category[0] == "N":
        return ch
    if category[0] == "Z" or ch == "\t":
        return " "
    if category[0] in "CM":
        # Control, format (zero-width space, joiners, soft hyphen, BOM), unassigned, private use,
        # lone surrogates, stray combining marks: gone, so "fe\u200bver" reads "fever".
        return ""
    return " "  # other punctuation, symbols, emoji: a word break


class _FoldTable(dict[int, str]):
    """str.translate table computed per character on first sight (then a C-speed look-up)."""

    def __missing__(self, codepoint: int) -> str:
        folded = _fold_char(chr(codepoint))
        if len(self) < _CACHE_LIMIT:
            self[codepoint] = folded
        return folded


_FOLD = _FoldTable({ord(c): c for c in "abcdefghijklmnopqrstuvwxyz0123456789 "})


def _tokens(text: str) -> list[str]:
    text = unicodedata.normalize("NFKC", text.translate(_APOSTROPHES)).casefold()
    text = _DECIMAL.sub(r"\1", text.translate(_FOLD))  # "38.5" and "38,5" stay one word
    out: list[str] = []
    for token in text.split():
        if token in _BOUNDARIES:
            if not out:
                continue
            if out[-1] in _BOUNDARIES:
                if token == CLAUSE:
                    out[-1] = CLAUSE  # "fever, . chest" -> one clause end
                continue
        out.append(token)
    if out and out[-1] in _BOUNDARIES:
        out.pop()
    return out


def normalise(text: str) -> str:
    """The text as the matcher sees it (before the file's variants): words in lower case without
    accents, apostrophes or invisible characters, separated by single spaces; "." for the end of
    a clause and "," for a comma, each a word of its own.

    >>> normalise("No FIEBRE, I can’t breathe!! Respiración fe\u200bver 38.5")
    'no fiebre , i cant breathe . respiracion fever 38.5'
    """
    return " ".join(_tokens(text))


# -- Terms ----------------------------------------------------------------------------------------

_GAP = re.compile(r"^\.\.([1-6])?$")
_GAP_TOKEN = r"(?: [^ .,][^ ]*)"  # one word that is not a clause or comma mark
_WORD_END = r"(?![^ ])"
_PLURAL_MIN = 3  # words this long or longer also match with -s / -es
_PREFIX_MIN = 2  # "38*" (a temperature) is the shortest useful prefix


@dataclass(frozen=True)
class _Term:
    flag: str
    phrase: str  # as written in the file
    language: str
    regex: re.Pattern[str]  # anchored at the first word; gaps are the numbered groups
    first_exact: frozenset[str]  # first-word forms, for the index
    first_prefixes: tuple[str, ...]  # first-word prefixes ("bruis*"), for the index
    literal_words: frozenset[str]  # every literal alternative (to spot cues inside the term)
    has_gaps: bool


def _compile_term(phrase: str, where: str, variants: Mapping[str, str]) -> tuple[str, list[list[str]], list[int]]:
    """Parse one phrase of the file: the regex source, the words' alternatives, the gap sizes."""
    parts = phrase.split()
    if not parts:
        raise ScreeningFileError(f"{where}: an empty term")
    pieces: list[str] = []
    words: list[list[str]] = []
    gaps: list[int] = []
    pending_gap = 0
    for index, part in enumerate(parts):
        gap = _GAP.match(part)
        if gap:
            if index in (0, len(parts) - 1) or pending_gap:
                raise ScreeningFileError(f"{where}: {phrase!r}: '..' must stand between two words")
            pending_gap = int(gap.group(1) or 3)
            continue
        alternatives = []
        forms = []
        for raw in part.split("|"):
            star = raw.endswith("*")
            core = " ".join(_tokens(raw.removesuffix("*")))
            if not core or " " in core or core in _BOUNDARIES:
                raise ScreeningFileError(f"{where}: {phrase!r}: {raw!r} is not one word (write alternatives as a|b|c)")
            if core in variants:
                raise ScreeningFileError(f"{where}: {phrase!r}: {core!r} is listed in [variants] as a misspelling "
                                         f"of {variants[core]!r}; write {variants[core]!r}")
            if star:
                if len(core) < _PREFIX_MIN:
                    raise ScreeningFileError(f"{where}: {phrase!r}: {raw!r}: a word* needs at least "
                                             f"{_PREFIX_MIN} letters")
                alternatives.append(re.escape(core) + r"[^ ]*")
            elif len(core) >= _PLURAL_MIN and core[-1].isalpha():
                alternatives.append(re.escape(core) + r"(?:e?s)?")
            else:
                alternatives.append(re.escape(core))
            forms.append(core + ("*" if star else ""))
        if pending_gap:
            pieces.append(f"({_GAP_TOKEN}{{0,{pending_gap}}})")
            gaps.append(pending_gap)
            pending_gap = 0
        pieces.append((" " if pieces else "") + "(?:" + "|".join(alternatives) + ")" + _WORD_END)
        words.append(forms)
    return "".join(pieces), words, gaps


def _build_term(flag: str, phrase: str, language: str, where: str, variants: Mapping[str, str]) -> _Term:
    source, words, gaps = _compile_term(phrase, where, variants)
    exact: set[str] = set()
    prefixes: list[str] = []
    for form in words[0]:
        if form.endswith("*"):
            prefixes.append(form[:-1])
        else:
            exact.add(form)
            if len(form) >= _PLURAL_MIN and form[-1].isalpha():
                exact.update((form + "s", form + "es"))
    literal = frozenset(form.removesuffix("*") for forms in words for form in forms)
    return _Term(flag, phrase, language, re.compile(source), frozenset(exact), tuple(prefixes), literal, bool(gaps))


class _Index:
    """Terms by their first word: a dictionary look-up per word of the message, plus the few
    first-word prefixes ("bruis*") that share the word's first letters."""

    def __init__(self, terms: Iterable[_Term]) -> None:
        self._exact: dict[str, list[_Term]] = {}
        self._prefixed: dict[str, list[tuple[str, _Term]]] = {}
        for term in terms:
            for form in term.first_exact:
                self._exact.setdefault(form, []).append(term)
            for prefix in term.first_prefixes:
                self._prefixed.setdefault(prefix[:_PREFIX_MIN], []).append((prefix, term))

    def candidates(self, token: str) -> Iterable[_Term]:
        yield from self._exact.get(token, ())
        for prefix, term in self._prefixed.get(token[:_PREFIX_MIN], ()):
            if token.startswith(prefix):
                yield term

    def matches(self, tokens: list[str], joined: str, starts: list[int]) -> Iterable[tuple[int, int, _Term, re.Match[str]]]:
        """(first word, last word, term, match) of every term found, overlaps included."""
        for index, token in enumerate(tokens):
            if token in _BOUNDARIES:
                continue
            for term in self.candidates(token):
                match = term.regex.match(joined, starts[index])
                if match:
                    yield index, index + match.group(0).count(" "), term, match


# -- The data file --------------------------------------------------------------------------------

_CODE = re.compile(r"^[a-z_]{1,20}$")
_LANGUAGE = re.compile(r"^[a-z]{2}$")
_TOP_KEYS = {"languages", "negation", "variants", "flag"}
_FLAG_KEYS = {"code", "label", "label_es", "action", "alerts", "why", "terms", "exclude", "negatable"}
_NEGATION_KEYS = {"cues", "pseudo", "post", "terminators"}


def _phrases(value: Any, where: str, *, allow_empty: bool = False) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ScreeningFileError(f"{where}: must be a list of phrases")
    if not value and not allow_empty:
        raise ScreeningFileError(f"{where}: is empty")
    return tuple(value)


def _token_phrases(values: Iterable[str], where: str) -> set[tuple[str, ...]]:
    out = set()
    for value in values:
        tokens = tuple(_tokens(value))
        if not tokens or any(t in _BOUNDARIES for t in tokens):
            raise ScreeningFileError(f"{where}: {value!r} is not a phrase of words")
        out.add(tokens)
    return out


@dataclass(frozen=True)
class _Negation:
    window: int
    cues: frozenset[tuple[str, ...]]
    cue_words: frozenset[str]  # one-word cues: a term containing one is never negated
    pseudo: frozenset[tuple[str, ...]]
    post: frozenset[str]
    terminators: frozenset[str]
    longest_cue: int
    longest_pseudo: int


@dataclass(frozen=True)
class _FlagRules:
    flag: Flag
    order: int
    negatable: bool
    excludes: _Index | None


class Screener:
    """The screening as read from one file. Build it with `Screener.load(path)`."""

    flags: Mapping[str, Flag]  # in file order
    languages: tuple[str, ...]

    def __init__(self, *, languages: tuple[str, ...], rules: Mapping[str, _FlagRules], terms: list[_Term],
                 negation: _Negation, variants: Mapping[str, str]) -> None:
        self.languages = languages
        self.flags = MappingProxyType({code: rule.flag for code, rule in rules.items()})
        self._rules = rules
        self._negation = negation
        self._alerting = frozenset(code for code, flag in self.flags.items() if flag.alerts)
        # Variants: one-word ones by look-up, longer ones by one regex (longest first).
        self._word_variants = {k: v for k, v in variants.items() if " " not in k}
        phrases = sorted((k for k in variants if " " in k), key=len, reverse=True)
        self._phrase_variants = {k: variants[k] for k in phrases}
        self._phrase_regex = (re.compile(r"(?<![^ ])(?:" + "|".join(map(re.escape, phrases)) + r")(?![^ ])")
                              if phrases else None)
        self._index = _Index(terms)

    # -- loading ------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: Path) -> Screener:
        path = Path(path)
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ScreeningFileError(f"screening file not found: {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ScreeningFileError(f"{path}: not valid TOML: {exc}") from None
        try:
            return cls._from_data(raw)
        except ScreeningFileError as exc:
            raise ScreeningFileError(f"{path}: {exc}") from None

    @classmethod
    def _from_data(cls, raw: dict[str, Any]) -> Screener:
        for key in raw:
            if key not in _TOP_KEYS:
                raise ScreeningFileError(f"{key}: unknown key (expected one of {', '.join(sorted(_TOP_KEYS))})")
        languages = raw.get("languages")
        if (not isinstance(languages, list) or not languages
                or not all(isinstance(x, str) and _LANGUAGE.match(x) for x in languages)
                or len(set(languages)) != len(languages)):
            raise ScreeningFileError("languages: must be a list of distinct two-letter codes, e.g. [\"en\", \"es\"]")
        langs = tuple(languages)
        variants = cls._variants(raw.get("variants", {}), langs)
        negation = cls._negation_rules(raw.get("negation"), langs)
        flags = raw.get("flag")
        if not isinstance(flags, list) or not flags:
            raise ScreeningFileError("flag: at least one [[flag]] is needed")
        rules: dict[str, _FlagRules] = {}
        terms: list[_Term] = []
        for index, entry in enumerate(flags):
            rule, flag_terms = cls._parse_flag(entry, f"flag[{index}]", langs, variants, negation, len(rules))
            if rule.flag.code in rules:
                raise ScreeningFileError(f"flag[{index}].code: {rule.flag.code!r} is used twice")
            rules[rule.flag.code] = rule
            terms += flag_terms
        return cls(languages=langs, rules=rules, terms=terms, negation=negation, variants=variants)

    @staticmethod
    def _variants(raw: Any, languages: tuple[str, ...]) -> dict[str, str]:
        if not isinstance(raw, dict):
            raise ScreeningFileError("variants: must be a table of [variants.<language>] tables")
        merged: dict[str, str] = {}
        for language, table in raw.items():
            where = f"variants.{language}"
            if language not in languages:
                raise ScreeningFileError(f"{where}: {language!r} is not one of languages ({', '.join(languages)})")
            if not isinstance(table, dict):
                raise ScreeningFileError(f"{where}: must be a table of \"misspelling\" = \"word\"")
            for key, value in table.items():
                if not isinstance(value, str):
                    raise ScreeningFileError(f"{where}.{key}: must be a string")
                wrong, right = normalise(key), normalise(value)
                if not wrong or not right or any(t in _BOUNDARIES for t in (wrong + " " + right).split()):
                    raise ScreeningFileError(f"{where}.{key}: both sides must be words")
                if wrong == right:
                    raise ScreeningFileError(f"{where}.{key}: replaces a word by itself")
                if merged.get(wrong, right) != right:
                    raise ScreeningFileError(f"{where}.{key}: already replaced by {merged[wrong]!r}")
                merged[wrong] = right
        for wrong, right in merged.items():
            if any(word in merged for word in right.split()):
                raise ScreeningFileError(f"variants: {wrong!r} -> {right!r}, which is itself replaced")
        return merged

    @staticmethod
    def _negation_rules(raw: Any, languages: tuple[str, ...]) -> _Negation:
        if not isinstance(raw, dict):
            raise ScreeningFileError("negation: missing ([negation] with window, and [negation.<language>] tables)")
        window = raw.get("window", 5)
        if not isinstance(window, int) or isinstance(window, bool) or not 1 <= window <= 10:
            raise ScreeningFileError("negation.window: must be a whole number from 1 to 10")
        cues: set[tuple[str, ...]] = set()
        pseudo: set[tuple[str, ...]] = set()
        post: set[tuple[str, ...]] = set()
        terminators: set[tuple[str, ...]] = set()
        for key, table in raw.items():
            if key == "window":
                continue
            if key not in languages:
                raise ScreeningFileError(f"negation.{key}: unknown key (a language of the file, or window)")
            if not isinstance(table, dict):
                raise ScreeningFileError(f"negation.{key}: must be a table")
            for name in table:
                if name not in _NEGATION_KEYS:
                    raise ScreeningFileError(f"negation.{key}.{name}: unknown key")
            where = f"negation.{key}"
            cues |= _token_phrases(_phrases(table.get("cues"), f"{where}.cues"), f"{where}.cues")
            pseudo |= _token_phrases(_phrases(table.get("pseudo", []), f"{where}.pseudo", allow_empty=True),
                                     f"{where}.pseudo")
            post |= _token_phrases(_phrases(table.get("post", []), f"{where}.post", allow_empty=True), f"{where}.post")
            terminators |= _token_phrases(_phrases(table.get("terminators", []), f"{where}.terminators",
                                                   allow_empty=True), f"{where}.terminators")
        for language in languages:
            if language not in raw:
                raise ScreeningFileError(f"negation.{language}: missing (every language needs its negation cues)")
        for name, group in (("post", post), ("terminators", terminators)):
            if any(len(p) != 1 for p in group):
                raise ScreeningFileError(f"negation.*.{name}: one word each")
        return _Negation(
            window=window, cues=frozenset(cues), cue_words=frozenset(c[0] for c in cues if len(c) == 1),
            pseudo=frozenset(pseudo), post=frozenset(p[0] for p in post),
            terminators=frozenset(t[0] for t in terminators),
            longest_cue=max(map(len, cues)), longest_pseudo=max(map(len, pseudo), default=0))

    @staticmethod
    def _parse_flag(entry: Any, where: str, languages: tuple[str, ...], variants: Mapping[str, str],
              negation: _Negation, order: int) -> tuple[_FlagRules, list[_Term]]:
        if not isinstance(entry, dict):
            raise ScreeningFileError(f"{where}: must be a table")
        for key in entry:
            if key not in _FLAG_KEYS:
                raise ScreeningFileError(f"{where}.{key}: unknown key (expected {', '.join(sorted(_FLAG_KEYS))})")
        code = entry.get("code")
        if not isinstance(code, str) or not _CODE.match(code):
            raise ScreeningFileError(f"{where}.code: {code!r} is not a code of 1-20 letters a-z and _")
        where = f"{where} ({code})"
        for key in ("label", "why"):
            if not isinstance(entry.get(key), str) or not entry[key].strip():
                raise ScreeningFileError(f"{where}.{key}: missing (one line of text)")
        if "label_es" in entry and not isinstance(entry["label_es"], str):
            raise ScreeningFileError(f"{where}.label_es: must be text")
        try:
            action = Action(str(entry.get("action")))
        except ValueError:
            raise ScreeningFileError(f"{where}.action: {entry.get('action')!r} is not one of "
                                     f"{', '.join(a.value for a in URGENCY)}") from None
        alerts = entry.get("alerts", action is not Action.MESSAGE_TEAM)
        negatable = entry.get("negatable", True)
        for key, value in (("alerts", alerts), ("negatable", negatable)):
            if not isinstance(value, bool):
                raise ScreeningFileError(f"{where}.{key}: must be true or false")
        raw_terms = entry.get("terms")
        if not isinstance(raw_terms, dict):
            raise ScreeningFileError(f"{where}.terms: missing (terms.{' and terms.'.join(languages)})")
        phrases: dict[str, tuple[str, ...]] = {}
        for language in raw_terms:
            if language not in languages:
                raise ScreeningFileError(f"{where}.terms.{language}: {language!r} is not one of languages "
                                         f"({', '.join(languages)})")
        for language in languages:
            if language not in raw_terms:
                raise ScreeningFileError(f"{where}.terms.{language}: missing: every flag needs terms in every "
                                         f"language ({', '.join(languages)})")
            phrases[language] = _phrases(raw_terms[language], f"{where}.terms.{language}")
        raw_excludes = entry.get("exclude", {})
        if not isinstance(raw_excludes, dict):
            raise ScreeningFileError(f"{where}.exclude: must be a table of exclude.<language> lists")
        terms: list[_Term] = []
        excludes: list[_Term] = []
        for language, values in phrases.items():
            for i, phrase in enumerate(values):
                terms.append(_build_term(code, phrase, language, f"{where}.terms.{language}[{i}]", variants))
        for language, values in raw_excludes.items():
            if language not in languages:
                raise ScreeningFileError(f"{where}.exclude.{language}: not one of languages ({', '.join(languages)})")
            for i, phrase in enumerate(_phrases(values, f"{where}.exclude.{language}", allow_empty=True)):
                excludes.append(_build_term(code, phrase, language, f"{where}.exclude.{language}[{i}]", variants))
        flag = Flag(code=code, action=action, label=entry["label"].strip(),
                    terms=MappingProxyType(phrases), alerts=alerts)
        return _FlagRules(flag, order, negatable, _Index(excludes) if excludes else None), terms

    # -- screening ----------------------------------------------------------------------------

    def _prepare(self, text: str) -> list[str]:
        tokens = [self._word_variants.get(t, t) for t in _tokens(text)]
        if self._phrase_regex is None:
            return tokens
        joined = " ".join(tokens)
        replaced = self._phrase_regex.sub(lambda m: self._phrase_variants[m.group(0)], joined)
        return replaced.split() if replaced != joined else tokens

    def screen(self, text: str) -> Screening:
        """The flags in `text`, any string at all. Every language's terms are searched."""
        tokens = self._prepare(text)
        if not tokens:
            return Screening((), (), (), (), frozenset())
        joined = " ".join(tokens)
        starts = []
        offset = 0
        for token in tokens:
            starts.append(offset)
            offset += len(token) + 1
        hits: list[Hit] = []
        excluded_spans: dict[str, list[tuple[int, int]]] = {}
        for first, last, term, match in list(self._index.matches(tokens, joined, starts)):
            rule = self._rules[term.flag]
            if rule.excludes is not None:
                spans = excluded_spans.get(term.flag)
                if spans is None:
                    spans = excluded_spans[term.flag] = [
                        (start, end) for start, end, _, _ in rule.excludes.matches(tokens, joined, starts)]
                if any(start <= last and first <= end for start, end in spans):
                    continue  # a look-alike: "fever blister", "me ahogo al tragar"
            negated = rule.negatable and self._negated(tokens, first, last, term, match)
            hits.append(Hit(term.flag, term.phrase, term.language, negated))
        unique = tuple(dict.fromkeys(hits))
        affirmed = {hit.flag for hit in unique if not hit.negated}
        mentioned = {hit.flag for hit in unique}

        def urgency(code: str) -> tuple[int, int]:
            rule = self._rules[code]
            return _RANK[rule.flag.action], rule.order

        flags = tuple(sorted(affirmed, key=urgency))
        negated_only = tuple(sorted(mentioned - affirmed, key=urgency))
        actions = most_urgent_first(self._rules[code].flag.action for code in flags)
        return Screening(unique, flags, negated_only, actions, self._alerting)

    def _negated(self, tokens: list[str], first: int, last: int, term: _Term, match: re.Match[str]) -> bool:
        """Is this hit negated? See the header of screening.toml for the rules and their reasons."""
        rules = self._negation
        if term.literal_words & rules.cue_words:
            return False  # "cant breathe", "no puedo respirar": the negation is the symptom
        if term.has_gaps:
            for gap in match.groups():
                if gap and self._cue_in(gap.split()):
                    return True  # "my leg is not swollen"
        # Before the term: a cue within `window` words, in the same clause, with no terminator
        # ("but", "and", "pero", "y" ...) between it and the term.
        position = first - 1
        while position >= 0 and first - position - 1 <= rules.window:
            token = tokens[position]
            if token in _BOUNDARIES or token in rules.terminators:
                break
            for size in range(min(rules.longest_cue, position + 1), 0, -1):
                cue = tuple(tokens[position - size + 1:position + 1])
                if cue in rules.cues and not self._pseudo(tokens, position - size + 1):
                    return True
            position -= 1
        # After the term: the rest of the clause, or the next clause, is only a cue ("Fever? No.").
        after = last + 1
        if after < len(tokens) and tokens[after] in _BOUNDARIES:
            after += 1
        if after < len(tokens) and tokens[after] in rules.post:
            return after + 1 == len(tokens) or tokens[after + 1] in _BOUNDARIES
        return False

    def _cue_in(self, words: list[str]) -> bool:
        rules = self._negation
        return any(tuple(words[i:i + size]) in rules.cues and not self._pseudo(words, i)
                   for i in range(len(words)) for size in range(1, rules.longest_cue + 1))

    def _pseudo(self, tokens: list[str], start: int) -> bool:
        """Does a phrase that looks like a negation but is not ("not sure", "no se si") start here?"""
        return any(tuple(tokens[start:start + size]) in self._negation.pseudo
                   for size in range(1, self._negation.longest_pseudo + 1))

    # -- for buttons and staff ----------------------------------------------------------------

    def actions_for(self, codes: Iterable[str]) -> tuple[Action, ...]:
        """The actions for flags chosen from buttons, most urgent first. Only codes of this file:
        an unknown code raises KeyError (a button for a flag the file does not have is a bug)."""
        return most_urgent_first(self._flag(code).action for code in codes)

    def label(self, code: str) -> str:
        return self._flag(code).label

    def _flag(self, code: str) -> Flag:
        try:
            return self.flags[code]
        except KeyError:
            raise KeyError(f"{code!r} is not a flag of the screening file") from None
