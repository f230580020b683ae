"""Outbound requests wait at a pool-sized gate, not in httpcore's queue (issue 14: the queue scan's CPU).

Each test counts what the far side sees at once through an ``httpx.MockTransport`` (the network boundary),
so the bound is measured where it matters: how many requests are open against OpenAI or DoubleTick.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from bot.services.bounded import OPENAI_CONNECTIONS, InFlight, send_bounded
from bot.services.openai import OpenAIVerifier
from flows.outcomes import VerificationOutcome as Outcome
from flows.secret import SecretKey
from tests.counting_upstream import CountingUpstream
from tests.e2e.pasting import fresh_key


class Upstream(CountingUpstream):
    """OpenAI's answers to the verifier's probes (a model list, a model); anything else is a plain 200."""

    def answer(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json={"object": "list", "data": [{"id": "gpt-4o-mini", "object": "model"}]})
        if "/models/" in request.url.path:
            return httpx.Response(200, json={"id": request.url.path.rsplit("/", 1)[-1], "object": "model"})
        return httpx.Response(200, content=json.dumps({"ok": True}).encode())


async def test_a_burst_larger_than_the_gate_is_sent_a_gateful_at_a_time() -> None:
    upstream = Upstream()
    gate = InFlight(5)
    async with httpx.AsyncClient(transport=httpx.MockTransport(upstream)) as client:
        answers = await asyncio.gather(*(send_bounded(client, "GET", f"https://upstream.test/{n}", gate=gate)
                                         for n in range(40)))
    assert [answer.status_code for answer in answers] == [200] * 40  # every one answered, none dropped
    assert upstream.most_open == 5


async def test_a_request_that_waits_longer_than_the_pool_timeout_fails_like_a_full_pool() -> None:
    upstream = Upstream(delay_s=0.5)
    gate = InFlight(1)
    async with httpx.AsyncClient(transport=httpx.MockTransport(upstream)) as client:
        first = asyncio.ensure_future(send_bounded(client, "GET", "https://upstream.test/a", gate=gate))
        await asyncio.sleep(0.05)
        with pytest.raises(httpx.PoolTimeout):  # callers already turn this into "timeout"
            await send_bounded(client, "GET", "https://upstream.test/b", gate=gate, timeout=0.1)
        assert (await first).status_code == 200
    assert upstream.served == 1  # the one that timed out never reached the far side
    # the slot of the request that timed out was never taken, so the gate is whole again
    async with httpx.AsyncClient(transport=httpx.MockTransport(Upstream(0.0))) as client:
        assert (await send_bounded(client, "GET", "https://upstream.test/c", gate=gate)).status_code == 200


async def test_a_burst_of_verifications_opens_at_most_a_pool_of_requests_and_every_key_gets_its_verdict() -> None:
    # Each request is quick (0.15 s, under the 0.3 s client timeout), but the burst is three pools deep, so
    # the last probes wait ~0.3 s or more for a slot: longer than the pool timeout. Waiting in our own queue
    # is not OpenAI being slow, so it must not turn into a "timeout" verdict (a full bench lost 225 of 1,000
    # answers at 500 pastes/s that way).
    upstream = Upstream(delay_s=0.15)
    async with httpx.AsyncClient(transport=httpx.MockTransport(upstream)) as client:
        verifier = OpenAIVerifier(base_url="https://openai.test/v1", client=client, billed_probe=False, timeout=0.3)
        keys = [SecretKey(fresh_key("project", f"Burst{n}")) for n in range(200)]
        results = await asyncio.gather(*(verifier.verify(key) for key in keys))
    assert upstream.served > 2 * OPENAI_CONNECTIONS  # the burst really was deeper than the pool
    assert upstream.most_open == OPENAI_CONNECTIONS
    assert {result.outcome for result in results} == {Outcome.VALID}
