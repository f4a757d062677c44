"""The stand-in over real HTTP, driven by PTB's Bot and by raw httpx calls."""

from __future__ import annotations

import asyncio
import struct
import zlib

import httpx
import pytest
import telegram
from telegram import InlineKeyboardButton, InlineKeyboardMarkup
from telegram.error import BadRequest, Forbidden, InvalidToken, NetworkError, RetryAfter, TimedOut

from sandbox.chat import SimUser
from sandbox.ratelimit import RateLimits
from sandbox.server import BotApiServer
from sandbox.world import TelegramWorld
from tests.waiting import until

NOT_MODIFIED = (
    "Message is not modified: specified new message content and reply markup are exactly the "
    "same as a current content and reply markup of the message"
)


def keyboard(*labels_and_data: tuple[str, str]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup([[InlineKeyboardButton(label, callback_data=data)]
                                 for label, data in labels_and_data])


def png(width: int, height: int) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + header
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(header)) + chunk
            + struct.pack(">I", zlib.crc32(chunk)))


async def test_get_me_and_send_message_round_trip(bot: telegram.Bot, ana: SimUser) -> None:
    me = await bot.get_me()
    assert (me.id, me.is_bot, me.username) == (123456, True, "trialbot_sandbox_bot")
    sent = await bot.send_message(ana.chat_id, "<b>Hello</b> Ana", parse_mode="HTML",
                                  reply_markup=keyboard(("Applied now", "d:now")),
                                  disable_notification=True)
    assert sent.text == "Hello Ana"
    assert sent.entities[0].type == "bold"
    assert sent.reply_markup == keyboard(("Applied now", "d:now"))
    shown = ana.last_bot_message
    assert shown is not None
    assert (shown.html, shown.text, shown.button_labels) == ("<b>Hello</b> Ana", "Hello Ana", ["Applied now"])
    assert shown.buttons == [[("Applied now", "d:now")]]
    assert shown.disable_notification is True


async def test_length_limit_applies_after_parsing(bot: telegram.Bot, ana: SimUser) -> None:
    await bot.send_message(ana.chat_id, "<i>" + "x" * 4096 + "</i>", parse_mode="HTML")
    with pytest.raises(BadRequest, match="Message is too long"):
        await bot.send_message(ana.chat_id, "x" * 4097)


@pytest.mark.parametrize(("text", "error"), [
    ("<div>hi</div>", 'Unsupported start tag "div" at byte offset 0'),
    ("<b>hi", 'Can\'t find end tag corresponding to start tag "b"'),
])
async def test_bad_html_is_refused(bot: telegram.Bot, ana: SimUser, text: str, error: str) -> None:
    with pytest.raises(BadRequest) as caught:
        await bot.send_message(ana.chat_id, text, parse_mode="HTML")
    # PTB capitalizes the description and lower-cases the rest.
    assert caught.value.message == f"Can't parse entities: {error}".capitalize()


async def test_callback_data_over_64_bytes_is_refused(bot: telegram.Bot, ana: SimUser) -> None:
    await bot.send_message(ana.chat_id, "ok", reply_markup=keyboard(("x", "é" * 32)))  # 64 bytes
    with pytest.raises(BadRequest, match="Button_data_invalid"):
        await bot.send_message(ana.chat_id, "no", reply_markup=keyboard(("x", "a" * 65)))


async def test_button_without_action_is_refused(http: httpx.AsyncClient, ana: SimUser) -> None:
    response = await http.post("sendMessage", json={
        "chat_id": ana.chat_id, "text": "x", "reply_markup": {"inline_keyboard": [[{"text": "x"}]]}})
    assert response.json()["description"] == "Bad Request: text buttons are unallowed in the inline keyboard"


async def test_edits_must_change_something_and_target_bot_messages(
    bot: telegram.Bot, ana: SimUser
) -> None:
    sent = await bot.send_message(ana.chat_id, "<b>Take</b> it", parse_mode="HTML",
                                  reply_markup=keyboard(("Done", "d")))
    with pytest.raises(BadRequest) as caught:
        await bot.edit_message_text("<b>Take</b> it", ana.chat_id, sent.message_id,
                                    parse_mode="HTML", reply_markup=keyboard(("Done", "d")))
    assert caught.value.message == NOT_MODIFIED
    with pytest.raises(BadRequest, match="Message is not modified"):
        await bot.edit_message_reply_markup(ana.chat_id, sent.message_id, reply_markup=keyboard(("Done", "d")))
    edited = await bot.edit_message_text("Taken", ana.chat_id, sent.message_id)
    assert edited.text == "Taken" and edited.reply_markup is None and edited.edit_date is not None
    with pytest.raises(BadRequest, match="Message to edit not found"):
        await bot.edit_message_text("x", ana.chat_id, 999)
    user_message_id = ana.messages[0].message_id
    with pytest.raises(BadRequest, match="Message to edit not found"):
        await bot.edit_message_text("x", ana.chat_id, user_message_id)


async def test_chat_must_exist_and_not_block_the_bot(
    bot: telegram.Bot, world: TelegramWorld, ana: SimUser
) -> None:
    with pytest.raises(BadRequest, match="Chat not found"):
        await bot.send_message(424242, "hello")
    silent = world.add_user(2002, "Bo")
    with pytest.raises(BadRequest, match="Chat not found"):
        await bot.send_message(silent.chat_id, "hello")  # never wrote to the bot
    ana.block_bot()
    with pytest.raises(Forbidden, match="bot was blocked by the user"):
        await bot.send_message(ana.chat_id, "hello")
    ana.unblock_bot()
    await bot.send_message(ana.chat_id, "hello")
    assert [c.status for c in world.rejected_calls] == [400, 400, 403]


async def test_wrong_token_is_unauthorized(server: BotApiServer) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{server.base_url}999:WRONG/getMe")
    assert response.status_code == 401
    assert response.json() == {"ok": False, "error_code": 401, "description": "Unauthorized"}
    with pytest.raises(InvalidToken):
        async with telegram.Bot("999:WRONG", base_url=server.base_url):
            pass


async def test_raw_calls_get_telegram_error_shapes(http: httpx.AsyncClient, ana: SimUser) -> None:
    unknown = await http.post("sendTelepathy", json={})
    assert (unknown.status_code, unknown.json()) == (
        404, {"ok": False, "error_code": 404, "description": "Not Found"})
    missing = await http.get("sendMessage", params={"chat_id": ana.chat_id})
    assert (missing.status_code, missing.json()["description"]) == (400, "Bad Request: message text is empty")
    wrong_type = await http.post("sendMessage", data={"chat_id": "ana", "text": "x", "disable_notification": "often"})
    assert wrong_type.status_code == 400 and "disable_notification" in wrong_type.json()["description"]
    unimplemented = await http.post("sendPoll", json={
        "chat_id": ana.chat_id, "question": "q", "options": [{"text": "a"}, {"text": "b"}]})
    assert unimplemented.json()["description"] == "Bad Request: method sendPoll is not implemented in the sandbox"
    ok = await http.post("SENDMESSAGE", data={"chat_id": str(ana.chat_id), "text": "form"})
    assert ok.json()["ok"] is True and ok.json()["result"]["text"] == "form"


async def test_callback_queries_are_answered_once(
    bot: telegram.Bot, world: TelegramWorld, ana: SimUser
) -> None:
    await bot.send_message(ana.chat_id, "Pick", reply_markup=keyboard(("Yes", "y"), ("No", "n")))
    query_id = await ana.press("No")
    update = (await bot.get_updates())[-1]
    assert update.callback_query is not None
    assert (update.callback_query.id, update.callback_query.data) == (query_id, "n")
    assert update.callback_query.message.reply_markup == keyboard(("Yes", "y"), ("No", "n"))
    assert await bot.answer_callback_query(query_id, "Noted")
    assert ana.callback_answers == [(query_id, "Noted", False)]
    with pytest.raises(BadRequest, match="Query is too old"):
        await bot.answer_callback_query(query_id)
    with pytest.raises(LookupError):
        await ana.press("Maybe")
    assert await ana.press(data="y")


async def test_forged_press_reaches_the_bot(bot: telegram.Bot, ana: SimUser) -> None:
    await ana.press_forged(77, "admin:delete-all")
    update = (await bot.get_updates())[-1]
    assert update.callback_query is not None
    assert update.callback_query.data == "admin:delete-all"
    assert update.callback_query.message.message_id == 77


async def test_get_updates_long_polls_and_confirms(bot: telegram.Bot, world: TelegramWorld) -> None:
    user = world.add_user(3003, "Cy")
    poll = asyncio.create_task(bot.get_updates(timeout=10))
    await asyncio.sleep(0)  # let the request start; the answer must come from the update
    await user.send_text("/start x")
    updates = await asyncio.wait_for(poll, 5)
    assert updates[0].message.text == "/start x"
    assert await bot.get_updates(offset=updates[0].update_id + 1) == ()
    assert await bot.get_updates(timeout=0) == ()


async def test_photo_and_document_uploads(bot: telegram.Bot, ana: SimUser) -> None:
    image = png(37, 21)
    sent = await bot.send_photo(ana.chat_id, image, caption="<b>QR</b>", parse_mode="HTML")
    assert (sent.photo[-1].width, sent.photo[-1].height, sent.caption) == (37, 21, "QR")
    assert ana.last_bot_message is not None and ana.last_bot_message.photo == image
    again = await bot.send_photo(ana.chat_id, sent.photo[-1].file_id)
    assert again.photo[-1].file_id == sent.photo[-1].file_id
    with pytest.raises(BadRequest, match="Image_process_failed"):
        await bot.send_photo(ana.chat_id, b"not an image")
    with pytest.raises(BadRequest, match="Message caption is too long"):
        await bot.send_photo(ana.chat_id, image, caption="x" * 1025)
    document = await bot.send_document(ana.chat_id, b"a,b\n", filename="export.csv")
    assert document.document.file_name == "export.csv"


async def test_bot_commands(bot: telegram.Bot, world: TelegramWorld) -> None:
    await bot.set_my_commands([("start", "Begin"), ("help", "Get help")], language_code="es")
    assert world.commands_for(language_code="es") == [
        {"command": "start", "description": "Begin"}, {"command": "help", "description": "Get help"}]
    assert [c.command for c in await bot.get_my_commands(language_code="es")] == ["start", "help"]
    with pytest.raises(BadRequest, match="Bot_command_invalid"):
        await bot.set_my_commands([("Start", "Begin")])
    assert await bot.delete_my_commands(language_code="es")
    assert world.commands_for(language_code="es") == []


@pytest.mark.filterwarnings("ignore:.*retry_after.*timedelta")
async def test_rate_limits_answer_429_with_retry_after() -> None:
    world = TelegramWorld(rate_limits=RateLimits(per_chat_burst=3, per_chat_per_second=1))
    user = world.add_user(1001, "Ana")
    await user.send_text("/start")
    async with BotApiServer(world) as limited, telegram.Bot(world.token, base_url=limited.base_url) as bot:
        for _ in range(3):
            await bot.send_message(user.chat_id, "burst")
        with pytest.raises(RetryAfter) as caught:
            await bot.send_message(user.chat_id, "one too many")
        async with httpx.AsyncClient() as client:
            raw = await client.post(f"{limited.base_url}{world.token}/sendMessage",
                                    json={"chat_id": user.chat_id, "text": "again"})
    assert caught.value.retry_after == 1
    assert raw.status_code == 429
    assert raw.json() == {"ok": False, "error_code": 429, "description": "Too Many Requests: retry after 1",
                          "parameters": {"retry_after": 1}}


@pytest.mark.filterwarnings("ignore:.*retry_after.*timedelta")
async def test_injected_faults(bot: telegram.Bot, world: TelegramWorld, ana: SimUser) -> None:
    world.faults.fail_next("sendMessage", status=500)
    with pytest.raises(NetworkError):
        await bot.send_message(ana.chat_id, "x")
    world.faults.fail_next(None, status=429, retry_after=7)
    with pytest.raises(RetryAfter) as caught:
        await bot.get_me()
    assert caught.value.retry_after == 7
    world.faults.fail_next("getMe", mode="drop")
    with pytest.raises(NetworkError):
        await bot.get_me()
    await bot.send_message(ana.chat_id, "fine again")
    assert [c.injected for c in world.calls] == [False, True, True, True, False]  # getMe at start
    assert world.rejected_calls == []


async def test_injected_timeout_is_held_until_server_stops(ana: SimUser, world: TelegramWorld) -> None:
    server = BotApiServer(world)
    await server.start()
    async with telegram.Bot(world.token, base_url=server.base_url) as bot:
        world.faults.fail_next("sendMessage", mode="timeout")
        with pytest.raises(TimedOut):
            await bot.send_message(ana.chat_id, "slow", read_timeout=0.2)
        world.faults.fail_next("sendMessage", mode="timeout")
        held = asyncio.create_task(bot.send_message(ana.chat_id, "held", read_timeout=30))
        await asyncio.sleep(0.05)
        await asyncio.wait_for(server.stop(), 5)
        with pytest.raises(NetworkError):
            await asyncio.wait_for(held, 5)


async def test_random_failures_are_reproducible(world: TelegramWorld) -> None:
    def outcomes() -> list[bool]:
        world.faults.random_failures(0.5, seed=42, kinds=[500])
        return [world.faults.take("getMe") is not None for _ in range(20)]

    first = outcomes()
    assert first == outcomes() and any(first) and not all(first)


async def test_a_lost_answer_means_telegram_did_it(bot: telegram.Bot, world: TelegramWorld, ana: SimUser) -> None:
    world.faults.fail_next("sendMessage", mode="drop", after=True)
    with pytest.raises(NetworkError):
        await bot.send_message(ana.chat_id, "delivered, answer lost")
    assert [m.text for m in ana.bot_messages] == ["delivered, answer lost"]
    world.faults.fail_next("sendMessage", mode="drop")
    with pytest.raises(NetworkError):
        await bot.send_message(ana.chat_id, "never delivered")
    assert [m.text for m in ana.bot_messages] == ["delivered, answer lost"]
    assert world.faults.injected == {("sendMessage", "drop-after"): 1, ("sendMessage", "drop"): 1}
    assert world.rejected_calls == []


async def test_random_faults_of_every_kind_are_reproducible_and_spare_what_is_asked(world: TelegramWorld) -> None:
    from sandbox.faults import EVERY_KIND

    def kinds() -> list[str | None]:
        world.faults.random_failures(0.5, seed=7, kinds=EVERY_KIND, spare=["getUpdates"], max_retry_after=3)
        picked = [world.faults.take("sendMessage") for _ in range(200)]
        assert all(world.faults.take("getUpdates") is None for _ in range(50))
        return [f and (f.kind, f.error.retry_after) for f in picked]

    first = kinds()
    assert first == kinds()
    assert {k for k, _ in filter(None, first)} == {"429", "500", "timeout", "drop", "timeout-after", "drop-after"}
    assert {r for k, r in filter(None, first) if k == "429"} == {1, 2, 3}
    assert 70 < sum(f is not None for f in first) < 130


async def test_blocked_user_raw_shape(http: httpx.AsyncClient, ana: SimUser) -> None:
    ana.block_bot()
    response = await http.get("sendChatAction", params={"chat_id": ana.chat_id, "action": "typing"})
    assert (response.status_code, response.json()) == (
        403, {"ok": False, "error_code": 403, "description": "Forbidden: bot was blocked by the user"})


async def test_more_limits(http: httpx.AsyncClient, bot: telegram.Bot, ana: SimUser) -> None:
    query_id = await ana.press_forged(1, "x")
    too_long = await http.post("answerCallbackQuery", json={"callback_query_id": query_id, "text": "x" * 201})
    assert too_long.status_code == 400
    too_many = await http.post("setMyCommands", json={
        "commands": [{"command": f"c{i}", "description": "d"} for i in range(101)]})
    assert too_many.status_code == 400
    no_description = await http.post("setMyCommands", json={"commands": [{"command": "c", "description": ""}]})
    assert no_description.status_code == 400
    two_actions = await http.post("sendMessage", json={"chat_id": ana.chat_id, "text": "x", "reply_markup": {
        "inline_keyboard": [[{"text": "x", "callback_data": "a", "url": "https://e.org"}]]}})
    assert two_actions.status_code == 400
    empty_label = await http.post("sendMessage", json={"chat_id": ana.chat_id, "text": "x", "reply_markup": {
        "inline_keyboard": [[{"text": "", "callback_data": "a"}]]}})
    assert empty_label.json()["description"] == "Bad Request: BUTTON_TEXT_INVALID"
    with pytest.raises(BadRequest, match="not supported by the sandbox"):
        await bot.send_message(ana.chat_id, "*x*", parse_mode="MarkdownV2")


async def test_a_second_poller_ends_the_first_with_409_as_telegram_does(
        server: BotApiServer, world: TelegramWorld) -> None:
    """Telegram serves getUpdates to one caller at a time: two instances of a bot polling at once
    is a mistake it reports to the one that was waiting."""
    async with telegram.Bot(world.token, base_url=server.base_url) as first, \
            telegram.Bot(world.token, base_url=server.base_url) as second:
        waiting = asyncio.ensure_future(first.get_updates(timeout=5))
        await until(lambda: world.polls_begun == 1)  # the first poll is waiting at the stand-in
        assert list(await second.get_updates(timeout=0)) == []
        with pytest.raises(telegram.error.Conflict, match="terminated by other getUpdates request"):
            await waiting
    assert [c.status for c in world.calls if c.method == "getUpdates"] == [200, 409]
