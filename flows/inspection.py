"""What did the user paste? A key to verify, a masked key, an org id, someone else's secret ...

Why offline and first: most wrong pastes can be explained without a network call, and some must never
reach OpenAI at all (admin keys, other providers' keys, bot tokens). The result carries the key only as a
:class:`~flows.secret.SecretKey`, so printing it shows a mask. Follows
``shared/reference/openai-keys.md`` section 8: normalise, classify offline, and treat formats as hints
(a plausible ``sk-`` string of an unknown shape is still verified, with a warning).

Normalising is mostly free: tokens are runs of key characters (see :mod:`flows.secret_shapes`), so
quotes, backticks, code fences, ``${…}``, ``Bearer``, ``OPENAI_API_KEY=`` and trailing dots fall away.
Two steps remain: zero-width characters are removed, and a key wrapped onto several lines is rejoined.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from flows.secret import SecretKey
from flows.secret_shapes import (
    SECRET_PREFIXES,
    TokenKind,
    TokenMatch,
    find_tokens,
    is_complete_openai_key,
    might_be_key_file,
    might_carry_secret,
    strip_invisible,
)

__all__ = [
    "VERIFIABLE_KINDS",
    "PastedKind",
    "PastedText",
    "inspect_pasted_text",
    "might_be_key_file",  # re-exported: the runtime's secret guard imports both checks from here
    "might_carry_secret",
    "normalise_pasted_text",
]


class PastedKind(StrEnum):
    """What a pasted message is, as a whole."""

    PROJECT = "project"
    SERVICE_ACCOUNT = "service_account"
    LEGACY_USER = "legacy_user"
    UNSCOPED = "unscoped"
    ADMIN = "admin"
    MASKED = "masked"
    INCOMPLETE = "incomplete"
    ORGANIZATION_ID = "organization_id"
    PROJECT_ID = "project_id"
    OTHER_PROVIDER = "other_provider"
    TELEGRAM_BOT_TOKEN = "telegram_bot_token"
    SESSION_TOKEN = "session_token"
    SEVERAL_KEYS = "several_keys"
    NOT_A_KEY = "not_a_key"


VERIFIABLE_KINDS = frozenset(
    {PastedKind.PROJECT, PastedKind.SERVICE_ACCOUNT, PastedKind.LEGACY_USER, PastedKind.UNSCOPED}
)


@dataclass(frozen=True, slots=True)
class PastedText:
    """The verdict on one pasted message. Never holds the raw text; the key prints as a mask."""

    kind: PastedKind
    key: SecretKey | None = None  # set exactly when should_verify
    provider: str | None = None  # "OpenAI", "Anthropic", "Telegram", "ChatGPT" ... when known
    looks_secret: bool = False  # something in the text is, or might be, a live secret
    should_verify: bool = False
    shape_warning: str | None = None  # e.g. "this key is shorter than usual, so it may be cut off"


_LINE_BREAK_RE = re.compile(r"\r\n|\r|\n|\u2028|\u2029")
_KEY_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_LEADING_RUN_RE = re.compile(r"[A-Za-z0-9_-]+")
_MAX_WRAPPED_KEY = 400  # longer than any key: stop joining (and keep hostile input linear)
_NEW_TOKEN_PREFIXES = (*SECRET_PREFIXES, "org-", "proj_")  # a line starting so is a new token, not a tail
_WORD_RE = re.compile(r"[A-Za-z][a-z]{0,14}")  # "thanks", "Ok": a word typed after the key, not its tail


def _trailing_run(line: str) -> str | None:
    """The key characters ending ``line``; None when there are more than any key has."""
    start = len(line)
    while start > 0 and line[start - 1] in _KEY_CHARS:
        start -= 1
        if len(line) - start > _MAX_WRAPPED_KEY:
            return None
    return line[start:]


def _continues_key(line: str, following: str) -> bool:
    """Whether ``following`` is the wrapped-over rest of an ``sk-`` key ending ``line``."""
    tail = _trailing_run(line)
    head = _LEADING_RUN_RE.match(following)
    if not tail or head is None or head.end() > _MAX_WRAPPED_KEY:
        return False
    piece, rest = tail.lstrip("-_"), head.group()
    if not piece.startswith("sk-") or len(piece) < 4 or rest.lstrip("-_").startswith(_NEW_TOKEN_PREFIXES):
        return False
    if is_complete_openai_key(piece):
        return False
    return is_complete_openai_key(piece + rest) or not _WORD_RE.fullmatch(rest)


def _rejoin_wrapped_keys(text: str) -> str:
    """Undo line breaks inside a key (mobile clients and PDFs wrap long keys); other breaks stay."""
    lines = _LINE_BREAK_RE.split(text)
    if len(lines) == 1:
        return text
    out = [lines[0]]
    for line in lines[1:]:
        previous = out[-1].rstrip(" \t")
        following = line.lstrip(" \t")
        if _continues_key(previous, following):
            out[-1] = previous + following
        else:
            out.append(line)
    return "\n".join(out)


def normalise_pasted_text(text: str) -> str:
    """Zero-width characters removed and wrapped keys rejoined: the text the tokens are read from."""
    return _rejoin_wrapped_keys(strip_invisible(text))


def _verdict(text: str, token: TokenMatch) -> PastedText:
    kind = PastedKind(token.kind.value)
    if kind in VERIFIABLE_KINDS:
        key = SecretKey(text[token.start : token.end])
        return PastedText(kind, key, token.provider, True, True, token.shape_warning)
    return PastedText(kind, None, token.provider, token.kind.is_secret)


def inspect_pasted_text(text: str) -> PastedText:
    """Classify a pasted message offline. Never raises; never keeps the text."""
    clean = normalise_pasted_text(text)
    tokens = find_tokens(clean)
    keys: dict[str, TokenMatch] = {}
    for token in tokens:
        if token.kind.is_key:
            keys.setdefault(clean[token.start : token.end], token)  # the same key twice is one key
    looks_secret = any(token.kind.is_secret for token in tokens)
    if len(keys) > 1:
        return PastedText(PastedKind.SEVERAL_KEYS, looks_secret=True)
    if keys:
        return _verdict(clean, next(iter(keys.values())))
    for kind in (TokenKind.MASKED, TokenKind.INCOMPLETE, TokenKind.ORGANIZATION_ID, TokenKind.PROJECT_ID):
        found = next((t for t in tokens if t.kind is kind), None)
        if found is not None:
            return PastedText(PastedKind(kind.value), None, found.provider, looks_secret)
    return PastedText(PastedKind.NOT_A_KEY, looks_secret=looks_secret)
