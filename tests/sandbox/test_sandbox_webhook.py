"""The stand-in delivers by webhook as Telegram's Bot API server does: chats side by side, each
chat's updates in order, the next only once the one before was acknowledged, at most
`max_connections` at once; and one method named in an acknowledgement is carried out."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import telegram
from aiohttp import web

from sandbox.world import TelegramWorld
from tests.waiting import until

pytestmark = pytest.mark.timeout(30)


class Receiver:
    """A webhook endpoint whose answers the test decides; it holds an update until let go."""

    def __init__(self) -> None:
        self.received: list[str] = []
        self.held: dict[str, asyncio.Event] = {}
        self.replies: dict[str, dict[str, Any]] = {}
        self.failures_to_answer = 0  # the next this many requests get HTTP 500
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def hold(self, text: str) -> asyncio.Event:
        return self.held.setdefault(text, asyncio.Event())

    async def _receive(self, request: web.Request) -> web.Response:
        text = (await request.json())["message"]["text"]
        self.received.append(text)
        if self.failures_to_answer:
            self.failures_to_answer -= 1
            return web.Response(status=500)
        if text in self.held:
            await self.held[text].wait()
        if text in self.replies:
            return web.json_response(self.replies[text])
        return web.Response()

    async def __aenter__(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hook", self._receive)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for event in self.held.values():
            event.set()
        await self._runner.cleanup()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with Receiver() as running:
        yield running


async def test_chats_are_delivered_side_by_side_and_each_chat_in_order(
        bot: telegram.Bot, world: TelegramWorld, receiver: Receiver) -> None:
    ana, ben = world.add_user(1, "Ana"), world.add_user(2, "Ben")
    first = receiver.hold("ana 1")
    await bot.set_webhook(receiver.url)
    await ana.send_text("ana 1")
    await ana.send_text("ana 2")
    await ben.send_text("ben 1")
    await ben.send_text("ben 2")

    await until(lambda: receiver.received.count("ben 2") == 1)
    assert "ana 2" not in receiver.received, "a chat's next update waits until the one before is acknowledged"
    assert [u["message"]["text"] for u in world.pending_updates] == ["ana 1", "ana 2"]

    first.set()
    await until(lambda: not world.pending_updates)
    assert receiver.received == ["ana 1", "ben 1", "ben 2", "ana 2"]


async def test_no_more_than_max_connections_at_once(bot: telegram.Bot, world: TelegramWorld, receiver: Receiver) -> None:
    ana, ben = world.add_user(1, "Ana"), world.add_user(2, "Ben")
    first = receiver.hold("ana 1")
    await bot.set_webhook(receiver.url, max_connections=1)
    await ana.send_text("ana 1")
    await ben.send_text("ben 1")
    await until(lambda: receiver.received == ["ana 1"])
    # Deliveries are started all at once when updates arrive; only one is under way.
    assert world.webhook is not None and world.webhook.in_flight == 1
    first.set()
    await until(lambda: not world.pending_updates)
    assert receiver.received == ["ana 1", "ben 1"]


async def test_a_method_in_the_acknowledgement_is_carried_out_and_getters_are_not(
        bot: telegram.Bot, world: TelegramWorld, receiver: Receiver) -> None:
    ana = world.add_user(1, "Ana")
    receiver.replies["hello"] = {"method": "sendMessage", "chat_id": ana.chat_id, "text": "answered in the ack"}
    receiver.replies["who are you"] = {"method": "getMe"}
    receiver.replies["too long"] = {"method": "sendMessage", "chat_id": ana.chat_id, "text": "x" * 5000}
    await bot.set_webhook(receiver.url)
    for text in ("who are you", "too long", "hello"):
        await ana.send_text(text)

    await ana.wait_for(lambda u: len(u.bot_messages) == 1)
    assert ana.bot_messages[0].text == "answered in the ack"
    await until(lambda: not world.pending_updates)
    replies = [c for c in world.calls if c.via_webhook_reply]
    assert [(c.method, c.status) for c in replies] == [("sendMessage", 400), ("sendMessage", 200)], \
        "getMe is ignored; a refused method is refused as any call (and the update still counts as delivered)"


async def test_an_update_not_acknowledged_is_sent_again(
        bot: telegram.Bot, world: TelegramWorld, receiver: Receiver) -> None:
    receiver.failures_to_answer = 1
    await bot.set_webhook(receiver.url)
    await world.add_user(1, "Ana").send_text("hello")
    await until(lambda: not world.pending_updates)
    assert receiver.received == ["hello", "hello"]
    assert (await bot.get_webhook_info()).last_error_message is None
