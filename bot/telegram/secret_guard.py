"""Delete first: remove any message that may carry a secret before anything else is awaited.

Why in the update processor: it runs as the first step of every update's task, before the database is
touched, before the per-chat lock, before any handler. The time from receiving the update to sending
``deleteMessage`` is the exposure window, a headline metric.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Coroutine, Iterator
from typing import Any

from telegram import Message, Update
from telegram.ext import BaseUpdateProcessor

from bot.core.ports import DeleteOutcome, GuardVerdict
from bot.telegram.messenger import Messenger
from flows.inspection import might_be_key_file, might_carry_secret

__all__ = [
    "GuardVerdict", "GuardedUpdateProcessor", "SecretGuard", "carries_secret", "data_carries_secret",
    "guarded_messages", "message_of",
]

MAX_PENDING_VERDICTS = 10_000
UNBOUNDED = 1_000_000  # PTB's semaphore around the guard; the real bound is GuardedUpdateProcessor.slots


def message_of(update: Update) -> Message | None:
    """The user's message in a message or edited-message update."""
    return update.message or update.edited_message


# Fields that never carry what a user typed: Telegram's identifiers (file ids are 32+ random characters,
# which the guard would take for a key) and fixed vocabulary.
_IDENTIFIER_FIELDS = frozenset({
    "file_id", "file_unique_id", "id", "chat_instance", "inline_message_id", "media_group_id", "mime_type",
    "type", "language_code", "custom_emoji_id", "business_connection_id", "telegram_payment_charge_id",
    "provider_payment_charge_id", "currency", "emoji", "status", "effect_id", "message_thread_id",
})
# Who sent or where: identities, not content (a username is 5-32 key characters). The guard deletes what
# a user sends, and a display name cannot be deleted.
_IDENTITY_FIELDS = frozenset({
    "from", "chat", "sender_chat", "sender_business_bot", "via_bot", "new_chat_members", "left_chat_member",
    "forward_origin", "origin", "sender_boost_count", "users_shared", "chat_shared", "new_chat_member",
    "old_chat_member", "user", "sender_user", "author_signature", "pinned_message",
})
_MAX_DEPTH = 12


_QUOTE_OF_A_BOT = frozenset({"quote"})


def _by_a_bot(message: object) -> bool:
    """A message a bot wrote (this bot's guide shows masked keys like ``sk-proj-…abcd``): not user text,
    so a reply to it, or the message under a button press, is not taken for a secret."""
    if not isinstance(message, dict):
        return False
    sender = message.get("from")
    return isinstance(sender, dict) and sender.get("is_bot") is True


def _user_strings(value: object, depth: int = 0) -> Iterator[str]:
    """Every string a user could have typed in a Bot API object (as ``to_dict()`` gives it, so fields
    PTB does not know yet, kept in ``api_kwargs``, are read too): text, captions, entity URLs, contact
    and venue fields, poll questions and options, quotes, reply excerpts, ``web_app_data``, button
    texts and URLs, callback data, file names and titles."""
    if depth > _MAX_DEPTH:
        return
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        if _by_a_bot(value):
            return
        skip = _QUOTE_OF_A_BOT if _by_a_bot(value.get("reply_to_message")) else frozenset()
        for name, item in value.items():
            if name not in _IDENTIFIER_FIELDS and name not in _IDENTITY_FIELDS and name not in skip:
                yield from _user_strings(item, depth + 1)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _user_strings(item, depth + 1)


def _file_names(value: object, depth: int = 0) -> Iterator[str]:
    """Names of files sent (documents, audio, video, animations), wherever they sit in the object."""
    if depth > _MAX_DEPTH:
        return
    if isinstance(value, dict):
        for name, item in value.items():
            if name == "file_name" and isinstance(item, str):
                yield item
            elif name not in _IDENTITY_FIELDS:
                yield from _file_names(item, depth + 1)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _file_names(item, depth + 1)


def data_carries_secret(data: dict[str, Any]) -> bool:
    """Whether any user-typed field of this update (or message) dict may hold a secret, or a file sent
    with it has the name of a well-known secret file."""
    if any(might_carry_secret(text) for text in _user_strings(data)):
        return True
    return any(might_be_key_file(name) for name in _file_names(data))


def carries_secret(message: Message) -> bool:
    return data_carries_secret(message.to_dict())


def guarded_messages(update: Update) -> list[Message]:
    """The messages a secret in this update would sit in, the update's own first: a message or an edit
    (also of channel posts and business messages), and a replied-to message of the same chat."""
    own = (update.message or update.edited_message or update.channel_post or update.edited_channel_post
           or update.business_message or update.edited_business_message)
    if own is None:
        return []
    found = [own]
    replied = own.reply_to_message
    if replied is not None and replied.chat_id == own.chat_id and not (replied.from_user and replied.from_user.is_bot):
        found.append(replied)
    return found


class SecretGuard:
    """Checks each update and deletes key-shaped messages; handlers read the verdict afterwards."""

    def __init__(self, messenger: Messenger) -> None:
        self.messenger = messenger
        self._verdicts: OrderedDict[int, GuardVerdict] = OrderedDict()
        self._settled: OrderedDict[int, bool] = OrderedDict()  # updates the guard lane already checked
        self.observers: list[Any] = []  # callables(verdict) for metrics

    async def check(self, update: object, *, data: dict[str, Any] | None = None) -> None:
        """Delete what ``update`` shows of a secret; ``data`` is its raw JSON when the caller has it (the
        guard lane), which spares rebuilding it with ``to_dict()``."""
        if not isinstance(update, Update):
            return
        if self._settled.pop(update.update_id, False):
            return  # the guard lane looked at it (and deleted what it had to) before handing it over
        if not data_carries_secret(data if data is not None else update.to_dict()):
            return
        # Callback data, inline queries and other updates without a message of the user's: nothing shows
        # in a chat, so nothing to delete (the button handler treats unknown data as forged, stores none).
        messages = guarded_messages(update)
        if not messages:
            return
        received = time.monotonic()
        user = update.effective_user
        language = (user.language_code if user else None) or "en"
        own, *others = messages
        outcome = await self.messenger.delete(own.chat_id, own.message_id, language=language)
        for replied in others:  # an old message of the user's quoted back: gone too if it holds the secret
            if carries_secret(replied):
                await self.messenger.delete(replied.chat_id, replied.message_id, language=language)
        settled = self.messenger.deletion_settled(own.chat_id, own.message_id) \
            if outcome == DeleteOutcome.PENDING else None
        self._keep(update.update_id, GuardVerdict(outcome, received, time.monotonic(), settled))

    def _keep(self, update_id: int, verdict: GuardVerdict) -> None:
        self._verdicts[update_id] = verdict
        while len(self._verdicts) > MAX_PENDING_VERDICTS:
            self._verdicts.popitem(last=False)
        for observe in self.observers:
            observe(verdict)

    async def check_ahead(self, update: Update) -> None:
        """Check ``update`` now, before it waits in a queue (the webhook answered after the guard); the
        processor then finds it settled and does not check it twice."""
        await self.check(update)
        self._mark_settled(update.update_id)

    def _mark_settled(self, update_id: int) -> None:
        self._settled[update_id] = True
        while len(self._settled) > MAX_PENDING_VERDICTS:
            self._settled.popitem(last=False)

    def settle(self, update_id: int, verdict: GuardVerdict | None) -> None:
        """The guard lane's result for an update it checked (``None``: nothing to delete)."""
        self._mark_settled(update_id)
        if verdict is not None:
            self._keep(update_id, verdict)

    def has_verdict(self, update: Update) -> bool:
        return update.update_id in self._verdicts

    def verdict_for(self, update: Update) -> GuardVerdict | None:
        """The guard's verdict for this update (taken: each verdict is read once)."""
        return self._verdicts.pop(update.update_id, None)


class GuardedUpdateProcessor(BaseUpdateProcessor):
    """Concurrent update processing whose first act for every update is the secret guard.

    The guard runs *before* the update waits for a processing slot: in a burst of pastes every slot is
    soon busy with database and rendering work, and a key must not stay visible until one frees up
    (measured: 1000 pastes in 2 s kept all 512 slots busy and the p99 exposure window went to 12 s).
    PTB's ``process_update`` (which holds its own semaphore) is final, so that semaphore is made wide
    and the slots that bound the handlers live here.
    """

    def __init__(self, max_concurrent_updates: int, guard: SecretGuard | None = None) -> None:
        super().__init__(UNBOUNDED)
        self.slots = max_concurrent_updates
        self._slots = asyncio.Semaphore(max_concurrent_updates)
        self.guard = guard
        self.in_flight = 0  # updates taken from the queue and not finished (waiting for a slot included)

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        self.in_flight += 1
        try:
            if self.guard is not None:
                try:
                    await self.guard.check(update)
                except BaseException:
                    if isinstance(coroutine, Coroutine):
                        coroutine.close()  # never started: close it instead of leaking "never awaited"
                    raise
            async with self._slots:
                await coroutine
        finally:
            self.in_flight -= 1

    async def initialize(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None
