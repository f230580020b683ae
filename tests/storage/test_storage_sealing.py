"""AES-GCM sealing of keys for the retry outbox: round trips, tamper evidence, rotation, safe errors."""

from __future__ import annotations

import base64
import os
import re
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from flows.secret import SecretKey
from storage.sealing import (
    KEY_BYTES,
    NONCE_BYTES,
    InvalidKeyRing,
    KeyRing,
    SealingError,
    UnsealError,
    aad_for,
    generate_key_spec,
)

KEY = SecretKey("sk-proj-SEALCANARY-0123456789abcdefghijklmnop-wxyz")
AAD = aad_for(17, -100123, "verify", attempt=2, workspace_id="ws_acme")


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def ring(*kids: str) -> KeyRing:
    return KeyRing([(kid, bytes([index + 1]) * KEY_BYTES) for index, kid in enumerate(kids)])


def test_seal_then_open_round_trips_under_the_newest_kek() -> None:
    keys = ring("k2", "k1")
    sealed, kek_id = keys.seal(KEY, AAD)
    assert kek_id == "k2"
    assert KEY.reveal().encode() not in sealed
    assert len(sealed) == NONCE_BYTES + len(KEY.reveal().encode()) + 16
    opened = keys.open(sealed, kek_id, AAD)
    assert isinstance(opened, SecretKey)
    assert opened.reveal() == KEY.reveal()


def test_every_seal_uses_a_fresh_nonce() -> None:
    keys = ring("k1")
    first, _ = keys.seal(KEY, AAD)
    second, _ = keys.seal(KEY, AAD)
    assert first[:NONCE_BYTES] != second[:NONCE_BYTES]
    assert first != second


def test_the_format_is_nonce_then_aes_gcm_ciphertext() -> None:
    # Built with the cryptography primitive directly: an independent path to the stored format.
    kek = os.urandom(KEY_BYTES)
    nonce = os.urandom(NONCE_BYTES)
    blob = nonce + AESGCM(kek).encrypt(nonce, KEY.reveal().encode(), AAD)
    assert KeyRing([("kid", kek)]).open(blob, "kid", AAD) == KEY
    sealed, _ = KeyRing([("kid", kek)]).seal(KEY, AAD)
    assert AESGCM(kek).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], AAD) == KEY.reveal().encode()


@pytest.mark.parametrize(
    "other_aad",
    [aad_for(18, -100123, "verify", attempt=2, workspace_id="ws_acme"),
     aad_for(17, -100124, "verify", attempt=2, workspace_id="ws_acme"),
     aad_for(17, -100123, "connect", attempt=2, workspace_id="ws_acme"),
     aad_for(17, -100123, "verify", attempt=3, workspace_id="ws_acme"),  # issue 10: a later attempt
     aad_for(17, -100123, "verify", attempt=2, workspace_id="ws_evil"),  # issue 10: another workspace
     aad_for(17, -100123, "verify", attempt=2, workspace_id=None), b""],
    ids=["other-conversation", "other-chat", "other-purpose", "other-attempt", "other-workspace", "no-workspace",
         "empty"],
)
def test_a_blob_does_not_open_with_another_aad(other_aad: bytes) -> None:
    keys = ring("k1")
    sealed, kek_id = keys.seal(KEY, AAD)
    with pytest.raises(UnsealError):
        keys.open(sealed, kek_id, other_aad)


@pytest.mark.parametrize("position", [0, NONCE_BYTES - 1, NONCE_BYTES, NONCE_BYTES + 5, -1])
def test_a_tampered_blob_does_not_open(position: int) -> None:
    keys = ring("k1")
    sealed, kek_id = keys.seal(KEY, AAD)
    tampered = bytearray(sealed)
    tampered[position] ^= 0x01
    with pytest.raises(UnsealError) as caught:
        keys.open(bytes(tampered), kek_id, AAD)
    assert "SEALCANARY" not in str(caught.value)


def test_truncated_blobs_and_unknown_keks_do_not_open() -> None:
    keys = ring("k1")
    sealed, _ = keys.seal(KEY, AAD)
    with pytest.raises(UnsealError, match="truncated"):
        keys.open(sealed[:20], "k1", AAD)
    with pytest.raises(UnsealError, match="kid 'gone'"):
        keys.open(sealed, "gone", AAD)


def test_a_blob_sealed_under_one_kek_does_not_open_under_another_with_its_id() -> None:
    sealed, _ = KeyRing([("same", b"\x01" * KEY_BYTES)]).seal(KEY, AAD)
    with pytest.raises(UnsealError):
        KeyRing([("same", b"\x02" * KEY_BYTES)]).open(sealed, "same", AAD)


def test_rotation_old_kek_still_opens_and_rewrap_moves_to_the_newest() -> None:
    old = KeyRing([("k0", b"\x00" * KEY_BYTES)])
    sealed, kek_id = old.seal(KEY, AAD)
    rotated = KeyRing([("k1", b"\x11" * KEY_BYTES), ("k0", b"\x00" * KEY_BYTES)])
    assert rotated.open(sealed, kek_id, AAD) == KEY
    rewrapped, new_kek_id = rotated.rewrap(sealed, kek_id, AAD)
    assert new_kek_id == "k1"
    assert rewrapped != sealed
    assert KeyRing([("k1", b"\x11" * KEY_BYTES)]).open(rewrapped, new_kek_id, AAD) == KEY
    # Already under the newest: left as is, but still authenticated.
    assert rotated.rewrap(rewrapped, "k1", AAD) == (rewrapped, "k1")
    with pytest.raises(UnsealError):
        rotated.rewrap(rewrapped[:-1] + bytes([rewrapped[-1] ^ 1]), "k1", AAD)


def test_from_spec_parses_newest_first_with_or_without_padding() -> None:
    new, old = os.urandom(KEY_BYTES), os.urandom(KEY_BYTES)
    padded = base64.urlsafe_b64encode(old).decode()
    keys = KeyRing.from_spec(f" kid1:{b64(new)} , kid0:{padded}")
    assert keys.kek_ids == ("kid1", "kid0")
    assert keys.newest_id == "kid1"
    sealed, kek_id = KeyRing([("kid0", old)]).seal(KEY, AAD)
    assert keys.open(sealed, kek_id, AAD) == KEY


KEY_TEXT = b64(b"\xab" * KEY_BYTES)  # what must never show up in an error message
SHORT_KEY_TEXT = b64(b"\xcd" * 31)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        (KEY_TEXT, "not of the form"),
        (f"kid1:{KEY_TEXT},", "entry 2 is empty"),
        ("kid1:", "no key"),
        (f"kid1:{SHORT_KEY_TEXT}", "31 bytes, expected 32"),
        (f"kid1:{KEY_TEXT}AAAA", "35 bytes, expected 32"),
        (f"kid1:{KEY_TEXT[:-3]}!?*", "not valid base64url"),
        (f"kid1:{KEY_TEXT.replace('q', '+')}", "not valid base64url"),
        (f"bad kid:{KEY_TEXT}", "invalid kid"),
        (f"{KEY_TEXT}x:{KEY_TEXT}", "invalid kid"),
        (f"{KEY_TEXT}:kid1", "invalid kid"),
        (f"k:{KEY_TEXT},k:{KEY_TEXT}", "entry 2 repeats the kid of entry 1"),
    ],
    ids=[
        "empty",
        "blank",
        "no-kid",
        "trailing-comma",
        "no-key",
        "short",
        "long",
        "bad-chars",
        "standard-alphabet",
        "space-in-kid",
        "key-as-kid",
        "swapped-order",
        "duplicate-kid",
    ],
)
def test_malformed_specs_are_refused_with_messages_safe_to_print(spec: str, message: str) -> None:
    with pytest.raises(InvalidKeyRing, match=message) as caught:
        KeyRing.from_spec(spec)
    text = str(caught.value)
    for secret_text in (KEY_TEXT, KEY_TEXT[:16], SHORT_KEY_TEXT[:16]):
        assert secret_text not in text
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, SealingError)


def test_key_ring_constructor_checks_lengths_and_emptiness() -> None:
    with pytest.raises(InvalidKeyRing, match="no keys"):
        KeyRing([])
    with pytest.raises(InvalidKeyRing, match="32 bytes"):
        KeyRing([("k", b"short")])


def test_repr_names_only_the_kids() -> None:
    kek = b"\x42" * KEY_BYTES
    text = repr(KeyRing([("k1", kek)]))
    assert text == "KeyRing(kek_ids=('k1',))"
    assert b64(kek) not in text


def test_generate_key_spec_makes_a_usable_dated_entry() -> None:
    spec = generate_key_spec(datetime(2026, 2, 3, tzinfo=UTC))
    kid, _, key_text = spec.partition(":")
    assert re.fullmatch(r"k20260203-[0-9a-f]{6}", kid)
    keys = KeyRing.from_spec(spec)
    assert keys.newest_id == kid
    sealed, kek_id = keys.seal(KEY, AAD)
    assert keys.open(sealed, kek_id, AAD) == KEY
    assert len(base64.urlsafe_b64decode(key_text + "=")) == KEY_BYTES
    assert generate_key_spec() != generate_key_spec()


def test_aad_binds_conversation_chat_purpose_attempt_and_workspace() -> None:
    assert aad_for(1, -100, "verify", attempt=3, workspace_id="ws_a") == \
        b"doubletick-onboarding/outbox/v2|1|-100|verify|3|4:ws_a"
    variants = {aad_for(conv, chat, purpose, attempt=attempt, workspace_id=ws) for conv, chat, purpose, attempt, ws in [
        (1, 2, "verify", 1, "w"), (2, 1, "verify", 1, "w"), (1, 2, "connect", 1, "w"), (1, 2, "verify", 2, "w"),
        (1, 2, "verify", 1, None), (1, 2, "verify", 1, "-"), (1, 2, "verify", 1, "w|1")]}
    assert len(variants) == 7
    with pytest.raises(ValueError):
        aad_for(1, 2, "verify|3", attempt=1, workspace_id=None)
    with pytest.raises(TypeError):
        aad_for("1", 2, "verify", attempt=1, workspace_id=None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        aad_for(1, 2, "verify", attempt="1", workspace_id=None)  # type: ignore[arg-type]


def test_seal_refuses_plain_strings() -> None:
    with pytest.raises(TypeError):
        ring("k").seal("sk-proj-plain", AAD)  # type: ignore[arg-type]
