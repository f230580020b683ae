"""PTB's HTTPX request layer: a pool-sized gate in front of httpcore, and Telegram's 429s counted for /metrics.

Why a gate: httpcore re-scans every queued request against every pooled connection whenever a request starts
or ends, so a burst of Bot API calls larger than the pool spent CPU in that scan, not in sending (py-spy,
docs/benchmarks.md). Requests beyond the pool now wait on a semaphore (``bot/services/bounded.py``), for at
most the pool timeout, and time out exactly as a full pool makes PTB time out.

Why count 429s at this layer: with the rate limiter (``bot/telegram/ratelimit.py``) a 429 may be retried
inside it and never reaches our code; here every 429 is seen once, for the main bot and the unthrottled
delete bot alike. Only the method name (the last URL segment) is recorded: the URL also holds the bot token.
"""

from __future__ import annotations

from typing import Any

import httpx
from telegram.error import TimedOut
from telegram.request import BaseRequest, HTTPXRequest

from bot.metrics import record_rate_limited
from bot.services.bounded import InFlight

__all__ = ["BOT_API_CONNECTIONS", "ObservedRequest"]

TOO_MANY_REQUESTS = 429
BOT_API_CONNECTIONS = 32  # Telegram takes ~30 messages/s per bot; more sockets only cost idle checks
POOL_TIMEOUT = ("Pool timeout: All connections in the connection pool are occupied. Request was *not* sent to "
                "Telegram. Consider adjusting the connection pool size or the pool timeout.")  # PTB's own words


class ObservedRequest(HTTPXRequest):
    def __init__(self, connection_pool_size: int = BOT_API_CONNECTIONS, **kwargs: Any) -> None:
        super().__init__(connection_pool_size=connection_pool_size, **kwargs)
        self._gate = InFlight(connection_pool_size)

    async def do_request(self, url: str, method: str, *args: Any, **kwargs: Any) -> tuple[int, bytes]:
        wait_s = kwargs.get("pool_timeout", BaseRequest.DEFAULT_NONE)
        if not (wait_s is None or isinstance(wait_s, int | float)):  # PTB's "use the default" marker
            wait_s = self._client.timeout.pool
        try:
            async with self._gate.slot(wait_s):
                code, payload = await super().do_request(url, method, *args, **kwargs)
        except httpx.PoolTimeout as err:  # the gate's: nothing was sent
            raise TimedOut(message=POOL_TIMEOUT) from err
        if code == TOO_MANY_REQUESTS:
            record_rate_limited(url.rsplit("/", 1)[-1])
        return code, payload
