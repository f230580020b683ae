"""Read an outside service's answer without letting it grow the bot: at most 1 MiB, streamed.

Why: a security review made a hostile OpenAI answer 200 MB and the bot grew from 115 MB to 1.75 GB (httpx
buffers whole bodies); a broken gzip body raised ``httpx.DecodingError``, which no caller expected, and
it aborted a whole outbox pass. Here the body is read chunk by chunk (decoded, so a gzip bomb counts at
its inflated size) and reading stops at the cap; both failures become one exception the callers turn
into an indeterminate outcome ("we could not read OpenAI's answer"), never a verdict on the key.
"""

from __future__ import annotations

from typing import Any

import httpx

__all__ = ["MAX_RESPONSE_BYTES", "UnreadableResponse", "send_bounded"]

MAX_RESPONSE_BYTES = 1 << 20  # OpenAI's and DoubleTick's answers here are a few KB
_DROPPED_HEADERS = ("content-encoding", "content-length", "transfer-encoding")


class UnreadableResponse(Exception):
    """The answer was larger than the cap, or its body could not be decoded."""

    def __init__(self, detail: str, status: int) -> None:
        super().__init__(f"{detail} (http_status={status})")
        self.detail = detail  # "response_too_large" or "undecodable_response"
        self.status = status


async def send_bounded(client: httpx.AsyncClient, method: str, url: str, *,
                       limit: int = MAX_RESPONSE_BYTES, **kwargs: Any) -> httpx.Response:
    """``client.request`` with the body read up to ``limit`` bytes; :class:`UnreadableResponse` beyond.

    Transport errors and timeouts propagate as httpx raises them.
    """
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
