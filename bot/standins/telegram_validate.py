"""Argument checks the Bot API server performs before touching a chat: keyboards, commands, webhooks.

Why separate: these rules are where a bot silently breaks in production (a 65-byte callback_data, an
upper-case command, a secret token with a "."); keeping them together makes the cited rules easy to
audit.

Followed: https://core.telegram.org/bots/api#inlinekeyboardbutton (callback_data 1-64 *bytes*,
copy_text 1-256, exactly one optional field, ``url`` "HTTP or tg:// URL" checked and normalised as
TDLib does in ``telegram_links``), #setmycommands / #botcommand (1-32 chars of
``[a-z0-9_]``, description 1-256, at most 100), #setwebhook (secret_token 1-256 of ``A-Za-z0-9_-``,
max_connections 1-100), #getupdates (allowed_updates), #sendchataction. Error wording from
tdlib/telegram-bot-api Client.cpp where it exists ("secret token contains unallowed characters",
"Text buttons are unallowed in the inline keyboard"); server-side codes (BUTTON_DATA_INVALID,
BOT_COMMAND_INVALID) as reported by maintainers in tdlib/telegram-bot-api#98.
"""

from __future__ import annotations

import json
import re
from typing import Any

from bot.standins.telegram_links import check_link
from bot.standins.telegram_request import ApiRequest, bad_request

__all__ = [
    "ALL_UPDATE_TYPES",
    "CHAT_ACTIONS",
    "DEFAULT_ALLOWED_UPDATES",
    "allowed_updates_arg",
    "command_scope_key",
    "parse_commands",
    "parse_reply_markup",
    "scope_chat_id",
    "validate_secret_token",
]

ALL_UPDATE_TYPES = (
    "message", "edited_message", "channel_post", "edited_channel_post", "business_connection",
    "business_message", "edited_business_message", "deleted_business_messages", "message_reaction",
    "message_reaction_count", "inline_query", "chosen_inline_result", "callback_query", "shipping_query",
    "pre_checkout_query", "purchased_paid_media", "poll", "poll_answer", "my_chat_member", "chat_member",
    "chat_join_request", "chat_boost", "removed_chat_boost",
)
# "Specify an empty list to receive all update types except chat_member, message_reaction, and
# message_reaction_count (default)." -- #getupdates
DEFAULT_ALLOWED_UPDATES = frozenset(ALL_UPDATE_TYPES) - {"chat_member", "message_reaction",
                                                         "message_reaction_count"}
CHAT_ACTIONS = frozenset({
    "typing", "upload_photo", "record_video", "upload_video", "record_voice", "upload_voice",
    "upload_document", "choose_sticker", "find_location", "record_video_note", "upload_video_note",
})
_BUTTON_KINDS = ("url", "callback_data", "copy_text", "web_app", "login_url", "switch_inline_query",
                 "switch_inline_query_current_chat", "switch_inline_query_chosen_chat", "callback_game",
                 "pay")
_COMMAND = re.compile(r"^[a-z0-9_]{1,32}$")
_SECRET = re.compile(r"^[A-Za-z0-9_-]*$")
_SCOPES = {"default": (), "all_private_chats": (), "all_group_chats": (), "all_chat_administrators": (),
           "chat": ("chat_id",), "chat_administrators": ("chat_id",), "chat_member": ("chat_id", "user_id")}


def _checked(url: str, what: str, *, http_only: bool = False, https_only: bool = False) -> str:
    """TDLib's link check (``telegram_links``): the URL Telegram stores, or its 400."""
    try:
        return check_link(url, what, http_only=http_only, https_only=https_only)
    except ValueError as error:
        raise bad_request(str(error)) from None


def _button(raw: Any) -> dict[str, Any]:
    prefix = "can't parse inline keyboard button: "
    if not isinstance(raw, dict):
        raise bad_request(prefix + "InlineKeyboardButton must be an Object")
    if "text" not in raw:
        raise bad_request(prefix + "Can't find field \"text\"")
    if not isinstance(raw["text"], str):
        raise bad_request(prefix + "Field \"text\" must be of type String")
    if not raw["text"].strip():
        raise bad_request("BUTTON_TEXT_INVALID")
    kinds = [kind for kind in _BUTTON_KINDS if kind in raw]
    if not kinds:
        raise bad_request(prefix + "Text buttons are unallowed in the inline keyboard")
    kind = kinds[0]
    value = raw[kind]
    if kind == "callback_data":
        if not isinstance(value, str) or not 1 <= len(value.encode("utf-8")) <= 64:
            raise bad_request("BUTTON_DATA_INVALID")
    elif kind == "url":
        if not isinstance(value, str):
            raise bad_request(prefix + 'Field "url" must be of type String')
        value = _checked(value, "inline keyboard button")
    elif kind == "copy_text":
        text = value.get("text") if isinstance(value, dict) else None
        if not isinstance(text, str) or not 1 <= len(text) <= 256:
            raise bad_request("BUTTON_COPY_TEXT_INVALID")
    elif kind in ("web_app", "login_url"):
        url = value.get("url") if isinstance(value, dict) else None
        if not isinstance(url, str):
            raise bad_request(prefix + 'Can\'t find field "url"')
        what = "inline keyboard button Web App" if kind == "web_app" else "inline keyboard button login"
        value = {**value, "url": _checked(url, what, http_only=True, https_only=True)}
    return {"text": raw["text"], kind: value}


def parse_reply_markup(req: ApiRequest) -> tuple[bool, dict[str, Any] | None]:
    """Validate ``reply_markup``; return (given, inline keyboard to store on the message or None).

    Only inline keyboards become ``Message.reply_markup``; reply keyboards are accepted and dropped,
    as in the server (``set_message_reply_markup`` keeps inline keyboards only).
    """
    value = req.json_arg("reply_markup", "reply keyboard markup")
    if value is None:
        return False, None
    if not isinstance(value, dict):
        raise bad_request("object expected as reply markup")
    if "inline_keyboard" not in value:
        return True, None
    rows = value["inline_keyboard"]
    if not isinstance(rows, list):
        raise bad_request('field "inline_keyboard" of the InlineKeyboardMarkup must be an Array')
    if not all(isinstance(row, list) for row in rows):
        raise bad_request('field "inline_keyboard" of the InlineKeyboardMarkup must be an Array of Arrays')
    return True, {"inline_keyboard": [[_button(button) for button in row] for row in rows]}


def parse_commands(req: ApiRequest) -> list[dict[str, str]]:
    """``commands`` for setMyCommands; absent means "set an empty list" (tdlib/telegram-bot-api#98)."""
    raw = req.json_arg("commands", "commands")
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise bad_request("expected an Array of BotCommand")
    if len(raw) > 100:
        raise bad_request("BOT_COMMANDS_TOO_MUCH")
    commands: list[dict[str, str]] = []
    for item in raw:
        if not isinstance(item, dict):
            raise bad_request("can't parse BotCommand: expected an Object")
        for key in ("command", "description"):
            if key not in item:
                raise bad_request(f'can\'t parse BotCommand: Can\'t find field "{key}"')
        command, description = str(item["command"]), str(item["description"])
        if not _COMMAND.match(command):
            raise bad_request("BOT_COMMAND_INVALID")
        if not 1 <= len(description) <= 256:
            raise bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
        commands.append({"command": command, "description": description})
    return commands


def command_scope_key(req: ApiRequest) -> tuple[str, str]:
    """(canonical scope, language_code): the key under which a command list is stored."""
    scope = req.json_arg("scope", "BotCommandScope") or {"type": "default"}
    if not isinstance(scope, dict) or scope.get("type") not in _SCOPES:
        raise bad_request("unsupported bot command scope type specified")
    fields = _SCOPES[str(scope["type"])]
    canonical = {"type": scope["type"], **{name: scope.get(name) for name in fields}}
    language = req.arg("language_code")
    if language and not re.match(r"^[a-z]{2}$", language):
        raise bad_request("invalid language code specified")
    return json.dumps(canonical, sort_keys=True), language


def scope_chat_id(req: ApiRequest) -> int | None:
    """The chat a ``chat``/``chat_administrators``/``chat_member`` scope points at, if any."""
    scope = req.json_arg("scope", "BotCommandScope")
    if not isinstance(scope, dict) or "chat_id" not in scope:
        return None
    raw = str(scope["chat_id"])
    if not raw.lstrip("-").isdigit():
        raise bad_request("chat not found")
    return int(raw)


def validate_secret_token(secret: str) -> None:
    """Client.cpp ``do_set_webhook``: length first, then base64url characters."""
    if len(secret) > 256:
        raise bad_request("secret token is too long")
    if not _SECRET.match(secret):
        raise bad_request("secret token contains unallowed characters")


def allowed_updates_arg(req: ApiRequest) -> frozenset[str] | None:
    """``get_allowed_update_types``: absent -> keep previous (None); no known type -> the default set."""
    raw = req.arg("allowed_updates")
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return None
    chosen = frozenset(v.lower() for v in value) & frozenset(ALL_UPDATE_TYPES)
    return chosen or DEFAULT_ALLOWED_UPDATES
