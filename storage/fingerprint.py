"""Keyed fingerprints of API keys: recognise a key again without being able to recover it.

Why keyed (HMAC with a server secret) rather than a plain hash: OpenAI keys have a known shape, and an
unkeyed SHA-256 of a leaked database could be matched against candidate keys. Without the secret, the
fingerprint says nothing.
"""

from __future__ import annotations

import hashlib
import hmac

from flows.secret import SecretKey

__all__ = ["FINGERPRINT_PREFIX_LEN", "fingerprint", "fingerprint_prefix"]

# Enough hex to tell keys apart in an operator's view, too little to be worth anything alone.
FINGERPRINT_PREFIX_LEN = 12


def fingerprint(key: SecretKey, secret: bytes) -> str:
    """Return hex HMAC-SHA256(``secret``, key plaintext as UTF-8): 64 lowercase hex characters.

    The strength of ``secret`` is checked where configuration is loaded, not here.
    """
    if not isinstance(key, SecretKey):
        raise TypeError("fingerprint() takes a SecretKey")
    if not secret:
        raise ValueError("the fingerprint secret must not be empty")
    return hmac.new(secret, key.reveal().encode("utf-8"), hashlib.sha256).hexdigest()


def fingerprint_prefix(value: str) -> str:
    """The first :data:`FINGERPRINT_PREFIX_LEN` characters of a fingerprint, for display."""
    return value[:FINGERPRINT_PREFIX_LEN]
