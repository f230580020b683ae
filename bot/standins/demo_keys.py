"""Demo OpenAI keys for the try-it mode and the README: one per verification outcome.

Why: a user (or a reviewer) should be able to see every answer the bot gives, offline, by pasting a
key. Each key has the shape of a real one, so the bot's paste inspection treats it like the real
thing: project keys are ``sk-proj-`` + 20 + ``T3BlbkFJ`` + 20 characters (56 in all, ``[A-Za-z0-9]``,
the first project-key format in ``shared/reference/openai-keys.md`` section 1.1), and the
service-account key uses the current format, ``sk-svcacct-`` + 74 + ``T3BlbkFJ`` + 74 (167). The first
characters after the prefix say what the key does (``sk-proj-DemoNoCredit…``); the rest are fixed
filler derived from that hint, so the keys never change between runs.

They only mean something to the local stand-in (:func:`register_demo_keys`); real OpenAI answers
401 ``invalid_api_key`` to all of them. The source spells the marker as two halves so secret scanners
(GitHub push protection, gitleaks) do not mistake this file for a leak.
"""

from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass
from typing import Protocol

__all__ = ["DEMO_KEYS", "DemoKey", "demo_keys_markdown", "register_demo_keys"]

_MARKER = "T3Blbk" + "FJ"  # base64("OpenAI"): every OpenAI secret key carries it
_ALNUM = string.ascii_letters + string.digits


class _Registry(Protocol):
    def register(self, key: str, behaviour: str, *, times: int = 1) -> str: ...


@dataclass(frozen=True, slots=True)
class DemoKey:
    """A fake key, the stand-in behaviour it triggers, and what the user should see."""

    key: str
    behaviour: str
    description: str


def _filler(seed: str, length: int) -> str:
    digest = hashlib.sha256(seed.encode()).digest()
    while len(digest) < length:
        digest += hashlib.sha256(digest).digest()
    return "".join(_ALNUM[b % len(_ALNUM)] for b in digest[:length])


def _key(prefix: str, hint: str, half: int) -> str:
    """``prefix`` + ``hint`` padded to ``half`` + marker + ``half`` filler characters."""
    if len(hint) > half or not hint.isalnum():
        raise ValueError(f"hint {hint!r} must be alphanumeric and at most {half} characters")
    head = hint + _filler(prefix + hint + "/head", half - len(hint))
    return f"{prefix}{head}{_MARKER}{_filler(prefix + hint + '/tail', half)}"


def _project(hint: str) -> str:
    return _key("sk-proj-", hint, 20)


DEMO_KEYS: dict[str, DemoKey] = {
    "valid": DemoKey(
        _project("DemoValid"), "valid", "Works: verification passes and the key can be connected."
    ),
    "invalid": DemoKey(
        _project("DemoRevoked"),
        "invalid",
        "OpenAI does not recognise it (a typo, or revoked after a leak): create a new key.",
    ),
    "missing_scope": DemoKey(
        _project("DemoMissingScope"),
        "missing_scope_models",
        "A restricted key without Models: Read (api.model.read).",
    ),
    "missing_request_scope": DemoKey(
        _project("DemoNoRequestScope"),
        "missing_scope_request",
        "A restricted key without Model capabilities: Request (model.request).",
    ),
    "read_only": DemoKey(
        _project("DemoReadOnly"),
        "read_only",
        "A key with OpenAI's Read only permissions: it can list models but not send requests.",
    ),
    "missing_responses_scope": DemoKey(
        _project("DemoNoResponsesScope"),
        "missing_scope_responses",
        "A restricted key without Responses: Write (refused if OPENAI_REQUIRED_CAPABILITIES has responses).",
    ),
    "account_deactivated": DemoKey(
        _project("DemoDeactivated"),
        "account_deactivated",
        "The OpenAI account behind the key is deactivated.",
    ),
    "no_organization": DemoKey(
        _project("DemoNoOrganization"),
        "no_organization",
        "The key's owner is no longer a member of an OpenAI organization.",
    ),
    "no_credit": DemoKey(
        _project("DemoNoCredit"),
        "insufficient_quota",
        "The key is fine but the account has no credit left (insufficient_quota).",
    ),
    "billing_inactive": DemoKey(
        _project("DemoBillingInactive"),
        "billing_not_active",
        "The key is fine but the account's billing is not active.",
    ),
    "model_not_available": DemoKey(
        _project("DemoModelNotAllowed"),
        "model_not_available",
        "The key's project is not allowed to use the model DoubleTick needs.",
    ),
    "region_blocked": DemoKey(
        _project("DemoRegionBlocked"),
        "region_blocked",
        "OpenAI refuses requests from our server's region: the key was not judged.",
    ),
    "ip_not_allowed": DemoKey(
        _project("DemoIpNotAllowed"),
        "ip_not_allowed",
        "The key's project has an IP allowlist that does not include our server.",
    ),
    "rate_limited": DemoKey(
        _project("DemoRateLimited"),
        "rate_limited",
        "OpenAI is rate-limiting the key: the first check says retry, the next passes.",
    ),
    "openai_down": DemoKey(
        _project("DemoOpenAIDown"),
        "server_error",
        "OpenAI answers 500: the key could not be checked (indeterminate, try later).",
    ),
    "service_account_valid": DemoKey(
        _key("sk-svcacct-", "DemoServiceAccount", 74),
        "valid",
        "A service-account key (current 167-character format) that works.",
    ),
}


def register_demo_keys(fake_openai: _Registry) -> None:
    """Teach a stand-in (``FakeOpenAI``) every demo key."""
    for demo in DEMO_KEYS.values():
        fake_openai.register(demo.key, demo.behaviour)


def demo_keys_markdown() -> str:
    """The table for the README, generated so it can never drift from the keys themselves."""
    rows = ["| Name | Key | What happens |", "|---|---|---|"]
    rows += [f"| {name} | `{demo.key}` | {demo.description} |" for name, demo in DEMO_KEYS.items()]
    return "\n".join(rows)
