"""Random updates of every kind through the real PTB Application, in process: nothing raises, no key comes back.

Complements tests/test_property_updates.py (which drives the bot *process* with user-like sequences):
here the Application built by ``bot.telegram.application.build_bot`` runs in this process against the stand-ins,
so hundreds of examples are cheap, and updates are not limited to what a user can do through the
stand-in's control API. Each example mixes

* realistic updates made by the Bot API stand-in (``FakeTelegram`` builds them; the test fetches them with
  ``getUpdates`` like the Updater would): text, captions, photos, stickers, documents, forwards, edits,
  button presses with real and random callback data, blocking, in private chats, groups and supergroups;
* synthetic updates built from JSON (``telegram.Update.de_json``) for what the stand-in cannot make:
  voice, video, audio, animations, video notes, contacts, locations, venues, polls, dice, service
  messages, channel posts and their edits, inline queries, poll answers, join requests, reactions and
  chat-member changes, callbacks on inaccessible messages.

Every update goes through the update processor (so the secret guard runs first, as in production), key
pipelines are awaited, and then: no handler error, no ERROR log record (PTB's, the bot's or asyncio's
"exception was never retrieved"), and no outbound Bot API request carries a pasted secret in any form.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from telegram import Update
from telegram.ext import ContextTypes

from bot.config import Settings
from bot.standins.sandbox import Sandbox
from bot.standins.telegram import SandboxError
from bot.telegram.application import ALLOWED_UPDATES, BotApp, build_bot
from bot.telegram.secret_guard import data_carries_secret
from flows.steps import SPECS, Step
from flows.view import callback_data
from storage.migrate import upgrade
from tests.e2e.leaks import find_in_calls
from tests.e2e.pasting import SECRET_NAMES, fresh_secret

pytestmark = pytest.mark.e2e

CHAT_TYPES = ("private", "group", "supergroup")
COMMANDS = ("/start", "/start ws_demo", "/start x" * 20, "/restart", "/cancel", "/help", "/privacy", "/replace",
            "/disconnect", "/unknown", "/start@DoubleTickOnboardingBot", "/")
PLAIN = ("ws_demo", "hello", "", " ", "\u200b", "<b>x</b> & <i>", "sk-", "sk-proj-abc...wxyz", "x" * 4096,
         "org-A1b2C3d4E5f6G7h8I9j0K1l2", "proj_Z9y8X7w6V5u4T3s2R1q0P9o8", "\u202e\u0000\ud7ff")
WRAPS = ("{}", "key: {}", "`{}`", "OPENAI_API_KEY={}\n", "{}\n{}", "Bearer {}", "{} and more text")
DOCUMENTS = ("openai_api_key.txt", ".env", "notes.txt", "secret.pem", "k.json", "")
REAL_PRESSES = [callback_data(step, choice.action) for step, spec in SPECS.items() for choice in spec.choices] + \
    [callback_data(step, "back") for step in Step] + [callback_data(step, "stuck") for step in Step]
MEDIA = ("voice", "video", "audio", "animation", "video_note", "contact", "location", "venue", "poll", "dice",
         "new_chat_members", "left_chat_member", "new_chat_title", "pinned_message")
KINDS = ("message", "edited_message", "channel_post", "edited_channel_post", "callback_query", "my_chat_member",
         "chat_member", "inline_query", "poll_answer", "chat_join_request", "message_reaction")
_ids = itertools.count(1)


@dataclass(frozen=True)
class Secret:
    """A secret built from a seed, so a failing example replays exactly."""

    name: str
    seed: int
    wrap: str

    def value(self) -> str:
        return fresh_secret(self.name, random.Random(self.seed))

    def text(self) -> str:
        return self.wrap.format(self.value(), self.value())


secrets_ = st.builds(Secret, st.sampled_from(SECRET_NAMES), st.integers(0, 2**32), st.sampled_from(WRAPS))
texts = st.one_of(secrets_, st.sampled_from(PLAIN + COMMANDS), st.text(max_size=60))


@dataclass(frozen=True)
class Act:
    kind: str
    chat_type: str = "private"
    content: Any = None
    extra: Any = None


acts = st.one_of(
    st.builds(Act, st.just("send"), st.sampled_from(CHAT_TYPES), texts),
    st.builds(Act, st.just("caption"), st.sampled_from(CHAT_TYPES), texts, st.sampled_from(["photo", "document"])),
    st.builds(Act, st.just("document"), st.sampled_from(CHAT_TYPES), st.none(), st.sampled_from(DOCUMENTS)),
    st.builds(Act, st.just("sticker"), st.sampled_from(CHAT_TYPES)),
    st.builds(Act, st.just("forward"), st.sampled_from(CHAT_TYPES), texts),
    st.builds(Act, st.just("edit"), st.sampled_from(CHAT_TYPES), texts, st.integers(0, 8)),
    st.builds(Act, st.just("press"), st.sampled_from(CHAT_TYPES), st.sampled_from(REAL_PRESSES), st.integers(0, 8)),
    st.builds(Act, st.just("press"), st.sampled_from(CHAT_TYPES), st.text(max_size=80), st.integers(-3, 12)),
    st.builds(Act, st.just("block"), st.just("private"), st.booleans()),
    st.builds(Act, st.just("synthetic"), st.sampled_from((*CHAT_TYPES, "channel")), texts,
              st.tuples(st.sampled_from(KINDS), st.sampled_from(("text", *MEDIA)), st.integers(-5, 50))),
)


class Harness:
    """The in-process bot against the stand-ins, one per module (a plain class: a short repr in reports)."""

    def __init__(self, sandbox: Sandbox, loop: asyncio.AbstractEventLoop, bot_app: BotApp) -> None:
        self.sandbox = sandbox
        self.loop = loop
        self.bot_app = bot_app
        self.failures: list[str] = []
        self.offset = 0
        self.synthetic_ids = itertools.count(3_000_000_000)

    def __repr__(self) -> str:
        return "Harness(in-process bot against the stand-ins)"


class _Failures(logging.Handler):
    def __init__(self, sink: list[str]) -> None:
        super().__init__(logging.ERROR)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        error = record.exc_info[1] if record.exc_info else None
        where = ""
        if error is not None:
            frames = [f for f in traceback.extract_tb(error.__traceback__) if "/site-packages/" not in f.filename]
            where = " at " + " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in reversed(frames[-3:]))
        self.sink.append(f"{record.name}: {record.getMessage()} {type(error).__name__ if error else ''}{where}")


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    folder: Path = tmp_path_factory.mktemp("fuzz")
    sandbox = Sandbox().start()
    loop = asyncio.new_event_loop()
    url = f"sqlite+aiosqlite:///{folder / 'bot.db'}"
    loop.run_until_complete(upgrade(url))
    env = sandbox.bot_environment(url, key_submissions_per_user_per_hour=100_000,
                                  verifications_per_minute=1_000_000, telegram_max_rate_per_s=100_000)
    bot_app = build_bot(Settings(_env_file=None, **{k.lower(): v for k, v in env.items()}))  # type: ignore[arg-type]
    harness = Harness(sandbox, loop, bot_app)

    async def note_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        harness.failures.append(f"handler error: {type(context.error).__name__}: {context.error}")

    bot_app.application.add_error_handler(note_error)
    loop.run_until_complete(bot_app.application.initialize())
    if bot_app.delete_bot is not None:
        loop.run_until_complete(bot_app.delete_bot.initialize())
    handler = _Failures(harness.failures)
    watched = [logging.getLogger(name) for name in ("bot", "telegram", "asyncio", "storage", "flows")]
    for logger in watched:
        logger.addHandler(handler)
    try:
        yield harness
    finally:
        for logger in watched:
            logger.removeHandler(handler)
        loop.run_until_complete(bot_app.application.shutdown())
        loop.run_until_complete(bot_app.close())
        loop.close()
        sandbox.stop()


@dataclass
class Example:
    """One example's user, chats and pasted secrets."""

    harness: Harness
    user_id: int
    secrets: list[str] = field(default_factory=list)
    sent: dict[int, list[int]] = field(default_factory=dict)  # chat id -> message ids the user sent

    @property
    def fake(self) -> Any:
        return self.harness.sandbox.telegram

    def chat_id(self, chat_type: str) -> int:
        if chat_type == "private":
            return self.user_id
        return -(10**12 + self.user_id) if chat_type == "supergroup" else -self.user_id

    def text(self, content: Any) -> str:
        if isinstance(content, Secret):
            self.secrets.append(content.value())
            return content.text()
        return str(content)

    def _send(self, chat_type: str, **kwargs: Any) -> None:
        chat = self.chat_id(chat_type)
        result = self.fake.send(self.user_id, chat_id=chat, chat_type=chat_type, first_name="Fuzz", **kwargs)
        self.sent.setdefault(chat, []).append(result["message_id"])

    def _bot_message(self, chat: int, index: int) -> int:
        ids = [m["message_id"] for m in self.fake.messages(chat) if m["from_bot"]]
        return ids[index % len(ids)] if ids else max(1, index)

    def perform(self, act: Act) -> Update | None:
        """Do ``act`` at the stand-in (None), or build it as a synthetic update."""
        chat = self.chat_id(act.chat_type)
        if act.kind in ("send", "forward"):
            self._send(act.chat_type, text=self.text(act.content) or ".", forward=act.kind == "forward")
        elif act.kind == "caption":
            media = {"photo": True} if act.extra == "photo" else {"document": {"file_name": "f.txt"}}
            self._send(act.chat_type, caption=self.text(act.content), **media)
        elif act.kind == "document":
            self._send(act.chat_type, document={"file_name": act.extra, "mime_type": "text/plain"})
        elif act.kind == "sticker":
            self._send(act.chat_type, sticker=True)
        elif act.kind == "edit":
            mine = self.sent.get(chat, [])
            if mine:
                self.fake.edit(self.user_id, mine[act.extra % len(mine)], self.text(act.content) or ".", chat_id=chat)
        elif act.kind == "press":
            self._ensure_chat(act.chat_type)
            self.fake.press(self.user_id, self._bot_message(chat, act.extra), act.content, chat_id=chat)
        elif act.kind == "block":
            self._ensure_chat("private")
            self.fake.block(self.user_id, act.content)
        elif act.kind == "synthetic":
            if act.chat_type != "channel":
                self._ensure_chat(act.chat_type)
            return self._synthetic(act)
        return None

    def _ensure_chat(self, chat_type: str) -> None:
        if self.chat_id(chat_type) not in self.sent:
            self._send(chat_type, text="hi")

    def _synthetic(self, act: Act) -> Update:
        kind, media, message_id = act.extra
        chat_id = self.chat_id(act.chat_type)
        user = {"id": self.user_id, "is_bot": False, "first_name": "Fuzz", "language_code": "en"}
        chat: dict[str, Any] = {"id": chat_id, "type": act.chat_type}
        chat.update({"first_name": "Fuzz"} if act.chat_type == "private" else {"title": "Chat"})
        text = self.text(act.content)
        message: dict[str, Any] = {"message_id": message_id, "date": 1_700_000_000, "chat": chat}
        if act.chat_type != "channel":
            message["from"] = user
        message.update(_media(media, text, user, chat))
        update_id = next(self.harness.synthetic_ids)
        data: dict[str, Any] = {"update_id": update_id}
        if kind in ("message", "channel_post"):
            data[kind] = message
        elif kind in ("edited_message", "edited_channel_post"):
            data[kind] = {**message, "edit_date": 1_700_000_100}
        elif kind == "callback_query":
            shown = {"chat": chat, "message_id": message_id, "date": 0}  # an inaccessible message
            data[kind] = {"id": str(update_id), "from": user, "chat_instance": "1", "data": text[:64],
                          "message": shown}
        elif kind in ("my_chat_member", "chat_member"):
            bot = {"id": 7000000001, "is_bot": True, "first_name": "Bot"}
            data[kind] = {"chat": chat, "from": user, "date": 1_700_000_000,
                          "old_chat_member": {"user": bot, "status": "member"},
                          "new_chat_member": {"user": bot, "status": "kicked", "until_date": 0}}
        elif kind == "inline_query":
            data[kind] = {"id": str(update_id), "from": user, "query": text[:256], "offset": ""}
        elif kind == "poll_answer":
            data[kind] = {"poll_id": "1", "user": user, "option_ids": [0], "option_persistent_ids": ["o1"]}
        elif kind == "chat_join_request":
            data[kind] = {"chat": chat, "from": user, "user_chat_id": self.user_id, "date": 1_700_000_000}
        else:  # message_reaction
            data[kind] = {"chat": chat, "message_id": message_id, "date": 1_700_000_000, "user": user,
                          "old_reaction": [], "new_reaction": [{"type": "emoji", "emoji": "👍"}]}
        update = Update.de_json(data, self.harness.bot_app.application.bot)
        assert update is not None
        return update


def _media(kind: str, text: str, user: dict[str, Any], chat: dict[str, Any]) -> dict[str, Any]:
    """The message fields for one kind of content (minimal shapes from core.telegram.org/bots/api)."""
    file = {"file_id": "AwACAgIAAxkBAAI", "file_unique_id": "AgADx"}
    caption = {"caption": text} if text else {}
    shapes: dict[str, dict[str, Any]] = {
        "text": {"text": text or "."},
        "voice": {"voice": {**file, "duration": 1}, **caption},
        "video": {"video": {**file, "width": 1, "height": 1, "duration": 1}, **caption},
        "audio": {"audio": {**file, "duration": 1}, **caption},
        "animation": {"animation": {**file, "width": 1, "height": 1, "duration": 1}, **caption},
        "video_note": {"video_note": {**file, "length": 1, "duration": 1}},
        "contact": {"contact": {"phone_number": text[:20] or "+1", "first_name": "C"}},
        "location": {"location": {"latitude": 1.0, "longitude": 2.0}},
        "venue": {"venue": {"location": {"latitude": 1.0, "longitude": 2.0}, "title": text[:64] or "v",
                            "address": "a"}},
        "poll": {"poll": {"id": "1", "question": text[:255] or "q",
                          "options": [{"text": "a", "voter_count": 0, "persistent_id": "o1"}],
                          "total_voter_count": 0, "is_closed": False, "is_anonymous": True, "type": "regular",
                          "allows_multiple_answers": False, "allows_revoting": False,
                          "members_only": False}},
        "dice": {"dice": {"emoji": "🎲", "value": 3}},
        "new_chat_members": {"new_chat_members": [user]},
        "left_chat_member": {"left_chat_member": user},
        "new_chat_title": {"new_chat_title": text[:128] or "t"},
        "pinned_message": {"pinned_message": {"message_id": 1, "date": 0, "chat": chat}},
    }
    return shapes[kind]


async def _run(harness: Harness, example: Example, acts_: list[Act]) -> int:
    application = harness.bot_app.application
    first_call = max((c["seq"] for c in harness.sandbox.telegram.calls()), default=0)
    for act in acts_:
        updates: list[Update] = []
        try:
            synthetic = example.perform(act)
        except SandboxError:  # e.g. editing a message the bot deleted: a user cannot do that either
            continue
        if synthetic is not None:
            updates.append(synthetic)
        raws = await application.bot.do_api_request("getUpdates", api_kwargs={
            "offset": harness.offset, "timeout": 0, "allowed_updates": ALLOWED_UPDATES})
        fetched = [Update.de_json(raw, application.bot) for raw in raws]
        for raw, update in zip(raws, fetched, strict=True):
            # The guard lane decides on the raw JSON (no PTB object for most updates): it must never miss
            # what the check on PTB's own ``to_dict()`` finds.
            if data_carries_secret(update.to_dict()) and not data_carries_secret(raw):
                harness.failures.append(f"the raw JSON of update {update.update_id} hides a secret PTB sees")
        if fetched:
            harness.offset = fetched[-1].update_id + 1
        updates.extend(fetched)
        for update in updates:
            try:
                await application.update_processor.process_update(update, application.process_update(update))
            except Exception as error:  # the guard itself, or anything PTB does not route to error handlers
                harness.failures.append(f"processor raised {type(error).__name__}: {error}")
        await harness.bot_app.runtime.drain(timeout=20)
    return first_call


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow, HealthCheck.data_too_large])
@given(acts_=st.lists(acts, min_size=1, max_size=6))
def test_random_updates_never_raise_and_never_say_a_key_back(harness: Harness, acts_: list[Act]) -> None:
    harness.failures.clear()
    example = Example(harness, 8_000_000 + next(_ids))
    first_call = harness.loop.run_until_complete(_run(harness, example, acts_))
    assert not harness.failures, harness.failures
    calls = harness.sandbox.telegram.calls(since=first_call)
    leaks = find_in_calls(calls, example.secrets)
    assert not leaks, [str(leak) for leak in leaks]
