"""Flood control as Telegram applies it: short bursts pass, sustained excess gets 429 + ``retry_after``.

Why token buckets: Telegram documents rates, not an algorithm. https://core.telegram.org/bots/faq
("My bot is hitting limits, how do I avoid this?"): "In a single chat, avoid sending more than one
message per second. We may allow short bursts that go over this limit, but eventually you'll begin
receiving 429 errors"; "In a group, bots are not be able to send more than 20 messages per minute";
"bots are not able to broadcast more than about 30 messages per second". A bucket per scope holds
``burst`` tokens and refills at the documented rate, which is exactly "bursts pass, sustained excess
fails". The answer is the Bot API server's own (``Query::set_retry_after_error`` in
tdlib/telegram-bot-api): HTTP 429, ``"Too Many Requests: retry after N"`` and
``parameters.retry_after`` = N whole seconds (https://core.telegram.org/bots/api#responseparameters).

What counts: every method that acts on a chat (sending, editing, deleting, chat actions) counts in
that chat's bucket and, for groups and supergroups (negative ids), in the group's 20/min bucket; every
method except the read-only and webhook ones counts in the bot-wide bucket. ``answerCallbackQuery``
is bot-wide only: it answers a query, it puts nothing in the chat. The PTB wiki "Avoiding flood
limits" warns the real limits are undocumented and vary, so every number is a ``Settings`` field and
``flood_control=False`` turns it all off for a test that says why.

Deterministic: the caller passes ``now`` from the stand-in's injectable clock, nothing here reads time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bot.standins.telegram_request import ApiError
from bot.standins.telegram_world import Settings

__all__ = ["FloodControl", "too_many_requests"]

# Never throttled: updates, identity, read-only lookups, and setWebhook (it has its own 1/s rule).
_EXEMPT = frozenset({
    "getupdates", "getme", "logout", "close", "getwebhookinfo", "setwebhook", "deletewebhook", "getchat",
    "getmycommands", "getmydescription", "getmyshortdescription", "getchatmenubutton",
})
# Bot-wide only: the call is about a query or the bot, not a message in the chat.
_NOT_CHAT_BOUND = frozenset({
    "answercallbackquery", "setmycommands", "deletemycommands", "setmydescription",
    "setmyshortdescription", "setchatmenubutton",
})


def too_many_requests(retry_after: int) -> ApiError:
    """The exact 429 body of ``Query::set_retry_after_error``."""
    return ApiError(429, f"Too Many Requests: retry after {retry_after}", {"retry_after": retry_after})


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class FloodControl:
    """Token buckets per chat, per group and per bot; ``check`` raises the 429 or takes one token each."""

    def __init__(self) -> None:
        self._buckets: dict[tuple[object, ...], _Bucket] = {}

    def reset(self) -> None:
        self._buckets.clear()

    def check(self, settings: Settings, bot_id: int, method: str, chat_id: int | None, now: float) -> None:
        """Admit one call of ``method`` (lower-case) at ``now`` or raise 429 with the wait in seconds."""
        if not settings.flood_control or method in _EXEMPT:
            return
        scopes: list[tuple[tuple[object, ...], float, float]] = [
            (("bot", bot_id), settings.flood_bot_per_s, settings.flood_bot_burst)]
        if chat_id is not None and method not in _NOT_CHAT_BOUND:
            scopes.append((("chat", bot_id, chat_id), settings.flood_chat_per_s, settings.flood_chat_burst))
            if chat_id < 0:
                scopes.append((("group", bot_id, chat_id), settings.flood_group_per_min / 60.0,
                               settings.flood_group_burst))
        wait = 0.0
        buckets: list[_Bucket] = []
        for key, rate, burst in scopes:
            if rate <= 0:
                continue
            bucket = self._buckets.setdefault(key, _Bucket(float(burst), now))
            bucket.tokens = min(float(burst), bucket.tokens + max(0.0, now - bucket.stamp) * rate)
            bucket.stamp = now
            if bucket.tokens < 1.0:
                wait = max(wait, (1.0 - bucket.tokens) / rate)
            buckets.append(bucket)
        if wait > 0:
            raise too_many_requests(max(1, math.ceil(wait - 1e-9)))
        for bucket in buckets:
            bucket.tokens -= 1.0
