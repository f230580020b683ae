"""Read an outside service's answer without letting it grow the bot: at most 1 MiB, streamed.

Why: a security review made a hostile OpenAI answer 200 MB and the bot grew from 115 MB to 1.75 GB (httpx
buffers whole bodies); a broken gzip body raised ``httpx.DecodingError``, which no caller expected, and
it aborted a whole outbox pass. Here the body is read chunk by chunk (decoded, so a gzip bomb counts at
its inflated size) and reading stops at the cap; both failures become one exception the callers turn
into an indeterminate outcome ("we could not read OpenAI's answer"), never a verdict on the key.

And at most a pool's worth of requests at a time (:class:`InFlight`): httpcore's pool re-scans every queued
request against every connection whenever a request starts or ends, so a burst of pastes (a verification
sends its probes at once) that queued hundreds of requests in a 100-connection pool spent ~40 % of the
bot's CPU in that scan (py-spy, docs/benchmarks.md). Waiting on a semaphore instead costs the same time
and next to no CPU.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

__all__ = ["MAX_RESPONSE_BYTES", "OPENAI_CONNECTIONS", "OUTBOUND_CONNECTIONS", "QUEUE_WAIT_S", "InFlight",
           "UnreadableResponse", "outbound_client", "send_bounded"]

MAX_RESPONSE_BYTES = 1 << 20  # OpenAI's and DoubleTick's answers here are a few KB
OUTBOUND_CONNECTIONS = 100  # httpx's own default pool size, made explicit so the gate can match it
KEEPALIVE_CONNECTIONS = 20  # httpx's default too: idle connections kept for the next burst
# OpenAI: each customer's probes go out under their own key (OpenAI's limits are per key and organisation),
# so a burst of pastes is limited only by how many requests we keep open: 200 at ~0.8 s drain 1,000
# verifications (5 probes each) in ~20 s, inside QUEUE_WAIT_S.
OPENAI_CONNECTIONS = 200
# How long a request may wait for a slot of its own client before it counts as a timeout. Waiting here is
# our queue, not the far side's slowness, so it may be longer than the pool timeout. It lengthens the worst
# verification by 20 s (to ~30 s of queue + one probe); recovery's PIPELINE_TIMEOUT_S (120 s) still covers
# that plus a connection answered within its tries, but not DoubleTick asking for long Retry-After waits on
# every try: a pipeline that slow is told "paste again" while it runs, as before this queue.
QUEUE_WAIT_S = 30.0
_DROPPED_HEADERS = ("content-encoding", "content-length", "transfer-encoding")


class UnreadableResponse(Exception):
    """The answer was larger than the cap, or its body could not be decoded."""

    def __init__(self, detail: str, status: int) -> None:
        super().__init__(f"{detail} (http_status={status})")
        self.detail = detail  # "response_too_large" or "undecodable_response"
        self.status = status


def outbound_client(connections: int = OUTBOUND_CONNECTIONS) -> httpx.AsyncClient:
    """The client a service makes for itself: redirects not followed, a pool the size :class:`InFlight` admits."""
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=KEEPALIVE_CONNECTIONS)
    return httpx.AsyncClient(follow_redirects=False, limits=limits)


class InFlight:
    """At most ``size`` requests inside one client at a time; the others wait here, first come first served,
    for ``wait_s`` (None: each request's own pool timeout)."""

    def __init__(self, size: int = OUTBOUND_CONNECTIONS, wait_s: float | None = None) -> None:
        self._slots = asyncio.Semaphore(size)
        self.wait_s = wait_s

    @asynccontextmanager
    async def slot(self, wait_s: float | None) -> AsyncIterator[None]:
        """Hold one slot; waiting longer than ``wait_s`` raises ``httpx.PoolTimeout``, as a full pool would."""
        try:
            async with asyncio.timeout(wait_s):
                await self._slots.acquire()
        except TimeoutError:
            raise httpx.PoolTimeout("every connection stayed busy") from None
        try:
            yield
        finally:
            self._slots.release()


async def send_bounded(client: httpx.AsyncClient, method: str, url: str, *, gate: InFlight | None = None,
                       limit: int = MAX_RESPONSE_BYTES, **kwargs: Any) -> httpx.Response:
    """``client.request`` with the body read up to ``limit`` bytes; :class:`UnreadableResponse` beyond.

    With a ``gate``, the request first waits for a slot (at most the gate's wait, else the pool timeout).
    Transport errors and timeouts propagate as httpx raises them.
    """
    if gate is None:
        return await _send(client, method, url, limit, **kwargs)
    wait_s = gate.wait_s
    if wait_s is None:
        wait_s = httpx.Timeout(kwargs["timeout"]).pool if "timeout" in kwargs else client.timeout.pool
    async with gate.slot(wait_s):
        return await _send(client, method, url, limit, **kwargs)


async def _send(client: httpx.AsyncClient, method: str, url: str, limit: int, **kwargs: Any) -> httpx.Response:
    request = client.build_request(method, url, **kwargs)
    response = await client.send(request, stream=True)
    try:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise UnreadableResponse("response_too_large", response.status_code)
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > limit:
                raise UnreadableResponse("response_too_large", response.status_code)
    except httpx.DecodingError:
        raise UnreadableResponse("undecodable_response", response.status_code) from None
    finally:
        await response.aclose()
    headers = [(name, value) for name, value in response.headers.multi_items()
               if name.lower() not in _DROPPED_HEADERS]
    return httpx.Response(response.status_code, headers=headers, content=bytes(body), request=request)
