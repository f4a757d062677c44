"""HTTP front of the sandbox: Telegram's Bot API URLs on 127.0.0.1, served by aiohttp.

Why: the product runs the real python-telegram-bot over real HTTP, so request encoding,
timeouts and error parsing are exercised exactly as against api.telegram.org. This module
only decodes requests (query string, urlencoded or multipart form, JSON) and encodes
answers in Telegram's envelope; `TelegramWorld.handle_call` decides everything else.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Self

from aiohttp import BodyPartReader, web

from sandbox.errors import ApiError
from sandbox.faults import Fault
from sandbox.spec import UploadedFile
from sandbox.world import TelegramWorld

_MAX_BODY_BYTES = 60 * 1024 * 1024


class BotApiServer:
    """Serves `world` at base_url; use `ApplicationBuilder().base_url(server.base_url)`."""

    def __init__(self, world: TelegramWorld, host: str = "127.0.0.1", port: int = 0) -> None:
        self.world = world
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()
        self._in_flight: set[asyncio.Task[Any]] = set()

    @property
    def base_url(self) -> str:
        """PTB appends the token and "/<method>", so this ends in "/bot"."""
        return f"http://{self.host}:{self.port}/bot"

    @property
    def base_file_url(self) -> str:
        return f"http://{self.host}:{self.port}/file/bot"

    async def start(self) -> None:
        """Listen; with port 0 a free port is chosen and stored in `port`."""
        app = web.Application(client_max_size=_MAX_BODY_BYTES)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        app.router.add_get("/file/bot{token}/{path:.+}", self._download)
        # A request whose client went away is dropped, as by Telegram: a long poll the bot
        # cancelled (PTB does when it stops polling) is not waiting any more.
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.Server) and server.sockets  # started sites always have sockets
        self.port = server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening, ending long polls and held (fault-injected) responses at once."""
        self._stopping.set()
        await self.world.set_webhook(None, None)
        for task in list(self._in_flight):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        task = asyncio.current_task()
        assert task is not None
        self._in_flight.add(task)
        try:
            try:
                params, files = await _read_params(request)
            except ConnectionResetError:  # the client died mid-request (a drill's kill -9): nobody to answer
                return web.Response(status=400)
            if self.world.latency_seconds and request.match_info["method"].lower() != "getupdates":
                await asyncio.sleep(self.world.latency_seconds)
            outcome = await self.world.handle_call(
                request.match_info["token"], request.match_info["method"], params, files
            )
        except ApiError as error:
            return web.json_response(error.to_json(), status=error.status)
        finally:
            self._in_flight.discard(task)
        if isinstance(outcome, Fault):
            return await self._act_out(request, outcome)
        return web.json_response({"ok": True, "result": outcome})

    async def _download(self, request: web.Request) -> web.StreamResponse:
        """A file by the path getFile gave (what PTB's File.download_* fetch)."""
        if request.match_info["token"] != self.world.token:
            return web.json_response(ApiError(401, "Unauthorized").to_json(), status=401)
        stored = self.world.file_at(request.match_info["path"])
        if stored is None:
            return web.json_response(ApiError(404, "Not Found").to_json(), status=404)
        return web.Response(body=stored.content, content_type=stored.mime_type)

    async def _act_out(self, request: web.Request, fault: Fault) -> web.StreamResponse:
        """Answer with the fault's error, or drop the connection without answering.

        "timeout" first holds the request for `faults.hold_seconds` (or until the server
        stops), so the client's read timeout fires; then, like "drop", the connection is
        aborted and the handler cancelled so aiohttp writes nothing.
        """
        if fault.mode == "error":
            return web.json_response(fault.error.to_json(), status=fault.error.status)
        if fault.mode == "timeout":
            ends = [asyncio.ensure_future(self._stopping.wait()),
                    asyncio.ensure_future(self.world.faults.released.wait())]
            try:
                await asyncio.wait(ends, timeout=self.world.faults.hold_seconds, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for end in ends:
                    end.cancel()
        if request.transport is not None:
            request.transport.abort()
        raise asyncio.CancelledError


async def _read_params(request: web.Request) -> tuple[dict[str, Any], dict[str, UploadedFile]]:
    """Parameters from the query string and the body, and any uploaded files by part name."""
    params: dict[str, Any] = dict(request.query)
    files: dict[str, UploadedFile] = {}
    if not request.can_read_body:
        return params, files
    if request.content_type == "application/json":
        try:
            body = await request.json()
        except json.JSONDecodeError:
            raise ApiError(400, "Bad Request: can't parse JSON body") from None
        if not isinstance(body, dict):
            raise ApiError(400, "Bad Request: JSON body must be an object")
        params.update(body)
    elif request.content_type == "multipart/form-data":
        reader = await request.multipart()
        async for part in reader:
            if not isinstance(part, BodyPartReader) or part.name is None:
                continue
            if part.filename is not None:
                files[part.name] = UploadedFile(
                    part.filename, bytes(await part.read()),
                    part.headers.get("Content-Type", "application/octet-stream"),
                )
            else:
                params[part.name] = await part.text()
    else:
        params.update(await request.post())
    return params, files
