"""The Bot API methods the onboarding bot uses, with the real server's checks and error texts.

Each handler runs under the stand-in's lock and either returns the ``result`` (or a ``Described``
result for the methods whose success carries a ``description``) or raises ``ApiError``.

Followed (https://core.telegram.org/bots/api): #getme, #logout, #close, #sendmessage,
#editmessagetext, #editmessagecaption, #editmessagereplymarkup, #deletemessage ("A message can only be
deleted if it was sent less than 48 hours ago ... Bots can delete outgoing messages in private chats,
groups, and supergroups. Bots can delete incoming messages in private chats. ... If the bot has
can_delete_messages administrator right in a supergroup or a channel, it can delete any message
there"), #deletemessages ("If some of the specified messages can't be found, they are skipped"),
#answercallbackquery, #sendphoto, #senddocument, #getchat, #sendchataction, #setwebhook,
#deletewebhook, #getwebhookinfo, #setmycommands, #getmycommands, #deletemycommands,
#setmydescription, #setmyshortdescription, #setchatmenubutton. Error wording from tdlib/telegram-bot-api
Client.cpp (``check_message`` "... not found", ``process_delete_message_query``, MESSAGE_NOT_MODIFIED,
QUERY_ID_INVALID, MESSAGE_DELETE_FORBIDDEN, USER_IS_BLOCKED mappings in ``fail_query_with_error``;
``check_chat_access`` "group chat was upgraded to a supergroup chat" + ``migrate_to_chat_id``). Flood
control runs before any method (``telegram_flood``).
"""

from __future__ import annotations

import mimetypes
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from bot.standins.telegram_delivery import SET_WEBHOOK_ABORT
from bot.standins.telegram_request import ApiError, ApiRequest, Upload, bad_request, to_integer
from bot.standins.telegram_text import prepare_text
from bot.standins.telegram_validate import (
    CHAT_ACTIONS,
    allowed_updates_arg,
    command_scope_key,
    parse_commands,
    parse_reply_markup,
    scope_chat_id,
    validate_secret_token,
)
from bot.standins.telegram_world import BotWorld, ChatRecord, Settings, StoredMessage, WebhookState, new_file_ids

__all__ = ["METHODS", "Described", "MethodContext", "chat_id_of"]

DELETE_WINDOW_S = 48 * 3600
NOT_MODIFIED = ("message is not modified: specified new message content and reply markup are exactly the "
                "same as a current content and reply markup of the message")
QUERY_INVALID = "query is too old and response timeout expired or query ID is invalid"
_IMAGE_HEADS = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a")


@dataclass
class Described:
    """A successful result whose answer also carries a ``description`` ("Webhook was set")."""

    result: Any
    description: str


class MethodHost(Protocol):
    """What the methods need of the stand-in (``FakeTelegram`` implements it); keeps the layers one way."""

    settings: Settings

    def now(self) -> float: ...

    def changed(self, world: BotWorld | None = None) -> None: ...

    def next_webhook_generation(self) -> int: ...

    def remember_file(self, file_id: str, kind: str, info: Any) -> None: ...

    def known_file(self, file_id: str) -> tuple[str, Any] | None: ...


@dataclass
class MethodContext:
    fake: MethodHost
    world: BotWorld


def chat_id_of(req: ApiRequest) -> int | None:
    raw = req.arg("chat_id")
    return to_integer(raw) if raw and raw.lstrip("-").isdigit() else None


def _chat(ctx: MethodContext, req: ApiRequest, *, write: bool = True) -> ChatRecord:
    """``check_chat``: the bot only knows chats whose users wrote to it (or groups it is in).

    ``check_chat_access``: writing to a basic group that was upgraded fails with the new id in
    ``parameters.migrate_to_chat_id`` (https://core.telegram.org/bots/api#responseparameters: "The
    group has been migrated to a supergroup with the specified identifier"). The server checks this
    for sends and deletes; the stand-in also refuses edits there (stricter: the old group is dead).
    """
    raw = req.arg("chat_id")
    if not raw:
        raise bad_request("chat_id is empty")
    chat = ctx.world.chats.get(to_integer(raw)) if raw.lstrip("-").isdigit() else None
    if chat is None:
        raise bad_request("chat not found")
    if write and chat.migrated_to is not None:
        raise ApiError(400, "Bad Request: group chat was upgraded to a supergroup chat",
                       {"migrate_to_chat_id": chat.migrated_to})
    return chat


def _writable(chat: ChatRecord) -> None:
    """USER_IS_BLOCKED -> 403 "Forbidden: bot was blocked by the user" (Client.cpp error mapping)."""
    if chat.blocked:
        raise ApiError(403, "Forbidden: bot was blocked by the user")


def _message(chat: ChatRecord, req: ApiRequest, what: str) -> StoredMessage:
    """``check_message``: unknown, non-positive or deleted ids are "<what> not found"."""
    message = chat.messages.get(req.int_arg("message_id", 0))
    if message is None or message.deleted:
        raise bad_request(f"{what} not found")
    return message


def _reply_to(chat: ChatRecord, req: ApiRequest) -> int | None:
    params = req.json_arg("reply_parameters", "reply parameters")
    if isinstance(params, dict):
        target = to_integer(str(params.get("message_id", 0)))
        tolerant = bool(params.get("allow_sending_without_reply"))
    else:
        target, tolerant = req.int_arg("reply_to_message_id", 0), req.bool_arg("allow_sending_without_reply")
    if target <= 0:
        return None
    found = chat.messages.get(target)
    if found is None or found.deleted:
        if tolerant:
            return None
        raise bad_request("message to be replied not found")
    return target


def _new_bot_message(ctx: MethodContext, chat: ChatRecord, req: ApiRequest, **fields: Any) -> StoredMessage:
    reply_to = _reply_to(chat, req)  # may fail: check before a message id is spent
    message = StoredMessage(
        message_id=chat.take_message_id(), chat_id=chat.id, sender=ctx.world.me, from_bot=True,
        date=int(time.time()), sent_monotonic=time.monotonic(), reply_to_message_id=reply_to,
        protect_content=req.bool_arg("protect_content"), **fields)
    chat.messages[message.message_id] = message
    return message


def get_me(ctx: MethodContext, req: ApiRequest) -> Any:
    return {**ctx.world.me.to_api(), "can_join_groups": True, "can_read_all_group_messages": False,
            "supports_inline_queries": False, "can_connect_to_business": False, "has_main_web_app": False}


def log_out(ctx: MethodContext, req: ApiRequest) -> Any:
    return True


def _text(req: ApiRequest) -> tuple[str, list[dict[str, Any]]]:
    return prepare_text(req.arg("text"), req.arg("parse_mode"), req.json_arg("entities", "entities"))


def _caption(req: ApiRequest) -> tuple[str, list[dict[str, Any]]]:
    entities = req.json_arg("caption_entities", "caption entities")
    return prepare_text(req.arg("caption"), req.arg("parse_mode"), entities, caption=True)


def send_message(ctx: MethodContext, req: ApiRequest) -> Any:
    text, entities = _text(req)
    _, keyboard = parse_reply_markup(req)
    preview = req.json_arg("link_preview_options", "link preview options")
    if preview is None and req.bool_arg("disable_web_page_preview"):
        preview = {"is_disabled": True}
    chat = _chat(ctx, req)
    _writable(chat)
    message = _new_bot_message(ctx, chat, req, text=text, entities=entities, reply_markup=keyboard,
                               link_preview_options=preview if isinstance(preview, dict) else None,
                               parse_mode=req.arg("parse_mode") or None)
    return message.to_api(chat)


def _editable(ctx: MethodContext, req: ApiRequest) -> tuple[ChatRecord, StoredMessage]:
    if not req.has("chat_id") and req.int_arg("message_id", 0) <= 0:
        if not req.has("inline_message_id"):
            raise bad_request("message identifier is not specified")
        raise bad_request("MESSAGE_ID_INVALID")  # the stand-in has no inline messages
    chat = _chat(ctx, req)
    _writable(chat)  # a blocked user's chat takes no edits either (the stand-in's stricter reading)
    message = _message(chat, req, "message to edit")
    if not message.from_bot:
        raise bad_request("message can't be edited")
    return chat, message


def edit_message_text(ctx: MethodContext, req: ApiRequest) -> Any:
    text, entities = _text(req)
    _, keyboard = parse_reply_markup(req)
    chat, message = _editable(ctx, req)
    if message.text is None:
        raise bad_request("there is no text in the message to edit")
    if (text, entities, keyboard) == (message.text, message.entities, message.reply_markup):
        raise bad_request(NOT_MODIFIED)
    preview = req.json_arg("link_preview_options", "link preview options")
    message.text, message.entities, message.reply_markup = text, entities, keyboard
    if isinstance(preview, dict):
        message.link_preview_options = preview
    message.edit_date, message.edits = int(time.time()), message.edits + 1
    return message.to_api(chat)


def edit_message_caption(ctx: MethodContext, req: ApiRequest) -> Any:
    caption, entities = _caption(req)
    _, keyboard = parse_reply_markup(req)
    chat, message = _editable(ctx, req)
    if message.text is not None:
        raise bad_request("there is no caption in the message to edit")
    current = (message.caption, message.caption_entities, message.reply_markup)
    if (caption or None, entities, keyboard) == current:
        raise bad_request(NOT_MODIFIED)
    message.caption, message.caption_entities, message.reply_markup = caption or None, entities, keyboard
    message.edit_date, message.edits = int(time.time()), message.edits + 1
    return message.to_api(chat)


def edit_message_reply_markup(ctx: MethodContext, req: ApiRequest) -> Any:
    _, keyboard = parse_reply_markup(req)
    chat, message = _editable(ctx, req)
    if keyboard == message.reply_markup:
        raise bad_request(NOT_MODIFIED)
    message.reply_markup, message.edits = keyboard, message.edits + 1
    return message.to_api(chat)


def _check_deletable(chat: ChatRecord, message: StoredMessage) -> None:
    own = message.from_bot
    allowed = chat.type == "private" or own or chat.bot_can_delete
    if not allowed or time.time() - message.date >= DELETE_WINDOW_S:
        raise bad_request("message can't be deleted")


def _mark_deleted(message: StoredMessage) -> None:
    message.deleted, message.deleted_at_monotonic = True, time.monotonic()


def delete_message(ctx: MethodContext, req: ApiRequest) -> Any:
    if not req.has("chat_id"):
        raise bad_request("chat identifier is not specified")
    if req.int_arg("message_id", 0) <= 0:
        raise bad_request("message identifier is not specified")
    chat = _chat(ctx, req)
    message = _message(chat, req, "message to delete")
    _check_deletable(chat, message)
    _mark_deleted(message)
    return True


def delete_messages(ctx: MethodContext, req: ApiRequest) -> Any:
    ids = req.json_arg("message_ids", "message_ids")
    if not ids:
        raise bad_request("message identifiers are not specified")
    if not isinstance(ids, list):
        raise bad_request("expected an Array of message identifiers")
    if len(ids) > 100:
        raise bad_request("too many message identifiers specified")
    if not all(isinstance(i, int | str) and to_integer(str(i)) > 0 for i in ids):
        raise bad_request("invalid message identifier specified")
    chat = _chat(ctx, req)
    found = [m for i in ids if (m := chat.messages.get(to_integer(str(i)))) is not None and not m.deleted]
    for message in found:  # all or nothing, like MTProto messages.deleteMessages
        _check_deletable(chat, message)
    for message in found:
        _mark_deleted(message)
    return True


def answer_callback_query(ctx: MethodContext, req: ApiRequest) -> Any:
    query = ctx.world.callback_queries.get(req.arg("callback_query_id"))
    timeout = ctx.fake.settings.callback_answer_timeout_s
    if query is None or query.answered or ctx.fake.now() - query.created_monotonic > timeout:
        raise bad_request(QUERY_INVALID)
    if len(req.arg("text")) > 200:
        raise bad_request("MESSAGE_TOO_LONG")
    query.answered = True
    query.answer = {"text": req.arg("text") or None, "show_alert": req.bool_arg("show_alert"),
                    "url": req.arg("url") or None, "cache_time": req.int_arg("cache_time", 0, 0)}
    return True


def _upload(req: ApiRequest, field: str) -> Upload | str:
    """The uploaded part for ``field`` (directly or via ``attach://``) or the string argument."""
    value = req.arg(field)
    if value.startswith("attach://"):
        attached = req.files.get(value.removeprefix("attach://"))
        if attached is not None:
            return attached
    if field in req.files:
        return req.files[field]
    if not value:
        raise bad_request(f"there is no {field} in the request")
    return value


def _remote_file(ctx: MethodContext, value: str, kind: str) -> Any:
    if value.lower().startswith(("http://", "https://")):
        raise bad_request("failed to get HTTP URL content")  # the stand-in never fetches URLs
    known = ctx.fake.known_file(value)
    if known is None or known[0] != kind:
        raise bad_request("wrong file identifier/HTTP URL specified")
    return known[1]


def _photo_sizes(ctx: MethodContext, data: bytes) -> list[dict[str, Any]]:
    width, height = 1280, 720
    if data.startswith(_IMAGE_HEADS[0]) and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
    sizes = []
    for scale, share in ((min(1.0, 90 / max(width, height, 1)), 0.05), (1.0, 1.0)):
        file_id, unique = new_file_ids("AgACAgIAAxkBAAI")
        sizes.append({"file_id": file_id, "file_unique_id": unique,
                      "file_size": max(1, int(len(data) * share)),
                      "width": max(1, round(width * scale)), "height": max(1, round(height * scale))})
    ctx.fake.remember_file(str(sizes[-1]["file_id"]), "photo", sizes)
    return sizes


def send_photo(ctx: MethodContext, req: ApiRequest) -> Any:
    photo = _upload(req, "photo")
    caption, entities = _caption(req)
    _, keyboard = parse_reply_markup(req)
    chat = _chat(ctx, req)
    _writable(chat)
    length: int | None = None
    head_ok: bool | None = None
    sizes: list[dict[str, Any]]
    if isinstance(photo, Upload):
        length, head_ok = len(photo.data), photo.data.startswith(_IMAGE_HEADS) or photo.data[8:12] == b"WEBP"
        if not head_ok:
            raise bad_request("IMAGE_PROCESS_FAILED")
        sizes = _photo_sizes(ctx, photo.data)
    else:
        sizes = _remote_file(ctx, photo, "photo")
    message = _new_bot_message(ctx, chat, req, photo=sizes, caption=caption or None,
                               caption_entities=entities, reply_markup=keyboard, upload_length=length,
                               upload_head_ok=head_ok, parse_mode=req.arg("parse_mode") or None)
    return message.to_api(chat)


def send_document(ctx: MethodContext, req: ApiRequest) -> Any:
    document = _upload(req, "document")
    caption, entities = _caption(req)
    _, keyboard = parse_reply_markup(req)
    chat = _chat(ctx, req)
    _writable(chat)
    length: int | None = None
    info: dict[str, Any]
    if isinstance(document, Upload):
        length = len(document.data)
        file_id, unique = new_file_ids("BQACAgIAAxkBAAI")
        mime = document.content_type
        if mime in ("", "application/octet-stream"):
            mime = mimetypes.guess_type(document.filename)[0] or "application/octet-stream"
        info = {"file_id": file_id, "file_unique_id": unique, "file_name": document.filename,
                "mime_type": mime, "file_size": length}
        ctx.fake.remember_file(file_id, "document", info)
    else:
        info = _remote_file(ctx, document, "document")
    message = _new_bot_message(ctx, chat, req, document=info, caption=caption or None,
                               caption_entities=entities, reply_markup=keyboard, upload_length=length,
                               parse_mode=req.arg("parse_mode") or None)
    return message.to_api(chat)


def get_chat(ctx: MethodContext, req: ApiRequest) -> Any:
    return _chat(ctx, req, write=False).full_info()  # AccessRights::Read: an upgraded group still reads


def send_chat_action(ctx: MethodContext, req: ApiRequest) -> Any:
    chat = _chat(ctx, req)
    if req.arg("action") not in CHAT_ACTIONS:
        raise bad_request("wrong parameter action in request")
    _writable(chat)
    return True


def set_webhook(ctx: MethodContext, req: ApiRequest) -> Any:
    """setWebhook and deleteWebhook share one path, as in Client.cpp ``process_set_webhook_query``."""
    world = ctx.world
    url = req.arg("url") if req.method == "setwebhook" else ""
    now = time.monotonic()
    if url:
        if now < world.last_webhook_set_monotonic + 1:  # one setWebhook per second per bot
            raise ApiError(429, "Too Many Requests: retry after 1", {"retry_after": 1})
        world.last_webhook_set_monotonic = now
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise bad_request("invalid webhook URL specified")
        validate_secret_token(req.arg("secret_token"))
    max_connections = req.int_arg("max_connections", 40, 1, 100) if url else 0
    secret = req.arg("secret_token") if url else ""
    drop = req.bool_arg("drop_pending_updates")
    current = world.webhook
    if (current.url if current else "") == url and (current.secret_token if current else "") == secret and \
            (current.max_connections if current else 0) == max_connections and not drop:
        if url and (allowed := allowed_updates_arg(req)) is not None:
            world.allowed_updates = allowed
        return Described(True, "Webhook is already set" if url else "Webhook is already deleted")
    if drop:
        for update in world.pending():
            update.dropped, update.last_error = True, "dropped by drop_pending_updates"
    if not url:
        world.webhook = None
        ctx.fake.changed(world)
        return Described(True, "Webhook was deleted" if current else "Webhook is already deleted")
    if world.poller is not None:
        world.poller = SET_WEBHOOK_ABORT
    allowed = allowed_updates_arg(req)
    if allowed is not None:
        world.allowed_updates = allowed
    world.webhook = WebhookState(url, secret, max_connections, ctx.fake.next_webhook_generation())
    ctx.fake.changed(world)
    return Described(True, "Webhook was set")


def get_webhook_info(ctx: MethodContext, req: ApiRequest) -> Any:
    hook = ctx.world.webhook
    info: dict[str, Any] = {"url": hook.url if hook else "", "has_custom_certificate": False,
                            "pending_update_count": len(ctx.world.pending())}
    if hook is not None:
        info["max_connections"] = hook.max_connections
        info["ip_address"] = "127.0.0.1"
        if hook.last_error_date:
            info["last_error_date"] = hook.last_error_date
            info["last_error_message"] = hook.last_error_message
        if ctx.world.allowed_updates is not None:
            info["allowed_updates"] = sorted(ctx.world.allowed_updates)
    return info


def _scope_chat(ctx: MethodContext, req: ApiRequest) -> tuple[str, str]:
    """The command-list key; a chat-bound scope must name a chat the bot knows."""
    key = command_scope_key(req)
    chat_id = scope_chat_id(req)
    if chat_id is not None and chat_id not in ctx.world.chats:
        raise bad_request("chat not found")
    return key


def set_my_commands(ctx: MethodContext, req: ApiRequest) -> Any:
    commands = parse_commands(req)
    key = _scope_chat(ctx, req)
    if commands:
        ctx.world.commands[key] = commands
    else:
        ctx.world.commands.pop(key, None)
    return True


def get_my_commands(ctx: MethodContext, req: ApiRequest) -> Any:
    return ctx.world.commands.get(_scope_chat(ctx, req), [])


def delete_my_commands(ctx: MethodContext, req: ApiRequest) -> Any:
    ctx.world.commands.pop(_scope_chat(ctx, req), None)
    return True


def _set_text(store: dict[str, str], req: ApiRequest, field: str, limit: int) -> Any:
    language = req.arg("language_code")
    if language and (len(language) != 2 or not language.isalpha()):
        raise bad_request("invalid language code specified")
    value = req.arg(field)
    if len(value) > limit:
        raise bad_request(f"{field.replace('_', ' ')} is too long")
    if value:
        store[language] = value
    else:
        store.pop(language, None)
    return True


def set_my_description(ctx: MethodContext, req: ApiRequest) -> Any:
    return _set_text(ctx.world.descriptions, req, "description", 512)


def set_my_short_description(ctx: MethodContext, req: ApiRequest) -> Any:
    return _set_text(ctx.world.short_descriptions, req, "short_description", 120)


def get_my_description(ctx: MethodContext, req: ApiRequest) -> Any:
    return {"description": ctx.world.descriptions.get(req.arg("language_code"), "")}


def get_my_short_description(ctx: MethodContext, req: ApiRequest) -> Any:
    return {"short_description": ctx.world.short_descriptions.get(req.arg("language_code"), "")}


def set_chat_menu_button(ctx: MethodContext, req: ApiRequest) -> Any:
    chat_id = _chat(ctx, req, write=False).id if req.has("chat_id") else None
    button = req.json_arg("menu_button", "menu button") or {"type": "default"}
    if not isinstance(button, dict) or button.get("type") not in ("commands", "web_app", "default"):
        raise bad_request("can't parse menu button: unsupported type")
    if button["type"] == "web_app":
        web_app = button.get("web_app")
        if not button.get("text") or not isinstance(web_app, dict) or \
                not str(web_app.get("url", "")).lower().startswith("https://"):
            raise bad_request("can't parse menu button: web_app with text and an HTTPS url expected")
    ctx.world.menu_buttons[chat_id] = button
    return True


def get_chat_menu_button(ctx: MethodContext, req: ApiRequest) -> Any:
    chat_id = _chat(ctx, req, write=False).id if req.has("chat_id") else None
    buttons = ctx.world.menu_buttons
    return buttons.get(chat_id) or buttons.get(None) or {"type": "commands"}


METHODS: dict[str, Callable[[MethodContext, ApiRequest], Any]] = {
    "getme": get_me, "logout": log_out, "close": log_out,
    "sendmessage": send_message, "editmessagetext": edit_message_text,
    "editmessagecaption": edit_message_caption, "editmessagereplymarkup": edit_message_reply_markup,
    "deletemessage": delete_message, "deletemessages": delete_messages,
    "answercallbackquery": answer_callback_query, "sendphoto": send_photo, "senddocument": send_document,
    "getchat": get_chat, "sendchataction": send_chat_action,
    "setwebhook": set_webhook, "deletewebhook": set_webhook, "getwebhookinfo": get_webhook_info,
    "setmycommands": set_my_commands, "getmycommands": get_my_commands,
    "deletemycommands": delete_my_commands,
    "setmydescription": set_my_description, "getmydescription": get_my_description,
    "setmyshortdescription": set_my_short_description, "getmyshortdescription": get_my_short_description,
    "setchatmenubutton": set_chat_menu_button, "getchatmenubutton": get_chat_menu_button,
}
