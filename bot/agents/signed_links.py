"""Self-serve links: a workspace id, a mint time, an expiry and a truncated HMAC-SHA256, verified without the database.

Why signed, not stored: DoubleTick's dashboard (or any system holding ``SELF_SERVE_LINK_SECRET``) mints
``https://t.me/<bot>?start=<payload>`` for the workspace its logged-in user owns; the bot trusts the
workspace only because nobody without the secret can produce a valid tag. Unlike an agent's handoff link
it is not single use (the dashboard shows it to the workspace's own admins), so keep expiries short.

Why the mint time: a reusable link proves only what was true when it was minted. Replacing or disconnecting
a key another chat connected needs a link minted *after* that connection, so the bot binds the chat with
the link's mint time, never the moment it was opened (an old link reopened later is not fresh).

Payload layout (all characters in ``[A-Za-z0-9_-]``, at most 64, as Telegram allows in ``?start=``)::

    "s2" | issued_at (8 lowercase hex, unix s) | expires_at (8 lowercase hex) | tag (16 base64url) | workspace
    tag = base64url(HMAC-SHA256(secret, "s2" + issued_hex + expiry_hex + workspace_id)[:12])

The older ``s1`` layout (no mint time: ``"s1" | expiry | tag | workspace``) is still accepted, so links a
dashboard already handed out keep binding, but it proves nothing about time: its verdict has no
``issued_at`` and it can never replace or disconnect a key another chat connected.

A random handoff token is 24 characters, a signed payload at least 28 and starts with ``s1``/``s2`` plus
hex digits, so the two never get confused. The README carries the same recipe and a test vector.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

__all__ = [
    "MAX_PAYLOAD",
    "MAX_SIGNED_WORKSPACE",
    "MIN_SECRET_LENGTH",
    "SignedLinkError",
    "SignedLinkOutcome",
    "SignedLinkVerdict",
    "looks_signed",
    "proof_time",
    "sign_payload",
    "verify_payload",
]

VERSION = "s2"
LEGACY_VERSION = "s1"
MAX_PAYLOAD = 64  # Telegram's limit for the ?start= parameter
_TAG_BYTES = 12  # 96 bits: forging takes ~2^96 tries, each a round-trip to Telegram
_TAG_CHARS = 16
_HEAD = len(VERSION) + 8 + 8 + _TAG_CHARS
MAX_SIGNED_WORKSPACE = MAX_PAYLOAD - _HEAD  # 30
MIN_SECRET_LENGTH = 32
MAX_CLOCK_SKEW = timedelta(minutes=5)  # a mint time further ahead than this is refused as invalid
_SIGNED = re.compile(r"s2([0-9a-f]{8})([0-9a-f]{8})([A-Za-z0-9_-]{16})([A-Za-z0-9_-]{2,30})")
_LEGACY = re.compile(r"s1([0-9a-f]{8})([A-Za-z0-9_-]{16})([A-Za-z0-9_-]{2,38})")
_SIGNABLE_WORKSPACE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{1,29}")
_LEGACY_WORKSPACE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{1,37}")


class SignedLinkError(ValueError):
    """The workspace id or times cannot be put into a signed link."""


class SignedLinkOutcome(StrEnum):
    VALID = "valid"
    EXPIRED = "expired"
    FORGED = "forged"  # a tag that does not match (tampered, truncated, another secret) or impossible times
    NOT_ENABLED = "not_enabled"  # this bot has no SELF_SERVE_LINK_SECRET


@dataclass(frozen=True, slots=True)
class SignedLinkVerdict:
    outcome: SignedLinkOutcome
    workspace_id: str | None = None  # set only when VALID
    expires_at: datetime | None = None
    issued_at: datetime | None = None  # when VALID: the signed mint time (None for a legacy s1 link)
    version: str | None = None  # "s2" or "s1" once the shape is recognised


def _tag(secret: bytes, body: str) -> str:
    digest = hmac.new(secret, body.encode("ascii"), hashlib.sha256).digest()[:_TAG_BYTES]
    return base64.urlsafe_b64encode(digest).decode("ascii")


def _hex_time(value: int, what: str) -> str:
    if not 0 < value < 16**8:
        raise SignedLinkError(f"the {what} must be a unix time before 2106")
    return f"{value:08x}"


def sign_payload(workspace_id: str, expires_at: int, secret: bytes, *, issued_at: int) -> str:
    """The ``?start=`` payload for ``workspace_id``, minted at ``issued_at``, valid until ``expires_at``."""
    if not _SIGNABLE_WORKSPACE.fullmatch(workspace_id or ""):
        raise SignedLinkError(f"a signed link's workspace id must be 2-{MAX_SIGNED_WORKSPACE} letters, digits, "
                              "_ or - (starting with a letter or digit)")
    issued, expiry = _hex_time(issued_at, "mint time"), _hex_time(expires_at, "expiry")
    if expires_at <= issued_at:
        raise SignedLinkError("the expiry must come after the mint time")
    body = VERSION + issued + expiry
    return body + _tag(secret, body + workspace_id) + workspace_id


def looks_signed(payload: str) -> bool:
    """Shaped like a signed payload of either version (says nothing about the tag)."""
    return _SIGNED.fullmatch(payload or "") is not None or _LEGACY.fullmatch(payload or "") is not None


def _when(hex_digits: str) -> datetime:
    return datetime.fromtimestamp(int(hex_digits, 16), UTC)


def verify_payload(payload: str, secret: bytes | None, now: datetime) -> SignedLinkVerdict:
    """Check the tag first (constant time), then the times; never touches the database."""
    match = _SIGNED.fullmatch(payload or "")
    legacy = None if match else _LEGACY.fullmatch(payload or "")
    if match is None and legacy is None:
        return SignedLinkVerdict(SignedLinkOutcome.FORGED)
    if not secret:
        return SignedLinkVerdict(SignedLinkOutcome.NOT_ENABLED)
    if match is not None:
        issued, expiry, tag, workspace_id = match.groups()
        version, body, shape, issued_at = VERSION, VERSION + issued + expiry, _SIGNABLE_WORKSPACE, _when(issued)
    else:
        assert legacy is not None
        expiry, tag, workspace_id = legacy.groups()
        version, body, shape, issued_at = LEGACY_VERSION, LEGACY_VERSION + expiry, _LEGACY_WORKSPACE, None
    if not shape.fullmatch(workspace_id) or not hmac.compare_digest(tag, _tag(secret, body + workspace_id)):
        return SignedLinkVerdict(SignedLinkOutcome.FORGED, version=version)
    expires_at = _when(expiry)
    if issued_at is not None and (expires_at <= issued_at or issued_at > now + MAX_CLOCK_SKEW):
        # Only a holder of the secret could mint this, but a mint time from the future would make the link
        # "fresh" against every connection until then: refuse it rather than trust it.
        return SignedLinkVerdict(SignedLinkOutcome.FORGED, version=version)
    if expires_at <= now:
        return SignedLinkVerdict(SignedLinkOutcome.EXPIRED, expires_at=expires_at, version=version)
    return SignedLinkVerdict(SignedLinkOutcome.VALID, workspace_id, expires_at, issued_at, version)


def proof_time(verdict: SignedLinkVerdict, now: datetime) -> float | None:
    """The ``bound_at`` a valid link earns: its mint time (never later than now), or None for a legacy link.

    None means "proves nothing about time": the chat may connect a workspace nobody connected, or change
    its own connection, but never replace or disconnect a key another chat connected.
    """
    if verdict.outcome != SignedLinkOutcome.VALID or verdict.issued_at is None:
        return None
    return min(verdict.issued_at, now).timestamp()
