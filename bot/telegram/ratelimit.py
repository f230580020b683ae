"""Outbound throttling per chat plus one global cap, where a flood wait pauses only the chat it names.

Why not PTB's ``AIORateLimiter``: on any ``RetryAfter`` it "will halt all requests for retry_after + 0.1
seconds" (https://docs.python-telegram-bot.org/en/stable/telegram.ext.aioratelimiter.html), so one user
who pressed buttons too fast made every other user wait (issue 9: another chat's /help waited 5.6 s).
Telegram's flood control is mostly per chat: "avoid sending more than one message per second" in one
chat, "no more than 20 messages per minute" in a group, about 30 messages per second overall
(https://core.telegram.org/bots/faq#my-bot-is-hitting-limits-how-do-i-avoid-this). And a 429 carries
``retry_after``, "the number of seconds left to wait before the request can be repeated"
(https://core.telegram.org/bots/api#responseparameters). So:

* each chat has its own pause after a 429 that names it, honoured in full; other chats go on;
* groups also have their own bucket (20 per minute, as the FAQ says); private chats are not throttled
  ahead of time (as with PTB's limiter): there the bot sends about one message per user action, and
  a pre-emptive 1/s queue only added latency to every fast button press. A private chat that does hit
  flood control learns it from the 429 and waits alone (``private_rate`` turns a bucket on);
* one global bucket (the replica's share of the bot's ~30/s) over everything; a 429 on a request that
  names no chat pauses everyone, since it cannot be pinned to a chat;
* a pause is honoured in full, but a request waits at most ``max_wait_s`` in here: a longer flood wait
  raises ``RetryAfter`` to the caller, which shows the saved state later instead of holding a handler;
* ``answerCallbackQuery`` skips the chat bucket (it posts nothing in the chat) and may wait at most a
  few seconds: Telegram refuses answers to queries older than about 15 s;
* ``ChatMigrated`` (a group became a supergroup, ``migrate_to_chat_id``): a *send* is repeated once in
  the new chat; edits and deletes are not (message ids do not carry over), the error goes to the caller;
* every text and caption is fitted to Telegram's limits first (``bot/telegram/fit.py``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from aiolimiter import AsyncLimiter
from telegram.error import ChatMigrated, RetryAfter
from telegram.ext import BaseRateLimiter

from bot.telegram.fit import fit_request

__all__ = ["ChatRateLimiter", "seconds_of"]

log = logging.getLogger(__name__)
JSON = bool | dict[str, Any] | list[dict[str, Any]]
# Methods that post a new message into a chat: after ChatMigrated they are repeated in the new chat.
POSTING = frozenset({"sendMessage", "sendPhoto", "sendDocument", "sendVideo", "sendAnimation", "sendAudio",
                     "sendVoice", "sendSticker", "sendMediaGroup", "sendLocation", "sendContact", "sendPoll",
                     "sendDice", "sendChatAction", "copyMessage", "forwardMessage", "sendVenue"})
ANSWER_MAX_WAIT_S = 5.0  # a callback query must be answered within ~15 s of the press
MAX_CHATS = 10_000  # chat buckets kept; the least recently used are dropped beyond this


def seconds_of(value: Any) -> float:
    """``RetryAfter.retry_after`` is an int or a timedelta depending on PTB's settings."""
    return float(value.total_seconds()) if hasattr(value, "total_seconds") else float(value)


class ChatRateLimiter(BaseRateLimiter[int]):
    """Per-chat buckets and pauses, one global bucket; see the module docstring for why."""

    def __init__(self, overall_max_rate: float, *, max_retries: int = 3, max_wait_s: float = 10.0,
                 private_rate: tuple[int, float] | None = None, group_max_rate: int = 20,
                 group_period_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_retries = max_retries
        self.max_wait_s = max_wait_s
        self._overall = AsyncLimiter(max(overall_max_rate, 1e-3), 1)
        self._private = private_rate
        self._group = (group_max_rate, group_period_s)
        self._chats: dict[int | str, AsyncLimiter] = {}
        self._paused_until: dict[int | str | None, float] = {}  # None: the whole bot
        self._clock = clock

    def set_private_rate(self, rate: tuple[int, float] | None) -> None:
        """Throttle private chats to ``rate`` = (burst, period) ahead of time, or not at all (None)."""
        self._private = rate
        self._chats.clear()

    async def initialize(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None

    def paused_for(self, chat_id: int | str | None) -> float:
        """Seconds left of the pause on this chat (or on the whole bot, whichever is longer)."""
        now = self._clock()
        return max(0.0, self._paused_until.get(chat_id, 0.0) - now, self._paused_until.get(None, 0.0) - now)

    def _bucket(self, chat_id: int | str) -> AsyncLimiter | None:
        group = isinstance(chat_id, str) or chat_id < 0
        if not group and self._private is None:
            return None
        bucket = self._chats.pop(chat_id, None)
        if bucket is None:
            rate, period = self._group if group else (self._private or self._group)
            bucket = AsyncLimiter(rate, period)
        self._chats[chat_id] = bucket  # most recently used last
        while len(self._chats) > MAX_CHATS:
            self._chats.pop(next(iter(self._chats)))
        return bucket

    async def process_request(self, callback: Callable[..., Coroutine[Any, Any, JSON]], args: Any,
                              kwargs: dict[str, Any], endpoint: str, data: dict[str, Any],
                              rate_limit_args: int | None) -> JSON:
        fit_request(endpoint, data)
        answering = endpoint == "answerCallbackQuery"
        budget = ANSWER_MAX_WAIT_S if answering else self.max_wait_s
        started = self._clock()
        migrated = False
        attempt = 0
        while True:
            chat_id = data.get("chat_id")
            chat: int | str | None = chat_id if isinstance(chat_id, int | str) else None
            pause = self.paused_for(chat)
            if pause:
                if self._clock() + pause - started > budget:
                    raise RetryAfter(max(1, round(pause)))
                await asyncio.sleep(pause)
            try:
                bucket = self._bucket(chat) if chat is not None and not answering else None
                if bucket is not None:
                    async with bucket, self._overall:
                        return await callback(*args, **kwargs)
                async with self._overall:
                    return await callback(*args, **kwargs)
            except RetryAfter as exc:
                wait = seconds_of(exc.retry_after)
                self._paused_until[chat] = max(self._paused_until.get(chat, 0.0), self._clock() + wait)
                attempt += 1
                if attempt > self.max_retries or self._clock() + wait - started > budget:
                    raise
                log.info("%s: flood wait of %.0f s on chat %s; retrying after it", endpoint, wait, chat)
            except ChatMigrated as exc:
                if migrated or endpoint not in POSTING or chat is None:
                    raise
                migrated = True  # once: the new id is final (https://core.telegram.org/bots/api#responseparameters)
                log.info("%s: chat %s became supergroup %s; sending there", endpoint, chat, exc.new_chat_id)
                data["chat_id"] = exc.new_chat_id
