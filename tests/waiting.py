"""Waiting for something the bot or the stand-in does on its own (a delivery, a takeover)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def until(condition: Callable[[], bool], timeout: float = 10) -> None:
    """Return once `condition()` holds; TimeoutError after `timeout` seconds."""
    async def wait() -> None:
        while not condition():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(wait(), timeout)
