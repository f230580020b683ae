"""``FakeTelegram``: all state of the Bot API stand-in, its HTTP entry point and its control methods.

Why one object with one lock: the Bot API side runs on the uvicorn thread's event loop while tests
and the try-it mode drive the user side from another thread (or over HTTP). Every mutation happens
under ``lock`` without awaiting, and waiters on any loop are woken through ``notifier``, so both sides
see a consistent world. Nothing is ever written to disk or stdout: the project scans every byte it
writes for leaked keys, and the stand-in holds pasted keys in memory only.

Token rules follow tdlib/telegram-bot-api ClientManager.cpp (a token is ``<bot id>:<secret>``; a
malformed one is "Unauthorized: invalid token specified") and the cloud API's plain "Unauthorized"
for unknown tokens. Flood control (``telegram_flood``, on by default) follows
https://core.telegram.org/bots/faq#my-bot-is-hitting-limits ("avoid sending more than one message per
second" per chat, 20/min per group, ~30/s per bot, short bursts allowed; 429 with
``parameters.retry_after``, https://core.telegram.org/bots/api#responseparameters).
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from bot.standins.telegram_delivery import Notifier, WebhookDispatcher, get_updates
from bot.standins.telegram_flood import FloodControl
from bot.standins.telegram_methods import METHODS, Described, MethodContext, chat_id_of
from bot.standins.telegram_request import (
    ApiError,
    ApiRequest,
    decode_request,
    error_response,
    ok_response,
)
from bot.standins.telegram_text import auto_entities, strip_markup
from bot.standins.telegram_validate import DEFAULT_ALLOWED_UPDATES
from bot.standins.telegram_world import (
    BotWorld,
    CallbackQueryRecord,
    CallRecord,
    ChatRecord,
    Person,
    Settings,
    StoredMessage,
    UpdateRecord,
    new_file_ids,
    random_numeric_id,
)

__all__ = ["FakeTelegram", "SandboxError"]

_TOKEN = re.compile(r"^([1-9]\d{0,15}):([A-Za-z0-9_-]+)$")
_LIFETIME_S = {"message": 86400.0, "edited_message": 86400.0, "my_chat_member": 86400.0,
               "callback_query": 150.0}  # Client.cpp add_update timeouts


class SandboxError(Exception):
    """A control-API request that cannot be honoured; becomes ``{"error": ...}`` with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class FakeTelegram:
    """In-memory Telegram: bots, users, chats, update queues, webhooks and a log of every call."""

    def __init__(
        self,
        tokens: Iterable[str] | None = None,
        *,
        bot_username: str = "DoubleTickOnboardingBot",
        bot_first_name: str = "DoubleTick Onboarding",
        settings: Settings | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.lock = threading.RLock()
        # Flood control and callback-query age read this clock (monotonic seconds); a test may pass
        # a settable one to make both deterministic. Message dates stay on the wall clock.
        self.clock: Callable[[], float] = clock or time.monotonic
        self.notifier = Notifier()
        self.bot_username = bot_username
        self.bot_first_name = bot_first_name
        self._tokens = frozenset(tokens) if tokens is not None else None
        self._base_settings = settings or Settings()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._dispatcher = WebhookDispatcher(self)
        self._next_update_ids: dict[int, int] = {}  # survive reset: update ids only ever grow
        self._last_bot_id: int | None = None  # survives reset: control calls keep their target
        self._webhook_generations = 0  # survives reset: old webhook workers never serve a new webhook
        self._call_seq = 0  # survives reset: a waiter's after_seq stays meaningful
        self._init_state()

    def _init_state(self) -> None:
        self.settings = dataclasses.replace(self._base_settings)
        self._bots: dict[int, BotWorld] = {}
        self._users: dict[int, Person] = {}
        self._files: dict[str, tuple[str, Any]] = {}
        self._calls: list[CallRecord] = []
        self._fail_next: dict[str, deque[dict[str, Any]]] = {}
        self._flood = FloodControl()

    # --- loop and change propagation -------------------------------------------------------------

    def attach_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Called by the app's lifespan: webhook pushes run on this loop."""
        self._loop = loop

    async def detach_loop(self) -> None:
        await self._dispatcher.close()
        self._loop = None

    def changed(self, world: BotWorld | None = None) -> None:
        """Wake every waiter and, when a webhook is set, let the dispatcher push what is pending."""
        self.notifier.notify()
        loop = self._loop
        if world is not None and world.webhook is not None and loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._dispatcher.kick, world.me.id)

    def next_webhook_generation(self) -> int:
        self._webhook_generations += 1
        return self._webhook_generations

    def now(self) -> float:
        """The injectable clock (flood control, callback-query age)."""
        return self.clock()

    def owns(self, world: BotWorld) -> bool:
        return self._bots.get(world.me.id) is world

    def world_if_exists(self, bot_id: int) -> BotWorld | None:
        return self._bots.get(bot_id)

    def remember_file(self, file_id: str, kind: str, info: Any) -> None:
        self._files[file_id] = (kind, info)

    def known_file(self, file_id: str) -> tuple[str, Any] | None:
        return self._files.get(file_id)

    # --- bots --------------------------------------------------------------------------------------

    def _make_world(self, bot_id: int) -> BotWorld:
        world = self._bots.get(bot_id)
        if world is None:
            me = Person(bot_id, self.bot_first_name, self.bot_username, is_bot=True)
            first_id = self._next_update_ids.get(bot_id) or random.randint(100_000_000, 900_000_000)
            world = BotWorld(me=me, next_update_id=first_id)
            self._bots[bot_id] = world
        return world

    def authorize(self, token: str) -> BotWorld:
        """The bot a token belongs to, or 401 as the real server answers."""
        match = _TOKEN.match(token)
        if match is None:
            raise ApiError(401, "Unauthorized: invalid token specified")
        if (self._tokens is not None and token not in self._tokens) or \
                (self._tokens is None and not 30 <= len(match.group(2)) <= 50):
            raise ApiError(401, "Unauthorized")
        bot_id = int(match.group(1))
        self._last_bot_id = bot_id
        return self._make_world(bot_id)

    def _world(self, bot_id: int | None = None) -> BotWorld:
        """The bot a control call is about: explicit, else the configured/last active one."""
        if bot_id is not None:
            return self._make_world(bot_id)
        if self._tokens:
            match = _TOKEN.match(sorted(self._tokens)[0])
            if match:
                return self._make_world(int(match.group(1)))
        if self._last_bot_id is not None:
            return self._make_world(self._last_bot_id)
        if len(self._bots) == 1:
            return next(iter(self._bots.values()))
        raise SandboxError(409, "no bot has called the Bot API yet: pass bot_id or configure tokens")

    # --- the Bot API entry point -------------------------------------------------------------------

    async def handle_api(self, token: str, method_name: str, request: Request) -> JSONResponse:
        """Answer one ``/bot<token>/<method>`` request and record it."""
        received = time.monotonic()
        record = CallRecord(seq=0, bot_id=None, method=method_name, params={}, received_monotonic=received)
        try:
            req = await decode_request(request, method_name)
            record.params = req.recorded_params()
            record.chat_id = chat_id_of(req)
            with self.lock:
                self._append_call(record)
                world = self.authorize(token)
                record.bot_id = world.me.id
                self._before_call(world, req, record)
            if req.method == "getupdates":
                result: Any = await get_updates(self, world, req, lambda: _disconnected(request))
            else:
                with self.lock:
                    result = METHODS[req.method](MethodContext(self, world), req)
        except ApiError as error:
            self._finish(record, error)
            return error_response(error)
        except Exception as bug:  # a stand-in bug must show up in the log, not wedge a waiter
            failure = ApiError(500, f"Internal Server Error: stand-in failure ({type(bug).__name__})")
            self._finish(record, failure)
            return error_response(failure)
        self._finish(record, None)
        if isinstance(result, Described):
            return ok_response(result.result, result.description)
        return ok_response(result)

    def _append_call(self, record: CallRecord) -> None:
        self._call_seq += 1
        record.seq = self._call_seq
        self._calls.append(record)

    def _before_call(self, world: BotWorld, req: ApiRequest, record: CallRecord) -> None:
        """Unknown method, injected faults and flood control, in that order."""
        if req.method not in METHODS and req.method != "getupdates":
            raise ApiError(404, "Not Found")
        if req.method == "answercallbackquery":
            query = world.callback_queries.get(req.arg("callback_query_id"))
            record.chat_id = query.chat_id if query else None
        queued = self._fail_next.get(req.method)
        if queued:
            fault = queued.popleft()
            retry_after = fault.get("retry_after")
            parameters = {"retry_after": int(retry_after)} if retry_after is not None else None
            raise ApiError(int(fault.get("error_code", 500)),
                           str(fault.get("description", "Internal Server Error")), parameters)
        self._flood.check(self.settings, world.me.id, req.method, record.chat_id, self.clock())

    def _finish(self, record: CallRecord, error: ApiError | None) -> None:
        with self.lock:
            if record.seq == 0:
                self._append_call(record)
            record.ok = error is None
            if error is not None:
                record.error_code, record.description = error.error_code, error.description
            record.finished_monotonic = time.monotonic()
        self.notifier.notify()

    # --- updates -----------------------------------------------------------------------------------

    def _enqueue(self, world: BotWorld, kind: str, payload: dict[str, Any], chat_id: int | None,
                 queue_key: tuple[str, int], callback_query_id: str | None = None) -> UpdateRecord | None:
        """Queue an update unless ``allowed_updates`` filters it out (then no id is spent)."""
        if kind not in (world.allowed_updates or DEFAULT_ALLOWED_UPDATES):
            return None
        now = time.monotonic()
        update = UpdateRecord(world.next_update_id, kind, payload, chat_id, queue_key, now,
                              now + _LIFETIME_S.get(kind, 86400.0), callback_query_id)
        world.next_update_id += 1
        world.updates.append(update)
        self.changed(world)
        return update

    def _person(self, user_id: int, first_name: str | None, username: str | None,
                language_code: str | None) -> Person:
        person = self._users.setdefault(user_id, Person(user_id, first_name or f"User{user_id}"))
        person.first_name = first_name or person.first_name
        person.username = username or person.username
        person.language_code = language_code or person.language_code
        return person

    def _chat(self, world: BotWorld, user: Person, chat_id: int | None, chat_type: str,
              create: bool = True) -> ChatRecord:
        if chat_type not in ("private", "group", "supergroup"):
            raise SandboxError(400, "chat_type must be private, group or supergroup")
        target = user.id if chat_id is None else chat_id
        chat = world.chats.get(target)
        if chat is not None:
            return chat
        if not create:
            raise SandboxError(404, f"chat {target} does not exist")
        if chat_type == "private" and target != user.id:
            raise SandboxError(400, "a private chat's id is the user's id")
        if chat_type != "private" and target >= 0:
            raise SandboxError(400, "group chat ids are negative")
        private = chat_type == "private"
        chat = ChatRecord(target, chat_type, random_numeric_id(), user=user if private else None,
                          title=None if private else f"Group {-target}")
        world.chats[target] = chat
        return chat

    @staticmethod
    def _update_id(update: UpdateRecord | None) -> int | None:
        return update.update_id if update is not None else None

    # --- control: the user's side ------------------------------------------------------------------

    def send(self, user_id: int, text: str | None = None, *, chat_id: int | None = None,
             chat_type: str = "private", caption: str | None = None, photo: bool = False,
             document: dict[str, str] | None = None, sticker: bool = False, forward: bool = False,
             first_name: str | None = None, username: str | None = None, language_code: str | None = None,
             reply_to_message_id: int | None = None, bot_id: int | None = None) -> dict[str, Any]:
        """The user sends a message; returns ``{update_id, message_id, chat_id}``."""
        if text is None and not (photo or document or sticker):
            raise SandboxError(400, "send needs text, photo, document or sticker")
        if text is not None and (photo or document or sticker):
            raise SandboxError(400, "text goes with no media; use caption for media")
        with self.lock:
            world = self._world(bot_id)
            user = self._person(user_id, first_name, username, language_code)
            chat = self._chat(world, user, chat_id, chat_type)
            if chat.blocked:
                raise SandboxError(409, "the user blocked the bot; POST /_sandbox/block blocked=false first")
            if chat.migrated_to is not None:
                raise SandboxError(409, f"the group was upgraded; it is now chat {chat.migrated_to}")
            now = int(time.time())
            message = StoredMessage(chat.take_message_id(), chat.id, user, False, now, time.monotonic(),
                                    reply_to_message_id=reply_to_message_id)
            if text is not None:
                message.text, message.entities = text, auto_entities(text)
            else:
                message.caption = caption or None
                message.caption_entities = auto_entities(caption) if caption else []
            if photo:
                message.photo = [{"file_id": ids[0], "file_unique_id": ids[1], "file_size": size,
                                  "width": w, "height": h}
                                 for w, h, size in ((90, 51, 1200), (1280, 720, 64000))
                                 for ids in [new_file_ids("AgACAgIAAxkBAAI")]]
            if document is not None:
                file_id, unique = new_file_ids("BQACAgIAAxkBAAI")
                message.document = {"file_id": file_id, "file_unique_id": unique, "file_size": 128,
                                    "file_name": document.get("file_name", "file.txt"),
                                    "mime_type": document.get("mime_type", "text/plain")}
            if sticker:
                file_id, unique = new_file_ids("CAACAgIAAxkBAAI")
                message.sticker = {"file_id": file_id, "file_unique_id": unique, "type": "regular",
                                   "width": 512, "height": 512, "is_animated": False, "is_video": False,
                                   "emoji": "\N{THUMBS UP SIGN}"}
            if forward:
                message.forward_origin = {"type": "user", "sender_user": user.to_api(), "date": now - 3600}
            chat.messages[message.message_id] = message
            update = self._enqueue(world, "message", message.to_api(chat), chat.id, ("chat", chat.id))
            return {"update_id": self._update_id(update), "message_id": message.message_id,
                    "chat_id": chat.id}

    def edit(self, user_id: int, message_id: int, text: str, *, chat_id: int | None = None,
             bot_id: int | None = None) -> dict[str, Any]:
        """The user edits their message (text, or caption of a media message) -> edited_message."""
        with self.lock:
            world = self._world(bot_id)
            chat = world.chats.get(user_id if chat_id is None else chat_id)
            message = chat.messages.get(message_id) if chat is not None else None
            if chat is None or message is None or message.deleted:
                raise SandboxError(404, "no such message (or it was deleted)")
            if message.from_bot or message.sender.id != user_id:
                raise SandboxError(400, "users can edit only their own messages")
            if message.text is not None:
                message.text, message.entities = text, auto_entities(text)
            else:
                message.caption, message.caption_entities = text, auto_entities(text)
            message.edit_date, message.edits = int(time.time()), message.edits + 1
            update = self._enqueue(world, "edited_message", message.to_api(chat), chat.id, ("chat", chat.id))
            return {"update_id": self._update_id(update), "message_id": message_id}

    def press(self, user_id: int, message_id: int, data: str, *, chat_id: int | None = None,
              bot_id: int | None = None) -> dict[str, Any]:
        """The user presses an inline button; unknown messages or data are delivered anyway (forgeries)."""
        with self.lock:
            world = self._world(bot_id)
            user = self._person(user_id, None, None, None)
            chat = self._chat(world, user, chat_id, "private" if chat_id in (None, user_id) else "supergroup")
            message = chat.messages.get(message_id)
            shown = message.to_api(chat) if message is not None and not message.deleted else \
                {"chat": chat.to_api(), "message_id": message_id, "date": 0}  # InaccessibleMessage
            query_id = random_numeric_id()
            world.callback_queries[query_id] = CallbackQueryRecord(query_id, user_id, chat.id, message_id,
                                                                   self.clock())
            payload = {"id": query_id, "from": user.to_api(), "message": shown,
                       "chat_instance": chat.chat_instance, "data": data}
            update = self._enqueue(world, "callback_query", payload, chat.id, ("callback", user_id), query_id)
            return {"update_id": self._update_id(update), "callback_query_id": query_id, "data": data,
                    "message_id": message_id}

    def press_button(self, user_id: int, text: str, *, message_id: int | None = None,
                     chat_id: int | None = None, bot_id: int | None = None) -> dict[str, Any]:
        """Press the button labelled ``text`` on ``message_id`` (default: the latest bot keyboard)."""
        with self.lock:
            world = self._world(bot_id)
            chat = world.chats.get(user_id if chat_id is None else chat_id)
            if chat is None:
                raise SandboxError(404, "no such chat")
            candidates = [m for m in reversed(chat.messages.values())
                          if m.from_bot and not m.deleted and m.reply_markup
                          and (message_id is None or m.message_id == message_id)]
            for message in candidates[:1]:
                for row in (message.reply_markup or {}).get("inline_keyboard", []):
                    for button in row:
                        if _same_label(button.get("text", ""), text):
                            if "callback_data" not in button:
                                raise SandboxError(400, f"button {text!r} has no callback_data")
                            return self.press(user_id, message.message_id, button["callback_data"],
                                              chat_id=chat.id, bot_id=bot_id)
            where = f"message {message_id}" if message_id is not None else "the latest bot keyboard"
            raise SandboxError(404, f"no button labelled {text!r} on {where}")

    def block(self, user_id: int, blocked: bool = True, *, bot_id: int | None = None) -> dict[str, Any]:
        """The user blocks (or unblocks) the bot -> my_chat_member; sends then fail with 403."""
        with self.lock:
            world = self._world(bot_id)
            user = self._person(user_id, None, None, None)
            chat = self._chat(world, user, None, "private")
            if chat.blocked == blocked:
                return {"update_id": None}
            chat.blocked = blocked
            member = {"user": world.me.to_api(), "status": "member"}
            kicked = {"user": world.me.to_api(), "status": "kicked", "until_date": 0}
            old, new = (member, kicked) if blocked else (kicked, member)
            payload = {"chat": chat.to_api(), "from": user.to_api(), "date": int(time.time()),
                       "old_chat_member": old, "new_chat_member": new}
            update = self._enqueue(world, "my_chat_member", payload, chat.id, ("member", chat.id))
            return {"update_id": self._update_id(update)}

    # --- control: the world's knobs ----------------------------------------------------------------

    def configure_chat(self, chat_id: int, bot_can_delete: bool, *,
                       bot_id: int | None = None) -> dict[str, Any]:
        """Make the bot an admin with can_delete_messages (or not) in a group chat."""
        with self.lock:
            chat = self._world(bot_id).chats.get(chat_id)
            if chat is None:
                raise SandboxError(404, f"chat {chat_id} does not exist; send a message there first")
            chat.bot_can_delete = bot_can_delete
            return {"chat_id": chat_id, "bot_can_delete": bot_can_delete}

    def migrate_group(self, chat_id: int, user_id: int, *, bot_id: int | None = None) -> dict[str, Any]:
        """A member upgrades basic group ``chat_id`` to a supergroup; returns the new chat id.

        As on Telegram (https://core.telegram.org/bots/api#message ``migrate_to_chat_id`` /
        ``migrate_from_chat_id``): the supergroup gets a new ``-100...`` id, the old group receives a
        service message with ``migrate_to_chat_id`` and the new one with ``migrate_from_chat_id``, and
        from then on writes to the old id fail with "Bad Request: group chat was upgraded to a
        supergroup chat" and ``parameters.migrate_to_chat_id`` (Client.cpp ``check_chat_access``).
        """
        with self.lock:
            world = self._world(bot_id)
            old = world.chats.get(chat_id)
            if old is None:
                raise SandboxError(404, f"chat {chat_id} does not exist; send a message there first")
            if old.type != "group" or old.migrated_to is not None:
                raise SandboxError(409, "only a basic group that was not migrated yet can be upgraded")
            user = self._person(user_id, None, None, None)
            new_id = -(10**12 + abs(chat_id))
            new = ChatRecord(new_id, "supergroup", random_numeric_id(), title=old.title,
                             bot_can_delete=old.bot_can_delete)
            world.chats[new_id] = new
            old.migrated_to = new_id
            now, moment = int(time.time()), time.monotonic()
            notes = ((old, {"migrate_to_chat_id": new_id}), (new, {"migrate_from_chat_id": chat_id}))
            updates: list[int | None] = []
            for chat, service in notes:
                message = StoredMessage(chat.take_message_id(), chat.id, user, False, now, moment,
                                        service=service)
                chat.messages[message.message_id] = message
                update = self._enqueue(world, "message", message.to_api(chat), chat.id, ("chat", chat.id))
                updates.append(self._update_id(update))
            return {"chat_id": chat_id, "migrate_to_chat_id": new_id, "update_ids": updates}

    def age_message(self, chat_id: int, message_id: int, seconds: float, *,
                    bot_id: int | None = None) -> dict[str, Any]:
        """Move a message's date ``seconds`` into the past (e.g. beyond the 48 h delete window)."""
        with self.lock:
            chat = self._world(bot_id).chats.get(chat_id)
            message = chat.messages.get(message_id) if chat is not None else None
            if message is None:
                raise SandboxError(404, "no such message")
            message.date -= int(seconds)
            return {"message_id": message_id, "date": message.date}

    def configure(self, **changes: Any) -> dict[str, Any]:
        """Change settings (see ``Settings``); ``fail_next`` takes one fault dict or a list of them.

        ``clear_fail_next=True`` first drops every queued fault (a test that queued "enough" failures
        to hold a window open ends the window when it chooses, not when the count runs out).
        """
        with self.lock:
            if changes.pop("clear_fail_next", False):
                self._fail_next.clear()
            faults = changes.pop("fail_next", None)
            known = {f.name for f in dataclasses.fields(Settings)}
            unknown = set(changes) - known
            if unknown:
                raise SandboxError(400, f"unknown settings: {sorted(unknown)}")
            self.settings = dataclasses.replace(self.settings, **changes)
            for fault in [faults] if isinstance(faults, dict) else faults or []:
                if not isinstance(fault, dict) or "method" not in fault:
                    raise SandboxError(400, "fail_next needs {method, error_code, description, retry_after?}")
                self._fail_next.setdefault(str(fault["method"]).lower(), deque()).append(fault)
            return dataclasses.asdict(self.settings)

    def fail_next(self, method: str, error_code: int, description: str,
                  retry_after: int | None = None) -> None:
        """Make the next call of ``method`` fail with this error (faults queue up per method)."""
        self.configure(fail_next={"method": method, "error_code": error_code, "description": description,
                                  "retry_after": retry_after})

    def reset(self) -> None:
        """Forget everything (webhooks stop, long polls end); constructor options are kept."""
        with self.lock:
            for world in self._bots.values():
                world.webhook = None  # webhook workers stop; long polls answer [] (see get_updates)
                self._next_update_ids[world.me.id] = world.next_update_id
            self._init_state()
        self.notifier.notify()

    # --- control: observation ----------------------------------------------------------------------

    def _observed(self, bot_id: int | None) -> BotWorld | None:
        """Like ``_world`` but for read-only views: nothing known yet is simply empty."""
        if bot_id is not None:
            return self._bots.get(bot_id)
        try:
            return self._world(None)
        except SandboxError:
            return None

    def messages(self, chat_id: int, *, bot_id: int | None = None) -> list[dict[str, Any]]:
        with self.lock:
            world = self._observed(bot_id)
            chat = world.chats.get(chat_id) if world is not None else None
            return [m.to_sandbox() for m in chat.messages.values()] if chat is not None else []

    def calls(self, since: int = 0, method: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            wanted = method.lower() if method else None
            return [c.to_sandbox() for c in self._calls
                    if c.seq > since and (wanted is None or c.method.lower() == wanted)]

    def updates(self, *, bot_id: int | None = None) -> list[dict[str, Any]]:
        with self.lock:
            world = self._observed(bot_id)
            return [u.to_sandbox() for u in world.updates] if world is not None else []

    def bot_info(self, *, bot_id: int | None = None) -> dict[str, Any]:
        with self.lock:
            return self._world(bot_id).to_sandbox()

    def callback_answers(self, *, bot_id: int | None = None) -> list[dict[str, Any]]:
        with self.lock:
            world = self._observed(bot_id)
            queries = world.callback_queries.values() if world is not None else []
            return [{"callback_query_id": q.id, "user_id": q.user_id, "chat_id": q.chat_id,
                     "message_id": q.message_id, "answered": q.answered, "answer": q.answer}
                    for q in queries]

    async def wait_until(self, condition: Callable[[], bool], within_s: float = 5.0) -> bool:
        """Re-check ``condition`` on every change of the stand-in; False if still unmet after ``within_s``."""
        deadline = time.monotonic() + within_s
        while True:
            since = self.notifier.generation
            if condition():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            await self.notifier.wait(since, remaining)

    async def wait_for_calls(self, chat_id: int, after_seq: int = 0, within_s: float = 5.0,
                             method: str | None = None) -> list[dict[str, Any]]:
        """Finished calls touching ``chat_id`` with seq > ``after_seq``; [] after ``within_s`` seconds."""
        deadline = time.monotonic() + within_s
        wanted = method.lower() if method else None
        while True:
            since = self.notifier.generation
            with self.lock:
                found = [c.to_sandbox() for c in self._calls
                         if c.seq > after_seq and c.chat_id == chat_id and c.ok is not None
                         and (wanted is None or c.method.lower() == wanted)]
            remaining = deadline - time.monotonic()
            if found or remaining <= 0:
                return found
            await self.notifier.wait(since, remaining)


def _same_label(label: str, wanted: str) -> bool:
    return label == wanted or strip_markup(label, "").strip().casefold() == wanted.strip().casefold()


async def _disconnected(request: Request) -> None:
    """Finish when the client goes away (PTB cancels getUpdates on shutdown)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
