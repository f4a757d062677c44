"""The simulated Telegram: users, chats, the update queue, and a record of every call.

Why: tests and the demo need one in-process object that plays Telegram for the bot. The
HTTP server only translates requests into `handle_call`; everything Telegram would decide
(who exists, what is shown, what is rejected) lives here and in `sandbox.methods`, so a
test can inspect the state directly and assert that the bot made no call Telegram refuses.
"""

from __future__ import annotations

import asyncio
import datetime as dtm
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from sandbox import media, methods
from sandbox.chat import ChatMessage, SimUser
from sandbox.errors import ApiError
from sandbox.faults import Fault, Faults
from sandbox.ratelimit import RateLimiter, RateLimits
from sandbox.spec import UploadedFile, canonical_method, load_spec, validate_call
from sandbox.webhook import DEFAULT_MAX_CONNECTIONS, WebhookDelivery

Clock = Callable[[], dtm.datetime]
#: getFile's folders, as Telegram names them, by type of file.
_FILE_FOLDERS = {"Photo": "photos", "Document": "documents", "VoiceNote": "voice", "Audio": "music",
                 "Video": "videos", "VideoNote": "video_notes", "Sticker": "stickers",
                 "Animation": "animations"}


@dataclass(frozen=True)
class CallRecord:
    """One Bot API call as the sandbox answered it."""

    method: str
    params: dict[str, Any]
    status: int
    description: str | None
    time: dtm.datetime
    injected: bool = False
    #: Made by answering a webhook POST with the method in the body, not by a call of its own.
    via_webhook_reply: bool = False


@dataclass(frozen=True)
class StoredFile:
    """A file on Telegram's servers (uploaded by the bot or sent by a user), by its file_id.

    `file_type` is Telegram's own type of the file (as in "can't use file of type Photo as
    Document"); `attributes` are what the file keeps when it is sent again by file_id
    (duration, width, height, length, performer, title, and a sticker's emoji and format).
    """

    content: bytes
    filename: str
    mime_type: str
    file_type: str = "Document"
    attributes: Mapping[str, Any] = field(default_factory=dict)


class TelegramWorld:
    """Telegram as one bot sees it; see the module docstring."""

    def __init__(
        self,
        token: str = "123456:SANDBOX-TOKEN",
        bot_username: str = "trialbot_sandbox_bot",
        now: Clock | None = None,
        rate_limits: RateLimits | None = None,
        *,
        bot_first_name: str = "Trialbot (sandbox)",
    ) -> None:
        self.token = token
        self.bot_id = int(token.split(":", 1)[0])
        self.bot_username = bot_username
        self.bot_first_name = bot_first_name
        self._clock = now or (lambda: dtm.datetime.now(dtm.UTC))
        self.rate_limiter = RateLimiter(rate_limits) if rate_limits else None
        self.faults = Faults()
        #: A network round trip added to every call but getUpdates, as a real Bot API call takes
        #: tens of milliseconds (benchmarks only; wall-clock time, so never in tests).
        self.latency_seconds: float = 0.0
        self.calls: list[CallRecord] = []
        #: setMyCommands results keyed by (scope as sorted JSON-like tuple, language_code).
        self.bot_commands: dict[methods.CommandKey, list[dict[str, str]]] = {}
        self.files: dict[str, StoredFile] = {}
        #: Every size of a photo (PhotoSize objects, smallest first) by the file_id of each size.
        self.photos: dict[str, list[dict[str, Any]]] = {}
        self._stickers: dict[str, str] = {}  # a SimUser's sticker file_id by emoji
        self._downloadable: set[str] = set()  # file_ids getFile gave a path for
        self._users: dict[int, SimUser] = {}
        self._updates: list[dict[str, Any]] = []
        # Every update ever queued, by id (to deliver one again), and those queued again and not
        # yet handed out, which a poll's offset does not confirm away (their confirmation was lost).
        self._delivered: dict[int, dict[str, Any]] = {}
        self._again: set[int] = set()
        self._update_ids = itertools.count(1)
        self._updates_changed = asyncio.Event()
        self._polls = 0  # getUpdates calls so far; the newest is the one served
        self._pending_callbacks: dict[str, SimUser] = {}
        self._file_ids = itertools.count(1)
        self._listeners: list[Callable[[SimUser], None]] = []
        #: Set by setWebhook: updates are then POSTed to the bot instead of served by getUpdates.
        self.webhook: WebhookDelivery | None = None

    # --- users --------------------------------------------------------------------------

    def add_user(
        self,
        user_id: int,
        first_name: str,
        *,
        last_name: str | None = None,
        username: str | None = None,
        language_code: str | None = "en",
    ) -> SimUser:
        """A new Telegram user; their chat exists for the bot once they message it."""
        if user_id in self._users:
            raise ValueError(f"user {user_id} already exists")
        user = SimUser(self, user_id, first_name, last_name=last_name, username=username,
                       language_code=language_code)
        self._users[user_id] = user
        return user

    def user(self, user_id: int) -> SimUser:
        return self._users[user_id]

    def find_user(self, user_id: int) -> SimUser | None:
        return self._users.get(user_id)

    @property
    def users(self) -> list[SimUser]:
        return list(self._users.values())

    # --- watching chats -----------------------------------------------------------------

    def add_listener(self, listener: Callable[[SimUser], None]) -> None:
        """Call `listener(user)` after every change to a chat (a message, an edit, a removal,
        a callback answer). The web chat uses this to push updates to the page."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[SimUser], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def chat_changed(self, user: SimUser) -> None:
        for listener in list(self._listeners):
            listener(user)

    # --- clock and records --------------------------------------------------------------

    def now(self) -> dtm.datetime:
        return self._clock()

    @property
    def rejected_calls(self) -> list[CallRecord]:
        """Calls Telegram would have refused (4xx), not counting injected faults."""
        return [c for c in self.calls if 400 <= c.status < 500 and not c.injected]

    def commands_for(self, scope: Mapping[str, Any] | None = None, language_code: str = "") -> list[dict[str, str]]:
        """The commands set for a scope (default scope when None) and language."""
        return self.bot_commands.get(methods.command_key(dict(scope or {}), language_code), [])

    # --- updates ------------------------------------------------------------------------

    def queue_update(self, update: dict[str, Any]) -> int:
        """Queue an update for getUpdates; returns its update_id."""
        update_id = next(self._update_ids)
        self._delivered[update_id] = {"update_id": update_id, **update}
        self._queue(self._delivered[update_id])
        return update_id

    def deliver_again(self, update_id: int) -> None:
        """Telegram delivers at least once: it sends an update again when it is not sure the bot
        took it (a webhook answer lost or late, a poll's confirmation lost, a process killed).
        The same update, with the same update_id, is queued once more."""
        update = self._delivered.get(update_id)
        if update is None:
            raise KeyError(f"no update {update_id} was ever delivered")
        if all(pending["update_id"] != update_id for pending in self._updates):
            self._again.add(update_id)
            self._queue(update)

    def handed_out(self, updates: list[dict[str, Any]]) -> None:
        """A poll returned these: from now on its offset confirms them like any other."""
        self._again.difference_update(u["update_id"] for u in updates)

    @property
    def delivered_update_ids(self) -> list[int]:
        """Every update id queued so far, in order."""
        return list(self._delivered)

    def _queue(self, update: dict[str, Any]) -> None:
        self._updates.append(update)
        changed, self._updates_changed = self._updates_changed, asyncio.Event()
        changed.set()

    @property
    def pending_updates(self) -> list[dict[str, Any]]:
        return list(self._updates)

    def confirm_updates(self, offset: int) -> None:
        """getUpdates' offset: forget updates before it (negative: keep only the last -offset)."""
        if offset < 0:
            self._updates = self._updates[offset:]
        else:
            self._updates = [u for u in self._updates if u["update_id"] >= offset or u["update_id"] in self._again]

    def confirm_update(self, update_id: int) -> None:
        """A webhook POST was acknowledged: that update alone is done (others may be in flight)."""
        self._updates = [u for u in self._updates if u["update_id"] != update_id]

    @property
    def updates_changed(self) -> asyncio.Event:
        """Set when the next update is queued."""
        return self._updates_changed

    def drop_pending_updates(self) -> None:
        self._updates.clear()

    async def set_webhook(self, url: str | None, secret_token: str | None,
                          max_connections: int = DEFAULT_MAX_CONNECTIONS) -> None:
        if self.webhook is not None:
            await self.webhook.stop()
            self.webhook = None
        if url:
            self.webhook = WebhookDelivery(self, url, secret_token, max_connections)

    def start_poll(self) -> int:
        """A getUpdates call begins: it is the one served now, and a poll still waiting is not."""
        self._polls += 1
        changed, self._updates_changed = self._updates_changed, asyncio.Event()
        changed.set()  # wakes the waiting poll, to be told it was overtaken
        return self._polls

    def is_current_poll(self, poll: int) -> bool:
        return poll == self._polls

    @property
    def polls_begun(self) -> int:
        """getUpdates calls that reached the stand-in, finished or not."""
        return self._polls

    async def wait_for_updates(self, timeout: float) -> None:
        """Return once updates are pending, another poll began, or `timeout` seconds passed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        polls = self._polls
        while not self._updates and self._polls == polls and (remaining := deadline - loop.time()) > 0:
            try:
                await asyncio.wait_for(self._updates_changed.wait(), remaining)
            except TimeoutError:
                return

    # --- callback queries ---------------------------------------------------------------

    def register_callback(self, query_id: str, user: SimUser) -> None:
        self._pending_callbacks[query_id] = user

    def take_callback(self, query_id: str) -> SimUser | None:
        """The user whose unanswered query this is (each query can be answered once)."""
        return self._pending_callbacks.pop(query_id, None)

    # --- files --------------------------------------------------------------------------

    def store_file(self, kind: str, content: bytes, filename: str, mime_type: str,
                   **attributes: Any) -> str:
        """Keep a file of `kind` ("document", "voice", "sticker", ...; see media.FILE_TYPES) under a
        new file_id, with the attributes it keeps when sent again (duration, width, ...)."""
        file_id = f"sandbox-{kind}-{next(self._file_ids)}"
        self.files[file_id] = StoredFile(content, filename, mime_type, media.FILE_TYPES.get(kind, "Document"),
                                         {k: v for k, v in attributes.items() if v is not None})
        return file_id

    def store_photo(self, content: bytes, filename: str = "photo.jpg",
                    mime_type: str = "image/jpeg") -> list[dict[str, Any]]:
        """Keep a photo as Telegram does, one file per size; returns its PhotoSize objects,
        smallest first (the last is the photo itself). Every size's file holds `content`."""
        width, height = media.image_size(content)
        sizes: list[dict[str, Any]] = []
        for size_width, size_height in media.photo_sizes(width, height):
            file_id = self.store_file("photo", content, filename, mime_type, width=size_width, height=size_height)
            sizes.append({"file_id": file_id, "file_unique_id": file_id, "width": size_width,
                          "height": size_height, "file_size": len(content)})
        for size in sizes:
            self.photos[size["file_id"]] = sizes
        return sizes

    def sticker_file(self, emoji: str) -> str:
        """The file_id of the one sticker simulated users send for `emoji` (a static WEBP
        sticker Telegram already has, the same file every time, as a sticker from a set)."""
        if emoji not in self._stickers:
            self._stickers[emoji] = self.store_file(
                "sticker", media.webp_sticker_placeholder(emoji), "sticker.webp", "image/webp",
                type="regular", width=512, height=512, is_animated=False, is_video=False, emoji=emoji)
        return self._stickers[emoji]

    def file_download_path(self, file_id: str) -> str:
        """The path getFile gives for `file_id`, "<folder>/<file_id><extension>" (folders named
        as Telegram's); from then on the file can be downloaded there."""
        self._downloadable.add(file_id)
        return self._file_path(file_id)

    def file_at(self, path: str) -> StoredFile | None:
        """The file getFile gave `path` for (None for any other path)."""
        file_id = PurePosixPath(path).stem
        if file_id not in self._downloadable or self._file_path(file_id) != path:
            return None
        return self.files[file_id]

    def _file_path(self, file_id: str) -> str:
        stored = self.files[file_id]
        return f"{_FILE_FOLDERS.get(stored.file_type, 'documents')}/{file_id}{PurePosixPath(stored.filename).suffix}"

    def media_object(self, kind: str, file_id: str) -> dict[str, Any]:
        """The Bot API object (Document, Voice, Video, ...) for the stored file `file_id` sent as
        `kind`: the file's own attributes, only the fields the type has, and the type's
        required fields that the file lacks as 0 or False (a sticker's type as "regular")."""
        stored = self.files[file_id]
        values: dict[str, Any] = {
            "file_id": file_id, "file_unique_id": file_id, "file_size": len(stored.content),
            "file_name": stored.filename, "mime_type": stored.mime_type, **stored.attributes,
        }
        result: dict[str, Any] = {}
        for spec_field in load_spec()["types"][media.MEDIA_TYPES[kind]]["fields"]:
            name = spec_field["name"]
            if values.get(name) is not None:
                result[name] = values[name]
            elif spec_field["required"]:
                result[name] = {"Integer": 0, "Boolean": False}.get(spec_field["types"][0], "regular")
        return result

    # --- Bot API objects ----------------------------------------------------------------

    def bot_json(self) -> dict[str, Any]:
        return {"id": self.bot_id, "is_bot": True, "first_name": self.bot_first_name,
                "username": self.bot_username}

    def user_json(self, user: SimUser) -> dict[str, Any]:
        data: dict[str, Any] = {"id": user.user_id, "is_bot": False, "first_name": user.first_name}
        for key in ("last_name", "username", "language_code"):
            if getattr(user, key):
                data[key] = getattr(user, key)
        return data

    def chat_json(self, user: SimUser) -> dict[str, Any]:
        data: dict[str, Any] = {"id": user.chat_id, "type": "private", "first_name": user.first_name}
        for key in ("last_name", "username"):
            if getattr(user, key):
                data[key] = getattr(user, key)
        return data

    def message_json(self, user: SimUser, message: ChatMessage) -> dict[str, Any]:
        """The Bot API Message object for a ChatMessage in `user`'s chat."""
        return methods.message_json(self, user, message)

    # --- the API ------------------------------------------------------------------------

    async def handle_call(
        self,
        token: str,
        method: str,
        params: Mapping[str, Any],
        files: Mapping[str, UploadedFile] | None = None,
        *,
        via_webhook_reply: bool = False,
    ) -> Any | Fault:
        """Answer one Bot API call: its result, a Fault to act out, or raise ApiError.

        Every call is recorded in `calls`, including refused and fault-injected ones, with
        its parameters as native values once they passed validation (raw before).
        """
        name = canonical_method(method) or method
        raw = dict(params)
        if token != self.token:
            return self._refuse(name, raw, ApiError(401, "Unauthorized"), via_webhook_reply)
        fault = self.faults.take(name, raw)
        if fault is not None and not fault.after:
            self._record(name, raw, fault.error.status, f"{fault.mode}: {fault.error.description}",
                         injected=True, via_webhook_reply=via_webhook_reply)
            return fault
        try:
            checked = validate_call(method, params, files)
        except ApiError as error:
            return self._refuse(name, raw, error, via_webhook_reply)
        try:
            if self.rate_limiter is not None and methods.is_rate_limited(name):
                self.rate_limiter.admit(checked.get("chat_id"))
            result = await methods.dispatch(self, name, checked)
        except ApiError as error:
            return self._refuse(name, checked, error, via_webhook_reply)
        if fault is not None:  # carried out; the answer is what gets lost
            self._record(name, checked, 200, f"{fault.mode} after the call took effect: answer lost",
                         injected=True, via_webhook_reply=via_webhook_reply)
            return fault
        self._record(name, checked, 200, None, via_webhook_reply=via_webhook_reply)
        return result

    def _refuse(self, method: str, params: dict[str, Any], error: ApiError, via_webhook_reply: bool = False) -> Any:
        self._record(method, params, error.status, error.description, via_webhook_reply=via_webhook_reply)
        raise error

    def _record(self, method: str, params: dict[str, Any], status: int, description: str | None,
                *, injected: bool = False, via_webhook_reply: bool = False) -> None:
        self.calls.append(CallRecord(method, params, status, description, self.now(), injected, via_webhook_reply))

