"""Simulated participants and their private chats with the bot.

Why: product tests act as people: they type text, press the inline buttons a real client
shows, block the bot, and wait for what the bot sends. `SimUser` does exactly the things a
Telegram client can do (only visible buttons can be pressed) and lets tests await the
bot's messages and edits through asyncio events, never by sleeping.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dtm
import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from sandbox.world import TelegramWorld

Button = tuple[str, str | None]
_callback_ids = itertools.count(7_000_000_000_000_000_001)


class BotEventTimeout(AssertionError, TimeoutError):
    """Nothing the test waited for happened in time; the message shows the chat so far.

    Both an AssertionError (a test failure, with a readable dump) and a TimeoutError
    (== asyncio.TimeoutError), so callers may catch either.
    """


@dataclass
class ChatMessage:
    """One message of a private chat as currently shown (snapshots are never mutated)."""

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
        body = self.text if self.text is not None else f"[media] {self.caption or ''}"
        labels = f" buttons={self.button_labels}" if self.button_labels else ""
        edited = f" (edited {len(self.edits)}x)" if self.edits else ""
        return f"#{self.message_id} {who}: {body!r}{labels}{edited}"


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
        message = self._append(ChatMessage(self._take_message_id(), False, self.world.now(),
                                           text=text, entities=entities))
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
