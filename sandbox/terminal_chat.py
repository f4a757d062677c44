"""A Telegram client in the terminal, for `trialbot demo`.

Why: the demo lets a person chat with the real bot through the sandbox without a phone.
Bot messages and edits are printed as they arrive, with inline buttons numbered; typing a
number presses that button, anything else is sent as text. Input and output are injected
callables so the loop is testable with a script instead of stdin.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from sandbox.chat import ChatMessage, SimUser

QUIT_COMMAND = ":quit"

_ANSI = {
    "bold": ("\x1b[1m", "\x1b[22m"),
    "italic": ("\x1b[3m", "\x1b[23m"),
    "underline": ("\x1b[4m", "\x1b[24m"),
    "strikethrough": ("\x1b[9m", "\x1b[29m"),
    "code": ("\x1b[2m", "\x1b[22m"),
    "pre": ("\x1b[2m", "\x1b[22m"),
}


def render_for_terminal(message: ChatMessage, *, color: bool = False) -> str:
    """A bot message as terminal text: formatting as ANSI when `color`, links as "text (url)",
    media announced ("[photo: N bytes]", "[voice note 0:03]", ...) with the caption under it,
    inline buttons numbered [1], [2], ... in keyboard order."""
    lines = []
    prefix = "bot (edited): " if message.edits else "bot: "
    if message.forward_origin is not None:
        lines.append("(forwarded)")
    if message.reply_to_message_id is not None:
        lines.append(f"(in reply to #{message.reply_to_message_id})")
    if message.kind == "photo" and message.photo is not None:
        lines.append(f"[photo: {len(message.photo)} bytes]")
    elif message.kind == "document" and message.document is not None:
        lines.append(f"[document: {message.document_name}, {len(message.document)} bytes]")
    elif message.media_label is not None:
        lines.append(message.media_label)
    if message.text is not None:
        lines.append(_format(message.text, message.entities, color))
    if message.caption:
        lines.append(_format(message.caption, message.caption_entities, color))
    body = "\n".join(lines)
    buttons = _button_lines(message)
    return prefix + body + ("\n" + buttons if buttons else "")


def _button_lines(message: ChatMessage) -> str:
    number = 0
    rows = []
    for row in message.buttons:
        cells = []
        for label, _ in row:
            number += 1
            cells.append(f"[{number}] {label}")
        rows.append("  " + "  ".join(cells))
    return "\n".join(rows)


def _format(text: str, entities: list[dict[str, Any]], color: bool) -> str:
    """Insert link targets (always) and ANSI styles (when `color`) at entity boundaries."""
    index_of = _utf16_to_index(text)
    inserts: list[tuple[int, int, str]] = []  # (position, order, text); closings sort first
    for entity in entities:
        start = index_of[entity["offset"]]
        end = index_of[entity["offset"] + entity["length"]]
        if entity["type"] == "text_link":
            inserts.append((end, 0, f" ({entity['url']})"))
        elif color and entity["type"] in _ANSI:
            on, off = _ANSI[entity["type"]]
            inserts.append((start, 1, on))
            inserts.append((end, 0, off))
    pieces = []
    previous = 0
    for position, _, insert in sorted(inserts, key=lambda item: (item[0], item[1])):
        pieces.append(text[previous:position])
        pieces.append(insert)
        previous = position
    pieces.append(text[previous:])
    return "".join(pieces)


def _utf16_to_index(text: str) -> dict[int, int]:
    """Map UTF-16 offsets (as entities use) to str indexes."""
    mapping = {}
    offset = 0
    for index, char in enumerate(text):
        mapping[offset] = index
        offset += 2 if ord(char) > 0xFFFF else 1
    mapping[offset] = len(text)
    return mapping


async def run_terminal_chat(
    user: SimUser,
    read_line: Callable[[], Awaitable[str | None]],
    write: Callable[[str], None],
    *,
    color: bool = False,
) -> None:
    """Chat as `user` until `:quit` or end of input (read_line returning None)."""
    printer = asyncio.create_task(_print_bot_events(user, write, color))
    try:
        while (line := await read_line()) is not None:
            line = line.strip()
            if line == QUIT_COMMAND:
                break
            if line.isdigit():
                await _press_number(user, int(line), write)
            elif line:
                await user.send_text(line)
    finally:
        printer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await printer


async def _print_bot_events(user: SimUser, write: Callable[[str], None], color: bool) -> None:
    while True:
        write(render_for_terminal(await user.next_bot_event(timeout=None), color=color))


async def _press_number(user: SimUser, number: int, write: Callable[[str], None]) -> None:
    """Press button `number` (1-based) of the newest bot message that shows buttons."""
    message = next((m for m in reversed(user.bot_messages) if m.buttons), None)
    keyboard = message.reply_markup["inline_keyboard"] if message and message.reply_markup else []
    buttons = [button for row in keyboard for button in row]
    if message is None or not 1 <= number <= len(buttons):
        write(f"(no button [{number}] to press)")
        return
    button = buttons[number - 1]
    if "callback_data" in button:
        await user.press(data=button["callback_data"], message_id=message.message_id)
    elif "url" in button:
        write(f"({button['text']} opens {button['url']})")
    else:
        write(f"({button['text']} cannot be used in the terminal)")
