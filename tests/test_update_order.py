"""Updates of different chats run side by side; one chat's updates run in the order they came."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from telegram import Chat, Message, Update, User

from bot.update_order import OneChatAtATime


def update_from(chat_id: int, update_id: int) -> Update:
    chat = Chat(chat_id, Chat.PRIVATE)
    message = Message(update_id, datetime(2026, 11, 24, tzinfo=UTC), chat, from_user=User(chat_id, "P", False),
                      text="hello")
    return Update(update_id, message=message)


async def test_one_chat_waits_for_its_earlier_update_while_another_chat_goes_ahead() -> None:
    processor = OneChatAtATime(8)
    started: list[str] = []
    release = {name: asyncio.Event() for name in ("a1", "a2", "b1")}

    async def handle(name: str) -> None:
        started.append(name)
        await release[name].wait()

    async with processor:
        tasks = [asyncio.create_task(processor.process_update(update_from(chat, n), handle(name)))
                 for n, (chat, name) in enumerate(((1, "a1"), (1, "a2"), (2, "b1")), start=1)]
        for _ in range(5):
            await asyncio.sleep(0)  # let every task run as far as it can
        assert started == ["a1", "b1"]  # chat 2 did not wait for chat 1; a2 waits for a1
        release["b1"].set()
        release["a1"].set()
        for _ in range(5):
            await asyncio.sleep(0)
        assert started == ["a1", "b1", "a2"]
        release["a2"].set()
        await asyncio.gather(*tasks)
    assert processor._chats == {}  # nothing kept for chats with nothing in flight


async def test_a_failing_update_does_not_hold_up_its_chat() -> None:
    processor = OneChatAtATime(8)
    done: list[int] = []

    async def fail() -> None:
        raise RuntimeError("handler failed")

    async def succeed() -> None:
        done.append(2)

    async with processor:
        first = asyncio.create_task(processor.process_update(update_from(1, 1), fail()))
        second = asyncio.create_task(processor.process_update(update_from(1, 2), succeed()))
        results = await asyncio.gather(first, second, return_exceptions=True)
    assert isinstance(results[0], RuntimeError) and done == [2]
