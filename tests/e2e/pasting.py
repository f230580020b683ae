"""What users paste, generated fresh for every run, and the walk to the paste step.

Why generated: a key written out in a test file is a key a secret scanner flags and a canary that is
not unique. Every call returns a new random string of the documented shape
(``shared/reference/openai-keys.md`` section 1), so a leak found anywhere can only have come from this
run.
"""

from __future__ import annotations

import base64
import json
import random
import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bot.standins.chat_driver import ChatDriver, plain_text

__all__ = [
    "KEY_FAMILIES",
    "OWN",
    "RECOGNITION",
    "SECRET_NAMES",
    "Paste",
    "bot_texts",
    "deleted_first",
    "fresh_key",
    "fresh_secret",
    "labels",
    "last_call",
    "own_workspace",
    "reach_paste_step",
    "recognition_paste",
    "send_and_wait",
    "wait_reply",
]

MARK = "T3Blbk" + "FJ"  # base64("OpenAI"), split so scanners leave this file alone
ALNUM = string.ascii_letters + string.digits
URLSAFE = ALNUM + "_-"
HEX = "0123456789abcdef"

# Every OpenAI secret-key family: (prefix, length of each half around the marker).
KEY_FAMILIES: dict[str, tuple[str, int]] = {
    "project": ("sk-proj-", 74),
    "service_account": ("sk-svcacct-", 74),
    "legacy_user": ("sk-", 20),
    "unscoped": ("sk-None-", 74),
    "admin": ("sk-admin-", 58),
}


_SYSTEM = secrets.SystemRandom()


def _chars(n: int, alphabet: str = ALNUM, rng: random.Random = _SYSTEM) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def fresh_key(family: str = "project", hint: str = "", rng: random.Random = _SYSTEM) -> str:
    """A new OpenAI-shaped key of ``family``; ``hint`` (alphanumeric) starts its body, for debugging.

    ``rng`` makes it repeatable (property tests); by default every call is unique.
    """
    prefix, half = KEY_FAMILIES[family]
    head = (hint + _chars(half, rng=rng))[:half]
    return f"{prefix}{head}{MARK}{_chars(half, rng=rng)}"


def _jwt(rng: random.Random) -> str:
    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    claims = {"sub": _chars(12, rng=rng), "aud": "https://api.openai.com/v1", "exp": 1_900_000_000}
    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.{_chars(43, URLSAFE, rng)}"


# Secrets that are not OpenAI keys, by name: each is recognised and never sent anywhere.
_OTHER_SECRETS: dict[str, Callable[[random.Random], str]] = {
    "anthropic": lambda rng: f"sk-ant-api03-{_chars(93, URLSAFE, rng)}AA",
    "google": lambda rng: f"AIza{_chars(35, URLSAFE, rng)}",
    "github": lambda rng: f"ghp_{_chars(36, rng=rng)}",
    "openrouter": lambda rng: f"sk-or-v1-{_chars(64, HEX, rng)}",
    "telegram_bot_token": lambda rng: f"{rng.randrange(10**9, 10**10)}:AA{_chars(33, URLSAFE, rng)}",
    "chatgpt_session": lambda rng: f"sess-{_chars(40, rng=rng)}",
    "jwt": _jwt,
}


def fresh_secret(name: str, rng: random.Random = _SYSTEM) -> str:
    """A new secret of a key family (``project`` ...) or another kind (``anthropic``, ``jwt`` ...)."""
    return fresh_key(name, rng=rng) if name in KEY_FAMILIES else _OTHER_SECRETS[name](rng)


SECRET_NAMES = (*KEY_FAMILIES, *_OTHER_SECRETS)


@dataclass(frozen=True, slots=True)
class Paste:
    """One thing a user pastes, what the bot must answer, and the plaintexts that must never come back."""

    kind: str  # flows.inspection.PastedKind value
    text: str
    answer: str  # a phrase of the bot's answer for this kind, and of no other kind's answer
    secrets: tuple[str, ...] = ()

    @property
    def verifiable(self) -> bool:
        return self.kind in ("project", "service_account", "legacy_user", "unscoped")


def _paste_of(kind: str) -> Paste:
    if kind in ("project", "service_account", "legacy_user", "unscoped"):
        key = fresh_key(kind)
        return Paste(kind, key, "You're done", (key,))
    if kind == "admin":
        key = fresh_key("admin")
        return Paste(kind, key, "That's an OpenAI admin key", (key,))
    if kind == "masked":
        return Paste(kind, "sk-proj-" + "*" * 40 + _chars(4), "looks like a masked key")
    if kind == "incomplete":
        return Paste(kind, "sk-" + _chars(6), "beginning of a key")
    if kind == "organization_id":
        return Paste(kind, "org-" + _chars(24), "That's your OpenAI organization ID")
    if kind == "project_id":
        return Paste(kind, "proj_" + _chars(24), "That's an OpenAI project ID")
    if kind == "other_provider":
        key = fresh_secret("anthropic")
        return Paste(kind, key, "looks like a key from Anthropic", (key,))
    if kind == "telegram_bot_token":
        token = fresh_secret("telegram_bot_token")
        return Paste(kind, token, "That's a Telegram bot token", (token,))
    if kind == "session_token":
        token = fresh_secret("chatgpt_session")
        return Paste(kind, token, "That's a login session token", (token,))
    if kind == "several_keys":
        first, second = fresh_key("project"), fresh_key("service_account")
        return Paste(kind, f"{first}\n{second}", "more than one key", (first, second))
    if kind == "not_a_key":
        return Paste(kind, "where do I find the key? I only see my dashboard", "doesn't look like an OpenAI")
    raise KeyError(kind)


RECOGNITION = ("project", "service_account", "legacy_user", "unscoped", "admin", "masked", "incomplete",
               "organization_id", "project_id", "other_provider", "telegram_bot_token", "session_token", "several_keys",
               "not_a_key")


def recognition_paste(kind: str) -> Paste:
    """A fresh paste of ``kind`` (one of :data:`RECOGNITION`)."""
    return _paste_of(kind)


# --- talking to the bot ------------------------------------------------------------------------------

GUIDE = [("start", "Open the API keys page"), ("Next", "Start a new secret key"), ("Next", "Who owns the key?"),
         ("Personal", "Name the key"), ("Next", "Choose the project"), ("Default", "Set the permissions"),
         ("All", "Create and copy the key")]


OWN = "<own>"  # each simulated user's own workspace (Stack.user registers it with the DoubleTick stand-in)


def own_workspace(user: ChatDriver) -> str:
    """The workspace a user types by default: only the chat that connected a workspace may change its key
    (issue 10), so users sharing ``ws_demo`` would refuse each other."""
    return f"ws_u{user.user_id}"


def reach_paste_step(user: ChatDriver, workspace: str | None = OWN) -> None:
    """Walk the whole guide like a person would, up to "Paste your key here"."""
    if workspace == OWN:
        workspace = own_workspace(user)
    user.send("/start")
    user.wait_guide("Connect DoubleTick to OpenAI")
    for label, title in GUIDE:
        user.press(label)
        user.wait_guide(title)
    user.press("I copied it")
    asked = user.wait_for(lambda: _next_title(user), what="the workspace question or the paste step")
    if asked == "workspace":  # open mode, and the chat has not named its workspace yet
        assert workspace, "this bot asks for a workspace"
        user.send(workspace)
        user.wait_guide("Paste your key here")


def _next_title(user: ChatDriver) -> str | None:
    text = plain_text(user.guide().get("text") or "")
    if "Which DoubleTick workspace?" in text:
        return "workspace"
    return "paste" if "Paste your key here" in text else None


def send_and_wait(user: ChatDriver, text: str, contains: str, timeout: float = 10.0) -> dict[str, Any]:
    """Send ``text`` and wait for a *new* guide message containing ``contains`` (not the old one)."""
    old = user.guide()["message_id"]
    user.send(text)
    wanted = contains.lower()
    return dict(user.wait_for(lambda: (g := user.guide())["message_id"] != old
                              and wanted in plain_text(g.get("text") or "").lower() and g,
                              timeout, f"a new guide with {contains!r}"))


def last_call(user: ChatDriver) -> int:
    """The sequence number of the newest Bot API call so far (0 if none)."""
    calls = user.calls()
    return int(calls[-1]["seq"]) if calls else 0


def deleted_first(user: ChatDriver, since: int, message_id: int) -> bool:
    """Whether deleting ``message_id`` was the bot's first act in this chat after ``since`` (delete first).

    Left out: the tail of what the bot did before (answering the last button press, removing its own
    superseded guide message), which may land a moment after the user's message.
    """
    def reacts(call: dict[str, Any]) -> bool:
        if call["chat_id"] != user.chat_id or call["method"] == "answerCallbackQuery":
            return False
        own_cleanup = call["method"] == "deleteMessage" and str(call["params"].get("message_id")) != str(message_id)
        return not own_cleanup

    first = next((c for c in user.calls(since=since) if reacts(c)), None)
    return bool(first and first["method"] == "deleteMessage")


def bot_texts(user: ChatDriver) -> list[str]:
    """Every visible bot message in the chat, as plain text, oldest first."""
    return [plain_text(m.get("text") or "") for m in user.bot_messages()]


def wait_reply(user: ChatDriver, contains: str, timeout: float = 10.0) -> str:
    """Wait for any visible bot message (guide or not) containing ``contains``; return its text."""
    wanted = contains.lower()
    found: str = user.wait_for(lambda: next((t for t in bot_texts(user) if wanted in t.lower()), None),
                               timeout, f"a bot message with {contains!r}")
    return found


def labels(message: dict[str, Any]) -> list[str]:
    return ChatDriver.labels(message)
