"""Simulated participants and their private chats with the bot.

Why: product tests act as people: they type text, send photos, files, voice notes, videos,
stickers, locations and contacts, press the inline buttons a real client shows, block the bot,
and wait for what the bot sends. `SimUser` does exactly the things a Telegram client can do
(only visible buttons can be pressed, no caption over Telegram's limit) and lets tests await
the bot's messages and edits through asyncio events, never by sleeping.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dtm
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from messages.telegram_html import MAX_CAPTION_LENGTH, utf16_len
from sandbox import media

if TYPE_CHECKING:
    from sandbox.world import TelegramWorld

Button = tuple[str, str | None]
MAX_VIDEO_NOTE_SECONDS = 60
_callback_ids = itertools.count(7_000_000_000_000_000_001)


class BotEventTimeout(AssertionError, TimeoutError):
    """Nothing the test waited for happened in time; the message shows the chat so far.

    Both an AssertionError (a test failure, with a readable dump) and a TimeoutError
    (== asyncio.TimeoutError), so callers may catch either.
    """


#: What a message can show, as ChatMessage.kind: the Bot API Message field that carries it.
KINDS = ("text", "photo", "document", "voice", "audio", "video", "video_note", "sticker",
         "animation", "location", "contact", "pinned_message")
#: Kinds that can have a caption (Telegram ignores a caption given for the others).
CAPTION_KINDS = ("photo", "document", "voice", "audio", "video", "animation")
#: Service messages: things that happened in the chat, which cannot be copied or forwarded.
SERVICE_KINDS = ("pinned_message",)

_MEDIA_LABELS = {"photo": "photo", "document": "file", "voice": "voice note", "audio": "audio",
                 "video": "video", "video_note": "video message", "sticker": "sticker",
                 "animation": "GIF", "location": "location", "contact": "contact",
                 "pinned_message": "pinned"}


@dataclass
class ChatMessage:
    """One message of a private chat as currently shown (snapshots are never mutated).

    `kind` says what it shows (see KINDS); when not given it is "photo" or "document" for a
    message with those bytes and "text" otherwise. A message with a file has its bytes in
    `media` (and, as before, in `photo` or `document` for those kinds) and its file_id in
    `file_id` (a photo's largest size; `photo_sizes` has them all). `attachment` is the Bot
    API object the message carries under its kind (a Voice, a Sticker, a Location, ...).
    """

    message_id: int
    from_bot: bool
    date: dtm.datetime
    text: str | None = None
    html: str | None = None
    entities: list[dict[str, Any]] = field(default_factory=list)
    reply_markup: dict[str, Any] | None = None
    edits: list[ChatMessage] = field(default_factory=list)
    edit_date: dtm.datetime | None = None
    disable_notification: bool = False
    photo: bytes | None = None
    file_id: str | None = None
    document: bytes | None = None
    document_name: str | None = None
    caption: str | None = None
    caption_entities: list[dict[str, Any]] = field(default_factory=list)
    kind: str = ""
    media: bytes | None = None
    photo_sizes: list[dict[str, Any]] = field(default_factory=list)
    attachment: dict[str, Any] | None = None
    show_caption_above_media: bool = False
    protect_content: bool = False
    reply_to_message_id: int | None = None
    pinned_message_id: int | None = None
    #: Set on a forwarded message (MessageOrigin JSON): who wrote the original. A copy has none.
    forward_origin: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if not self.kind:
            self.kind = ("photo" if self.photo is not None else "document" if self.document is not None
                         else "text")
        if self.kind not in KINDS:
            raise ValueError(f"unknown message kind {self.kind!r}")
        if self.media is None:
            self.media = self.photo if self.photo is not None else self.document

    @property
    def file_ids(self) -> list[str]:
        """Every file_id the message shows: each photo size's (smallest first), or its file's."""
        if self.photo_sizes:
            return [size["file_id"] for size in self.photo_sizes]
        return [self.file_id] if self.file_id is not None else []

    @property
    def duration(self) -> int | None:
        """Seconds, for a voice note, audio, video, video message or GIF."""
        return (self.attachment or {}).get("duration")

    @property
    def emoji(self) -> str | None:
        """A sticker's emoji."""
        return (self.attachment or {}).get("emoji")

    @property
    def media_label(self) -> str | None:
        """What a client shows in place of the media, e.g. "[photo]", "[voice note 0:03]",
        "[file: export.csv]"; None for a text message."""
        if self.kind == "text":
            return None
        label = _MEDIA_LABELS[self.kind]
        details = []
        attachment = self.attachment or {}
        if self.kind == "document" or (self.kind == "audio" and not attachment.get("title")):
            name = self.document_name or attachment.get("file_name")
            if name:
                return f"[{label}: {name}]"
        if self.kind == "audio" and attachment.get("title"):
            performer = attachment.get("performer")
            details.append(f"{performer} – {attachment['title']}" if performer else attachment["title"])
        if self.duration is not None:
            details.append(f"{self.duration // 60}:{self.duration % 60:02d}")
        if self.kind == "sticker" and self.emoji:
            details.append(self.emoji)
        if self.kind == "location":
            details.append(f"{attachment['latitude']:.5f}, {attachment['longitude']:.5f}")
        if self.kind == "contact":
            name = " ".join(filter(None, (attachment.get("first_name"), attachment.get("last_name"))))
            details.append(f"{name} {attachment.get('phone_number', '')}".strip())
        if self.kind == "pinned_message":
            details.append(f"message #{self.pinned_message_id}")
        return f"[{label} {' '.join(details)}]" if details else f"[{label}]"

    @property
    def buttons(self) -> list[list[Button]]:
        """Inline keyboard rows as (label, callback_data or url) pairs."""
        if not self.reply_markup or "inline_keyboard" not in self.reply_markup:
            return []
        return [
            [(button["text"], button.get("callback_data", button.get("url"))) for button in row]
            for row in self.reply_markup["inline_keyboard"]
        ]

    @property
    def button_labels(self) -> list[str]:
        """Every inline button's label, row by row."""
        return [label for row in self.buttons for label, _ in row]

    def edited(self, **changes: Any) -> ChatMessage:
        """A new snapshot with `changes`, remembering this one among its previous versions."""
        return dataclasses.replace(self, edits=[*self.edits, self], **changes)

    def describe(self) -> str:
        """One line for failure dumps."""
        who = "bot" if self.from_bot else "user"
        if self.text is not None:
            body = repr(self.text)
        else:
            body = " ".join(filter(None, (self.media_label, repr(self.caption) if self.caption else None)))
        reply = f" (reply to #{self.reply_to_message_id})" if self.reply_to_message_id is not None else ""
        forwarded = " (forwarded)" if self.forward_origin else ""
        labels = f" buttons={self.button_labels}" if self.button_labels else ""
        edited = f" (edited {len(self.edits)}x)" if self.edits else ""
        return f"#{self.message_id} {who}: {body}{reply}{forwarded}{labels}{edited}"


class SimUser:
    """A Telegram user chatting privately with the bot (chat id == user id)."""

    def __init__(
        self,
        world: TelegramWorld,
        user_id: int,
        first_name: str,
        *,
        last_name: str | None = None,
        username: str | None = None,
        language_code: str | None = "en",
    ) -> None:
        self.world = world
        self.user_id = user_id
        self.first_name = first_name
        self.last_name = last_name
        self.username = username
        self.language_code = language_code
        self.blocked = False
        self.started = False
        self.callback_answers: list[tuple[str, str | None, bool]] = []
        self._messages: list[ChatMessage] = []
        self._next_message_id = 1
        self._bot_events: list[ChatMessage] = []
        self._events_seen = 0
        self._changed = asyncio.Event()

    def __repr__(self) -> str:
        return f"SimUser({self.user_id}, {self.first_name!r})"

    # --- what tests read -------------------------------------------------------------

    @property
    def chat_id(self) -> int:
        return self.user_id

    @property
    def messages(self) -> list[ChatMessage]:
        """Every message in the chat, oldest first, each in its current version."""
        return list(self._messages)

    @property
    def bot_messages(self) -> list[ChatMessage]:
        return [message for message in self._messages if message.from_bot]

    @property
    def last_bot_message(self) -> ChatMessage | None:
        bot_messages = self.bot_messages
        return bot_messages[-1] if bot_messages else None

    def message(self, message_id: int) -> ChatMessage | None:
        """The current version of a message in this chat, if it exists."""
        return next((m for m in self._messages if m.message_id == message_id), None)

    def dump(self) -> str:
        """The chat as text, for assertion messages."""
        lines = [message.describe() for message in self._messages] or ["(no messages)"]
        return f"chat with {self.first_name} ({self.user_id}):\n  " + "\n  ".join(lines)

    # --- what a client can do --------------------------------------------------------

    async def send_text(self, text: str) -> int:
        """Send `text` to the bot; a leading /command gets its bot_command entity.

        Returns the new message's id.
        """
        entities = []
        if text.startswith("/"):
            command = text.split(maxsplit=1)[0]
            entities.append({"type": "bot_command", "offset": 0, "length": len(command)})
        return self._send(text=text, entities=entities)

    # Media, as a client sends it. Each returns the new message's id. A caption may have
    # formatting (`caption_entities`, as the client's editor makes them; Telegram detects no
    # links in it here), and a client refuses one longer than 1024 characters (ValueError).

    async def send_photo(self, content: bytes, caption: str | None = None, *,
                         caption_entities: list[dict[str, Any]] | None = None) -> int:
        """Send an image as a photo; the bot gets Telegram's several sizes of it."""
        if not media.is_image(content):
            raise ValueError("a client sends only a PNG, JPEG, GIF, BMP or WEBP image as a photo; "
                             "send anything else with send_document")
        captioned = self._caption(caption, caption_entities)
        sizes = self.world.store_photo(content)
        return self._send(kind="photo", photo=content, photo_sizes=sizes, file_id=sizes[-1]["file_id"],
                          **captioned)

    async def send_document(self, content: bytes, filename: str, mime_type: str,
                            caption: str | None = None, *,
                            caption_entities: list[dict[str, Any]] | None = None) -> int:
        """Send a file as a document (any content, shown with its name)."""
        return self._send_file("document", content, filename, mime_type, caption, caption_entities,
                               document=content, document_name=filename)

    async def send_voice(self, content: bytes, duration: int, caption: str | None = None, *,
                         caption_entities: list[dict[str, Any]] | None = None,
                         mime_type: str = "audio/ogg") -> int:
        """Send a voice note of `duration` seconds (a client records OGG/Opus)."""
        return self._send_file("voice", content, "voice.ogg", mime_type, caption, caption_entities,
                               duration=_seconds(duration))

    async def send_audio(self, content: bytes, duration: int, caption: str | None = None, *,
                         caption_entities: list[dict[str, Any]] | None = None,
                         performer: str | None = None, title: str | None = None,
                         filename: str = "audio.mp3", mime_type: str = "audio/mpeg") -> int:
        """Send a music file (shown in the player with its performer and title)."""
        return self._send_file("audio", content, filename, mime_type, caption, caption_entities,
                               duration=_seconds(duration), performer=performer, title=title)

    async def send_video(self, content: bytes, width: int, height: int, duration: int,
                         caption: str | None = None, *,
                         caption_entities: list[dict[str, Any]] | None = None,
                         filename: str = "video.mp4", mime_type: str = "video/mp4") -> int:
        """Send a video."""
        return self._send_file("video", content, filename, mime_type, caption, caption_entities,
                               width=_side(width), height=_side(height), duration=_seconds(duration))

    async def send_animation(self, content: bytes, width: int, height: int, duration: int,
                             caption: str | None = None, *,
                             caption_entities: list[dict[str, Any]] | None = None,
                             filename: str = "animation.mp4", mime_type: str = "video/mp4") -> int:
        """Send a GIF (Telegram keeps GIFs as silent MPEG-4 animations)."""
        return self._send_file("animation", content, filename, mime_type, caption, caption_entities,
                               width=_side(width), height=_side(height), duration=_seconds(duration))

    async def send_video_note(self, content: bytes, length: int, duration: int) -> int:
        """Send a round video message: `length` is its diameter. Clients record at most a
        minute and give video messages no caption."""
        if not 0 <= duration <= MAX_VIDEO_NOTE_SECONDS:
            raise ValueError(f"a client records video messages of 0-{MAX_VIDEO_NOTE_SECONDS} seconds")
        return self._send_file("video_note", content, "video_note.mp4", "video/mp4", None, None,
                               length=_side(length), duration=duration)

    async def send_sticker(self, emoji: str = "🙂") -> int:
        """Send the (static) sticker that stands for `emoji`; the same file each time."""
        file_id = self.world.sticker_file(emoji)
        stored = self.world.files[file_id]
        return self._send(kind="sticker", media=stored.content, file_id=file_id,
                          attachment=self.world.media_object("sticker", file_id))

    async def send_location(self, latitude: float, longitude: float) -> int:
        """Share a point on the map."""
        if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
            raise ValueError("latitude must be -90..90 and longitude -180..180")
        return self._send(kind="location", attachment={"latitude": float(latitude), "longitude": float(longitude)})

    async def send_contact(self, phone_number: str, first_name: str, last_name: str | None = None, *,
                           user_id: int | None = None) -> int:
        """Share a contact (with `user_id` when it is a Telegram user, e.g. one's own)."""
        if not phone_number or not first_name:
            raise ValueError("a contact needs a phone number and a first name")
        contact = {"phone_number": phone_number, "first_name": first_name, "last_name": last_name,
                   "user_id": user_id}
        return self._send(kind="contact", attachment={k: v for k, v in contact.items() if v is not None})

    async def pin_message(self, message_id: int) -> int:
        """Pin a message of the chat; the bot gets the service message saying so. Returns the
        service message's id."""
        if self.message(message_id) is None:
            raise LookupError(f"no message #{message_id} to pin; {self.dump()}")
        return self._send(kind="pinned_message", pinned_message_id=message_id)

    def _send_file(self, kind: str, content: bytes, filename: str, mime_type: str, caption: str | None,
                   caption_entities: list[dict[str, Any]] | None, *, document: bytes | None = None,
                   document_name: str | None = None, **attributes: Any) -> int:
        if not content:
            raise ValueError("a client cannot send an empty file")
        captioned = self._caption(caption, caption_entities)
        file_id = self.world.store_file(kind, content, filename, mime_type, **attributes)
        return self._send(kind=kind, media=content, file_id=file_id, document=document,
                          document_name=document_name, attachment=self.world.media_object(kind, file_id),
                          **captioned)

    @staticmethod
    def _caption(caption: str | None, entities: list[dict[str, Any]] | None) -> dict[str, Any]:
        """A caption as a client sends it: none when blank; refused when over Telegram's limit."""
        if caption is None or not caption.strip():
            if entities:
                raise ValueError("caption_entities without a caption")
            return {}
        length = utf16_len(caption)
        if length > MAX_CAPTION_LENGTH:
            raise ValueError(f"a caption is at most {MAX_CAPTION_LENGTH} characters; this one has {length}")
        for entity in entities or []:
            if not ({"type", "offset", "length"} <= entity.keys() and entity["offset"] >= 0
                    and entity["length"] > 0 and entity["offset"] + entity["length"] <= length):
                raise ValueError(f"caption entity {entity} does not fit the caption")
        return {"caption": caption, "caption_entities": list(entities or [])}

    async def edit_text(self, message_id: int, text: str) -> None:
        """Edit one of the user's own text messages, as a client can: the bot gets an
        `edited_message` update carrying the new text."""
        current = self.message(message_id)
        if current is None or current.from_bot or current.text is None:
            raise LookupError(f"the user has no text message {message_id} to edit; {self.dump()}")
        if not text.strip():
            raise ValueError("a client cannot edit a message to nothing")
        edited = current.edited(text=text, entities=[], edit_date=self.world.now())
        self._messages[self._messages.index(current)] = edited
        self._notify()
        self.world.queue_update({"edited_message": self.world.message_json(self, edited)})

    def _send(self, **fields: Any) -> int:
        """Add the user's message and queue the update that brings it to the bot."""
        message = self._append(ChatMessage(self._take_message_id(), False, self.world.now(), **fields))
        self.started = True
        self.world.queue_update({"message": self.world.message_json(self, message)})
        return message.message_id

    async def press(
        self, label: str | None = None, *, data: str | None = None, message_id: int | None = None
    ) -> str:
        """Press a callback button shown in the chat, by `label` or by callback `data`.

        Searches the newest bot message first (or only `message_id`). Raises LookupError
        when no such button is shown, since a client can only press what it displays.
        Returns the callback query id.
        """
        if (label is None) == (data is None):
            raise ValueError("press() needs exactly one of label or data")
        candidates = [m for m in reversed(self.bot_messages)
                      if message_id is None or m.message_id == message_id]
        for message in candidates:
            for row in message.reply_markup.get("inline_keyboard", []) if message.reply_markup else []:
                for button in row:
                    if (label is not None and button["text"] == label) or (
                        data is not None and button.get("callback_data") == data
                    ):
                        if "callback_data" not in button:
                            raise LookupError(f"button {button['text']!r} is not a callback button")
                        return self._queue_callback(self.world.message_json(self, message),
                                                    button["callback_data"])
        wanted = f"label {label!r}" if label is not None else f"data {data!r}"
        raise LookupError(f"no button with {wanted} is shown; {self.dump()}")

    async def press_forged(self, message_id: int, data: str) -> str:
        """Send a callback query a real client could not: arbitrary data on any message id."""
        message = self.message(message_id)
        if message is not None and message.from_bot:
            shown = self.world.message_json(self, message)
        else:
            shown = {"chat": self.world.chat_json(self), "message_id": message_id, "date": 0}
        return self._queue_callback(shown, data)

    def block_bot(self) -> None:
        """From now on the bot's calls to this chat fail with 403, as after a real block."""
        self.blocked = True

    def unblock_bot(self) -> None:
        self.blocked = False

    # --- waiting ----------------------------------------------------------------------

    async def next_bot_event(self, timeout: float | None = 10) -> ChatMessage:
        """The next bot message or edit in this chat not yet returned by this method.

        `timeout` None waits forever (the terminal chat does; tests should not).
        """
        await self._wait(lambda: len(self._bot_events) > self._events_seen, timeout,
                         "no new bot message or edit")
        event = self._bot_events[self._events_seen]
        self._events_seen += 1
        return event

    async def wait_for(self, predicate: Callable[[SimUser], bool], timeout: float | None = 10) -> None:
        """Wait until `predicate(self)` holds; it is re-checked after every chat change."""
        await self._wait(lambda: predicate(self), timeout, "condition not met")

    async def _wait(self, ready: Callable[[], bool], timeout: float | None, what: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not ready():
            remaining = None if deadline is None else deadline - loop.time()
            changed = self._changed
            try:
                if remaining is not None and remaining <= 0:
                    raise TimeoutError
                await asyncio.wait_for(changed.wait(), remaining)
            except TimeoutError:
                raise BotEventTimeout(f"{what} within {timeout}s; {self.dump()}") from None

    # --- used by the world -------------------------------------------------------------

    def _take_message_id(self) -> int:
        message_id = self._next_message_id
        self._next_message_id += 1
        return message_id

    def _append(self, message: ChatMessage) -> ChatMessage:
        self._messages.append(message)
        if message.from_bot:
            self._bot_events.append(message)
        self._notify()
        return message

    def add_bot_message(self, **fields: Any) -> ChatMessage:
        """Store a message the bot sent; returns its snapshot."""
        return self._append(ChatMessage(self._take_message_id(), True, self.world.now(), **fields))

    def replace_message(self, message: ChatMessage) -> None:
        """Store a new version of a bot message (an edit)."""
        index = next(i for i, m in enumerate(self._messages) if m.message_id == message.message_id)
        self._messages[index] = message
        self._bot_events.append(message)
        self._notify()

    def remove_message(self, message_id: int) -> None:
        self._messages = [m for m in self._messages if m.message_id != message_id]
        self._notify()

    def record_callback_answer(self, query_id: str, text: str | None, show_alert: bool) -> None:
        self.callback_answers.append((query_id, text, show_alert))
        self._notify()

    def _queue_callback(self, message: dict[str, Any], data: str) -> str:
        query_id = str(next(_callback_ids))
        self.world.register_callback(query_id, self)
        self.world.queue_update({"callback_query": {
            "id": query_id,
            "from": self.world.user_json(self),
            "message": message,
            "chat_instance": f"sandbox-{self.user_id}",
            "data": data,
        }})
        return query_id

    def _notify(self) -> None:
        """Wake every waiter: set the current event and start a fresh one for the next change."""
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        self.world.chat_changed(self)


def _seconds(duration: int) -> int:
    if duration < 0:
        raise ValueError("a duration is a number of seconds, 0 or more")
    return duration


def _side(pixels: int) -> int:
    if pixels <= 0:
        raise ValueError("a width, height or diameter is a number of pixels, 1 or more")
    return pixels
