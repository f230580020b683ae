"""PTB's HTTPX request layer, counting Telegram's 429 answers for /metrics.

Why at this layer: with the rate limiter (``bot/telegram/ratelimit.py``) a 429 may be retried inside it and
never reaches our code; here every 429 is seen once, for the main bot and the unthrottled delete bot
alike. Only the method name (the last URL segment) is recorded: the URL also holds the bot token.
"""

from __future__ import annotations

from typing import Any

from telegram.request import HTTPXRequest

from bot.metrics import record_rate_limited

__all__ = ["ObservedRequest"]

TOO_MANY_REQUESTS = 429


class ObservedRequest(HTTPXRequest):
    async def do_request(self, url: str, method: str, *args: Any, **kwargs: Any) -> tuple[int, bytes]:
        code, payload = await super().do_request(url, method, *args, **kwargs)
        if code == TOO_MANY_REQUESTS:
            record_rate_limited(url.rsplit("/", 1)[-1])
        return code, payload
