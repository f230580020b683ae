"""The fast secret guard and the key-file check: what they flag, what they let through, and that they stay
linear on hostile input (the runtime runs the guard on every update before anything else)."""

from __future__ import annotations

import random
import string
import time

import pytest

from flows.inspection import inspect_pasted_text
from flows.secret_shapes import TokenKind, find_tokens, might_be_key_file, might_carry_secret

MARK = "T3Blbk" + "FJ"
URLSAFE = string.ascii_letters + string.digits + "_-"


def body(n: int, seed: int = 0, alphabet: str = URLSAFE) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice(alphabet) for _ in range(n))


FLAGGED = [
    f"sk-proj-{body(74)}{MARK}{body(74, 1)}",
    f"my key: sk-{body(20)}",
    "sk-a",  # the start of a key: deleting it costs nothing
    f"Bearer eyJ{body(10)}",
    f"https://api.telegram.org/bot123456789:AA{body(33)}/getMe",
    "12345:a",
    f"AKIA{body(16, 2, string.ascii_uppercase)}",
    f"ghp_{body(36)}",
    body(32),  # a long random-looking token of unknown kind
    "x" * 32,
    f"https://example.com/callback?token={body(40)}",  # a URL that embeds a token
    f"s\u200bk-proj-{body(20)}",  # zero-width characters do not hide a key
]

CHAT = [
    "",
    "hello",
    "/start",
    "/start connect_42",
    "I'm stuck",
    "I'm stuck... what now?",
    "task-based permissions? my desk-top shows 'sk-' and then dots",
    "https://platform.openai.com/settings/organization/api-keys",
    "https://platform.openai.com/docs/guides/production-best-practices#api-keys",
    "Meeting at 10:30, call +1 555 0100",
    "Привет! Где найти ключ? 👋",
    "sk-...",
    "org-hWKPsEsTiPnMLoYsksqYwTHZ",  # an organization id is not secret
]


@pytest.mark.parametrize("text", FLAGGED, ids=lambda t: repr(t[:20]))
def test_key_shaped_text_is_flagged(text: str) -> None:
    assert might_carry_secret(text)


@pytest.mark.parametrize("text", CHAT, ids=lambda t: repr(t[:20]))
def test_ordinary_chat_and_plain_urls_pass(text: str) -> None:
    assert not might_carry_secret(text)


ADVERSARIAL = {
    "31-char runs": ("a" * 31 + " ") * 1600,
    "digit-colon": "1234:" * 10_000,
    "prefix lookalikes": "xsk-" * 12_500,
    "bare prefixes": "sk- " * 12_500,
    "dots": "." * 50_000,
    "zero-width": "a\u200b" * 25_000,
    "emoji": "👋" * 50_000,
    "jwt-ish": "eyJ." * 12_500,
    "long run then a stop": "a" * 50_000 + "!\nb",
    "endless wrap": "sk-a" + "\nb1" * 16_000,
    "many wrapped keys": ("sk-proj-" + "a1" * 30 + "\n" + "b2" * 30 + "\n") * 400,
    "digits then colon": "1" * 49_999 + ":",
    # issue 10: the rejoining of split keys looks at words after an anchor
    "spaced lookalike prefixes": "xsk- " * 10_000,
    "a key start then letters": "sk-a" + " b" * 25_000,
    "spelled prefixes": "s k " * 12_500,
    # combining marks: dropped on ASCII characters, kept on other letters
    "a mark on every character": "a\u0336" * 25_000,
    "marks piled on one character": "a" + "\u0301" * 50_000,
    "Devanagari vowel signs": "कि" * 25_000,
    "accented Latin": "é" * 50_000,
    "astral marks": "a\U0001e8d0" * 25_000,
}


@pytest.mark.parametrize("text", ADVERSARIAL.values(), ids=ADVERSARIAL.keys())
def test_hostile_input_stays_linear(text: str) -> None:
    """Not a benchmark: a generous bound that only catastrophic backtracking would break."""
    started = time.perf_counter()
    might_carry_secret(text)
    find_tokens(text)
    inspect_pasted_text(text)
    assert time.perf_counter() - started < 2.0


def test_bot_token_inside_a_url_is_found_as_a_bot_token() -> None:
    text = f"GET https://api.telegram.org/bot123456789:AA{body(33)}/getUpdates"
    assert [t.kind for t in find_tokens(text)] == [TokenKind.TELEGRAM_BOT_TOKEN]


@pytest.mark.parametrize("name", [
    ".env", ".env.local", "prod.env", "openai_key.txt", "OpenAI-Key.TXT", "api-key.txt", "apikey.json",
    "secret.txt", "secrets2.txt", "my secret keys.txt", "id.key", "server.pem", "credentials", "credentials.json",
    "creds.txt", "token.txt", "keys.txt", "key", "C:\\Users\\me\\Desktop\\openai key.txt", "passwords.csv",
    # issue 10: well-known secret files
    "id_rsa", "id_ed25519", ".npmrc", ".pypirc", ".netrc", "config.yaml", "Config.yml", "appsettings.json",
    "cert.p12", "terraform.tfvars", "kubeconfig", ".git-credentials", "~/.ssh/id_ecdsa",
])
def test_key_file_names_are_flagged(name: str) -> None:
    assert might_be_key_file(name)


@pytest.mark.parametrize("name", [
    "", "photo.jpg", "screenshot.png", "invoice.pdf", "monkey.png", "report-2024.docx", "notes.txt",
    "keyboard.jpg", "id_rsa.pub", "known_hosts", "config.png", "README.md",
])
def test_ordinary_file_names_pass(name: str) -> None:
    assert not might_be_key_file(name)
