"""Webhook mode (`trialbot run --webhook URL`): Telegram POSTs each update to this process.

Why not PTB's own webhook server: it acknowledges every update (HTTP 200) the moment it is
queued, before any handler ran, so an update inside a process that is killed or restarted is
gone: Telegram had its 200 and never sends it again. Here an update is acknowledged only once it
was handled; Telegram keeps any other update, and tries it again, to this or another process.

Handled first, the update can also be answered in the acknowledgement itself: Telegram carries
out one Bot API method named in the body of the 200. The bot puts a pressed button's answer
there (bot/replies.py), which saves each tap one round trip to Telegram.

Requests without Telegram's secret token header are refused with 403, before anything is read
(a header that is not even text, too). A body that is not an update, JSON nested past what can
be read included, is refused with 400. Neither leaves a traceback in the log.
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any

from aiohttp import web
from telegram import Update
from telegram.ext import Application

from bot.replies import webhook_reply

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
# Letting handlers under way finish when the process is told to stop: an update cut off before
# its 200 is sent again by Telegram, but one that finishes needs nothing more.
STOP_SECONDS = 20
log = logging.getLogger(__name__)


class WebhookServer:
    def __init__(self, app: Application, *, listen: str, port: int, path: str, secret_token: str) -> None:
        self.app = app
        self.listen = listen
        self.port = port
        self.path = "/" + path.lstrip("/")
        self._secret = secret_token.encode()
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        server = web.Application(client_max_size=1024 * 1024)  # an update is a few kilobytes
        server.router.add_post(self.path, self._receive)
        self._runner = web.AppRunner(server, handle_signals=False, access_log=None, shutdown_timeout=STOP_SECONDS)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.listen, self.port).start()

    @property
    def running(self) -> bool:
        return self._runner is not None

    async def stop(self) -> None:
        """Stop taking updates; those being handled are finished first."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _has_secret(self, request: web.Request) -> bool:
        try:
            # aiohttp keeps bytes that are not UTF-8 as lone surrogates, which cannot be encoded.
            given = request.headers.get(SECRET_HEADER, "").encode()
        except UnicodeEncodeError:
            return False
        return hmac.compare_digest(given, self._secret)

    async def _receive(self, request: web.Request) -> web.Response:
        if not self._has_secret(request):
            return web.Response(status=403)
        try:
            update = Update.de_json(await request.json(), self.app.bot)
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
            # Not an update: nothing to handle, and asking Telegram to send it again would not help.
            log.warning("webhook: a request that is not an update was refused")
            return web.Response(status=400)
        with webhook_reply(update) as reply:
            # As PTB's own update fetcher hands updates on: through the update processor, so
            # this process keeps its limit of updates at once and each chat's order.
            await self.app.update_processor.process_update(update, self.app.process_update(update))
        if reply.method is None:
            return web.Response()
        return web.Response(text=json.dumps(_as_reply(reply.method, reply.params)), content_type="application/json")


def _as_reply(method: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"method": method, **{name: value for name, value in params.items() if value is not None}}
