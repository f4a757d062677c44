"""Fixtures for the sandbox's own tests: a world, its HTTP server, and a PTB Bot on it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import telegram

from sandbox.server import BotApiServer
from sandbox.world import TelegramWorld

TOKEN = "123456:SANDBOX-TOKEN"


@pytest.fixture
def world() -> TelegramWorld:
    return TelegramWorld(token=TOKEN)


@pytest.fixture
async def server(world: TelegramWorld) -> AsyncIterator[BotApiServer]:
    async with BotApiServer(world) as running:
        yield running


@pytest.fixture
async def bot(server: BotApiServer) -> AsyncIterator[telegram.Bot]:
    async with telegram.Bot(TOKEN, base_url=server.base_url) as ptb_bot:
        yield ptb_bot


@pytest.fixture
async def http(server: BotApiServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.base_url + TOKEN + "/") as client:
        yield client


@pytest.fixture
async def ana(world: TelegramWorld) -> object:
    """A user who has started the bot (so the bot may write to her)."""
    user = world.add_user(1001, "Ana")
    await user.send_text("/start")
    world.drop_pending_updates()
    return user
