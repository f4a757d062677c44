"""The spec checker rejects calls the way Telegram does and decodes PTB's form encoding."""

from __future__ import annotations

import json

import pytest

from sandbox.errors import ApiError
from sandbox.spec import UploadedFile, validate_call


def rejected(method: str, params: dict, **kwargs: object) -> ApiError:
    with pytest.raises(ApiError) as caught:
        validate_call(method, params, **kwargs)  # type: ignore[arg-type]
    return caught.value


def test_unknown_method_is_not_found() -> None:
    error = rejected("sendTelepathy", {})
    assert (error.status, error.description) == (404, "Not Found")


def test_method_names_ignore_case() -> None:
    assert validate_call("SENDmessage", {"chat_id": 1, "text": "x"}) == {"chat_id": 1, "text": "x"}


@pytest.mark.parametrize(
    ("params", "description"),
    [
        ({"chat_id": 1}, "Bad Request: message text is empty"),
        ({"chat_id": 1, "text": ""}, "Bad Request: message text is empty"),
        ({"text": "hi"}, "Bad Request: chat_id is empty"),
    ],
)
def test_missing_required_parameter(params: dict, description: str) -> None:
    error = rejected("sendMessage", params)
    assert (error.status, error.description) == (400, description)


def test_ptb_form_encoding_is_decoded() -> None:
    """PTB posts every non-string value as JSON text in a urlencoded form."""
    markup = {"inline_keyboard": [[{"text": "Yes", "callback_data": "y"}]]}
    params = validate_call("sendMessage", {
        "chat_id": "1001", "text": "123", "disable_notification": "true",
        "reply_markup": json.dumps(markup), "unknown_parameter": "ignored",
    })
    assert params == {"chat_id": 1001, "text": "123", "disable_notification": True,
                      "reply_markup": markup}


def test_wrong_scalar_type_is_rejected() -> None:
    error = rejected("sendMessage", {"chat_id": 1, "text": "x", "disable_notification": "maybe"})
    assert error.status == 400
    assert "disable_notification" in error.description


def test_nested_required_field_is_checked() -> None:
    markup = {"inline_keyboard": [[{"callback_data": "x"}]]}
    error = rejected("sendMessage", {"chat_id": 1, "text": "x", "reply_markup": markup})
    assert error.description.startswith("Bad Request: can't parse reply keyboard markup JSON object")
    assert "inline_keyboard[0][0]" in error.description


def test_union_of_markups_accepts_each_kind() -> None:
    for markup in ({"keyboard": [[{"text": "a"}]]}, {"remove_keyboard": True}, {"force_reply": True}):
        assert validate_call("sendMessage", {"chat_id": 1, "text": "x", "reply_markup": markup})


def test_command_scope_is_told_apart_by_type() -> None:
    commands = [{"command": "start", "description": "Begin"}]
    assert validate_call("setMyCommands", {"commands": commands,
                                           "scope": {"type": "chat", "chat_id": 5}})
    error = rejected("setMyCommands", {"commands": commands, "scope": {"type": "chat"}})
    assert "chat_id" in error.description
    assert rejected("setMyCommands", {"commands": commands, "scope": {"type": "galaxy"}}).status == 400


def test_files_are_resolved_by_part_name_or_attach_uri() -> None:
    upload = UploadedFile("a.png", b"data", "image/png")
    assert validate_call("sendPhoto", {"chat_id": 1}, files={"photo": upload})["photo"] is upload
    by_uri = validate_call("sendPhoto", {"chat_id": 1, "photo": "attach://p1"}, files={"p1": upload})
    assert by_uri["photo"] is upload
    assert validate_call("sendPhoto", {"chat_id": 1, "photo": "file-id"})["photo"] == "file-id"
