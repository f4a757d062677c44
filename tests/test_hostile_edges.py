"""Edges a hostile client reaches (issue 16, item 5): a secret header that is not text, JSON
nested past reading, updates of a kind the bot does not handle, a button pressed on another
chat's message, forged callback data. Each gets a plain refusal, changes nothing, and leaves no
traceback in the log."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import aiohttp
import pytest

from bot.logging_setup import configure_logging
from tests.test_webhook import SECRET, webhook_trial  # noqa: F401 - the fixture
from tests.trial import Trial

pytestmark = pytest.mark.timeout(120)
APPLIED_NOW = "✅ I put it on now"


@pytest.fixture
def log_text() -> Iterator[io.StringIO]:
    """Everything logged during the test, as `trialbot run` writes it."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    stream = io.StringIO()
    configure_logging("INFO", stream=stream)
    yield stream
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)


def no_trace(log: io.StringIO) -> None:
    text = log.getvalue()
    assert "Traceback" not in text and "failed with" not in text and " ERROR " not in text, text


async def raw_post(url: str, headers: bytes, body: bytes) -> int:
    """POST with header bytes exactly as given (a client library would refuse some)."""
    host_port = url.split("//", 1)[1].split("/", 1)[0]
    host, port = host_port.split(":")
    path = "/" + url.split("//", 1)[1].split("/", 1)[1]
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"POST " + path.encode() + b" HTTP/1.1\r\nHost: " + host_port.encode() + b"\r\n"
                 + b"Content-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n"
                 + headers + b"Connection: close\r\n\r\n" + body)
    await writer.drain()
    status_line = await reader.readline()
    writer.close()
    return int(status_line.split()[1])


async def test_a_secret_header_that_is_not_text_gets_403_and_no_traceback(
        webhook_trial: Trial, log_text: io.StringIO) -> None:  # noqa: F811 - the fixture
    body = json.dumps({"update_id": 5, "message": {"message_id": 1, "date": 0, "chat": {"id": 9, "type": "private"},
                                                   "from": {"id": 9, "is_bot": False, "first_name": "M"},
                                                   "text": "hello"}}).encode()
    for secret in (b"\xff\xfe\xfd", b"s3cret\xc3\x28", SECRET.encode() + b"\x80"):
        status = await raw_post(webhook_trial.webhook.url, b"X-Telegram-Bot-Api-Secret-Token: " + secret + b"\r\n",
                                body)
        assert status == 403
    # The right secret passes (to the body's check, which this body fails).
    assert await raw_post(webhook_trial.webhook.url,
                          b"X-Telegram-Bot-Api-Secret-Token: " + SECRET.encode() + b"\r\n", b'{"message": {}}') == 400
    no_trace(log_text)


async def test_json_nested_past_reading_gets_400_and_no_traceback(
        webhook_trial: Trial, log_text: io.StringIO) -> None:  # noqa: F811 - the fixture
    deep = b"[" * 100_000 + b"]" * 100_000
    # Replies to replies: JSON that reads, nested too deep to turn into an update.
    level = b'{"message_id": 1, "date": 0, "chat": {"id": 9, "type": "private"}, "text": "x"'
    deep_update = (b'{"update_id": 6, "message": ' + (level + b', "reply_to_message": ') * 900 + level
                   + b"}" * 901 + b"}")
    headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET, "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as http:
        for body in (deep, b'{"update_id": 7, "message": ' + b'{"a": ' * 50_000 + b"1" + b"}" * 50_000 + b"}",
                     deep_update):
            async with http.post(webhook_trial.webhook.url, data=body, headers=headers) as response:
                assert response.status == 400
    user = await webhook_trial.join()  # and the bot still serves
    assert user.last_bot_message is not None
    no_trace(log_text)


async def test_an_edited_business_message_is_never_a_command(trial: Trial, log_text: io.StringIO) -> None:
    """Only `edited_message` is a participant's edit (passed on as words); no other edit, and no
    business message, is handled by the handlers of new messages."""
    user = await trial.join()
    await user.press(APPLIED_NOW)
    await user.next_bot_event()
    answered = len(user.bot_messages)
    message = {"message_id": 99, "date": 0, "edit_date": 1, "chat": trial.world.chat_json(user),
               "from": trial.world.user_json(user), "text": "/undo",
               "entities": [{"type": "bot_command", "offset": 0, "length": 5}], "business_connection_id": "b1"}
    for kind in ("edited_business_message", "business_message", "edited_channel_post"):
        trial.world.queue_update({kind: message})
    await user.send_text("/today")  # handled after the three above (one chat, in order)
    await user.wait_for(lambda u: len(u.bot_messages) > answered)
    assert [e.kind for e in await trial.diary()] == ["applied"], "nothing was undone"
    assert len(user.bot_messages) == answered + 1 and "Today" in user.last_bot_message.text
    no_trace(log_text)


async def test_a_button_pressed_on_another_chats_message_changes_neither_chat(
        trial: Trial, log_text: io.StringIO) -> None:
    other = await trial.join("P002", user_id=2002)
    user = await trial.join("P001", user_id=1001)
    menu = other.last_bot_message  # P002's diary buttons, in P002's chat
    before = [(m.message_id, m.text, m.reply_markup) for m in other.messages]
    mine = [(m.message_id, m.text) for m in user.messages]
    data = next(b["callback_data"] for row in menu.reply_markup["inline_keyboard"] for b in row
                if b["text"] == APPLIED_NOW)
    query_id = "forged-1"
    trial.world.register_callback(query_id, user)
    trial.world.queue_update({"callback_query": {
        "id": query_id, "from": trial.world.user_json(user), "message": trial.world.message_json(other, menu),
        "chat_instance": "x", "data": data}})
    await user.wait_for(lambda u: any(a[0] == query_id for a in u.callback_answers))
    assert [(m.message_id, m.text, m.reply_markup) for m in other.messages] == before, "P002's chat is untouched"
    assert [(m.message_id, m.text) for m in user.messages] == mine, "and P001's"
    assert await trial.diary("P001") == [] and await trial.diary("P002") == []
    no_trace(log_text)


# Forged data shaped like the bot's own: an hour of 2599, ids past what the database holds.
PARTICIPANT_FORGED = ["t:0:2599", "t:0:9999", "t:1:0860", "v:c:9999999999:1", "p:n:9999999999:20261124:1",
                      "p:c:9999999999:20261124:1:y"]
STAFF_FORGED = ["a:9999999999", "b:s:9999999999", "b:x:9999999999", "b:a:9999999999"]


async def test_forged_callback_data_gets_the_stale_answer_and_no_trace(trial: Trial, log_text: io.StringIO) -> None:
    user = await trial.join()
    coordinator = await trial.add_staff(5005)
    for who, forged in ((user, PARTICIPANT_FORGED), (coordinator, STAFF_FORGED)):
        for data in forged:
            shown = who.last_bot_message
            query = await who.press_forged(shown.message_id, data)
            await who.wait_for(lambda u, q=query: any(a[0] == q for a in u.callback_answers))
            assert not next(a for a in who.callback_answers if a[0] == query)[2], f"{data}: no apology alert"
            text = who.message(shown.message_id).text
            if data.startswith("t:"):
                assert "no longer active" in text, (data, text)
            assert "something went wrong" not in text, (data, text)
    assert await trial.diary() == []
    no_trace(log_text)
