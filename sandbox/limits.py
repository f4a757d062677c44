"""Telegram's limits that the type system of the spec does not express.

Why: the spec says callback_data is a String, but Telegram also refuses one longer than
64 bytes, a keyboard button without exactly one action, a bot command with capitals, and so
on. These checks run after type validation, on native values, and raise Telegram's errors.
"""

from __future__ import annotations

import re
from typing import Any

from messages.telegram_html import utf16_len
from sandbox.errors import bad_request

MAX_CALLBACK_DATA_BYTES = 64
MAX_CALLBACK_ANSWER_LENGTH = 200
MAX_COMMANDS = 100
MAX_COMMAND_LENGTH = 32
MAX_COMMAND_DESCRIPTION_LENGTH = 256
MAX_START_PAYLOAD_LENGTH = 64

_COMMAND_RE = re.compile(rf"^[a-z0-9_]{{1,{MAX_COMMAND_LENGTH}}}$")
_START_PAYLOAD_RE = re.compile(rf"^[A-Za-z0-9_-]{{1,{MAX_START_PAYLOAD_LENGTH}}}$")
# Optional button fields that decorate a button rather than say what pressing it does.
_BUTTON_DECORATIONS = {"text", "icon_custom_emoji_id", "style"}


def is_valid_start_payload(payload: str) -> bool:
    """Whether `payload` may follow /start in a t.me/<bot>?start=<payload> deep link."""
    return bool(_START_PAYLOAD_RE.match(payload))


def check_reply_markup(markup: dict[str, Any] | None) -> None:
    """Reject an inline keyboard Telegram would refuse (other markups pass unchanged)."""
    if not markup or "inline_keyboard" not in markup:
        return
    for row in markup["inline_keyboard"]:
        for button in row:
            _check_inline_button(button)


def _check_inline_button(button: dict[str, Any]) -> None:
    if not button.get("text"):
        raise bad_request("BUTTON_TEXT_INVALID")
    actions = [name for name in button if name not in _BUTTON_DECORATIONS]
    if not actions:
        raise bad_request("text buttons are unallowed in the inline keyboard")
    if len(actions) > 1:
        raise bad_request(f"can't parse inline keyboard button: exactly one of {actions} must be used")
    data = button.get("callback_data")
    if data is not None and not 1 <= len(data.encode("utf-8")) <= MAX_CALLBACK_DATA_BYTES:
        raise bad_request("BUTTON_DATA_INVALID")
    url = button.get("url")
    if url is not None and not url.startswith(("http://", "https://", "tg://")):
        raise bad_request(f"inline keyboard button URL '{url}' is invalid: Wrong HTTP URL")


def check_commands(commands: list[dict[str, Any]]) -> None:
    """setMyCommands' limits on the command list."""
    if len(commands) > MAX_COMMANDS:
        raise bad_request("too many commands specified")
    for command in commands:
        if not _COMMAND_RE.match(command["command"]):
            raise bad_request("BOT_COMMAND_INVALID")
        if not 1 <= utf16_len(command["description"]) <= MAX_COMMAND_DESCRIPTION_LENGTH:
            raise bad_request("command description is empty" if not command["description"]
                              else "BOT_COMMAND_DESCRIPTION_INVALID")


def check_callback_answer_text(text: str | None) -> None:
    """answerCallbackQuery's text is at most 200 characters."""
    if text is not None and utf16_len(text) > MAX_CALLBACK_ANSWER_LENGTH:
        raise bad_request("MESSAGE_TOO_LONG")
