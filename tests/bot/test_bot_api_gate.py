"""The Bot API request layer: a burst waits at a pool-sized gate; a wait past the pool timeout is PTB's own
"Pool timeout" (nothing sent); every 429 is still counted for /metrics. The far side is an
``httpx.MockTransport`` (the network boundary) that counts what it has open at once."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from telegram.error import TimedOut

from bot.metrics import RATE_LIMITED
from bot.telegram.request import ObservedRequest
from tests.counting_upstream import CountingUpstream

URL = "https://api.telegram.test/bot123:abc/"


class BotApi(CountingUpstream):
    def __init__(self, delay_s: float, status: int = 200) -> None:
        super().__init__(delay_s)
        self.status = status

    def answer(self, request: httpx.Request) -> httpx.Response:
        if self.status == 429:
            return httpx.Response(429, json={"ok": False, "error_code": 429, "description": "Too Many Requests: "
                                             "retry after 3", "parameters": {"retry_after": 3}})
        return httpx.Response(200, json={"ok": True, "result": True})


def _request(api: BotApi, pool: int, pool_timeout: float) -> ObservedRequest:
    return ObservedRequest(connection_pool_size=pool, pool_timeout=pool_timeout,
                           httpx_kwargs={"transport": httpx.MockTransport(api)})


async def test_a_burst_larger_than_the_pool_is_sent_a_pool_at_a_time() -> None:
    api = BotApi(delay_s=0.02)
    request = _request(api, pool=3, pool_timeout=5.0)
    await request.initialize()
    try:
        answers = await asyncio.gather(*(request.do_request(URL + "sendMessage", "POST") for _ in range(20)))
    finally:
        await request.shutdown()
    assert [code for code, _ in answers] == [200] * 20
    assert api.most_open == 3


async def test_waiting_past_the_pool_timeout_is_ptbs_pool_timeout_and_sends_nothing() -> None:
    api = BotApi(delay_s=0.5)
    request = _request(api, pool=1, pool_timeout=0.05)
    await request.initialize()
    try:
        first = asyncio.ensure_future(request.do_request(URL + "editMessageText", "POST"))
        await asyncio.sleep(0.02)
        with pytest.raises(TimedOut, match="Pool timeout"):
            await request.do_request(URL + "editMessageText", "POST")
        assert (await first)[0] == 200
    finally:
        await request.shutdown()
    assert api.served == 1


async def test_every_429_is_counted_by_method_only() -> None:
    api = BotApi(delay_s=0.0, status=429)
    request = _request(api, pool=2, pool_timeout=1.0)
    before = RATE_LIMITED.labels("deleteMessage")._value.get()
    await request.initialize()
    try:
        code, _ = await request.do_request(URL + "deleteMessage", "POST")
    finally:
        await request.shutdown()
    assert code == 429
    assert RATE_LIMITED.labels("deleteMessage")._value.get() == before + 1
