"""The web chat: a page on loopback that plays Telegram's client for several simulated users.

Why: people who must judge the bot (a site deciding, an IRB reviewer, a coordinator in training)
need to use it without Telegram. This serves one page (vendored HTML, CSS and JS: nothing from
the internet) with a phone-like chat per persona, and keeps it live over server-sent events.

It knows nothing of the product. The host (the demo) hands it the personas to show, and
`DemoControls` for the parts that are not Telegram's: the simulated clock and the log of what
was sent. Everything a person does on the page is something a Telegram client can do: type,
press a shown button, open an invite link (which sends `/start <payload>`).

Safety: it binds only to loopback, refuses requests whose Host or Origin is not this page (DNS
rebinding, cross-site forms), takes actions only as JSON POSTs, and sends a Content-Security-Policy
that allows nothing but its own files. The bot's HTML is never injected: the page builds the
formatting from Telegram's entities (what the stand-in parsed from the bot's HTML) with DOM calls.
Photos in the chats (the bot's /mystats and /adherence plots) are served from the stand-in's
stored upload, and only those: a file no shown message carries, or that is not an image, is 404.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import secrets
from dataclasses import dataclass
from importlib import resources
from typing import Any, Protocol, Self

from aiohttp import web

from sandbox import media
from sandbox.chat import ChatMessage, SimUser
from sandbox.world import TelegramWorld

STATIC_FILES = {"index.html": "text/html", "app.js": "text/javascript", "app.css": "text/css"}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
CLOCK_ACTIONS = ("next", "hour", "day", "week")
MAX_TEXT = 4096
PUSH_INTERVAL = 0.25  # seconds between two pushes of the state to one page
#: The image types a browser shows, by their first bytes (what the stand-in stored is served by
#: what it is, never by the type the uploader claimed).
IMAGE_TYPES = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"GIF87a", "image/gif"),
               (b"GIF89a", "image/gif"))


@dataclass
class Persona:
    """One chat shown on the page."""

    key: str  # stable id for the page, e.g. the study id
    user: SimUser
    name: str
    description: str
    role: str  # "participant" | "staff"
    timezone: str | None = None  # IANA zone, for the persona's local time
    start_link: str | None = None  # https://t.me/<bot>?start=<payload>; opening it sends /start <payload>

    @property
    def start_payload(self) -> str | None:
        if self.start_link and "?start=" in self.start_link:
            return self.start_link.split("?start=", 1)[1]
        return None


class DemoControls(Protocol):
    """What the host provides besides Telegram: time and the record of what was sent."""

    async def clock_state(self) -> dict[str, Any]:
        """{"now": ISO UTC, "zone": IANA zone to show it in, "next_event": ISO UTC or None, "last": str}"""

    async def move_clock(self, action: str) -> str:
        """Move the simulated time ("next", "hour", "day", "week"); returns a one-line summary."""

    async def sent_log(self) -> list[dict[str, Any]]:
        """What the bot sent, oldest first: {time, to, chat_id, message_id, template, language, hash,
        via, approved}."""


def photo_json(message: ChatMessage, files_url: str) -> dict[str, Any] | None:
    """A photo message's picture for the page: its largest size, served from the stand-in's
    stored file at `files_url` + file_id, with the size to reserve for it."""
    if message.kind != "photo" or message.file_id is None or message.photo is None:
        return None
    if message.photo_sizes:
        width, height = message.photo_sizes[-1]["width"], message.photo_sizes[-1]["height"]
    else:
        width, height = media.image_size(message.photo)
    return {"url": files_url + message.file_id, "width": width, "height": height}


def image_type(content: bytes) -> str | None:
    """The MIME type of an image a browser can show, from its first bytes; None for anything else."""
    return next((mime for signature, mime in IMAGE_TYPES if content.startswith(signature)), None)


def message_json(message: ChatMessage, files_url: str = "/api/file/") -> dict[str, Any]:
    """A chat message for the page: text and Telegram's entities (never HTML), buttons, edits,
    and a photo's address."""
    buttons = []
    for row in (message.reply_markup or {}).get("inline_keyboard", []):
        cells = []
        for button in row:
            cell = {"text": button["text"]}
            if "callback_data" in button:
                cell["data"] = button["callback_data"]
            elif "url" in button:
                cell["url"] = button["url"]
            cells.append(cell)
        buttons.append(cells)
    return {
        "id": message.message_id,
        "from_bot": message.from_bot,
        "date": message.date.isoformat(),
        "edit_date": message.edit_date.isoformat() if message.edit_date else None,
        "edits": len(message.edits),
        "text": message.text,
        "entities": message.entities,
        "caption": message.caption,
        "caption_entities": message.caption_entities,
        "photo": photo_json(message, files_url),
        "document": message.document_name if message.document is not None else None,
        "kind": message.kind,
        "media": message.media_label,  # "[photo]", "[voice note 0:03]", ... or None for text
        "reply_to": message.reply_to_message_id,
        "forwarded": message.forward_origin is not None,
        "silent": message.disable_notification,
        "buttons": buttons,
    }


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class WebChat:
    """Serves the page at `url`; `async with WebChat(...)` or start()/stop()."""

    def __init__(self, world: TelegramWorld, personas: list[Persona], controls: DemoControls, *,
                 host: str = "127.0.0.1", port: int = 8080, title: str = "trialbot demo") -> None:
        if not _is_loopback(host):
            raise ValueError("the web chat is a local demo: it listens on loopback only")
        self.world = world
        self.personas = {p.key: p for p in personas}
        self.controls = controls
        self.host = host
        self.port = port
        self.title = title
        self._version = 0
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._streams: set[asyncio.Task[Any]] = set()
        self._clock_lock = asyncio.Lock()
        self._last_clock_summary = ""
        # In the address of every picture: a file_id names the same bytes for the whole run, so
        # the browser may keep it, but the next demo on this port numbers its files afresh.
        self._run = secrets.token_hex(6)
        self.files_url = f"/api/file/{self._run}/"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    # --- life ----------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(middlewares=[self._guard], client_max_size=64 * 1024)
        app.router.add_get("/", self._page)
        app.router.add_get("/static/{name}", self._static)
        app.router.add_get("/api/state", self._state)
        app.router.add_get("/api/events", self._events)
        app.router.add_get("/api/file/{run}/{file_id}", self._file_of_chat)
        app.router.add_post("/api/chats/{key}/send", self._send)
        app.router.add_post("/api/chats/{key}/press", self._press)
        app.router.add_post("/api/chats/{key}/open-link", self._open_link)
        app.router.add_post("/api/clock", self._clock)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.Server) and server.sockets
        self.port = server.sockets[0].getsockname()[1]
        self.world.add_listener(self._on_chat_changed)

    async def stop(self) -> None:
        self.world.remove_listener(self._on_chat_changed)
        for task in list(self._streams):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def changed(self) -> None:
        """Tell open pages that something changed (the host calls this after moving the clock)."""
        self._version += 1
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def _on_chat_changed(self, _user: SimUser) -> None:
        self.changed()

    # --- guard -----------------------------------------------------------------------------

    @web.middleware
    async def _guard(self, request: web.Request, handler):
        allowed = {f"127.0.0.1:{self.port}", f"localhost:{self.port}", f"[::1]:{self.port}", f"{self.host}:{self.port}"}
        if request.host not in allowed:
            return web.Response(status=403, text="this demo answers only on its own loopback address")
        origin = request.headers.get("Origin")
        if origin is not None and origin.split("://", 1)[-1] not in allowed:
            return web.Response(status=403, text="cross-origin requests are refused")
        if request.method == "POST" and request.content_type != "application/json":
            return web.Response(status=415, text="actions are JSON")
        response = await handler(request)
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    # --- pages -----------------------------------------------------------------------------

    async def _page(self, request: web.Request) -> web.Response:
        return self._file("index.html")

    async def _static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in STATIC_FILES or name == "index.html":
            raise web.HTTPNotFound()
        return self._file(name)

    def _file(self, name: str) -> web.Response:
        body = resources.files("sandbox.web").joinpath("static", name).read_bytes()
        return web.Response(body=body, content_type=STATIC_FILES[name], charset="utf-8")

    async def _file_of_chat(self, request: web.Request) -> web.Response:
        """A photo shown in one of the page's chats, as the stand-in stored it (the bot's upload,
        or what a person sent). Only files a shown message carries, and only images a browser
        shows: nothing else the stand-in holds is reachable."""
        file_id = request.match_info["file_id"]
        shown = request.match_info["run"] == self._run and any(
            file_id in message.file_ids
            for persona in self.personas.values() for message in persona.user.messages if message.kind == "photo")
        stored = self.world.files.get(file_id) if shown else None
        mime = image_type(stored.content) if stored is not None else None
        if stored is None or mime is None:
            raise web.HTTPNotFound(text="no such picture in these chats")
        return web.Response(body=stored.content, content_type=mime,
                            headers={"Cache-Control": "private, max-age=86400, immutable"})

    # --- state -----------------------------------------------------------------------------

    async def state(self) -> dict[str, Any]:
        clock = await self.controls.clock_state()
        clock["last"] = self._last_clock_summary
        return {
            "title": self.title,
            "version": self._version,
            "bot": {"name": self.world.bot_first_name, "username": self.world.bot_username},
            "clock": clock,
            "personas": [
                {
                    "key": p.key, "name": p.name, "description": p.description, "role": p.role,
                    "timezone": p.timezone, "start_link": p.start_link,
                    "messages": [message_json(m, self.files_url) for m in p.user.messages],
                    "toasts": [{"id": qid, "text": text, "alert": alert}
                               for qid, text, alert in p.user.callback_answers if text],
                }
                for p in self.personas.values()
            ],
            "log": self._log_with_keys(await self.controls.sent_log()),
        }

    def _log_with_keys(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each log row with the persona whose chat it went to, so the page can tag the bubble."""
        by_chat = {p.user.chat_id: p.key for p in self.personas.values()}
        return [{**row, "to_key": by_chat.get(row["chat_id"]) if isinstance(row.get("chat_id"), int) else None}
                for row in rows]

    async def _state(self, request: web.Request) -> web.Response:
        return web.json_response(await self.state())

    async def _events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: the whole state after each change (and once more shortly after, so
        records written just after a message appeared are shown too)."""
        task = asyncio.current_task()
        assert task is not None
        self._streams.add(task)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                               "Content-Security-Policy": CSP})
        try:
            await response.prepare(request)
            seen = -1
            settle = False
            loop = asyncio.get_running_loop()
            last_push = 0.0
            while True:
                if self._version == seen:
                    changed = self._changed
                    try:
                        await asyncio.wait_for(changed.wait(), 0.4 if settle else 15)
                    except TimeoutError:
                        if settle:
                            settle = False
                            await self._push(response)
                        else:
                            await response.write(b": keep-alive\n\n")
                        continue
                # One push for a burst of changes, and at most a few a second while the clock runs.
                await asyncio.sleep(max(0.03, PUSH_INTERVAL - (loop.time() - last_push)))
                seen = self._version
                settle = True
                await self._push(response)
                last_push = loop.time()
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._streams.discard(task)
        return response

    async def _push(self, response: web.StreamResponse) -> None:
        data = json.dumps(await self.state(), separators=(",", ":"))
        await response.write(f"event: state\ndata: {data}\n\n".encode())

    # --- actions ---------------------------------------------------------------------------

    def _persona(self, request: web.Request) -> Persona:
        persona = self.personas.get(request.match_info["key"])
        if persona is None:
            raise web.HTTPNotFound(text="no such chat")
        return persona

    @staticmethod
    async def _body(request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise web.HTTPBadRequest(text="not JSON") from None
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(text="expected an object")
        return body

    async def _send(self, request: web.Request) -> web.Response:
        persona = self._persona(request)
        text = (await self._body(request)).get("text")
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT:
            raise web.HTTPBadRequest(text=f"text must be 1-{MAX_TEXT} characters")
        message_id = await persona.user.send_text(text.strip())
        return web.json_response({"message_id": message_id})

    async def _press(self, request: web.Request) -> web.Response:
        persona = self._persona(request)
        body = await self._body(request)
        message_id, data = body.get("message_id"), body.get("data")
        if not isinstance(message_id, int) or not isinstance(data, str):
            raise web.HTTPBadRequest(text="message_id (number) and data (string) are needed")
        try:
            query_id = await persona.user.press(data=data, message_id=message_id)
        except LookupError:
            # A client can press only what it shows: the button is gone (the message was edited).
            return web.json_response({"error": "that button is no longer shown"}, status=409)
        return web.json_response({"query_id": query_id})

    async def _open_link(self, request: web.Request) -> web.Response:
        persona = self._persona(request)
        if persona.start_payload is None:
            raise web.HTTPBadRequest(text="this persona has no invite link")
        message_id = await persona.user.send_text(f"/start {persona.start_payload}")
        return web.json_response({"message_id": message_id})

    async def _clock(self, request: web.Request) -> web.Response:
        action = (await self._body(request)).get("action")
        if action not in CLOCK_ACTIONS:
            raise web.HTTPBadRequest(text=f"action must be one of {', '.join(CLOCK_ACTIONS)}")
        async with self._clock_lock:
            summary = await self.controls.move_clock(action)
        self._last_clock_summary = summary
        self.changed()
        return web.json_response({"summary": summary, "clock": await self.controls.clock_state()})

