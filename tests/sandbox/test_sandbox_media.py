"""Media from participants, and copying it on: what the stand-in sends and refuses.

A participant's photos, files, voice notes, videos, video messages, stickers, GIFs, locations
and contacts reach a real PTB Application as Telegram sends them; copyMessage passes them to
another chat without the sender's name; and Telegram's refusals (chat or message not found,
a blocked chat, a service message, a caption too long, a file of the wrong type) are answered
as Telegram words them.
"""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import httpx
import pytest
import telegram
from telegram import Message, ReplyParameters, Update
from telegram.error import BadRequest, Forbidden, RetryAfter
from telegram.ext import (
    Application,
    ApplicationBuilder,
    ContextTypes,
    MessageHandler,
    filters,
)

from sandbox import media
from sandbox.chat import ChatMessage, SimUser
from sandbox.errors import ApiError
from sandbox.methods import is_rate_limited
from sandbox.ratelimit import RateLimits
from sandbox.server import BotApiServer
from sandbox.spec import UploadedFile, validate_object
from sandbox.terminal_chat import render_for_terminal
from sandbox.web.server import message_json as web_message_json
from sandbox.world import TelegramWorld

T = TypeVar("T")
VOICE = b"OggS\x00\x02" + bytes(200)
AUDIO = b"ID3\x04" + bytes(300)
VIDEO = b"\x00\x00\x00\x18ftypmp42" + bytes(400)
PDF = b"%PDF-1.4\n%sandbox\n"

# Everything a participant can send: kind -> how to send it. Names and captions are chosen so a
# copy can be searched for the sender's name.
Send = Callable[[SimUser], Awaitable[int]]
SENDS: dict[str, Send] = {
    "text": lambda user: user.send_text("My arm is <b>red</b> here"),
    "photo": lambda user: user.send_photo(media.jpeg(640, 480), caption="the rash today"),
    "document": lambda user: user.send_document(PDF, "lab-results.pdf", "application/pdf", caption="results"),
    "voice": lambda user: user.send_voice(VOICE, 3, caption="listen please"),
    "audio": lambda user: user.send_audio(AUDIO, 95, caption="recording", performer="Clinic", title="Breathing"),
    "video": lambda user: user.send_video(VIDEO, 1280, 720, 12, caption="how it moves"),
    "video_note": lambda user: user.send_video_note(VIDEO, 384, 9),
    "sticker": lambda user: user.send_sticker("👍"),
    "animation": lambda user: user.send_animation(VIDEO, 320, 240, 4, caption="like this"),
    "location": lambda user: user.send_location(52.520008, 13.404954),
    "contact": lambda user: user.send_contact("+15550100", "Nurse", "Joy"),
}


@pytest.fixture
async def zofia(world: TelegramWorld) -> SimUser:
    """A participant with a distinctive name, so tests can look for it in what staff get."""
    user = world.add_user(2001, "Zofia", last_name="Przybylska", username="zofia_p")
    await user.send_text("/start")
    world.drop_pending_updates()
    return user


@pytest.fixture
async def staff(world: TelegramWorld) -> SimUser:
    user = world.add_user(3001, "Dr. Reyes", username="study_coordinator")
    await user.send_text("/start")
    world.drop_pending_updates()
    return user


def present(value: T | None) -> T:
    assert value is not None
    return value


def seconds(media_object: telegram.TelegramObject | None) -> int:
    """A media object's duration as sent (read without PTB's int-or-timedelta deprecation)."""
    return int(present(media_object).to_dict()["duration"])


def shown(user: SimUser, message_id: int) -> ChatMessage:
    """The message `message_id` of `user`'s chat, which must exist."""
    message = user.message(message_id)
    assert message is not None, user.dump()
    return message


def file_of(user: SimUser, message_id: int) -> str:
    """The file_id of a message with a file."""
    return present(shown(user, message_id).file_id)


def parsed(update: dict[str, Any], bot: telegram.Bot) -> Message:
    """The message of an update as PTB parses it."""
    return present(Update.de_json(update, bot).message)


def ids_in(value: Any) -> set[int]:
    """Every user or chat id anywhere in a JSON object ("id" and "user_id" fields)."""
    if isinstance(value, dict):
        own = {v for k, v in value.items() if k in ("id", "user_id") and isinstance(v, int)}
        return own.union(*(ids_in(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(ids_in(v) for v in value))
    return set()


def shown_to_bot(world: TelegramWorld) -> dict[str, Any]:
    """The newest update as the bot receives it, checked against the spec's Update type."""
    update = world.pending_updates[-1]
    validate_object(update, "Update")
    return update


# --- what the bot receives --------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(SENDS))
async def test_each_kind_is_a_message_update_as_the_spec_defines(
        world: TelegramWorld, bot: telegram.Bot, zofia: SimUser, kind: str) -> None:
    message_id = await SENDS[kind](zofia)
    update = shown_to_bot(world)
    assert update["message"]["message_id"] == message_id
    assert update["message"]["from"]["first_name"] == "Zofia"
    assert kind in update["message"]
    parsed = Update.de_json(update, bot)
    assert parsed.message is not None and getattr(parsed.message, kind)
    stored = shown(zofia, message_id)
    assert stored.kind == kind and not stored.from_bot


async def test_photo_sizes_document_and_sticker_fields(world: TelegramWorld, bot: telegram.Bot,
                                                       zofia: SimUser) -> None:
    await zofia.send_photo(media.png(1600, 1200), caption="swelling", caption_entities=[
        {"type": "bold", "offset": 0, "length": 8}])
    photo = parsed(shown_to_bot(world), bot)
    assert [(size.width, size.height) for size in photo.photo] == [
        (90, 68), (320, 240), (800, 600), (1280, 960), (1600, 1200)]
    assert len({size.file_id for size in photo.photo}) == 5
    assert photo.caption == "swelling" and photo.caption_entities[0].type == "bold"
    assert zofia.messages[-1].file_ids == [size.file_id for size in photo.photo]
    assert zofia.messages[-1].file_id == photo.photo[-1].file_id

    await zofia.send_sticker("🙂")
    await zofia.send_sticker("🙂")
    first, second = (present(parsed(update, bot).sticker) for update in world.pending_updates[-2:])
    assert (first.type, first.is_animated, first.is_video, first.emoji) == ("regular", False, False, "🙂")
    assert first.file_unique_id == second.file_unique_id  # the same sticker, as from a sticker set

    await zofia.send_animation(VIDEO, 320, 240, 4)
    animation = parsed(shown_to_bot(world), bot)
    assert seconds(animation.animation) == 4
    assert present(animation.document).file_id == present(animation.animation).file_id


async def test_a_client_cannot_send_what_telegram_clients_refuse(zofia: SimUser) -> None:
    with pytest.raises(ValueError, match="at most 1024"):
        await zofia.send_photo(media.png(), caption="x" * 1025)
    await zofia.send_photo(media.png(), caption="é" * 1024)
    with pytest.raises(ValueError, match="as a photo"):
        await zofia.send_photo(PDF)
    with pytest.raises(ValueError, match="empty file"):
        await zofia.send_document(b"", "empty.txt", "text/plain")
    with pytest.raises(ValueError, match="0-60 seconds"):
        await zofia.send_video_note(VIDEO, 384, 61)
    with pytest.raises(ValueError, match="latitude"):
        await zofia.send_location(91, 0)
    with pytest.raises(ValueError, match="does not fit"):
        await zofia.send_voice(VOICE, 2, caption="hi", caption_entities=[{"type": "bold", "offset": 1, "length": 5}])
    with pytest.raises(LookupError):
        await zofia.pin_message(999)


async def test_pinning_is_a_service_message_carrying_the_pinned_one(world: TelegramWorld, bot: telegram.Bot,
                                                                    zofia: SimUser) -> None:
    reminder = await bot.send_message(zofia.chat_id, "Take your dose at 8")
    pin_id = await zofia.pin_message(reminder.message_id)
    pinned = parsed(shown_to_bot(world), bot)
    assert pinned.message_id == pin_id and isinstance(pinned.pinned_message, Message)
    assert pinned.pinned_message.text == "Take your dose at 8"
    assert shown(zofia, pin_id).describe() == f"#{pin_id} user: [pinned message #{reminder.message_id}]"


# --- a real Application -----------------------------------------------------------------------


@pytest.fixture
async def app(world: TelegramWorld, server: BotApiServer) -> AsyncIterator[tuple[Application, list[Message]]]:
    """An Application that keeps every message it gets and answers each, quoting it."""
    received: list[Message] = []

    async def answer(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        assert message is not None
        received.append(message)
        reply = "text or photo, please" if message.sticker else f"got {message.effective_attachment.__class__.__name__}"
        await message.reply_text(reply, do_quote=True)

    application = ApplicationBuilder().token(world.token).base_url(server.base_url).base_file_url(
        server.base_file_url).build()
    application.add_handler(MessageHandler(filters.ALL, answer))
    async with application:
        await application.start()
        assert application.updater is not None
        await application.updater.start_polling(timeout=5)
        yield application, received
        await application.updater.stop()
        await application.stop()
    assert world.rejected_calls == []


async def test_ptb_application_gets_every_kind_and_answers_quoting_it(
        world: TelegramWorld, app: tuple[Application, list[Message]], zofia: SimUser) -> None:
    _, received = app
    for kind, send in SENDS.items():
        message_id = await send(zofia)
        answer = await zofia.next_bot_event()
        assert answer.reply_to_message_id == message_id, zofia.dump()
        if kind == "sticker":
            assert answer.text == "text or photo, please"
        assert received[-1].message_id == message_id
    by_kind: dict[str, Any] = dict(zip(SENDS, received, strict=True))
    assert by_kind["photo"].photo[-1].width == 640 and by_kind["photo"].caption == "the rash today"
    assert by_kind["document"].document.file_name == "lab-results.pdf"
    assert by_kind["document"].document.mime_type == "application/pdf"
    assert seconds(by_kind["voice"].voice) == 3
    assert by_kind["audio"].audio.title == "Breathing" and by_kind["audio"].audio.performer == "Clinic"
    assert (by_kind["video"].video.width, by_kind["video"].video.height) == (1280, 720)
    assert by_kind["video_note"].video_note.length == 384
    assert by_kind["sticker"].sticker.emoji == "👍"
    assert by_kind["location"].location.latitude == pytest.approx(52.520008)
    assert by_kind["contact"].contact.phone_number == "+15550100"
    assert all(m.from_user is not None and m.from_user.first_name == "Zofia" for m in received)


async def test_the_bot_downloads_a_participants_voice_note(
        world: TelegramWorld, app: tuple[Application, list[Message]], zofia: SimUser) -> None:
    application, received = app
    await zofia.send_voice(VOICE, 3)
    await zofia.next_bot_event()
    file = await present(received[-1].voice).get_file()
    assert file.file_size == len(VOICE) and file.file_path is not None and "/voice/" in file.file_path
    assert bytes(await file.download_as_bytearray()) == VOICE
    photo_id = await zofia.send_photo(media.jpeg(100, 100))
    await zofia.next_bot_event()
    photo_file = await application.bot.get_file(received[-1].photo[-1].file_id)
    out = io.BytesIO()
    await photo_file.download_to_memory(out)
    assert out.getvalue() == shown(zofia, photo_id).media


async def test_get_file_refusals(bot: telegram.Bot, world: TelegramWorld, server: BotApiServer) -> None:
    with pytest.raises(BadRequest, match="Invalid file_id"):
        await bot.get_file("no-such-file")
    big = world.store_file("document", bytes(20 * 1024 * 1024 + 1), "big.bin", "application/octet-stream")
    with pytest.raises(BadRequest, match="File is too big"):
        await bot.get_file(big)
    async with httpx.AsyncClient() as client:
        missing = await client.get(f"{server.base_file_url}{world.token}/documents/{big}.bin")
        wrong_token = await client.get(f"{server.base_file_url}1:WRONG/documents/{big}.bin")
    assert (missing.status_code, wrong_token.status_code) == (404, 401)  # getFile gave no path for it


# --- copyMessage ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(SENDS))
async def test_copy_of_each_kind_reaches_staff_without_the_sender(
        world: TelegramWorld, bot: telegram.Bot, zofia: SimUser, staff: SimUser, kind: str) -> None:
    original_id = await SENDS[kind](zofia)
    original = zofia.message(original_id)
    assert original is not None
    copied = await bot.copy_message(staff.chat_id, zofia.chat_id, original_id)
    copy = staff.message(copied.message_id)
    assert copy is not None and copy.from_bot and copy.kind == kind
    assert copy.file_ids == original.file_ids and copy.media == original.media
    assert (copy.text, copy.entities, copy.caption) == (original.text, original.entities, original.caption)
    assert copy.attachment == original.attachment and copy.forward_origin is None
    as_sent = world.message_json(staff, copy)
    validate_object(as_sent, "Message")
    assert "forward_origin" not in as_sent and as_sent["from"]["is_bot"] is True
    everything = json.dumps(as_sent, ensure_ascii=False)
    for trace in ("Zofia", "Przybylska", "zofia_p"):
        assert trace not in everything
    assert zofia.user_id not in ids_in(as_sent)


async def test_copy_replaces_or_removes_a_caption_and_ignores_one_for_a_text(
        bot: telegram.Bot, zofia: SimUser, staff: SimUser) -> None:
    photo_id = await zofia.send_photo(media.jpeg(), caption="private details")
    screened = await bot.copy_message(staff.chat_id, zofia.chat_id, photo_id,
                                      caption="<b>P017</b> photo, caption withheld", parse_mode="HTML",
                                      show_caption_above_media=True)
    copy = shown(staff, screened.message_id)
    assert copy.caption == "P017 photo, caption withheld"
    assert copy.caption_entities == [{"type": "bold", "offset": 0, "length": 4}]
    assert copy.show_caption_above_media and copy.photo == shown(zofia, photo_id).photo
    bare = await bot.copy_message(staff.chat_id, zofia.chat_id, photo_id, caption="")
    assert shown(staff, bare.message_id).caption is None

    # Telegram replaces captions of media only: for a text (or a sticker) the caption is ignored,
    # however long, though it is still parsed first.
    text_id = await zofia.send_text("I feel dizzy")
    for message_id in (text_id, await zofia.send_sticker()):
        kept = await bot.copy_message(staff.chat_id, zofia.chat_id, message_id, caption="x" * 2000)
        assert shown(staff, kept.message_id).caption is None
    assert staff.bot_messages[-2].text == "I feel dizzy"
    with pytest.raises(BadRequest, match="Can't parse entities"):
        await bot.copy_message(staff.chat_id, zofia.chat_id, text_id, caption="<b>x", parse_mode="HTML")
    with pytest.raises(BadRequest, match="Message caption is too long"):
        await bot.copy_message(staff.chat_id, zofia.chat_id, photo_id, caption="x" * 1025)
    await bot.copy_message(staff.chat_id, zofia.chat_id, photo_id, caption="<i>" + "x" * 1024 + "</i>",
                           parse_mode="HTML")  # 1024 after parsing


async def test_copy_keeps_a_texts_formatting_and_takes_a_keyboard(
        bot: telegram.Bot, zofia: SimUser, staff: SimUser) -> None:
    sent = await bot.send_message(zofia.chat_id, "<b>Dose</b> due", parse_mode="HTML")
    copied = await bot.copy_message(staff.chat_id, zofia.chat_id, sent.message_id, disable_notification=True,
                                    protect_content=True, reply_markup=telegram.InlineKeyboardMarkup(
                                        [[telegram.InlineKeyboardButton("Seen", callback_data="seen")]]))
    copy = staff.message(copied.message_id)
    assert copy is not None and (copy.text, copy.entities) == ("Dose due", [{"type": "bold", "offset": 0, "length": 4}])
    assert copy.buttons == [[("Seen", "seen")]] and copy.disable_notification and copy.protect_content


async def test_copy_refusals(world: TelegramWorld, bot: telegram.Bot, zofia: SimUser, staff: SimUser) -> None:
    message_id = await zofia.send_photo(media.jpeg())
    with pytest.raises(BadRequest, match="^Chat not found$"):
        await bot.copy_message(staff.chat_id, 424242, message_id)
    with pytest.raises(BadRequest, match="^Message to copy not found$"):
        await bot.copy_message(staff.chat_id, zofia.chat_id, 999)
    with pytest.raises(BadRequest, match="^Chat not found$"):
        await bot.copy_message(424242, zofia.chat_id, message_id)
    pin_id = await zofia.pin_message(message_id)
    with pytest.raises(BadRequest, match="^The message can't be copied$"):
        await bot.copy_message(staff.chat_id, zofia.chat_id, pin_id)
    staff.block_bot()
    with pytest.raises(Forbidden, match="bot was blocked by the user"):
        await bot.copy_message(staff.chat_id, zofia.chat_id, message_id)
    staff.unblock_bot()
    zofia.block_bot()  # the bot can still read the chat it may no longer write to
    await bot.copy_message(staff.chat_id, zofia.chat_id, message_id)
    assert [c.status for c in world.rejected_calls] == [400, 400, 400, 400, 403]
    assert [m.kind for m in staff.bot_messages] == ["photo"]


async def test_copy_message_is_checked_against_the_spec(http: httpx.AsyncClient, zofia: SimUser,
                                                        staff: SimUser) -> None:
    message_id = await zofia.send_text("hello")
    missing = await http.post("copyMessage", json={"chat_id": staff.chat_id, "message_id": message_id})
    assert (missing.status_code, missing.json()["description"]) == (400, "Bad Request: from_chat_id is empty")
    wrong = await http.post("copyMessage", data={"chat_id": staff.chat_id, "from_chat_id": zofia.chat_id,
                                                 "message_id": "first"})
    assert (wrong.status_code, wrong.json()["description"]) == (
        400, 'Bad Request: parameter "message_id" must be Integer')
    as_text = await http.post("copyMessage", data={"chat_id": str(staff.chat_id), "from_chat_id": str(zofia.chat_id),
                                                   "message_id": str(message_id)})
    assert as_text.json() == {"ok": True, "result": {"message_id": staff.bot_messages[-1].message_id}}


async def test_copy_messages_skips_what_it_cannot_copy(bot: telegram.Bot, zofia: SimUser, staff: SimUser) -> None:
    first = await zofia.send_voice(VOICE, 2, caption="one")
    pin = await zofia.pin_message(first)
    last = await zofia.send_text("two")
    copied = await bot.copy_messages(staff.chat_id, zofia.chat_id, [first, pin, last, 999], remove_caption=True)
    assert len(copied) == 2
    assert [(m.kind, m.caption, m.text) for m in staff.bot_messages] == [("voice", None, None), ("text", None, "two")]
    with pytest.raises(BadRequest, match="There are no messages to forward"):
        await bot.copy_messages(staff.chat_id, zofia.chat_id, [998, 999])
    with pytest.raises(BadRequest, match="Messages can't be forwarded"):
        await bot.copy_messages(staff.chat_id, zofia.chat_id, [pin])
    with pytest.raises(BadRequest, match="strictly increasing"):
        await bot.copy_messages(staff.chat_id, zofia.chat_id, [last, first])


async def test_forward_names_the_sender_unlike_a_copy(world: TelegramWorld, bot: telegram.Bot, zofia: SimUser,
                                                      staff: SimUser) -> None:
    message_id = await zofia.send_voice(VOICE, 5, caption="see")
    forwarded = await bot.forward_message(staff.chat_id, zofia.chat_id, message_id)
    assert isinstance(forwarded.forward_origin, telegram.MessageOriginUser)
    assert forwarded.forward_origin.sender_user.first_name == "Zofia"
    assert seconds(forwarded.voice) == 5 and forwarded.caption == "see"
    validate_object(world.message_json(staff, staff.bot_messages[-1]), "Message")
    protected = await bot.send_message(zofia.chat_id, "confidential", protect_content=True)
    with pytest.raises(BadRequest, match="The message can't be forwarded"):
        await bot.forward_message(staff.chat_id, zofia.chat_id, protected.message_id)
    await bot.copy_message(staff.chat_id, zofia.chat_id, protected.message_id)  # a bot may copy it


@pytest.mark.filterwarnings("ignore:.*retry_after.*timedelta")
async def test_copies_count_against_flood_control() -> None:
    assert is_rate_limited("copyMessage") and is_rate_limited("copyMessages") and is_rate_limited("forwardMessage")
    assert not is_rate_limited("getFile")
    world = TelegramWorld(rate_limits=RateLimits(per_chat_burst=2, per_chat_per_second=0.001))  # no refill
    zofia, staff = world.add_user(2001, "Zofia"), world.add_user(3001, "Dr. Reyes")
    message_id = await zofia.send_text("hi")
    await staff.send_text("/start")
    async with BotApiServer(world) as server, telegram.Bot(world.token, base_url=server.base_url) as bot:
        for _ in range(2):
            await bot.copy_message(staff.chat_id, zofia.chat_id, message_id)
        with pytest.raises(RetryAfter):
            await bot.copy_message(staff.chat_id, zofia.chat_id, message_id)


# --- replies ----------------------------------------------------------------------------------


async def test_reply_parameters_must_name_a_message_of_the_chat(bot: telegram.Bot, zofia: SimUser,
                                                                staff: SimUser) -> None:
    question = await zofia.send_text("Can I take it with food?")
    answer = await bot.send_message(zofia.chat_id, "Yes", reply_parameters=ReplyParameters(question))
    assert present(answer.reply_to_message).text == "Can I take it with food?"
    assert present(zofia.last_bot_message).reply_to_message_id == question
    assert "(reply to #" in present(zofia.last_bot_message).describe()
    with pytest.raises(BadRequest, match="^Message to be replied not found$"):
        await bot.send_message(zofia.chat_id, "Yes", reply_parameters=ReplyParameters(999))
    loose = await bot.send_message(zofia.chat_id, "Yes",
                                   reply_parameters=ReplyParameters(999, allow_sending_without_reply=True))
    assert loose.reply_to_message is None and present(zofia.last_bot_message).reply_to_message_id is None
    # A copy may answer a message of the chat it goes to, not of the one it comes from.
    note = await bot.send_message(staff.chat_id, "Incoming from P017:")
    copied = await bot.copy_message(staff.chat_id, zofia.chat_id, question,
                                    reply_parameters=ReplyParameters(note.message_id))
    assert shown(staff, copied.message_id).reply_to_message_id == note.message_id
    with pytest.raises(BadRequest, match="^Message to be replied not found$"):
        await bot.copy_message(staff.chat_id, zofia.chat_id, question,
                               reply_parameters=ReplyParameters(question + 50))


# --- the bot's own media ----------------------------------------------------------------------


async def test_send_methods_take_uploads_and_file_ids(world: TelegramWorld, bot: telegram.Bot, zofia: SimUser,
                                                      staff: SimUser) -> None:
    voice_id = await zofia.send_voice(VOICE, 7)
    voice_file = file_of(zofia, voice_id)
    resent = await bot.send_voice(staff.chat_id, voice_file, caption="from P017", duration=99)
    assert present(resent.voice).file_id == voice_file and seconds(resent.voice) == 7  # the file's own
    uploaded = await bot.send_voice(staff.chat_id, VOICE, duration=4)
    assert seconds(uploaded.voice) == 4 and staff.bot_messages[-1].media == VOICE
    video = await bot.send_video(staff.chat_id, VIDEO, width=640, height=360, duration=3, caption="demo")
    assert (present(video.video).width, present(video.video).height, video.caption) == (640, 360, "demo")
    note = await bot.send_video_note(staff.chat_id, VIDEO, length=240, duration=5)
    assert present(note.video_note).length == 240
    audio = await bot.send_audio(staff.chat_id, AUDIO, title="Guide", performer="Site", duration=60)
    assert present(audio.audio).title == "Guide"
    sticker = await bot.send_sticker(staff.chat_id, file_of(zofia, await zofia.send_sticker("🙏")))
    assert present(sticker.sticker).emoji == "🙏"
    gif = await bot.send_animation(staff.chat_id, VIDEO, width=10, height=10, duration=1)
    assert seconds(gif.animation) == 1 and gif.document is not None
    as_document = await bot.send_document(staff.chat_id, voice_file)  # files but photos are one class
    assert present(as_document.document).file_id == voice_file
    for message in staff.bot_messages:
        validate_object(world.message_json(staff, message), "Message")
    assert [m.kind for m in staff.bot_messages] == [
        "voice", "voice", "video", "video_note", "audio", "sticker", "animation", "document"]


async def test_send_methods_refuse_as_telegram_does(world: TelegramWorld, bot: telegram.Bot, zofia: SimUser) -> None:
    photo_id = file_of(zofia, await zofia.send_photo(media.jpeg()))
    voice_id = file_of(zofia, await zofia.send_voice(VOICE, 2))
    with pytest.raises(BadRequest, match="(?i)^can't use file of type VoiceNote as Photo$"):
        await bot.send_photo(zofia.chat_id, voice_id)
    with pytest.raises(BadRequest, match="(?i)^can't use file of type Photo as Document$"):
        await bot.send_document(zofia.chat_id, photo_id)
    with pytest.raises(BadRequest, match="Wrong file identifier/http url specified"):
        await bot.send_voice(zofia.chat_id, "sandbox-voice-404")
    with pytest.raises(BadRequest, match="Photo_invalid_dimensions"):
        await bot.send_photo(zofia.chat_id, media.png(100, 2500))  # sides in a ratio over 20
    with pytest.raises(BadRequest, match="File must be non-empty"):
        await bot.send_video(zofia.chat_id, b"")
    too_big = UploadedFile("long.ogg", bytes(50 * 1024 * 1024 + 1), "audio/ogg")
    with pytest.raises(ApiError) as caught:  # straight to the world: 50 MB over loopback proves nothing more
        await world.handle_call(world.token, "sendVoice", {"chat_id": zofia.chat_id, "voice": too_big})
    assert (caught.value.status, caught.value.description) == (413, "Request Entity Too Large")


async def test_a_photo_is_resent_by_the_file_id_of_any_of_its_sizes(bot: telegram.Bot, zofia: SimUser) -> None:
    sizes = shown(zofia, await zofia.send_photo(media.jpeg(1000, 750))).photo_sizes
    again = await bot.send_photo(zofia.chat_id, sizes[0]["file_id"])
    assert [size.file_id for size in again.photo] == [size["file_id"] for size in sizes]


# --- showing it -------------------------------------------------------------------------------


async def test_media_in_dumps_the_terminal_and_the_web_page(bot: telegram.Bot, zofia: SimUser,
                                                            staff: SimUser) -> None:
    voice = await zofia.send_voice(VOICE, 63, caption="it hurts here")
    await zofia.send_sticker("😢")
    await zofia.send_location(1.5, -2.25)
    copied = await bot.copy_message(staff.chat_id, zofia.chat_id, voice)
    dump = zofia.dump()
    assert f"#{voice} user: [voice note 1:03] 'it hurts here'" in dump
    assert "[sticker 😢]" in dump and "[location 1.50000, -2.25000]" in dump
    copy = staff.message(copied.message_id)
    assert copy is not None
    assert render_for_terminal(copy) == "bot: [voice note 1:03]\nit hurts here"
    on_page = web_message_json(copy)
    assert (on_page["kind"], on_page["media"], on_page["caption"]) == ("voice", "[voice note 1:03]", "it hurts here")
    for message in zofia.messages + staff.messages:
        json.dumps(web_message_json(message))
        render_for_terminal(message)


def test_chat_message_stays_compatible() -> None:
    import datetime as dtm

    now = dtm.datetime.now(dtm.UTC)
    assert ChatMessage(1, True, now, text="hi").kind == "text"
    photo = ChatMessage(2, True, now, photo=b"\x89PNG", file_id="f", caption="c")
    assert (photo.kind, photo.media, photo.file_ids, photo.media_label) == ("photo", b"\x89PNG", ["f"], "[photo]")
    document = ChatMessage(3, True, now, document=b"x", document_name="a.csv", file_id="d")
    assert (document.kind, document.media_label) == ("document", "[file: a.csv]")
    with pytest.raises(ValueError):
        ChatMessage(4, True, now, kind="hologram")


def test_test_images_are_real_images() -> None:
    image = pytest.importorskip("PIL.Image")
    for content, size in ((media.jpeg(37, 21, grey=200), (37, 21)), (media.png(5, 3), (5, 3))):
        decoded = image.open(io.BytesIO(content))
        decoded.load()
        assert decoded.size == size == media.image_size(content)
    assert image.open(io.BytesIO(media.jpeg(8, 8, grey=200))).getpixel((4, 4)) == 200
