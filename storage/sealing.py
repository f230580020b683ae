"""AES-GCM sealing of a key for the retry outbox, under key-encryption keys (KEKs) kept outside the DB.

Why: a verify/connect retry that must survive a restart needs the key again, but the database must never
hold plaintext. The row holds ``nonce + ciphertext`` and the id of the KEK that sealed it; the KEKs come
from configuration, newest first, so rotation is "prepend a new one, rewrap, drop the old one". The AAD
binds a sealed blob to its conversation, chat and purpose, so a blob copied onto another row won't open.

Exceptions::

    SealingError
     ├── InvalidKeyRing   the configured key ring is missing or malformed (message safe to print)
     └── UnsealError      unknown KEK, wrong AAD or tampered/truncated blob
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Iterable
from datetime import UTC, datetime

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from flows.secret import SecretKey

__all__ = [
    "KEY_BYTES",
    "NONCE_BYTES",
    "InvalidKeyRing",
    "KeyRing",
    "SealingError",
    "UnsealError",
    "aad_for",
    "generate_key_spec",
]

KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12  # the 96-bit nonce GCM is designed for
_TAG_BYTES = 16
# Short, so a key pasted where the kid belongs (entries swapped) is refused rather than accepted as a kid.
_KID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}")
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+={0,2}")
_PURPOSE = re.compile(r"[a-z][a-z0-9_]{0,31}")
_AAD_CONTEXT_V2 = "doubletick-onboarding/outbox/v2"  # v1 bound conversation, chat and purpose only


class SealingError(Exception):
    """Base class of sealing failures. Messages never contain key material."""


class InvalidKeyRing(SealingError, ValueError):
    """The key ring configuration is missing or malformed."""


class UnsealError(SealingError):
    """A sealed blob could not be opened: unknown KEK, wrong AAD, or tampering."""


def _decode_key(text: str, position: int) -> bytes:
    # Errors name entries by position only: echoing anything from the spec risks echoing a key.
    where = f"key ring entry {position}"
    if not text:
        raise InvalidKeyRing(f"{where} has no key after the colon")
    if not _BASE64URL.fullmatch(text):
        # The standard alphabet's '+' and '/' are refused too: one spelling per key.
        raise InvalidKeyRing(f"{where}: the key is not valid base64url")
    padded = text.rstrip("=")
    padded += "=" * (-len(padded) % 4)
    try:
        raw = base64.b64decode(padded, altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise InvalidKeyRing(f"{where}: the key is not valid base64url") from None
    if len(raw) != KEY_BYTES:
        raise InvalidKeyRing(f"{where}: the key is {len(raw)} bytes, expected {KEY_BYTES}")
    return raw


def _parse_spec(spec: str) -> list[tuple[str, bytes]]:
    if not isinstance(spec, str) or not spec.strip():
        raise InvalidKeyRing("the key ring is empty: expected 'kid:BASE64URL32[,kid:BASE64URL32...]'")
    entries: list[tuple[str, bytes]] = []
    for position, raw_entry in enumerate(spec.split(","), start=1):
        entry = raw_entry.strip()
        if not entry:
            raise InvalidKeyRing(f"key ring entry {position} is empty")
        kid, colon, key_text = entry.partition(":")
        if not colon:
            # Don't echo the entry: it may be a key pasted without its kid.
            raise InvalidKeyRing(f"key ring entry {position} is not of the form 'kid:BASE64URL32'")
        kid = kid.strip()
        if not _KID.fullmatch(kid):
            raise InvalidKeyRing(
                f"key ring entry {position} has an invalid kid (1-32 of A-Z a-z 0-9 . _ -, "
                "starting with a letter or digit, before the colon)"
            )
        entries.append((kid, _decode_key(key_text.strip(), position)))
    return entries


class KeyRing:
    """Key-encryption keys, newest first: seal with the newest, open with whichever sealed."""

    __slots__ = ("_aeads", "_order")

    def __init__(self, keys: Iterable[tuple[str, bytes]]) -> None:
        self._order: list[str] = []
        self._aeads: dict[str, AESGCM] = {}
        for position, (kid, key) in enumerate(keys, start=1):
            if not isinstance(kid, str) or not _KID.fullmatch(kid):
                raise InvalidKeyRing(f"key ring entry {position} has an invalid kid")
            if kid in self._aeads:
                first = self._order.index(kid) + 1
                raise InvalidKeyRing(f"key ring entry {position} repeats the kid of entry {first}")
            if not isinstance(key, bytes) or len(key) != KEY_BYTES:
                raise InvalidKeyRing(f"key ring entry {position}: the key must be {KEY_BYTES} bytes")
            self._order.append(kid)
            self._aeads[kid] = AESGCM(key)
        if not self._order:
            raise InvalidKeyRing("the key ring has no keys")

    @classmethod
    def from_spec(cls, spec: str) -> KeyRing:
        """Parse ``"kid1:BASE64URL32,kid0:BASE64URL32"`` (newest first); :class:`InvalidKeyRing` if bad."""
        return cls(_parse_spec(spec))

    @property
    def newest_id(self) -> str:
        """The kid new blobs are sealed under."""
        return self._order[0]

    def knows(self, kek_id: str) -> bool:
        """Whether a blob sealed under ``kek_id`` can be opened here (a replica may lag a rotation)."""
        return kek_id in self._aeads

    @property
    def kek_ids(self) -> tuple[str, ...]:
        """All kids, newest first."""
        return tuple(self._order)

    def __repr__(self) -> str:
        return f"KeyRing(kek_ids={self.kek_ids!r})"

    def seal(self, key: SecretKey, aad: bytes) -> tuple[bytes, str]:
        """Encrypt ``key`` under the newest KEK; returns (nonce + ciphertext, kek_id)."""
        if not isinstance(key, SecretKey):
            raise TypeError("seal() takes a SecretKey")
        kid = self.newest_id
        nonce = os.urandom(NONCE_BYTES)
        ciphertext = self._aeads[kid].encrypt(nonce, key.reveal().encode("utf-8"), aad)
        return nonce + ciphertext, kid

    def open(self, sealed: bytes, kek_id: str, aad: bytes) -> SecretKey:
        """Decrypt a blob sealed under ``kek_id`` with the same ``aad``; :class:`UnsealError` if not."""
        aead = self._aeads.get(kek_id)
        if aead is None:
            raise UnsealError(f"no key-encryption key with kid {kek_id!r} in the key ring")
        if len(sealed) < NONCE_BYTES + _TAG_BYTES:
            raise UnsealError("the sealed blob is truncated")
        try:
            plaintext = aead.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], aad)
        except InvalidTag:
            raise UnsealError("the sealed blob failed authentication (tampered, or wrong AAD)") from None
        try:
            return SecretKey(plaintext.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise UnsealError("the sealed blob does not hold a key") from None

    def rewrap(self, sealed: bytes, kek_id: str, aad: bytes) -> tuple[bytes, str]:
        """Re-seal a blob under the newest KEK (for rotation); a no-op if it already is."""
        if kek_id == self.newest_id:
            # Still opened, so a tampered blob is reported now rather than at retry time.
            self.open(sealed, kek_id, aad)
            return sealed, kek_id
        return self.seal(self.open(sealed, kek_id, aad), aad)


def generate_key_spec(now: datetime | None = None) -> str:
    """A fresh ``kid:BASE64URL32`` entry to prepend to the key ring; kid = UTC date + random suffix."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    kid = f"k{moment:%Y%m%d}-{os.urandom(3).hex()}"
    key = base64.urlsafe_b64encode(os.urandom(KEY_BYTES)).rstrip(b"=").decode("ascii")
    return f"{kid}:{key}"


def aad_for(conversation_id: int, chat_id: int, purpose: str, *, attempt: int, workspace_id: str | None) -> bytes:
    """The associated data binding a sealed blob to one conversation, chat, purpose, paste attempt and
    workspace: a blob copied to another row (another chat, a later attempt, another workspace) fails to
    open instead of acting there."""
    if isinstance(conversation_id, bool) or not isinstance(conversation_id, int):
        raise TypeError("conversation_id must be an int")
    if isinstance(chat_id, bool) or not isinstance(chat_id, int):
        raise TypeError("chat_id must be an int")
    if isinstance(attempt, bool) or not isinstance(attempt, int):
        raise TypeError("attempt must be an int")
    if not isinstance(purpose, str) or not _PURPOSE.fullmatch(purpose):
        raise ValueError("purpose must be a short lowercase identifier such as 'verify'")
    if workspace_id is not None and not isinstance(workspace_id, str):
        raise TypeError("workspace_id must be a str or None")
    workspace = "-" if workspace_id is None else f"{len(workspace_id)}:{workspace_id}"  # length-prefixed
    return f"{_AAD_CONTEXT_V2}|{conversation_id}|{chat_id}|{purpose}|{attempt}|{workspace}".encode()
