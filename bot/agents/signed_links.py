"""Self-serve links: a workspace id, an expiry and a truncated HMAC-SHA256, verified without the database.

Why signed, not stored: DoubleTick's dashboard (or any system holding ``SELF_SERVE_LINK_SECRET``) mints
``https://t.me/<bot>?start=<payload>`` for the workspace its logged-in user owns; the bot trusts the
workspace only because nobody without the secret can produce a valid tag. Unlike an agent's handoff link
it is not single use (the dashboard shows it to the workspace's own admins), so keep expiries short.

Payload layout (all characters in ``[A-Za-z0-9_-]``, at most 64, as Telegram allows in ``?start=``)::

    "s1" | expiry as 8 lowercase hex digits (unix seconds) | tag (16 base64url chars) | workspace id
    tag = base64url(HMAC-SHA256(secret, "s1" + expiry_hex + workspace_id)[:12])

A random handoff token is 24 characters, a signed payload at least 28 and starts with ``s1`` plus eight
hex digits, so the two never get confused. The README carries the same recipe and a test vector.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

__all__ = [
    "MAX_PAYLOAD",
    "MAX_SIGNED_WORKSPACE",
    "MIN_SECRET_LENGTH",
    "SignedLinkError",
    "SignedLinkOutcome",
    "SignedLinkVerdict",
    "looks_signed",
    "sign_payload",
    "verify_payload",
]

VERSION = "s1"
MAX_PAYLOAD = 64  # Telegram's limit for the ?start= parameter
_TAG_BYTES = 12  # 96 bits: forging takes ~2^96 tries, each a round-trip to Telegram
_TAG_CHARS = 16
_HEAD = len(VERSION) + 8 + _TAG_CHARS
MAX_SIGNED_WORKSPACE = MAX_PAYLOAD - _HEAD  # 38
MIN_SECRET_LENGTH = 32
_SIGNED = re.compile(r"s1([0-9a-f]{8})([A-Za-z0-9_-]{16})([A-Za-z0-9_-]{2,38})")
_SIGNABLE_WORKSPACE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{1,37}")


class SignedLinkError(ValueError):
    """The workspace id or expiry cannot be put into a signed link."""


class SignedLinkOutcome(StrEnum):
    VALID = "valid"
    EXPIRED = "expired"
    FORGED = "forged"  # a tag that does not match: tampered, truncated, another secret
    NOT_ENABLED = "not_enabled"  # this bot has no SELF_SERVE_LINK_SECRET


@dataclass(frozen=True, slots=True)
class SignedLinkVerdict:
    outcome: SignedLinkOutcome
    workspace_id: str | None = None  # set only when VALID
    expires_at: datetime | None = None


def _tag(secret: bytes, body: str) -> str:
    digest = hmac.new(secret, body.encode("ascii"), hashlib.sha256).digest()[:_TAG_BYTES]
    return base64.urlsafe_b64encode(digest).decode("ascii")


def sign_payload(workspace_id: str, expires_at: int, secret: bytes) -> str:
    """The ``?start=`` payload for ``workspace_id`` valid until ``expires_at`` (unix seconds)."""
    if not _SIGNABLE_WORKSPACE.fullmatch(workspace_id or ""):
        raise SignedLinkError(f"a signed link's workspace id must be 2-{MAX_SIGNED_WORKSPACE} letters, digits, "
                              "_ or - (starting with a letter or digit)")
    if not 0 < expires_at < 16**8:
        raise SignedLinkError("the expiry must be a unix time before 2106")
    expiry = f"{expires_at:08x}"
    return VERSION + expiry + _tag(secret, VERSION + expiry + workspace_id) + workspace_id


def looks_signed(payload: str) -> bool:
    """Shaped like a signed payload (says nothing about the tag)."""
    return _SIGNED.fullmatch(payload or "") is not None


def verify_payload(payload: str, secret: bytes | None, now: datetime) -> SignedLinkVerdict:
    """Check the tag first (constant time), then the expiry; never touches the database."""
    match = _SIGNED.fullmatch(payload or "")
    if match is None:
        return SignedLinkVerdict(SignedLinkOutcome.FORGED)
    if not secret:
        return SignedLinkVerdict(SignedLinkOutcome.NOT_ENABLED)
    expiry, tag, workspace_id = match.groups()
    if not _SIGNABLE_WORKSPACE.fullmatch(workspace_id) or not hmac.compare_digest(
            tag, _tag(secret, VERSION + expiry + workspace_id)):
        return SignedLinkVerdict(SignedLinkOutcome.FORGED)
    expires_at = datetime.fromtimestamp(int(expiry, 16), UTC)
    if expires_at <= now:
        return SignedLinkVerdict(SignedLinkOutcome.EXPIRED, expires_at=expires_at)
    return SignedLinkVerdict(SignedLinkOutcome.VALID, workspace_id, expires_at)
