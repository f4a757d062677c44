"""The demo's terminal chat, driven by a script instead of stdin."""

from __future__ import annotations

import asyncio
from typing import Any

from sandbox.chat import SimUser
from sandbox.spec import UploadedFile
from sandbox.terminal_chat import render_for_terminal, run_terminal_chat
from sandbox.world import TelegramWorld


async def bot_call(world: TelegramWorld, method: str, **params: Any) -> Any:
    return await world.handle_call(world.token, method, params)


async def test_render_for_terminal(world: TelegramWorld, ana: SimUser) -> None:
    await bot_call(world, "sendMessage", chat_id=ana.chat_id, parse_mode="HTML",
                   text='<b>Dose</b> 😀 <a href="https://e.org">info</a>',
                   reply_markup={"inline_keyboard": [[{"text": "Taken", "callback_data": "t"},
                                                      {"text": "Later", "callback_data": "l"}],
                                                     [{"text": "Site", "url": "https://e.org"}]]})
    message = ana.last_bot_message
    assert message is not None
    assert render_for_terminal(message) == (
        "bot: Dose 😀 info (https://e.org)\n  [1] Taken  [2] Later\n  [3] Site")
    assert render_for_terminal(message, color=True).startswith("bot: \x1b[1mDose\x1b[22m 😀")


class Transcript:
    """Collects what the terminal chat writes and lets the test await a line."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._changed = asyncio.Event()

    def write(self, text: str) -> None:
        self.lines.append(text)
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for(self, fragment: str) -> None:
        while not any(fragment in line for line in self.lines):
            await asyncio.wait_for(self._changed.wait(), 5)


async def fake_bot(world: TelegramWorld, chat_id: int) -> None:
    """Answers text with a keyboard, and a press with an edit and a photo, as a bot would."""
    while True:
        await world.wait_for_updates(timeout=5)
        updates = world.pending_updates
        if not updates:
            continue
        world.confirm_updates(updates[-1]["update_id"] + 1)
        for update in updates:
            if "message" in update:
                await bot_call(world, "sendMessage", chat_id=chat_id, text=f"Got {update['message']['text']}",
                               reply_markup={"inline_keyboard": [[{"text": "OK", "callback_data": "ok"}]]})
                continue
            query = update["callback_query"]
            await bot_call(world, "answerCallbackQuery", callback_query_id=query["id"])
            await bot_call(world, "editMessageText", chat_id=chat_id,
                           message_id=query["message"]["message_id"], text="Thanks")
            photo = UploadedFile("qr.png", b"\x89PNG\r\n\x1a\n" + bytes(16), "image/png")
            await bot_call(world, "sendPhoto", chat_id=chat_id, photo=photo, caption="Your code")


async def test_scripted_session(world: TelegramWorld, ana: SimUser) -> None:
    transcript = Transcript()
    lines = asyncio.Queue[str | None]()
    bot_task = asyncio.create_task(fake_bot(world, ana.chat_id))
    chat = asyncio.create_task(run_terminal_chat(ana, lines.get, transcript.write))
    await lines.put("hello")
    await transcript.wait_for("Got hello")
    await lines.put("7")
    await lines.put("1")
    await transcript.wait_for("[photo:")
    await lines.put(None)
    await asyncio.wait_for(chat, 5)
    bot_task.cancel()
    assert transcript.lines == [
        "bot: Got hello\n  [1] OK",
        "(no button [7] to press)",
        "bot (edited): Thanks",
        "bot: [photo: 24 bytes]\nYour code",
    ]
    assert ana.messages[1].text == "hello"
    assert len(ana.callback_answers) == 1
