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
DEFAULT_MAX_CONNECTIONS = 40  # setWebhook's max_connections, when not given (Telegram's default)
_NOT_IN_A_REPLY = {"setwebhook", "deletewebhook", "close", "logout"}


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
    """POSTs the world's pending updates to the bot's webhook until told to stop, as Telegram's
    Bot API server does (its WebhookActor): up to `max_connections` updates at once, but one
    chat's updates one after the other, the next only once the bot acknowledged the one before;
    an update the bot did not acknowledge is tried again. A 2xx answer whose JSON body names a
    method (`{"method": "answerCallbackQuery", ...}`) has that method carried out, its result
    unreported, as Telegram allows for one call per update; methods starting with "get", and
    setWebhook, deleteWebhook, close and logOut, are ignored there, as by Telegram."""

    def __init__(self, world: TelegramWorld, url: str, secret_token: str | None,
                 max_connections: int = DEFAULT_MAX_CONNECTIONS) -> None:
        self.world = world
        self.url = url
        self.secret_token = secret_token
        self.max_connections = max_connections
        self.last_error: str | None = None
        self._in_flight: dict[int, asyncio.Task[None]] = {}  # update_id -> its delivery
        self._busy_queues: set[object] = set()
        self._retry_at: dict[object, float] = {}  # queue -> when its first update is tried again
        self._delivered = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="sandbox-webhook")

    @property
    def in_flight(self) -> int:
        """Updates POSTed and not yet answered."""
        return len(self._in_flight)

    async def _run(self) -> None:
        connector = aiohttp.TCPConnector(limit=self.max_connections)
        async with aiohttp.ClientSession(connector=connector) as http:
            try:
                while True:
                    changed = self.world.updates_changed
                    self._delivered.clear()
                    self._start_ready(http)
                    await self._until_something_changes(changed)
            finally:
                for task in self._in_flight.values():
                    task.cancel()
                await asyncio.gather(*self._in_flight.values(), return_exceptions=True)

    def _start_ready(self, http: aiohttp.ClientSession) -> None:
        """Start delivering the first pending update of every chat that has none in flight."""
        now = asyncio.get_running_loop().time()
        seen: set[object] = set()
        for update in self.world.pending_updates:
            if len(self._in_flight) >= self.max_connections:
                return
            queue = queue_of(update)
            if queue in seen:
                continue  # a later update of a chat waits for the one before it
            seen.add(queue)
            if queue in self._busy_queues or self._retry_at.get(queue, 0) > now:
                continue
            self._busy_queues.add(queue)
            self._in_flight[update["update_id"]] = asyncio.get_running_loop().create_task(
                self._deliver(http, update, queue), name=f"sandbox-webhook-{update['update_id']}")

    async def _until_something_changes(self, changed: asyncio.Event) -> None:
        waits = [asyncio.ensure_future(changed.wait()), asyncio.ensure_future(self._delivered.wait())]
        now = asyncio.get_running_loop().time()
        retries = [at - now for at in self._retry_at.values() if at > now]
        try:
            await asyncio.wait(waits, timeout=min(retries) if retries else None,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()

    async def _deliver(self, http: aiohttp.ClientSession, update: dict, queue: object) -> None:
        headers = {"X-Telegram-Bot-Api-Secret-Token": self.secret_token} if self.secret_token else {}
        try:
            ok, reply = False, None
            try:
                async with http.post(self.url, json=update, headers=headers) as response:
                    ok = 200 <= response.status < 300
                    self.last_error = None if ok else f"Wrong response from the webhook: {response.status}"
                    if ok and response.content_type == "application/json":
                        reply = await response.json()
            except (aiohttp.ClientError, ValueError) as exc:
                ok, self.last_error = False, f"Connection failed: {type(exc).__name__}"
            if ok:
                if isinstance(reply, dict) and reply.get("method"):
                    await self._carry_out(reply)
                self.world.confirm_update(update["update_id"])
                self._retry_at.pop(queue, None)
            else:
                self._retry_at[queue] = asyncio.get_running_loop().time() + RETRY_SECONDS
        finally:
            self._in_flight.pop(update["update_id"], None)
            self._busy_queues.discard(queue)
            self._delivered.set()

    async def _carry_out(self, reply: dict) -> None:
        params = {name: value for name, value in reply.items() if name != "method"}
        method = str(reply["method"])
        if method.lower().startswith("get") or method.lower() in _NOT_IN_A_REPLY:
            return
        with contextlib.suppress(ApiError):  # refused (and recorded in `calls`); Telegram tells nobody
            await self.world.handle_call(self.world.token, method, params, via_webhook_reply=True)

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


def queue_of(update: dict) -> object:
    """Which of Telegram's per-chat queues an update joins: its chat's (a button's message's chat),
    else its sender's, else a queue of its own."""
    for kind in ("message", "edited_message", "callback_query"):
        body = update.get(kind)
        if isinstance(body, dict):
            chat = body.get("chat") or (body.get("message") or {}).get("chat")
            if chat:
                return ("chat", chat["id"])
            if body.get("from"):
                return ("user", body["from"]["id"])
    return ("update", update["update_id"])


def conflict_with_webhook() -> ApiError:
    return ApiError(409, "Conflict: can't use getUpdates method while webhook is active; "
                         "use deleteWebhook to delete the webhook first")
