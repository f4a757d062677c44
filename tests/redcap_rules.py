"""REDCap's rules for a data dictionary, a data import file and the repeating-instruments setup:
the check the test suite applies to `trialbot export --format redcap` (tests/test_export.py).

`check(files)` returns the problems found, each "rule: what", so that a test can require none and
another can show each rule complaining about what it forbids (`RULES` names them all).

What REDCap documents, and where we read it (checked 2026):
- [dd] The LinkML model of REDCap's data dictionary, linkml-redcap's
  src/linkml_redcap/data_dictionary/schema/redcap_data_dictionary.yaml
  (https://linkml.io/linkml-redcap/reference/data_dictionary/): a field name "must contain only
  lowercase letters, numbers, and underscores. Cannot start with a number. Must be unique across
  the entire project" (`^[a-z][a-z0-9_]*$`); a form name the same pattern, and "all fields
  belonging to the same form_name must be in contiguous rows"; "the first field in the data
  dictionary must be the record identifier ... and must be of field_type 'text'"; a field label is
  required; the field types (FieldType) and text validation types (TextValidationType); choices
  are "pipe-delimited list of 'raw_value, label' pairs (e.g., '1, Yes | 2, No | 3, Unknown')", a
  raw value `^[a-z0-9_]*$`; min and max "for validated text fields (dates, numbers)"; Identifier?
  and Matrix Ranking? are "y" or empty, Custom Alignment LV, LH, RV or RH.
- [record] Its record model, src/linkml_redcap/record/schema/redcap_record.yaml
  (https://linkml.io/linkml-redcap/reference/record/): a flat import/export row per (record,
  repeat instrument, repeat instance) "with all field variables side by side and an empty string
  for any field outside the row's instrument"; `redcap_repeat_instrument` is the repeating
  form's name, empty for non-repeating data, `redcap_repeat_instance` 1-based, empty on
  non-repeating rows; the system columns (redcap_event_name, redcap_repeat_instrument,
  redcap_repeat_instance, redcap_data_access_group, redcap_survey_identifier); `<form>_complete`
  0 Incomplete, 1 Unverified, 2 Complete; yesno 1 or 0; a checkbox is one column per option,
  `<field>___<code>`, holding 1 or 0 (also redcapAPI's exportFieldNames, "exactly three
  underscores": https://search.r-project.org/CRAN/refmans/redcapAPI/html/exportFieldNames.html);
  values date_ymd YYYY-MM-DD, datetime YYYY-MM-DD HH:MM[:SS], time HH:MM, integer `-?\\d+`.
- [columns] The 18 columns, in order: redcapdd's get_dd_cols,
  https://rdrr.io/github/Sage-Bionetworks/redcapdd/man/get_dd_cols.html
- [validation] Date, datetime and number validation with minimum and maximum values:
  https://docs.redcap.qmul.ac.uk/adding-data/validation/
- [repeating] A classic project's repeating instruments setup is `form_name`, `custom_form_label`
  (redcapAPI's importRepeatingInstrumentsEvents:
  https://search.r-project.org/CRAN/refmans/redcapAPI/html/repeatingInstrumentMethods.html).
- 100 characters at most for a field or form name: REDCap's limit as the brief for this check
  states it; none of the sources above gives a number.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

DICTIONARY_HEADER = [
    "Variable / Field Name", "Form Name", "Section Header", "Field Type", "Field Label",
    "Choices, Calculations, OR Slider Labels", "Field Note", "Text Validation Type OR Show Slider Number",
    "Text Validation Min", "Text Validation Max", "Identifier?", "Branching Logic (Show field only if...)",
    "Required Field?", "Custom Alignment", "Question Number (surveys only)", "Matrix Group Name", "Matrix Ranking?",
    "Field Annotation",
]
REPEATING_HEADER = ["form_name", "custom_form_label"]
NAME = re.compile(r"^[a-z][a-z0-9_]*$")
NAME_MAX = 100
FIELD_TYPES = ("text", "notes", "dropdown", "radio", "checkbox", "yesno", "truefalse", "calc", "file", "slider",
               "descriptive", "sql")
CATEGORICAL = ("dropdown", "radio", "checkbox")
CHOICES_ALLOWED = (*CATEGORICAL, "calc", "slider", "sql")  # what the choices column means for the others
CODE = re.compile(r"^[a-z0-9_]+$|^-?\d+$")
BINARY = {"yesno": ("0", "1"), "truefalse": ("0", "1")}
COMPLETE = ("0", "1", "2")
SYSTEM_COLUMNS = ("redcap_event_name", "redcap_repeat_instrument", "redcap_repeat_instance",
                  "redcap_data_access_group", "redcap_survey_identifier")
ALIGNMENTS = ("", "LV", "LH", "RV", "RH")


def _parse(pattern: str, read: Callable[[str], Any]) -> Callable[[str], Any]:
    """A reader of values in one format: ValueError unless the whole text matches `pattern`."""
    compiled = re.compile(pattern)

    def parse(text: str) -> Any:
        if not compiled.fullmatch(text):
            raise ValueError(text)
        return read(text)

    return parse


def _strptime(fmt: str) -> Callable[[str], datetime]:
    return lambda text: datetime.strptime(text, fmt)


# The validation types of [dd], and how a value of the ones with an order is read (None: any text).
VALIDATION: dict[str, Callable[[str], Any] | None] = {
    "date_ymd": _parse(r"\d{4}-\d{2}-\d{2}", _strptime("%Y-%m-%d")),
    "date_mdy": None, "date_dmy": None,
    "datetime_ymd": _parse(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}", _strptime("%Y-%m-%d %H:%M")),
    "datetime_mdy": None, "datetime_dmy": None,
    "datetime_seconds_ymd": _parse(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", _strptime("%Y-%m-%d %H:%M:%S")),
    "datetime_seconds_mdy": None, "datetime_seconds_dmy": None,
    "time": _parse(r"\d{2}:\d{2}", _strptime("%H:%M")),
    "time_mm_ss": None,
    "integer": _parse(r"-?\d+", int),
    "number": _parse(r"-?\d+(\.\d+)?", float),
    "number_1dp": None, "number_2dp": None, "number_3dp": None, "number_4dp": None,
    "number_comma_decimal": None, "number_1dp_comma_decimal": None, "number_2dp_comma_decimal": None,
    "phone": None, "email": None, "zipcode": None, "alpha_only": None,
}
ORDERED = ("date_ymd", "datetime_ymd", "datetime_seconds_ymd", "time", "integer", "number")

RULES = (
    "columns",          # the dictionary's 18 columns, in order [columns]
    "field_name",       # lowercase letters, digits, underscores, a letter first, at most 100 [dd]
    "unique_field",     # each field name once [dd]
    "form_name",        # as a field name [dd]
    "contiguous_form",  # a form's fields together [dd]
    "first_field",      # the record id, a text field, first [dd]
    "reserved_name",    # not a system column, nor a form's <form>_complete [record]
    "field_type",       # one of REDCap's field types [dd]
    "field_label",      # every field has a label [dd]
    "choices",          # `code, label | code, label` for dropdown, radio, checkbox; none on other fields [dd]
    "choice_codes",     # codes unique and simple [dd]
    "validation",       # one of REDCap's validation types, on text fields only [dd]
    "min_max",          # only with a validation that orders; in its format; min <= max [dd] [validation]
    "yes_columns",      # Identifier?, Required Field?, Matrix Ranking? "y" or empty; alignment [dd]
    "repeating_setup",  # form_name, custom_form_label; forms of the dictionary, once each [repeating]
    "data_column",      # a field, a checkbox option, a system column or <form>_complete [record]
    "record",           # the record id first, and on every row [record] [dd]
    "repeat",           # instrument and instance as [record] says; fields only of the row's form
    "choice_value",     # a categorical value is one of its field's codes; yesno 0/1, checkbox 0/1 [record]
    "complete",         # <form>_complete is 0, 1 or 2 [record]
    "value_format",     # a validated value in its format: dates Y-M-D [record] [validation]
    "value_range",      # within the field's min and max [validation]
)


@dataclass
class Files:
    """A REDCap export as read: the data dictionary, the import file and the repeating setup."""

    dictionary_header: list[str]
    dictionary: list[dict[str, str]]
    data_header: list[str]
    data: list[dict[str, str]]
    repeating_header: list[str] = field(default_factory=lambda: list(REPEATING_HEADER))
    repeating: list[dict[str, str]] = field(default_factory=list)


def _read(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    header = rows[0] if rows else []
    return header, [dict(zip(header, row, strict=False)) for row in rows[1:]]


def read(directory: Path) -> Files:
    dictionary_header, dictionary = _read(directory / "redcap_data_dictionary.csv")
    data_header, data = _read(directory / "redcap_import.csv")
    repeating_header, repeating = _read(directory / "redcap_repeating_instruments.csv")
    return Files(dictionary_header, dictionary, data_header, data, repeating_header, repeating)


def choices_of(row: dict[str, str]) -> list[tuple[str, str]]:
    """A categorical field's (code, label) pairs; raises ValueError when the syntax is wrong."""
    text = row.get("Choices, Calculations, OR Slider Labels", "").strip()
    if not text:
        raise ValueError("no choices")
    pairs = []
    for item in text.split("|"):
        code, comma, label = item.partition(",")
        if not comma or not code.strip() or not label.strip():
            raise ValueError(f"{item.strip()!r} is not 'code, label'")
        pairs.append((code.strip(), label.strip()))
    return pairs


class _Problems(list):
    def add(self, rule: str, what: str) -> None:
        assert rule in RULES, rule
        self.append(f"{rule}: {what}")


def check(files: Files, *, record_id: str = "record_id") -> list[str]:
    """Every problem found, "rule: what"; `record_id` is the project's record identifier."""
    problems = _Problems()
    fields = _check_dictionary(files, record_id, problems)
    repeating = _check_repeating(files, fields, problems)
    _check_data(files, fields, repeating, problems)
    return list(problems)


def _name_ok(name: str) -> bool:
    return bool(NAME.fullmatch(name)) and len(name) <= NAME_MAX


def _check_dictionary(files: Files, record_id: str, problems: _Problems) -> dict[str, dict[str, str]]:
    if files.dictionary_header != DICTIONARY_HEADER:
        problems.add("columns", f"the dictionary's columns are {files.dictionary_header}")
    rows = files.dictionary
    names = [r.get("Variable / Field Name", "") for r in rows]
    forms = [r.get("Form Name", "") for r in rows]
    for name, count in Counter(names).items():
        if count > 1:
            problems.add("unique_field", f"{name} is defined {count} times")
    status_fields = {f"{form}_complete" for form in forms}
    seen_forms: list[str] = []
    for row, name, form in zip(rows, names, forms, strict=True):
        if not _name_ok(name):
            problems.add("field_name", f"{name!r}")
        if not _name_ok(form):
            problems.add("form_name", f"{form!r} (field {name})")
        if seen_forms and form != seen_forms[-1] and form in seen_forms:
            problems.add("contiguous_form", f"{name}: form {form} appears again after {seen_forms[-1]}")
        if not seen_forms or form != seen_forms[-1]:
            seen_forms.append(form)
        if name in SYSTEM_COLUMNS or name in status_fields:
            problems.add("reserved_name", f"{name} is REDCap's own")
        _check_field(row, name, problems)
    if not rows or names[0] != record_id or rows[0].get("Field Type") != "text":
        first = f"{names[0]} ({rows[0].get('Field Type')})" if rows else "nothing"
        problems.add("first_field", f"the first field is {first}, not {record_id} as a text field")
    return dict(zip(names, rows, strict=True))


def _check_field(row: dict[str, str], name: str, problems: _Problems) -> None:
    kind = row.get("Field Type", "")
    if kind not in FIELD_TYPES:
        problems.add("field_type", f"{name}: {kind!r}")
    if not row.get("Field Label", "").strip():
        problems.add("field_label", f"{name} has no label")
    has_choices = bool(row.get("Choices, Calculations, OR Slider Labels", "").strip())
    if kind in CATEGORICAL:
        try:
            pairs = choices_of(row)
        except ValueError as exc:
            problems.add("choices", f"{name}: {exc}")
        else:
            codes = [code for code, _ in pairs]
            if len(set(codes)) != len(codes) or not all(CODE.fullmatch(code) for code in codes):
                problems.add("choice_codes", f"{name}: {codes}")
    elif has_choices and kind not in CHOICES_ALLOWED:
        problems.add("choices", f"{name}: a {kind} field has choices")
    validation = row.get("Text Validation Type OR Show Slider Number", "")
    if validation and (validation not in VALIDATION or kind != "text"):
        problems.add("validation", f"{name}: {validation!r} on a {kind} field")
    bounds = [row.get("Text Validation Min", ""), row.get("Text Validation Max", "")]
    if any(bounds):
        parse = VALIDATION.get(validation) if validation in ORDERED else None
        try:
            if parse is None:
                raise ValueError(f"min/max with validation {validation!r}")
            low, high = (parse(b) if b else None for b in bounds)
            if low is not None and high is not None and low > high:
                raise ValueError(f"min {bounds[0]} > max {bounds[1]}")
        except ValueError as exc:
            problems.add("min_max", f"{name}: {exc}")
    yes = [row.get(c, "") for c in ("Identifier?", "Required Field?", "Matrix Ranking?")]
    if any(v not in ("", "y") for v in yes) or row.get("Custom Alignment", "") not in ALIGNMENTS:
        problems.add("yes_columns", f"{name}: {yes}, alignment {row.get('Custom Alignment')!r}")


def _check_repeating(files: Files, fields: dict[str, dict[str, str]], problems: _Problems) -> set[str]:
    if files.repeating_header != REPEATING_HEADER:
        problems.add("repeating_setup", f"columns {files.repeating_header}")
    forms = {row.get("Form Name", "") for row in fields.values()}
    named = [row.get("form_name", "") for row in files.repeating]
    for form, count in Counter(named).items():
        if form not in forms or count > 1:
            problems.add("repeating_setup", f"{form!r}: {'named twice' if count > 1 else 'no such form'}")
    return set(named)


def _check_data(files: Files, fields: dict[str, dict[str, str]], repeating: set[str], problems: _Problems) -> None:
    record_id = next(iter(fields), "")
    form_of = {name: row.get("Form Name", "") for name, row in fields.items()}
    codes = {}
    for name, row in fields.items():
        if row.get("Field Type") in CATEGORICAL:
            try:
                codes[name] = [code for code, _ in choices_of(row)]
            except ValueError:
                codes[name] = []
    statuses = {f"{form}_complete": form for form in form_of.values()}
    column_form: dict[str, str] = {}
    for column in files.data_header:
        base, sep, option = column.partition("___")
        if column in fields and fields[column].get("Field Type") != "checkbox":
            column_form[column] = form_of[column]
        elif sep and fields.get(base, {}).get("Field Type") == "checkbox" and option in codes.get(base, []):
            column_form[column] = form_of[base]
        elif column in statuses:
            column_form[column] = statuses[column]
        elif column not in SYSTEM_COLUMNS:
            problems.add("data_column", f"{column} is not a field, a checkbox option, a system column or a form "
                                        "status of the data dictionary")
    if not files.data_header or files.data_header[0] != record_id:
        problems.add("record", f"the import's first column is not the record id {record_id}")
    instances: Counter[tuple[str, str, str]] = Counter()
    for number, row in enumerate(files.data, start=2):
        where = f"line {number}"
        record = row.get(record_id, "")
        if not record:
            problems.add("record", f"{where}: no record id")
        instrument, instance = row.get("redcap_repeat_instrument", ""), row.get("redcap_repeat_instance", "")
        instances[(record, instrument, instance)] += 1
        if instrument and (instrument not in repeating or not re.fullmatch(r"[1-9]\d*", instance)):
            problems.add("repeat", f"{where}: instrument {instrument!r} instance {instance!r}")
        if not instrument and instance:
            problems.add("repeat", f"{where}: an instance {instance!r} without a repeating instrument")
        for column, value in row.items():
            if value == "" or column == record_id or column not in column_form:
                continue
            form = column_form[column]
            if (form != instrument) if instrument else (form in repeating):
                problems.add("repeat", f"{where}: {column} (form {form}) on a row of {instrument or 'no instrument'}")
            _check_value(fields, codes, statuses, column, value, f"{where} {column}", problems)
    for key, count in instances.items():
        if count > 1:
            problems.add("repeat", f"{key} appears {count} times")


def _check_value(fields: dict[str, dict[str, str]], codes: dict[str, list[str]], statuses: dict[str, str],
                 column: str, value: str, where: str, problems: _Problems) -> None:
    if column in statuses:
        if value not in COMPLETE:
            problems.add("complete", f"{where}: {value!r}")
        return
    base, sep, _ = column.partition("___")
    row = fields.get(base if sep else column, {})
    kind = row.get("Field Type", "")
    # A checkbox option is 0 or 1, a radio or dropdown one of its codes, a yesno 0 or 1.
    allowed = ("0", "1") if kind == "checkbox" else codes.get(column, []) if kind in CATEGORICAL else BINARY.get(kind)
    if allowed is not None and value not in allowed:
        problems.add("choice_value", f"{where}: {value!r} is not one of {list(allowed)}")
    validation = row.get("Text Validation Type OR Show Slider Number", "")
    parse = VALIDATION.get(validation) if kind == "text" else None
    if parse is None:
        return
    try:
        parsed = parse(value)
    except ValueError:
        problems.add("value_format", f"{where}: {value!r} is not {validation}")
        return
    try:
        low, high = (parse(b) if b else None for b in (row.get("Text Validation Min", ""),
                                                       row.get("Text Validation Max", "")))
    except ValueError:
        return  # the dictionary's own problem (min_max)
    if (low is not None and parsed < low) or (high is not None and parsed > high):
        problems.add("value_range", f"{where}: {value} outside {low} to {high}")
