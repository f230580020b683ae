"""The OpenAI endpoints DoubleTick may need, the key permission each one takes, and how to prove it.

Why a table: the operator names what DoubleTick's agent calls (``OPENAI_REQUIRED_CAPABILITIES``, e.g.
``models.read,chat.completions,responses``); step 1.6 lists exactly the permissions those need, and the
verifier probes each one, so a restricted key the bot calls valid also works inside DoubleTick.

Sources (checked with the search tool, corpus docs/pages, 2026-12):

* OpenAI help center, "Assign API Key Permissions" (help.openai.com/en/articles/8867743): three levels,
  **All** (default), **Restricted** ("choose specific API-key scopes for resources/endpoints ... None,
  Read, Write, or request-specific permissions") and **Read Only** ("Read permissions are set for all
  endpoints"); service-account keys get no permission controls in the creation dialog.
* The permission groups and the endpoints behind them, as the Restricted form shows them: Models
  (``/v1/models``, Read), Model capabilities (``/v1/chat/completions``, ``/v1/embeddings``, ``/v1/audio``,
  ``/v1/images``, ``/v1/moderations``, Request), Assistants, Threads, Files, Fine-tuning, Vector stores,
  Responses API (``/v1/responses``): trufflehog ``pkg/analyzer/analyzers/openai/scopes.go`` and
  muneebdev.com's walkthrough of the form; the scope strings OpenAI names in "Missing scopes: …":
  ``api.model.read`` (trufflehog, 403), ``model.request`` (community.openai.com/t/…/1374480, 401),
  ``api.responses.write`` (community.openai.com/t/…/1143672, anomalyco/opencode#21928),
  ``api.threads.read`` (community.openai.com/t/…/1378804); ``shared/reference/openai-keys.md`` §3 row 7.
* The Responses API also needs Model capabilities: Request: a key with only "/v1/responses: Write" is
  refused with "Missing scopes: model.request" (community.openai.com/t/…/1371602).
* Cheap proof: a POST with a body OpenAI rejects in validation answers 400 (415 for /v1/files) when the
  key holds the permission and 401 "Missing scopes" when it does not; nothing is created or billed
  (trufflehog scopes.go; reference §2 "Deliberately invalid body"). ``GET /v1/models`` is free.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["CAPABILITIES", "DEFAULT_CAPABILITIES", "PROBE_BODY", "SCOPE_PERMISSIONS", "Capability", "Probe",
           "parse_capabilities", "permissions_for", "permissions_of_scopes", "scopes_for"]


@dataclass(frozen=True, slots=True)
class Probe:
    """A request that succeeds or fails on the permission alone, without creating or billing anything."""

    method: str
    path: str  # under the API base URL (…/v1)
    invalid_body: bool = False  # send a body OpenAI rejects in validation (after the permission check)


@dataclass(frozen=True, slots=True)
class Capability:
    """One endpoint family DoubleTick may call."""

    name: str  # as written in OPENAI_REQUIRED_CAPABILITIES
    permission: str  # content key under [permissions]: OpenAI's name for the group and its level
    scopes: tuple[str, ...]  # what OpenAI names in "Missing scopes: …" when the key lacks it
    probe: Probe
    writes: bool  # needs more than OpenAI's "Read only" level gives


# The body every write probe sends: an argument no endpoint knows, so validation refuses it (400).
PROBE_BODY = {"doubletick_permission_probe": True}

CAPABILITIES: dict[str, Capability] = {
    c.name: c
    for c in (
        Capability("models.read", "models_read", ("api.model.read",), Probe("GET", "/models"), writes=False),
        Capability("chat.completions", "model_request", ("model.request",),
                   Probe("POST", "/chat/completions", invalid_body=True), writes=True),
        Capability("embeddings", "model_request", ("model.request",),
                   Probe("POST", "/embeddings", invalid_body=True), writes=True),
        Capability("moderations", "model_request", ("model.request",),
                   Probe("POST", "/moderations", invalid_body=True), writes=True),
        Capability("responses", "responses_write", ("api.responses.write", "model.request"),
                   Probe("POST", "/responses", invalid_body=True), writes=True),
        Capability("assistants", "assistants_write", ("api.assistants.write",),
                   Probe("POST", "/assistants", invalid_body=True), writes=True),
        Capability("threads", "threads_write", ("api.threads.write",),
                   Probe("POST", "/threads", invalid_body=True), writes=True),
        Capability("files", "files_write", ("api.files.write",),
                   Probe("POST", "/files", invalid_body=True), writes=True),
        Capability("vector_stores", "vector_stores_write", ("api.vector_stores.write",),
                   Probe("POST", "/vector_stores", invalid_body=True), writes=True),
    )
}
DEFAULT_CAPABILITIES: tuple[str, ...] = ("models.read", "chat.completions")


def parse_capabilities(names: Iterable[str]) -> tuple[str, ...]:
    """Validate and de-duplicate names, keeping their order; raises ValueError naming the unknown ones."""
    cleaned = [n.strip().lower() for n in names if n.strip()]
    unknown = [n for n in cleaned if n not in CAPABILITIES]
    if unknown:
        raise ValueError(f"unknown capabilities {', '.join(unknown)}; known: {', '.join(CAPABILITIES)}")
    if not cleaned:
        raise ValueError(f"name at least one capability; known: {', '.join(CAPABILITIES)}")
    return tuple(dict.fromkeys(cleaned))


def permissions_for(names: Iterable[str]) -> tuple[str, ...]:
    """The permission content keys the key must hold, in order, each once."""
    return tuple(dict.fromkeys(CAPABILITIES[n].permission for n in names if n in CAPABILITIES))


def scopes_for(names: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(s for n in names if n in CAPABILITIES for s in CAPABILITIES[n].scopes))


# Every scope string OpenAI may name, and the permission (content key) that grants it.
SCOPE_PERMISSIONS: dict[str, str] = {
    "api.model.read": "models_read",
    "model.request": "model_request",
    "api.responses.write": "responses_write",
    "api.assistants.write": "assistants_write",
    "api.threads.write": "threads_write",
    "api.files.write": "files_write",
    "api.vector_stores.write": "vector_stores_write",
}


def permissions_of_scopes(scopes: str | None) -> tuple[str, ...]:
    """The permissions behind OpenAI's "Missing scopes: a, b" list (unknown scopes are left out)."""
    names = [s.strip() for s in (scopes or "").replace(",", " ").split()]
    return tuple(dict.fromkeys(SCOPE_PERMISSIONS[n] for n in names if n in SCOPE_PERMISSIONS))
