"""Reading a webhook POST: the secret token, the content type, a size cap, and the update's JSON.

Why its own module: the main process's webhook route (bot/web/server.py) and the guard lane's
(bot/web/guard_intake.py) must refuse exactly the same requests, in the same order: the token is
compared in constant time before the body is read, so a forged POST gets 403 and nothing is parsed.
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

__all__ = ["MAX_UPDATE_BYTES", "RETRY_AFTER_S", "SECRET_HEADER", "Refusal", "read_update"]

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # https://core.telegram.org/bots/api#setwebhook
MAX_UPDATE_BYTES = 1 << 20  # Telegram updates are a few KB; refuse to buffer anything absurd
RETRY_AFTER_S = 2  # Telegram honours Retry-After on non-2xx webhook answers (clamped to 0..3600)


@dataclass(frozen=True)
class Refusal:
    """Why a POST is not an update we take: its status, a short reason, and the /metrics outcome."""

    status: int
    reason: str
    outcome: str


async def read_update(request: Request, expected_secret: bytes) -> dict[str, Any] | Refusal:
    """The update's JSON from a webhook POST, or why it is refused (never logged: it may hold a key)."""
    if not hmac.compare_digest(request.headers.get(SECRET_HEADER, "").encode(), expected_secret):
        return Refusal(403, "forbidden", "forbidden")
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        return Refusal(415, "expected application/json", "bad_request")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_UPDATE_BYTES:
            return Refusal(413, "too large", "bad_request")
    try:
        data = json.loads(bytes(body))
    except ValueError:
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("update_id"), int):
        return Refusal(400, "not an update", "bad_request")
    return data
