"""Text from OpenAI and DoubleTick, made safe to classify, store and show.

Why: an error body is written by whoever answers, and a proxy (or a hostile OpenAI stand-in) can echo the
caller's key in ``error.code``, in "Missing scopes: …", in "model `…`" or in a "starred" echo that stars
nothing. Whatever a detail becomes lands in ``conversation.state.problem_detail`` and in the
``editMessageText`` body that shows the problem. So bodies are scrubbed before they are classified (the
pasted key, any piece of it of 8+ characters and any key-shaped string are removed), and a detail is
kept only in a whitelisted format: scope names, model ids, known error codes, OpenAI's masked echo, a
hex request id, a plain sentence from DoubleTick. Anything else becomes a generic detail (None, or one
the caller chooses), so no format an attacker invents can carry key text to the user or the database.
"""

from __future__ import annotations

import re

from bot.redaction import redact
from flows.inspection import might_carry_secret, normalise_pasted_text
from flows.secret import SecretKey

__all__ = [
    "KNOWN_OPENAI_CODES",
    "REMOVED",
    "safe_code",
    "safe_echo",
    "safe_message",
    "safe_model",
    "safe_request_id",
    "safe_scopes",
    "scrub",
]

REMOVED = "<removed>"
_PIECE = 12  # a piece of the pasted key this long is the key's, not a coincidence (the leak scanner's size)
_RUN_RE = re.compile(f"[A-Za-z0-9_-]{{{_PIECE},}}")
_FAMILY_PREFIX_RE = re.compile(r"sk-(?:proj-|svcacct-|service-|admin-|None-)?")

# every code the classifier knows (reference section 3) plus OpenAI's generic ones
KNOWN_OPENAI_CODES = frozenset({
    "invalid_api_key", "missing_scope", "account_deactivated", "no_organization", "billing_not_active",
    "unsupported_country_region_territory", "ip_not_authorized", "rate_limit_exceeded", "slow_down",
    "model_not_found", "mismatched_organization", "insufficient_quota", "credit_balance_exhausted",
    "organization_spend_limit_exceeded", "project_spend_limit_exceeded", "organization_usage_limit_exceeded",
    "billing_hard_limit_reached", "server_error", "internal_error", "service_unavailable", "engine_overloaded",
    "server_is_overloaded",
    "invalid_request_error", "unexpected_response", "timeout", "context_length_exceeded",
})
_EXCEEDED_CODE_RE = re.compile(r"[a-z]+(?:_[a-z]+){0,5}_(?:exceeded|reached)")
_SCOPE_RE = re.compile(r"[a-z]+(?:[._][a-z]+){1,5}")  # api.model.read, model.request, api.responses.write
_MODEL_RE = re.compile(r"[a-z0-9][a-z0-9.-]{0,47}(?::[a-z0-9._-]{1,40}){0,4}")  # gpt-4o-mini, ft:gpt-4o:acme:x
# OpenAI's echo: the family prefix, at most a few characters, stars, and the last four
_ECHO_RE = re.compile(r"(sk-(?:proj-|svcacct-|service-|admin-|None-)?)([A-Za-z0-9]{0,5})\*{4,}([A-Za-z0-9_-]{4})")
_REQUEST_ID_RE = re.compile(r"req_[0-9a-f]{16,64}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_SENTENCE_RE = re.compile(r"[A-Za-z0-9 .,;:'\"()/_-]{1,200}")
_RANDOM_WORD_RE = re.compile(r"(?=[A-Za-z0-9_-]*[0-9])(?=[A-Za-z0-9_-]*[A-Za-z])[A-Za-z0-9_-]{12,}")


def _key_pieces(key: SecretKey) -> frozenset[str]:
    plaintext = key.reveal()
    prefix = _FAMILY_PREFIX_RE.match(plaintext)
    body = plaintext[prefix.end() if prefix else 0 :]
    return frozenset(body[i : i + _PIECE] for i in range(max(0, len(body) - _PIECE + 1)))


def _holds_a_piece(run: str, pieces: frozenset[str]) -> bool:
    return any(run[i : i + _PIECE] in pieces for i in range(len(run) - _PIECE + 1))


def scrub(text: str, key: SecretKey | None = None) -> str:
    """``text`` without the pasted key (whole, in pieces of 8+ characters, or split by separators) and
    without any other key-shaped string. What the classifier reads."""
    if key is not None:
        pieces = _key_pieces(key)
        text = _RUN_RE.sub(lambda m: REMOVED if _holds_a_piece(m.group(), pieces) else m.group(), text)
        clean = normalise_pasted_text(text, escaped=True)
        if clean != text and any(_holds_a_piece(m.group(), pieces) for m in _RUN_RE.finditer(clean)):
            text = _RUN_RE.sub(lambda m: REMOVED if _holds_a_piece(m.group(), pieces) else m.group(), clean)
    return redact(text)


def _innocent(value: str, key: SecretKey | None) -> bool:
    """Not key-shaped, and no piece of the pasted key in it (as is or once separators are removed)."""
    if might_carry_secret(value):
        return False
    if key is None:
        return True
    pieces = _key_pieces(key)
    folded = normalise_pasted_text(value, escaped=True)
    return not any(_holds_a_piece(m.group(), pieces) for text in (value, folded) for m in _RUN_RE.finditer(text))


def safe_code(code: str | None, key: SecretKey | None = None) -> str | None:
    """An error code we know (or an ``…_exceeded`` quota code), else None."""
    if code is None or len(code) > 64:
        return None
    if code in KNOWN_OPENAI_CODES or (_EXCEEDED_CODE_RE.fullmatch(code) and _innocent(code, key)):
        return code
    return None


def safe_scopes(scopes: list[str], key: SecretKey | None = None) -> str | None:
    """The scope names that look like scope names (``api.model.read``), joined; None if none do."""
    kept = [s for s in scopes if len(s) <= 64 and _SCOPE_RE.fullmatch(s) and _innocent(s, key)]
    return ", ".join(dict.fromkeys(kept)) or None


def safe_model(model: str | None, key: SecretKey | None = None) -> str | None:
    """A model id in OpenAI's format (lower case: ``gpt-4o-mini``, ``o3``, ``ft:…``), else None."""
    if model is None or len(model) > 128 or not _MODEL_RE.fullmatch(model):
        return None
    return model if _innocent(model, key) else None


def safe_echo(echo: str, key: SecretKey | None) -> str | None:
    """OpenAI's masked echo (``sk-proj-****…abcd``) when it is one and agrees with the pasted key; else
    our own mask of the key (None without a key)."""
    match = _ECHO_RE.fullmatch(echo)
    if match is not None and key is not None:
        plaintext = key.reveal()
        prefix, head, tail = match.groups()
        if plaintext.startswith(prefix + head) and plaintext.endswith(tail):
            return echo
    return key.masked if key is not None else None


def safe_request_id(request_id: str | None) -> str | None:
    """``req_`` + hex, or a UUID: what OpenAI and proxies send; anything else is dropped."""
    return request_id if request_id is not None and _REQUEST_ID_RE.fullmatch(request_id) else None


def safe_message(message: str | None, key: SecretKey | None = None) -> str | None:
    """A plain sentence (letters, digits, spaces, simple punctuation; no random-looking words), after
    scrubbing; None for anything else."""
    if not message:
        return None
    message = " ".join(scrub(message, key).split())
    if not _SENTENCE_RE.fullmatch(message) or _RANDOM_WORD_RE.search(message) or REMOVED in message:
        return None
    return message if _innocent(message, key) else None
