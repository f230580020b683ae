"""The stand-in's world: users, chats, messages, updates and recorded calls, and their Bot API JSON.

Why one module of plain dataclasses: every other part (methods, delivery, control API) reads and
writes the same records under one lock, and the JSON shapes PTB parses live next to the data they
describe. Shapes follow https://core.telegram.org/bots/api#available-types (User, Chat,
ChatFullInfo, Message, MessageOrigin, PhotoSize, Document, Sticker, CallbackQuery,
ChatMemberUpdated, Update). A message id counter is shared by both sides of a chat, as in private
chats on Telegram.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "BotWorld",
    "CallRecord",
    "CallbackQueryRecord",
    "ChatRecord",
    "Person",
    "Settings",
    "StoredMessage",
    "UpdateRecord",
    "WebhookState",
    "new_file_ids",
    "random_numeric_id",
]


def new_file_ids(prefix: str) -> tuple[str, str]:
    """A (file_id, file_unique_id) pair shaped like Telegram's base64url identifiers."""
    alphabet = string.ascii_letters + string.digits + "-_"
    body = "".join(secrets.choice(alphabet) for _ in range(48))
    unique = "AQAD" + "".join(secrets.choice(alphabet) for _ in range(12))
    return prefix + body, unique


def random_numeric_id() -> str:
    """Callback query ids and chat_instance values are decimal strings of 64-bit numbers."""
    return str(secrets.randbits(63))


@dataclass
class Person:
    """A Telegram user (or the bot itself)."""

    id: int
    first_name: str
    username: str | None = None
    language_code: str | None = None
    is_bot: bool = False

    def to_api(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "is_bot": self.is_bot, "first_name": self.first_name}
        if self.username:
            out["username"] = self.username
        if self.language_code:
            out["language_code"] = self.language_code
        return out


@dataclass
class StoredMessage:
    """One message in a chat, from the user or from the bot."""

    message_id: int
    chat_id: int
    sender: Person
    from_bot: bool
    date: int
    sent_monotonic: float
    text: str | None = None
    entities: list[dict[str, Any]] = field(default_factory=list)
    caption: str | None = None
    caption_entities: list[dict[str, Any]] = field(default_factory=list)
    photo: list[dict[str, Any]] | None = None
    upload_length: int | None = None
    upload_head_ok: bool | None = None
    document: dict[str, Any] | None = None
    sticker: dict[str, Any] | None = None
    forward_origin: dict[str, Any] | None = None
    reply_markup: dict[str, Any] | None = None
    link_preview_options: dict[str, Any] | None = None
    protect_content: bool = False
    parse_mode: str | None = None
    reply_to_message_id: int | None = None
    edit_date: int | None = None
    edits: int = 0
    service: dict[str, Any] | None = None  # service fields such as migrate_to_chat_id
    deleted: bool = False
    deleted_at_monotonic: float | None = None

    def to_api(self, chat: ChatRecord, *, nested: bool = False) -> dict[str, Any]:
        """The Bot API ``Message`` object (``nested`` omits ``reply_to_message`` one level down)."""
        out: dict[str, Any] = {"message_id": self.message_id, "from": self.sender.to_api(),
                               "chat": chat.to_api(), "date": self.date}
        if self.forward_origin:
            out["forward_origin"] = self.forward_origin
        if self.service:
            out.update(self.service)
        if self.protect_content:
            out["has_protected_content"] = True
        if self.edit_date:
            out["edit_date"] = self.edit_date
        if not nested and self.reply_to_message_id:
            replied = chat.messages.get(self.reply_to_message_id)
            if replied is not None and not replied.deleted:
                out["reply_to_message"] = replied.to_api(chat, nested=True)
        if self.text is not None:
            out["text"] = self.text
            if self.entities:
                out["entities"] = self.entities
            if self.link_preview_options:
                out["link_preview_options"] = self.link_preview_options
        for key in ("photo", "document", "sticker"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.caption:
            out["caption"] = self.caption
            if self.caption_entities:
                out["caption_entities"] = self.caption_entities
        if self.reply_markup:
            out["reply_markup"] = self.reply_markup
        return out

    def to_sandbox(self) -> dict[str, Any]:
        """The control API's view of a message (what tests assert on)."""
        preview = self.link_preview_options or {}
        return {
            "message_id": self.message_id, "from_bot": self.from_bot, "date": self.date,
            "text": self.text, "caption": self.caption, "entities": self.entities,
            "reply_markup": self.reply_markup, "deleted": self.deleted,
            "deleted_at_monotonic": self.deleted_at_monotonic, "edits": self.edits,
            "edit_date": self.edit_date, "protect_content": self.protect_content,
            "link_preview_disabled": bool(preview.get("is_disabled")), "photo": self.photo is not None,
            "document": self.document, "sticker": self.sticker is not None,
            "forwarded": self.forward_origin is not None, "parse_mode": self.parse_mode,
            "upload_length": self.upload_length, "upload_is_image": self.upload_head_ok,
            "sent_monotonic": self.sent_monotonic,
        }


@dataclass
class ChatRecord:
    """A chat as the bot sees it; private chat id == user id, groups are negative."""

    id: int
    type: str
    chat_instance: str
    user: Person | None = None
    title: str | None = None
    bot_can_delete: bool = False
    blocked: bool = False
    migrated_to: int | None = None  # a basic group upgraded to this supergroup id
    next_message_id: int = 1
    messages: dict[int, StoredMessage] = field(default_factory=dict)

    def to_api(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "type": self.type}
        if self.type == "private" and self.user is not None:
            out["first_name"] = self.user.first_name
            if self.user.username:
                out["username"] = self.user.username
        else:
            out["title"] = self.title or "Group"
        return out

    def full_info(self) -> dict[str, Any]:
        """``ChatFullInfo`` for getChat (required fields as of Bot API 9.x)."""
        return {**self.to_api(), "accent_color_id": 0, "max_reaction_count": 11,
                "accepted_gift_types": {"unlimited_gifts": False, "limited_gifts": False,
                                        "unique_gifts": False, "premium_subscription": False,
                                        "gifts_from_channels": False}}

    def take_message_id(self) -> int:
        message_id = self.next_message_id
        self.next_message_id += 1
        return message_id


@dataclass
class UpdateRecord:
    """One update in the bot's queue, with its delivery history."""

    update_id: int
    kind: str
    payload: dict[str, Any]
    chat_id: int | None
    queue_key: tuple[str, int]
    created_monotonic: float
    expires_monotonic: float
    callback_query_id: str | None = None
    first_handed_over_monotonic: float | None = None
    handed_over_monotonic: float | None = None
    attempts: int = 0
    delivered: bool = False
    confirmed: bool = False
    dropped: bool = False
    last_error: str | None = None

    @property
    def pending(self) -> bool:
        return not self.confirmed and not self.dropped

    def to_api(self) -> dict[str, Any]:
        return {"update_id": self.update_id, self.kind: self.payload}

    def to_sandbox(self) -> dict[str, Any]:
        return {"update_id": self.update_id, "kind": self.kind, "chat_id": self.chat_id,
                "handed_over_monotonic": self.handed_over_monotonic,
                "first_handed_over_monotonic": self.first_handed_over_monotonic,
                "created_monotonic": self.created_monotonic, "delivered": self.delivered,
                "confirmed": self.confirmed, "dropped": self.dropped, "attempts": self.attempts,
                "last_error": self.last_error, "callback_query_id": self.callback_query_id}


@dataclass
class CallbackQueryRecord:
    id: str
    user_id: int
    chat_id: int
    message_id: int
    created_monotonic: float
    answered: bool = False
    answer: dict[str, Any] | None = None


@dataclass
class CallRecord:
    """One Bot API request as received (times are ``time.monotonic()``)."""

    seq: int
    bot_id: int | None
    method: str
    params: dict[str, Any]
    received_monotonic: float
    chat_id: int | None = None
    ok: bool | None = None
    error_code: int | None = None
    description: str | None = None
    finished_monotonic: float | None = None

    def to_sandbox(self) -> dict[str, Any]:
        return {"seq": self.seq, "bot_id": self.bot_id, "method": self.method, "params": self.params,
                "chat_id": self.chat_id, "received_monotonic": self.received_monotonic,
                "finished_monotonic": self.finished_monotonic, "ok": self.ok,
                "error_code": self.error_code, "description": self.description}


@dataclass
class WebhookState:
    url: str
    secret_token: str
    max_connections: int
    generation: int
    last_error_date: int | None = None
    last_error_message: str | None = None


@dataclass
class Settings:
    """Knobs a test may turn; defaults are the stand-in's normal behaviour (as strict as Telegram).

    Flood control (``telegram_flood``) is on by default, from https://core.telegram.org/bots/faq
    ("My bot is hitting limits"): about 1 message/s per chat, 20/min per group, about 30/s per bot,
    each with a burst allowance ("We may allow short bursts that go over this limit"). A test that
    needs it off sets ``flood_control=False`` and says why.
    """

    flood_control: bool = True
    flood_chat_per_s: float = 1.0
    flood_chat_burst: int = 10
    flood_group_per_min: float = 20.0
    flood_group_burst: int = 20
    flood_bot_per_s: float = 30.0
    flood_bot_burst: int = 30
    # After this, answerCallbackQuery gets QUERY_ID_INVALID -> "query is too old and response timeout
    # expired or query ID is invalid" (Client.cpp). The Bot API (#answercallbackquery) documents no
    # number; ~15 s is what bots observe (telegraf/telegraf#1839: "15 seconds or more").
    callback_answer_timeout_s: float = 15.0
    webhook_max_attempts: int = 8
    webhook_retry_initial_s: float = 0.2
    webhook_retry_max_s: float = 2.0
    webhook_timeout_s: float = 10.0


@dataclass
class BotWorld:
    """Everything that belongs to one bot (one numeric id): its chats, queue, webhook, commands."""

    me: Person
    next_update_id: int
    chats: dict[int, ChatRecord] = field(default_factory=dict)
    updates: list[UpdateRecord] = field(default_factory=list)
    callback_queries: dict[str, CallbackQueryRecord] = field(default_factory=dict)
    allowed_updates: frozenset[str] | None = None
    webhook: WebhookState | None = None
    last_webhook_set_monotonic: float = float("-inf")
    poller: object | None = None
    commands: dict[tuple[str, str], list[dict[str, str]]] = field(default_factory=dict)
    descriptions: dict[str, str] = field(default_factory=dict)
    short_descriptions: dict[str, str] = field(default_factory=dict)
    menu_buttons: dict[int | None, dict[str, Any]] = field(default_factory=dict)

    def pending(self) -> list[UpdateRecord]:
        return [u for u in self.updates if u.pending]

    def to_sandbox(self) -> dict[str, Any]:
        hook = self.webhook
        return {
            "id": self.me.id, "username": self.me.username,
            "webhook": None if hook is None else {
                "url": hook.url, "has_secret_token": bool(hook.secret_token),
                "max_connections": hook.max_connections, "last_error_message": hook.last_error_message},
            "allowed_updates": sorted(self.allowed_updates) if self.allowed_updates else None,
            "pending_update_count": len(self.pending()),
            "commands": [{"scope": scope, "language_code": lang, "commands": cmds}
                         for (scope, lang), cmds in self.commands.items()],
            "descriptions": self.descriptions, "short_descriptions": self.short_descriptions,
            "menu_buttons": {str(k): v for k, v in self.menu_buttons.items()},
        }
