"""Updates from different chats are handled side by side; each chat's in the order they came.

Why: PTB handles updates one at a time by default, so every participant waits for everyone
before them, and each update costs two or three round trips to Telegram (tens of milliseconds
each). After a morning wave thousands press "Applied" within minutes. Handling chats concurrently
overlaps those waits; keeping each chat in order means a press and the /undo after it, or the
answers of a check-in, are never handled out of turn.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from telegram import Update
from telegram.ext import BaseUpdateProcessor


class OneChatAtATime(BaseUpdateProcessor):
    def __init__(self, max_concurrent_updates: int) -> None:
        super().__init__(max_concurrent_updates)
        # chat id -> (its lock, how many of its updates hold or await the lock)
        self._chats: dict[int | None, tuple[asyncio.Lock, list[int]]] = {}

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        chat = update.effective_chat.id if isinstance(update, Update) and update.effective_chat else None
        lock, users = self._chats.setdefault(chat, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                await coroutine
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._chats[chat]

    async def initialize(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass
