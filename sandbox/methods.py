"""The Bot API methods the sandbox implements, on already type-checked parameters.

Why: these are the rules Telegram applies beyond types: a chat must exist and not have
blocked the bot, only the bot's own messages can be edited, an edit must change
something, a callback query is answered once, texts are measured after HTML parsing.
Methods the spec has but the sandbox does not implement answer 400 so gaps are visible.
"""

from __future__ import annotations

import datetime as dtm
import struct
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from sandbox import limits
from sandbox.chat import ChatMessage, SimUser
from sandbox.errors import ApiError, bad_request
from sandbox.spec import UploadedFile
from sandbox.telegram_html import MAX_CAPTION_LENGTH, MAX_TEXT_LENGTH, render_text
from sandbox.webhook import DEFAULT_MAX_CONNECTIONS, check_url, conflict_with_webhook

if TYPE_CHECKING:
    from sandbox.world import StoredFile, TelegramWorld

Params = dict[str, Any]
CommandKey = tuple[tuple[tuple[str, Any], ...], str]
Handler = Callable[["TelegramWorld", Params], Awaitable[Any]]

MAX_PHOTO_BYTES = 10 * 1024 * 1024
MAX_DOCUMENT_BYTES = 50 * 1024 * 1024
_CHAT_ACTIONS = {
    "typing", "upload_photo", "record_video", "upload_video", "record_voice", "upload_voice",
    "upload_document", "choose_sticker", "find_location", "record_video_note",
    "upload_video_note",
}
_IMAGE_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM")
_NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup are exactly "
    "the same as a current content and reply markup of the message"
)
_HANDLERS: dict[str, Handler] = {}


def _handles(name: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        _HANDLERS[name] = handler
        return handler

    return register


async def dispatch(world: TelegramWorld, method: str, params: Params) -> Any:
    """Run an implemented method, or refuse a valid but unimplemented one."""
    handler = _HANDLERS.get(method)
    if handler is None:
        raise bad_request(f"method {method} is not implemented in the sandbox")
    return await handler(world, params)


def command_key(scope: dict[str, Any] | None, language_code: str | None) -> CommandKey:
    """How bot_commands is keyed: the scope's items (default scope when absent) and language."""
    scope = scope or {"type": "default"}
    return tuple(sorted(scope.items())), language_code or ""


def is_rate_limited(method: str) -> bool:
    """Whether Telegram's flood control counts this method (messages sent or edited)."""
    return method.startswith(("send", "edit", "copy", "forward")) and method != "sendChatAction"


# --- objects ------------------------------------------------------------------------------


def message_json(world: TelegramWorld, user: SimUser, message: ChatMessage) -> dict[str, Any]:
    """The Bot API Message object for a message in `user`'s chat."""
    data: dict[str, Any] = {
        "message_id": message.message_id,
        "date": _unix(message.date),
        "chat": world.chat_json(user),
        "from": world.bot_json() if message.from_bot else world.user_json(user),
    }
    if message.text is not None:
        data["text"] = message.text
        if message.entities:
            data["entities"] = message.entities
    if message.caption is not None:
        data["caption"] = message.caption
        if message.caption_entities:
            data["caption_entities"] = message.caption_entities
    if message.photo is not None:
        data["photo"] = [_photo_size(world, message)]
    if message.document is not None:
        data["document"] = _document(world, message)
    if message.reply_markup and "inline_keyboard" in message.reply_markup:
        data["reply_markup"] = message.reply_markup
    if message.edit_date is not None:
        data["edit_date"] = _unix(message.edit_date)
    return data


def _unix(moment: dtm.datetime) -> int:
    return int(moment.timestamp())


def _photo_size(world: TelegramWorld, message: ChatMessage) -> dict[str, Any]:
    assert message.photo is not None and message.file_id is not None
    width, height = _image_size(message.photo)
    return {"file_id": message.file_id, "file_unique_id": message.file_id, "width": width,
            "height": height, "file_size": len(message.photo)}


def _document(world: TelegramWorld, message: ChatMessage) -> dict[str, Any]:
    assert message.document is not None and message.file_id is not None
    stored = world.files[message.file_id]
    return {"file_id": message.file_id, "file_unique_id": message.file_id,
            "file_name": stored.filename, "mime_type": stored.mime_type,
            "file_size": len(message.document)}


def _image_size(content: bytes) -> tuple[int, int]:
    """Width and height from a PNG header; other formats get a nominal size."""
    if content.startswith(_IMAGE_SIGNATURES[0]) and len(content) >= 24:
        return struct.unpack(">II", content[16:24])
    return 512, 512


# --- chats and messages -------------------------------------------------------------------


def _chat(world: TelegramWorld, chat_id: int | str) -> SimUser:
    """The private chat `chat_id`, refusing as Telegram does when the bot may not write to it."""
    user = world.find_user(chat_id) if isinstance(chat_id, int) else None
    if user is None or not user.started:
        raise bad_request("chat not found")
    if user.blocked:
        raise ApiError(403, "Forbidden: bot was blocked by the user")
    return user


def _bot_message(user: SimUser, params: Params, missing: str) -> ChatMessage:
    if "inline_message_id" in params:
        raise bad_request("inline messages are not supported by the sandbox")
    message_id = params.get("message_id")
    if message_id is None:
        raise bad_request("message_id is empty")
    message = user.message(message_id)
    if message is None or not message.from_bot:
        raise bad_request(missing)
    return message


def _edit_target(world: TelegramWorld, params: Params) -> tuple[SimUser, ChatMessage]:
    if "chat_id" not in params and "inline_message_id" not in params:
        raise bad_request("chat_id is empty")
    user = _chat(world, params["chat_id"]) if "chat_id" in params else None
    if user is None:
        raise bad_request("inline messages are not supported by the sandbox")
    return user, _bot_message(user, params, "message to edit not found")


def _markup(params: Params) -> dict[str, Any] | None:
    markup = params.get("reply_markup")
    limits.check_reply_markup(markup)
    return markup


def _text(params: Params) -> tuple[str, list[dict[str, Any]]]:
    plain, entities = render_text(params["text"], params.get("parse_mode"), limit=MAX_TEXT_LENGTH,
                                  too_long="message is too long", empty="message text is empty")
    return plain, entities if entities is not None else params.get("entities", [])


def _caption(params: Params) -> tuple[str | None, list[dict[str, Any]]]:
    if params.get("caption") is None:
        return None, []
    plain, entities = render_text(params["caption"], params.get("parse_mode"),
                                  limit=MAX_CAPTION_LENGTH, too_long="message caption is too long",
                                  empty=None)
    return plain, entities if entities is not None else params.get("caption_entities", [])


def _html(params: Params, key: str) -> str | None:
    return params[key] if (params.get("parse_mode") or "").lower() == "html" else None


# --- methods ------------------------------------------------------------------------------


@_handles("getMe")
async def _get_me(world: TelegramWorld, params: Params) -> Any:
    return {**world.bot_json(), "can_join_groups": False, "can_read_all_group_messages": False,
            "supports_inline_queries": False, "can_connect_to_business": False,
            "has_main_web_app": False}


@_handles("getUpdates")
async def _get_updates(world: TelegramWorld, params: Params) -> Any:
    if world.webhook is not None:
        raise conflict_with_webhook()
    if "offset" in params:
        world.confirm_updates(params["offset"])
    # Telegram serves one poller: a getUpdates arriving while another waits ends the waiting one
    # with 409 (two instances of one bot polling at once).
    poll = world.start_poll()
    if not world.pending_updates and params.get("timeout", 0) > 0:
        await world.wait_for_updates(params["timeout"])
    if not world.is_current_poll(poll):
        raise ApiError(409, "Conflict: terminated by other getUpdates request; "
                            "make sure that only one bot instance is running")
    limit = min(max(params.get("limit", 100), 1), 100)
    return world.pending_updates[:limit]


@_handles("setWebhook")
async def _set_webhook(world: TelegramWorld, params: Params) -> Any:
    check_url(params["url"])
    if params.get("drop_pending_updates"):
        world.drop_pending_updates()
    # Telegram takes 1-100 and brings other numbers into that range rather than refusing them.
    connections = min(max(int(params.get("max_connections", DEFAULT_MAX_CONNECTIONS)), 1), 100)
    await world.set_webhook(params["url"], params.get("secret_token"), connections)
    return True


@_handles("deleteWebhook")
async def _delete_webhook(world: TelegramWorld, params: Params) -> Any:
    await world.set_webhook(None, None)
    if params.get("drop_pending_updates"):
        world.drop_pending_updates()
    return True


@_handles("getWebhookInfo")
async def _get_webhook_info(world: TelegramWorld, params: Params) -> Any:
    info = {"url": world.webhook.url if world.webhook else "", "has_custom_certificate": False,
            "pending_update_count": len(world.pending_updates)}
    if world.webhook is not None and world.webhook.last_error:
        info["last_error_message"] = world.webhook.last_error
    return info


@_handles("setMyCommands")
async def _set_my_commands(world: TelegramWorld, params: Params) -> Any:
    limits.check_commands(params["commands"])
    key = command_key(params.get("scope"), params.get("language_code"))
    world.bot_commands[key] = [{"command": c["command"], "description": c["description"]}
                               for c in params["commands"]]
    return True


@_handles("getMyCommands")
async def _get_my_commands(world: TelegramWorld, params: Params) -> Any:
    return world.commands_for(params.get("scope"), params.get("language_code") or "")


@_handles("deleteMyCommands")
async def _delete_my_commands(world: TelegramWorld, params: Params) -> Any:
    world.bot_commands.pop(command_key(params.get("scope"), params.get("language_code")), None)
    return True


@_handles("sendMessage")
async def _send_message(world: TelegramWorld, params: Params) -> Any:
    user = _chat(world, params["chat_id"])
    text, entities = _text(params)
    markup = _markup(params)
    message = user.add_bot_message(text=text, html=_html(params, "text"), entities=entities,
                                   reply_markup=markup,
                                   disable_notification=params.get("disable_notification", False))
    return message_json(world, user, message)


@_handles("editMessageText")
async def _edit_message_text(world: TelegramWorld, params: Params) -> Any:
    user, current = _edit_target(world, params)
    if current.text is None:
        raise bad_request("there is no text in the message to edit")
    text, entities = _text(params)
    markup = _markup(params)
    if (text, entities, markup) == (current.text, current.entities, current.reply_markup):
        raise bad_request(_NOT_MODIFIED)
    edited = current.edited(text=text, html=_html(params, "text"), entities=entities,
                            reply_markup=markup, edit_date=world.now())
    user.replace_message(edited)
    return message_json(world, user, edited)


@_handles("editMessageReplyMarkup")
async def _edit_message_reply_markup(world: TelegramWorld, params: Params) -> Any:
    user, current = _edit_target(world, params)
    markup = _markup(params)
    if markup == current.reply_markup:
        raise bad_request(_NOT_MODIFIED)
    edited = current.edited(reply_markup=markup, edit_date=world.now())
    user.replace_message(edited)
    return message_json(world, user, edited)


@_handles("deleteMessage")
async def _delete_message(world: TelegramWorld, params: Params) -> Any:
    user = _chat(world, params["chat_id"])
    if user.message(params["message_id"]) is None:
        raise bad_request("message to delete not found")
    user.remove_message(params["message_id"])
    return True


@_handles("answerCallbackQuery")
async def _answer_callback_query(world: TelegramWorld, params: Params) -> Any:
    limits.check_callback_answer_text(params.get("text"))
    user = world.take_callback(params["callback_query_id"])
    if user is None:
        raise bad_request("query is too old and response timeout expired or query ID is invalid")
    user.record_callback_answer(params["callback_query_id"], params.get("text"),
                                params.get("show_alert", False))
    return True


@_handles("sendPhoto")
async def _send_photo(world: TelegramWorld, params: Params) -> Any:
    user = _chat(world, params["chat_id"])
    file_id, stored = _file(world, params["photo"], "photo", MAX_PHOTO_BYTES)
    if not stored.content.startswith(_IMAGE_SIGNATURES) and stored.content[8:12] != b"WEBP":
        raise bad_request("IMAGE_PROCESS_FAILED")
    caption, caption_entities = _caption(params)
    markup = _markup(params)
    message = user.add_bot_message(photo=stored.content, file_id=file_id, caption=caption, html=_html(params, "caption"),
                                   caption_entities=caption_entities, reply_markup=markup,
                                   disable_notification=params.get("disable_notification", False))
    return message_json(world, user, message)


@_handles("sendDocument")
async def _send_document(world: TelegramWorld, params: Params) -> Any:
    user = _chat(world, params["chat_id"])
    file_id, stored = _file(world, params["document"], "document", MAX_DOCUMENT_BYTES)
    caption, caption_entities = _caption(params)
    markup = _markup(params)
    message = user.add_bot_message(document=stored.content, file_id=file_id,
                                   document_name=stored.filename,
                                   caption=caption, html=_html(params, "caption"),
                                   caption_entities=caption_entities, reply_markup=markup,
                                   disable_notification=params.get("disable_notification", False))
    return message_json(world, user, message)


def _file(world: TelegramWorld, value: UploadedFile | str, kind: str,
          max_bytes: int) -> tuple[str, StoredFile]:
    """An uploaded file (stored under a new file_id) or a file_id the bot got earlier."""
    if isinstance(value, UploadedFile):
        if not value.content:
            raise bad_request("file must be non-empty")
        if len(value.content) > max_bytes:
            raise ApiError(413, "Request Entity Too Large")
        file_id = world.store_file(kind, value.content, value.filename, value.content_type)
        return file_id, world.files[file_id]
    stored = world.files.get(value)
    if stored is None:
        raise bad_request("wrong file identifier/HTTP URL specified")
    return value, stored


@_handles("sendChatAction")
async def _send_chat_action(world: TelegramWorld, params: Params) -> Any:
    _chat(world, params["chat_id"])
    if params["action"] not in _CHAT_ACTIONS:
        raise bad_request("wrong parameter action in request")
    return True


@_handles("close")
async def _close(world: TelegramWorld, params: Params) -> Any:
    return True


@_handles("logOut")
async def _log_out(world: TelegramWorld, params: Params) -> Any:
    return True
