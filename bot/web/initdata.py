"""Validate ``Telegram.WebApp.initData``: who opened the Mini App, signed by Telegram with our bot token.

The algorithm (https://core.telegram.org/bots/webapps#validating-data-received-via-the-mini-app and
shared/reference/telegram-bot-api.md section 2.5): parse the query string; every received field but
``hash``, as ``key=<decoded value>`` lines sorted by key and joined with ``\\n``, is the data-check-string;
the secret key is ``HMAC_SHA256(key="WebAppData", msg=bot_token)``; the data is genuine when
``hex(HMAC_SHA256(key=secret_key, msg=data_check_string))`` equals ``hash`` (compared in constant time).
The newer ``signature`` field (Ed25519, for third parties) stays in the data-check-string like any other
field, as aiogram's ``check_webapp_signature`` does. Telegram sets no maximum age; we refuse ``auth_date``
older than ``max_age_s`` (MINIAPP_MAX_AGE_S) and more than a minute in the future.

Why our own code: PTB ships no validator, and the check is twenty lines that must be exactly right.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode

__all__ = ["InitData", "InvalidInitData", "data_check_string", "sign_init_data", "validate_init_data"]

MAX_INIT_DATA_CHARS = 4096  # real initData is well under 1 KiB; refuse to hash anything absurd
FUTURE_SKEW_S = 60  # clocks differ a little; an auth_date from further ahead is not Telegram's
_HASH = re.compile(r"^[0-9a-f]{64}$")


class InvalidInitData(ValueError):
    """initData that is malformed, not signed with our token, or too old (the reason is for logs only)."""


@dataclass(frozen=True, slots=True)
class InitData:
    """The validated facts the server uses; everything else in initData is ignored."""

    user_id: int
    language: str
    username: str | None
    auth_date: int
    digest: str  # its hex hash; identifies this initData (for the replay count)


def _secret_key(bot_token: str) -> bytes:
    return hmac.new(b"WebAppData", bot_token.encode(), hashlib.sha256).digest()


def data_check_string(fields: dict[str, str]) -> str:
    """Every field but ``hash``, ``key=value`` sorted by key, one per line."""
    return "\n".join(f"{key}={value}" for key, value in sorted(fields.items()) if key != "hash")


def sign_init_data(fields: dict[str, str], bot_token: str) -> str:
    """The initData Telegram would send for ``fields`` (tests and the development stand-in page)."""
    digest = hmac.new(_secret_key(bot_token), data_check_string(fields).encode(), hashlib.sha256).hexdigest()
    return urlencode({**fields, "hash": digest})


def _fields(init_data: str) -> dict[str, str]:
    if not init_data or len(init_data) > MAX_INIT_DATA_CHARS:
        raise InvalidInitData("empty or oversized")
    try:
        pairs = parse_qsl(init_data, keep_blank_values=True, strict_parsing=True, errors="strict")
    except (ValueError, UnicodeDecodeError) as error:
        raise InvalidInitData("not a query string") from error
    fields = dict(pairs)
    if len(fields) != len(pairs):
        raise InvalidInitData("a field appears twice")
    return fields


def validate_init_data(init_data: str, bot_token: str, *, max_age_s: float, now: float) -> InitData:
    """The validated initData, or :class:`InvalidInitData`. Checks the signature before reading anything."""
    fields = _fields(init_data)
    supplied = fields.get("hash", "")
    if not _HASH.match(supplied):
        raise InvalidInitData("no hash")
    expected = hmac.new(_secret_key(bot_token), data_check_string(fields).encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, supplied):
        raise InvalidInitData("wrong hash")
    try:
        auth_date = int(fields["auth_date"])
    except (KeyError, ValueError) as error:
        raise InvalidInitData("no auth_date") from error
    if now - auth_date >= max_age_s or auth_date - now > FUTURE_SKEW_S:
        raise InvalidInitData("expired")
    try:
        user = json.loads(fields["user"])
        user_id = user["id"]
    except (KeyError, ValueError, TypeError) as error:
        raise InvalidInitData("no user") from error
    if not isinstance(user_id, int) or isinstance(user_id, bool) or user_id <= 0:
        raise InvalidInitData("no user")
    language = user.get("language_code")
    username = user.get("username")
    return InitData(user_id=user_id, language=language if isinstance(language, str) and language else "en",
                    username=username if isinstance(username, str) else None, auth_date=auth_date,
                    digest=supplied)
