"""The Bot API methods the sandbox implements, on already type-checked parameters.

Why: these are the rules Telegram applies beyond types: a chat must exist and not have
blocked the bot, only the bot's own messages can be edited, an edit must change
something, a callback query is answered once, texts are measured after HTML parsing, a
file_id of a photo cannot be sent as a voice note, a copy carries no trace of who wrote the
original, a reply must answer a message of the chat. Refusals are worded as the Bot API
server (tdlib/telegram-bot-api) words them.
Methods the spec has but the sandbox does not implement answer 400 so gaps are visible.
"""

from __future__ import annotations

import datetime as dtm
import functools
import itertools
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from sandbox import limits, media
from sandbox.chat import CAPTION_KINDS, SERVICE_KINDS, ChatMessage, SimUser
from sandbox.errors import ApiError, bad_request
from sandbox.rendering import (
    MAX_CAPTION_LENGTH,
    MAX_TEXT_LENGTH,
    render_text,
    utf16_len,
)
from sandbox.spec import UploadedFile, load_spec
from sandbox.webhook import DEFAULT_MAX_CONNECTIONS, check_url, conflict_with_webhook

if TYPE_CHECKING:
    from sandbox.world import TelegramWorld

Params = dict[str, Any]
CommandKey = tuple[tuple[tuple[str, Any], ...], str]
Handler = Callable[["TelegramWorld", Params], Awaitable[Any]]

# The Bot API's documented limits: a photo uploaded by the bot 10 MB, any other file 50 MB, and a
# file the bot downloads (getFile) 20 MB. A file sent again by file_id has no limit.
MAX_PHOTO_BYTES = 10 * 1024 * 1024
MAX_UPLOAD_BYTES = 50 * 1024 * 1024
MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024
_CHAT_ACTIONS = {
    "typing", "upload_photo", "record_video", "upload_video", "record_voice", "upload_voice",
    "upload_document", "choose_sticker", "find_location", "record_video_note",
    "upload_video_note",
}
#: The send method of each kind of media, and the parameter that carries its file.
SEND_METHODS = {"sendPhoto": "photo", "sendDocument": "document", "sendVoice": "voice",
                "sendAudio": "audio", "sendVideo": "video", "sendVideoNote": "video_note",
                "sendSticker": "sticker", "sendAnimation": "animation"}
#: Parameters of a send method that a newly uploaded file keeps as its attributes.
_UPLOAD_ATTRIBUTES = ("duration", "width", "height", "length", "performer", "title", "emoji")
#: Kinds whose caption may be shown above the media.
_CAPTION_ABOVE_KINDS = ("photo", "video", "animation")
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


def message_json(world: TelegramWorld, user: SimUser, message: ChatMessage, *,
                 with_reply: bool = True) -> dict[str, Any]:
    """The Bot API Message object for a message in `user`'s chat.

    A reply carries the message it answers as `reply_to_message` (itself without one), and a
    pin the pinned message, as Telegram sends them.
    """
    data: dict[str, Any] = {
        "message_id": message.message_id,
        "date": _unix(message.date),
        "chat": world.chat_json(user),
        "from": world.bot_json() if message.from_bot else world.user_json(user),
    }
    if message.forward_origin is not None:
        data["forward_origin"] = message.forward_origin
    if with_reply and message.reply_to_message_id is not None:
        replied = user.message(message.reply_to_message_id)
        if replied is not None:  # a reply to a message since deleted shows no quote
            data["reply_to_message"] = message_json(world, user, replied, with_reply=False)
    if message.protect_content:
        data["has_protected_content"] = True
    if message.text is not None:
        data["text"] = message.text
        if message.entities:
            data["entities"] = message.entities
    data.update(_media_json(world, message))
    if message.caption is not None:
        data["caption"] = message.caption
        if message.caption_entities:
            data["caption_entities"] = message.caption_entities
        if message.show_caption_above_media:
            data["show_caption_above_media"] = True
    if message.pinned_message_id is not None:
        pinned = user.message(message.pinned_message_id)
        data["pinned_message"] = (message_json(world, user, pinned, with_reply=False) if pinned is not None
                                  else {"chat": world.chat_json(user), "message_id": message.pinned_message_id,
                                        "date": 0})
    if message.reply_markup and "inline_keyboard" in message.reply_markup:
        data["reply_markup"] = message.reply_markup
    if message.edit_date is not None:
        data["edit_date"] = _unix(message.edit_date)
    return data


def _unix(moment: dtm.datetime) -> int:
    return int(moment.timestamp())


def _media_json(world: TelegramWorld, message: ChatMessage) -> dict[str, Any]:
    """The Message fields that carry the media: photo sizes, or the object under its kind."""
    if message.kind == "photo":
        return {"photo": message.photo_sizes or _single_photo_size(message)}
    if message.kind in ("text", *SERVICE_KINDS):
        return {}
    attachment = message.attachment
    if attachment is None and message.file_id in world.files:
        attachment = world.media_object(message.kind, message.file_id)
    if attachment is None:
        return {}
    data = {message.kind: attachment}
    if message.kind == "animation":  # "for backward compatibility, the document field will also be set"
        document_fields = {f["name"] for f in load_spec()["types"]["Document"]["fields"]}
        data["document"] = {k: v for k, v in attachment.items() if k in document_fields}
    return data


def _single_photo_size(message: ChatMessage) -> list[dict[str, Any]]:
    """A photo made without its sizes (a ChatMessage built by hand): one size, the photo's."""
    assert message.photo is not None and message.file_id is not None
    width, height = media.image_size(message.photo)
    return [{"file_id": message.file_id, "file_unique_id": message.file_id, "width": width,
             "height": height, "file_size": len(message.photo)}]


# --- chats and messages -------------------------------------------------------------------


def _chat(world: TelegramWorld, chat_id: int | str) -> SimUser:
    """The private chat `chat_id`, refusing as Telegram does when the bot may not write to it."""
    user = _known_chat(world, chat_id)
    _check_not_blocked(user)
    return user


def _known_chat(world: TelegramWorld, chat_id: int | str) -> SimUser:
    """A private chat the bot has (the user wrote to it), whether or not it may write there."""
    user = world.find_user(chat_id) if isinstance(chat_id, int) else None
    if user is None or not user.started:
        raise bad_request("chat not found")
    return user


def _check_not_blocked(user: SimUser) -> None:
    if user.blocked:
        raise ApiError(403, "Forbidden: bot was blocked by the user")


def _reply_to(user: SimUser, params: Params) -> int | None:
    """The message a new message in `user`'s chat answers (reply_parameters), if any.

    As the Bot API: a message_id of 0 or less means no reply; a message that is not in the
    chat is refused unless allow_sending_without_reply, when the message is sent as no reply.
    """
    reply = params.get("reply_parameters")
    if not reply or reply["message_id"] <= 0:
        return None
    if reply.get("chat_id") not in (None, user.chat_id):
        raise bad_request("replies to a message in another chat are not supported by the sandbox")
    if user.message(reply["message_id"]) is None:
        if reply.get("allow_sending_without_reply"):
            return None
        raise bad_request("message to be replied not found")
    return reply["message_id"]


def _sending_options(params: Params) -> dict[str, Any]:
    """ChatMessage fields every send method takes alike."""
    return {"disable_notification": params.get("disable_notification", False),
            "protect_content": params.get("protect_content", False)}


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
    if not params.get("caption"):  # absent, or empty (no caption)
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
    batch = world.pending_updates[:limit]
    world.handed_out(batch)
    return batch


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
    reply_to = _reply_to(user, params)
    text, entities = _text(params)
    markup = _markup(params)
    message = user.add_bot_message(text=text, html=_html(params, "text"), entities=entities,
                                   reply_markup=markup, reply_to_message_id=reply_to,
                                   **_sending_options(params))
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


async def _send_media(world: TelegramWorld, params: Params, kind: str) -> Any:
    """sendPhoto, sendDocument, sendVoice, ...: a message with a new or known file."""
    user = _chat(world, params["chat_id"])
    reply_to = _reply_to(user, params)
    fields = _photo(world, params["photo"]) if kind == "photo" else _file(world, params, kind)
    caption, caption_entities = _caption(params)
    markup = _markup(params)
    message = user.add_bot_message(
        kind=kind, **fields, caption=caption, html=_html(params, "caption") if caption else None,
        caption_entities=caption_entities,
        show_caption_above_media=bool(caption and kind in _CAPTION_ABOVE_KINDS
                                      and params.get("show_caption_above_media")),
        reply_markup=markup, reply_to_message_id=reply_to, **_sending_options(params))
    return message_json(world, user, message)


for _method, _kind in SEND_METHODS.items():
    _handles(_method)(functools.partial(_send_media, kind=_kind))


def _photo(world: TelegramWorld, value: UploadedFile | str) -> dict[str, Any]:
    """A photo's ChatMessage fields: a new upload (which Telegram must be able to read, with
    dimensions it accepts) or a photo it has, by the file_id of any of its sizes."""
    if isinstance(value, UploadedFile):
        content = _upload(value, MAX_PHOTO_BYTES)
        if not media.is_image(content):
            raise bad_request("IMAGE_PROCESS_FAILED")
        if not media.photo_dimensions_ok(*media.image_size(content)):
            raise bad_request("PHOTO_INVALID_DIMENSIONS")
        sizes = world.store_photo(content, value.filename, value.content_type)
    else:
        _known_file(world, value, "photo")
        sizes = world.photos[value]
    content = world.files[sizes[-1]["file_id"]].content
    return {"photo": content, "photo_sizes": sizes, "file_id": sizes[-1]["file_id"]}


def _file(world: TelegramWorld, params: Params, kind: str) -> dict[str, Any]:
    """ChatMessage fields for a file sent as `kind`: uploaded now (taking its attributes from
    the call: duration, width, ...) or sent again by file_id (keeping the file's own)."""
    value = params[kind]
    if isinstance(value, UploadedFile):
        content = _upload(value, MAX_UPLOAD_BYTES)
        attributes = {name: params.get(name) for name in _UPLOAD_ATTRIBUTES}
        if kind == "sticker":
            attributes.update(type="regular", width=512, height=512, is_animated=content.startswith(b"\x1f\x8b"),
                              is_video=content.startswith(b"\x1a\x45\xdf\xa3"))  # TGS is gzip, WEBM is EBML
        file_id = world.store_file(kind, content, value.filename, value.content_type, **attributes)
    else:
        file_id = value
        _known_file(world, file_id, kind)
    stored = world.files[file_id]
    fields: dict[str, Any] = {"file_id": file_id, "media": stored.content,
                              "attachment": world.media_object(kind, file_id)}
    if kind == "document":
        fields.update(document=stored.content, document_name=stored.filename)
    return fields


def _upload(value: UploadedFile, max_bytes: int) -> bytes:
    if not value.content:
        raise bad_request("file must be non-empty")
    if len(value.content) > max_bytes:
        raise ApiError(413, "Request Entity Too Large")
    return value.content


def _known_file(world: TelegramWorld, file_id: str, kind: str) -> None:
    """Refuse a file_id Telegram does not know, or one of the other class (photos and the rest)."""
    stored = world.files.get(file_id)
    if stored is None:
        raise bad_request("wrong file identifier/HTTP URL specified")
    wanted = media.FILE_TYPES[kind]
    if (stored.file_type == "Photo") != (wanted == "Photo"):
        raise bad_request(f"can't use file of type {stored.file_type} as {wanted}")


@_handles("getFile")
async def _get_file(world: TelegramWorld, params: Params) -> Any:
    file_id = params["file_id"]
    stored = world.files.get(file_id)
    if stored is None:
        raise bad_request("invalid file_id")
    if len(stored.content) > MAX_DOWNLOAD_BYTES:
        raise bad_request("file is too big")
    return {"file_id": file_id, "file_unique_id": file_id, "file_size": len(stored.content),
            "file_path": world.file_download_path(file_id)}


# --- copying and forwarding ---------------------------------------------------------------


@_handles("copyMessage")
async def _copy_message(world: TelegramWorld, params: Params) -> Any:
    """A copy of any message but a service message: its content, not who wrote it.

    Checked in the Bot API's order: the new caption is parsed first, then the chat and message
    to copy, the target chat, the message replied to; a service message is refused before
    anything is sent, and a blocked chat and a too long caption are what sending meets.
    A caption replaces a media message's; for a text, a sticker, a video message, a location
    or a contact Telegram ignores it.
    """
    new_caption = None
    if "caption" in params:
        new_caption = render_text(params["caption"], params.get("parse_mode"), limit=sys.maxsize,
                                  too_long="", empty=None)
    markup = _markup(params)
    source = _known_chat(world, params["from_chat_id"])
    original = _message_in(source, params["message_id"], "message to copy not found")
    target = _known_chat(world, params["chat_id"])
    reply_to = _reply_to(target, params)
    if original.kind in SERVICE_KINDS:
        raise bad_request("the message can't be copied")
    _check_not_blocked(target)
    content = _content_of(original)
    if new_caption is not None and original.kind in CAPTION_KINDS:
        content.update(_replaced_caption(new_caption, params, original.kind))
    message = target.add_bot_message(**content, reply_markup=markup, reply_to_message_id=reply_to,
                                     **_sending_options(params))
    return {"message_id": message.message_id}


@_handles("copyMessages")
async def _copy_messages(world: TelegramWorld, params: Params) -> Any:
    """Copies of several messages; those not found or not copyable are skipped."""
    message_ids = params["message_ids"]
    if not message_ids:
        raise bad_request("message identifiers are not specified")
    if len(message_ids) > 100:
        raise bad_request("too many message identifiers specified")
    target = _known_chat(world, params["chat_id"])
    source = _known_chat(world, params["from_chat_id"])
    found = [message for message_id in message_ids if (message := source.message(message_id)) is not None]
    if not found:
        raise bad_request("there are no messages to forward")
    if any(later.message_id <= earlier.message_id for earlier, later in itertools.pairwise(found)):
        raise bad_request("message identifiers must be in a strictly increasing order")
    copyable = [message for message in found if message.kind not in SERVICE_KINDS]
    if not copyable:
        raise bad_request("messages can't be forwarded")
    _check_not_blocked(target)
    copies = []
    for original in copyable:
        content = _content_of(original)
        if params.get("remove_caption"):
            content.update(caption=None, caption_entities=[], show_caption_above_media=False)
        copies.append(target.add_bot_message(**content, **_sending_options(params)))
    return [{"message_id": copy.message_id} for copy in copies]


@_handles("forwardMessage")
async def _forward_message(world: TelegramWorld, params: Params) -> Any:
    """A forward: the content with `forward_origin` naming who wrote it (unlike a copy)."""
    source = _known_chat(world, params["from_chat_id"])
    original = _message_in(source, params["message_id"], "message to forward not found")
    target = _known_chat(world, params["chat_id"])
    if original.kind in SERVICE_KINDS or original.protect_content:
        raise bad_request("the message can't be forwarded")
    _check_not_blocked(target)
    origin = original.forward_origin or {
        "type": "user", "date": _unix(original.date),
        "sender_user": world.bot_json() if original.from_bot else world.user_json(source)}
    message = target.add_bot_message(**_content_of(original), forward_origin=origin, **_sending_options(params))
    return message_json(world, target, message)


def _replaced_caption(parsed: tuple[str, list[dict[str, Any]] | None], params: Params,
                      kind: str) -> dict[str, Any]:
    """The caption fields of a copy whose caption the call replaces (an empty one removes it)."""
    plain, entities = parsed
    if utf16_len(plain) > MAX_CAPTION_LENGTH:
        raise bad_request("message caption is too long")
    if not plain:
        return {"caption": None, "caption_entities": [], "show_caption_above_media": False}
    return {"caption": plain,
            "caption_entities": entities if entities is not None else params.get("caption_entities", []),
            "show_caption_above_media": kind in _CAPTION_ABOVE_KINDS and bool(params.get("show_caption_above_media"))}


def _message_in(user: SimUser, message_id: int, missing: str) -> ChatMessage:
    message = user.message(message_id) if message_id > 0 else None
    if message is None:
        raise bad_request(missing)
    return message


def _content_of(original: ChatMessage) -> dict[str, Any]:
    """What a copy or forward of `original` shows: its content, and neither its sender, its
    keyboard nor what it replied to."""
    return {
        "kind": original.kind, "text": original.text, "entities": list(original.entities),
        "photo": original.photo, "file_id": original.file_id, "document": original.document,
        "document_name": original.document_name, "media": original.media,
        "photo_sizes": list(original.photo_sizes),
        "attachment": dict(original.attachment) if original.attachment is not None else None,
        "caption": original.caption, "caption_entities": list(original.caption_entities),
        "show_caption_above_media": original.show_caption_above_media,
    }


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
