"""Webhook delivery, as Telegram does it: once setWebhook names a URL, pending updates are POSTed
to it as JSON (with `X-Telegram-Bot-Api-Secret-Token` when a secret was set) instead of being
served by getUpdates, and an update is dropped from the queue only when the bot answers 2xx.

Telegram requires an HTTPS URL; like a self-hosted Bot API server in local mode, the stand-in
also accepts plain HTTP to a loopback address, which is all a test on this machine can reach.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import aiohttp

from sandbox.errors import ApiError, bad_request

if TYPE_CHECKING:
    from sandbox.world import TelegramWorld

RETRY_SECONDS = 0.2  # Telegram backs off for longer; the stand-in only needs to try again


def check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme == "https":
        return
    if parts.scheme == "http" and parts.hostname and _is_loopback(parts.hostname):
        return
    raise bad_request("bad webhook: An HTTPS URL must be provided for webhook")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class WebhookDelivery:
    """POSTs the world's pending updates to the bot's webhook until told to stop."""

    def __init__(self, world: TelegramWorld, url: str, secret_token: str | None) -> None:
        self.world = world
        self.url = url
        self.secret_token = secret_token
        self.last_error: str | None = None
        self._task = asyncio.get_running_loop().create_task(self._run(), name="sandbox-webhook")

    async def _run(self) -> None:
        headers = {"X-Telegram-Bot-Api-Secret-Token": self.secret_token} if self.secret_token else {}
        async with aiohttp.ClientSession() as http:
            while True:
                await self.world.wait_for_updates(timeout=3600)
                for update in self.world.pending_updates:
                    try:
                        async with http.post(self.url, json=update, headers=headers) as response:
                            ok = 200 <= response.status < 300
                            self.last_error = None if ok else f"Wrong response from the webhook: {response.status}"
                    except aiohttp.ClientError as exc:
                        ok, self.last_error = False, f"Connection failed: {type(exc).__name__}"
                    if not ok:
                        await asyncio.sleep(RETRY_SECONDS)
                        break
                    self.world.confirm_updates(update["update_id"] + 1)

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


def conflict_with_webhook() -> ApiError:
    return ApiError(409, "Conflict: can't use getUpdates method while webhook is active; "
                         "use deleteWebhook to delete the webhook first")
