"""Known-answer tests for key fingerprints (HMAC-SHA256 keyed with a server secret)."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from flows.secret import SecretKey
from storage.fingerprint import FINGERPRINT_PREFIX_LEN, fingerprint, fingerprint_prefix


def test_rfc4231_test_case_2_proves_the_hmac_construction() -> None:
    # RFC 4231 section 4.3: key "Jefe", data "what do ya want for nothing?".
    expected = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    assert fingerprint(SecretKey("what do ya want for nothing?"), b"Jefe") == expected


def test_known_answer_for_a_fixed_key_and_secret() -> None:
    # Computed once (Python hmac, and `openssl dgst -sha256 -hmac`) and pinned: a change here means
    # every stored fingerprint would stop matching.
    key = SecretKey("sk-proj-KNOWNANSWER0123456789abcdefABCDEF-T3BlbkFJ")
    secret = b"doubletick-fingerprint-kat-secret-v1"
    expected = "6cc71061330e321cdd03248a99fc4933fed86dfad85b6260a0b9ae2f1d293a80"
    assert fingerprint(key, secret) == expected


def test_fingerprint_matches_an_independent_hmac_and_is_lowercase_hex() -> None:
    key = SecretKey("sk-proj-" + "x" * 40)
    secret = bytes(range(32))
    value = fingerprint(key, secret)
    assert value == hmac.new(secret, key.reveal().encode(), hashlib.sha256).hexdigest()
    assert len(value) == 64 and value == value.lower()
    assert key.reveal() not in value


def test_the_secret_changes_the_fingerprint() -> None:
    key = SecretKey("sk-proj-same-key-1234")
    assert fingerprint(key, b"secret-one") != fingerprint(key, b"secret-two")


def test_non_ascii_keys_are_hashed_as_utf8() -> None:
    key = SecretKey("sk-ключ-é")
    expected = hmac.new(b"s", "sk-ключ-é".encode(), hashlib.sha256).hexdigest()
    assert fingerprint(key, b"s") == expected


def test_fingerprint_refuses_plain_strings_and_empty_secrets() -> None:
    with pytest.raises(TypeError):
        fingerprint("sk-proj-plain", b"secret")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        fingerprint(SecretKey("sk-proj-abc"), b"")


def test_prefix_is_for_display() -> None:
    value = fingerprint(SecretKey("sk-proj-abc"), b"secret")
    assert fingerprint_prefix(value) == value[:FINGERPRINT_PREFIX_LEN]
    assert 8 <= FINGERPRINT_PREFIX_LEN < 64
