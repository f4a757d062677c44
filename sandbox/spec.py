"""Type-checks Bot API calls against the published spec (sandbox/api.json).

Why: a bot that passes its tests against the sandbox must not be rejected by Telegram for
calling a method wrongly. Every call is checked against the machine-readable spec: unknown
methods, missing required parameters and values of the wrong type are rejected with
Telegram's error shapes, nested objects (reply markups, entities, command scopes) included.

Values arrive in three encodings (PTB's form bodies where every non-string value is JSON
text, JSON bodies with native values, and query strings), so each value is coerced to its
declared type before being checked; the result is the call's parameters as native values.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from sandbox.errors import ApiError, bad_request

_SPEC_PATH = Path(__file__).parent / "api.json"
_ARRAY_PREFIX = "Array of "
_INT_RE = re.compile(r"^[+-]?\d+$")
_DISCRIMINATOR_RE = re.compile(r"must be (?:always )?[\"“*]?([A-Za-z_]+)")
_ATTACH_PREFIX = "attach://"
# Optional parameters whose empty value says something: copyMessage's empty caption removes the
# original's (the Bot API replaces the caption whenever the parameter is present).
_MEANINGFUL_WHEN_EMPTY = {"caption"}


@dataclass(frozen=True)
class UploadedFile:
    """A file uploaded with multipart/form-data (what the spec calls InputFile)."""

    filename: str
    content: bytes
    content_type: str


@cache
def load_spec() -> dict[str, Any]:
    """The parsed api.json, loaded once per process."""
    with _SPEC_PATH.open(encoding="utf-8") as handle:
        return json.load(handle)


@cache
def _method_index() -> dict[str, str]:
    """Lower-cased method name -> canonical name (Telegram matches method names ignoring case)."""
    return {name.lower(): name for name in load_spec()["methods"]}


def canonical_method(name: str) -> str | None:
    """The spec's spelling of a method name, or None when the Bot API has no such method."""
    return _method_index().get(name.lower())


def validate_call(
    method_name: str,
    params: Mapping[str, Any],
    files: Mapping[str, UploadedFile] | None = None,
) -> dict[str, Any]:
    """Check one call and return its parameters as native, type-checked values.

    `files` are the multipart file parts by part name; a parameter refers to one either by
    having the part's name or through an ``attach://<part>`` string. Unknown parameters are
    dropped, as Telegram ignores them.
    """
    canonical = canonical_method(method_name)
    if canonical is None:
        raise ApiError(404, "Not Found")
    files = files or {}
    checker = _Checker(files)
    result: dict[str, Any] = {}
    for field in load_spec()["methods"][canonical].get("fields", []):
        name = field["name"]
        value = params.get(name, files.get(name))
        if value is None or (value == "" and (field["required"] or name not in _MEANINGFUL_WHEN_EMPTY)):
            if field["required"]:
                raise _missing_parameter(name)
            continue
        try:
            result[name] = checker.check(value, field["types"])
        except _Mismatch as mismatch:
            raise _wrong_type(name, mismatch) from None
    return result


def validate_object(value: Any, type_name: str) -> None:
    """Check an object the sandbox sends (an update, a Message, ...) against the spec's type:
    every required field there, no field the type lacks, every value of its declared type.

    Raises ValueError naming the first offending path. For the sandbox's own tests: what the
    bot receives must be what Telegram could send.
    """
    try:
        _Checker({}, strict=True).check(value, [type_name])
    except _Mismatch as mismatch:
        raise ValueError(mismatch.where(type_name)) from None


def _missing_parameter(name: str) -> ApiError:
    """Telegram's wording for an absent (or empty) required parameter."""
    if name == "text":
        return bad_request("message text is empty")
    return bad_request(f"{name} is empty")


def _wrong_type(name: str, mismatch: _Mismatch) -> ApiError:
    """Telegram's wording for a parameter it cannot parse; details name the offending path."""
    if name == "reply_markup":
        return bad_request(f"can't parse reply keyboard markup JSON object: {mismatch.where(name)}")
    if name in ("entities", "caption_entities"):
        return bad_request(f"can't parse entities JSON object: {mismatch.where(name)}")
    return bad_request(f"parameter {mismatch.where(name)}")


class _Mismatch(Exception):
    """A value does not fit its declared type; `path` locates it inside nested objects."""

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.path = path

    def nested(self, segment: str) -> _Mismatch:
        return _Mismatch(self.message, segment + self.path)

    def where(self, root: str) -> str:
        return f'"{root}{self.path}" {self.message}'


class _Checker:
    """Coerces and checks values against spec type expressions, resolving attach:// files."""

    def __init__(self, files: Mapping[str, UploadedFile], *, strict: bool = False) -> None:
        self._files = files
        self._strict = strict

    def check(self, value: Any, types: list[str]) -> Any:
        """Accept `value` as the first of the union `types` it fits, in spec order."""
        mismatches: list[_Mismatch] = []
        for type_name in types:
            try:
                return self._check_one(value, type_name)
            except _Mismatch as mismatch:
                if mismatch.path:
                    raise
                mismatches.append(mismatch)
        if len(mismatches) == 1:
            raise mismatches[0]
        raise _Mismatch(f"must be {' or '.join(types)}")

    def _check_one(self, value: Any, type_name: str) -> Any:
        if type_name.startswith(_ARRAY_PREFIX):
            return self._check_array(value, type_name.removeprefix(_ARRAY_PREFIX))
        scalar = (_STRICT_SCALARS if self._strict else _SCALARS).get(type_name)
        if scalar is not None:
            return scalar(value)
        if type_name == "InputFile":
            return self._check_file(value)
        return self._check_object(value, type_name)

    def _check_array(self, value: Any, item_type: str) -> list[Any]:
        value = _decode_json_text(value, list)
        if not isinstance(value, list):
            raise _Mismatch(f"must be an Array of {item_type}")
        checked = []
        for index, item in enumerate(value):
            try:
                checked.append(self._check_one(item, item_type))
            except _Mismatch as mismatch:
                raise mismatch.nested(f"[{index}]") from None
        return checked

    def _check_file(self, value: Any) -> UploadedFile:
        if isinstance(value, UploadedFile):
            return value
        if isinstance(value, str) and value.startswith(_ATTACH_PREFIX):
            uploaded = self._files.get(value.removeprefix(_ATTACH_PREFIX))
            if uploaded is not None:
                return uploaded
        raise _Mismatch("must be an uploaded file")

    def _check_object(self, value: Any, type_name: str) -> dict[str, Any]:
        spec_type = load_spec()["types"].get(type_name)
        if spec_type is None:
            raise _Mismatch(f"has unknown type {type_name}")
        value = _decode_json_text(value, dict)
        if not isinstance(value, dict):
            raise _Mismatch(f"must be an object of type {type_name}")
        if "subtypes" in spec_type:
            return self._check_union(value, type_name, spec_type["subtypes"])
        checked: dict[str, Any] = {}
        if self._strict:
            known = {field["name"] for field in spec_type.get("fields", [])}
            unknown = sorted(set(value) - known)
            if unknown:
                raise _Mismatch(f'is an object of type {type_name} with unknown field "{unknown[0]}"')
        for field in spec_type.get("fields", []):
            name = field["name"]
            if value.get(name) is None:
                if field["required"]:
                    # No path: a union may still match this value as one of its other types.
                    raise _Mismatch(f'must be an object of type {type_name} with field "{name}"')
                continue
            try:
                checked[name] = self.check(value[name], field["types"])
            except _Mismatch as mismatch:
                raise mismatch.nested(f".{name}") from None
        return checked

    def _check_union(self, value: dict[str, Any], type_name: str, subtypes: list[str]) -> Any:
        discriminators = _discriminators(type_name)
        if discriminators is not None:
            for field_name, expected, subtype in discriminators:
                if value.get(field_name) == expected:
                    return self._check_one(value, subtype)
            raise _Mismatch(f"is not a known kind of {type_name}")
        for subtype in subtypes:
            try:
                return self._check_one(value, subtype)
            except _Mismatch:
                continue
        raise _Mismatch(f"does not match any kind of {type_name}")


@cache
def _discriminators(type_name: str) -> tuple[tuple[str, str, str], ...] | None:
    """(field, required value, subtype) for unions told apart by a `type`/`source` field.

    The spec words the constraint as e.g. "Scope type, must be chat"; None when some subtype
    has no such field, in which case the first subtype that fits is taken.
    """
    types = load_spec()["types"]
    found = []
    for subtype in types[type_name]["subtypes"]:
        match = None
        for field in types.get(subtype, {}).get("fields", []):
            if field["name"] in ("type", "source"):
                match = _DISCRIMINATOR_RE.search(field["description"])
                if match:
                    found.append((field["name"], match.group(1), subtype))
                break
        if match is None:
            return None
    return tuple(found)


def _decode_json_text(value: Any, expected: type) -> Any:
    """Form and query encodings carry objects and arrays as JSON text; decode it."""
    if isinstance(value, str):
        try:
            decoded = json.loads(value)
        except ValueError:
            return value
        return decoded if isinstance(decoded, expected) else value
    return value


def _integer(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _INT_RE.match(value.strip()):
        return int(value)
    raise _Mismatch("must be Integer")


def _float(value: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise _Mismatch("must be Float")


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise _Mismatch("must be Boolean")


def _string(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise _Mismatch("must be String")


_SCALARS = {"Integer": _integer, "Float": _float, "Boolean": _boolean, "String": _string}


def _native(kind: type | tuple[type, ...], name: str) -> Callable[[Any], Any]:
    """A check that `value` already is of JSON type `kind` (bool counting only as Boolean)."""
    def check(value: Any) -> Any:
        if isinstance(value, kind) and (name == "Boolean" or not isinstance(value, bool)):
            return value
        raise _Mismatch(f"must be {name}")

    return check


# What the sandbox sends is JSON as Telegram writes it: no numbers or booleans as text.
_STRICT_SCALARS = {"Integer": _native(int, "Integer"), "Float": _native((int, float), "Float"),
                   "Boolean": _native(bool, "Boolean"), "String": _native(str, "String")}
