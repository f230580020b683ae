"""Verify a pasted OpenAI key: does it authenticate, see the model we need, and have credit?

Why a classifier and not a boolean: OpenAI answers 401 for an unknown key but also for a restricted
key, a deactivated account, a user without an organization and an IP allowlist; 429 means both
"throttled, retry" and "no credit, don't". The bot must tell the user which, so every answer is
classified by ``error.code`` first, then by the message text, and only then by status; a network
failure or 5xx is INDETERMINATE, never INVALID. Sources: ``shared/reference/openai-keys.md`` section 3
(outcome table) and section 8 (decision procedure); the error-codes guide
(developers.openai.com/docs/guides/error-codes); the API reference for ``GET /v1/models``,
``GET /v1/models/{model}`` and ``POST /v1/chat/completions``.

The probes (section 2 of the reference), sent concurrently so verification costs one round trip:

1. ``GET /models``: authenticates the key (needs ``api.model.read`` on restricted keys). Free.
2. ``GET /models/{id}`` per required model: 404/403 ``model_not_found`` means not available. Free.
   (1 and 2 run when ``models.read`` is a required capability.)
2b. One permission probe per other required capability (``OPENAI_REQUIRED_CAPABILITIES``, see
   ``flows/capabilities.py``): a POST whose body OpenAI refuses in validation. 400 (415 for files) means
   the key holds the permission, 401/403 "Missing scopes" means it does not: reported as
   ``missing_scope`` naming it, whether or not the billed probe runs. Free: nothing is created or billed.
3. Optionally, a billed ``POST /chat/completions`` with ``max_completion_tokens=1`` (``max_tokens`` is
   deprecated in the API reference and rejected by o-series models): the only request that surfaces
   ``insufficient_quota``, spend limits, ``billing_not_active`` and the ``model.request`` scope.

When several probes fail, the earliest in that order decides. Requests carry ``Authorization: Bearer``
only: no ``OpenAI-Organization``/``OpenAI-Project`` (they cause ``mismatched_organization``), and no
retries (the caller decides whether a RATE_LIMITED or INDETERMINATE key is tried again).

Exceptions (used inside :meth:`OpenAIVerifier.verify`, which returns them as results; they carry a
:class:`VerificationResult` and never key material)::

    VerifierError
     ├── VerifierTransportError   no usable HTTP exchange: timeout, refused, reset
     └── VerifierResponseError    OpenAI answered with an error, or a body we cannot read
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any
from urllib.parse import quote

import httpx

from bot.services.bounded import (
    OPENAI_CONNECTIONS,
    QUEUE_WAIT_S,
    InFlight,
    UnreadableResponse,
    outbound_client,
    send_bounded,
)
from bot.services.upstream_text import (
    safe_code,
    safe_echo,
    safe_model,
    safe_request_id,
    safe_scopes,
    scrub,
)
from flows.capabilities import CAPABILITIES, DEFAULT_CAPABILITIES, PROBE_BODY, Capability, parse_capabilities
from flows.outcomes import VerificationOutcome, VerificationResult
from flows.secret import SecretKey

__all__ = [
    "DEFAULT_BASE_URL",
    "OpenAIVerifier",
    "VerifierError",
    "VerifierResponseError",
    "VerifierTransportError",
    "classify_error_response",
]

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_REQUIRED_MODELS: tuple[str, ...] = ("gpt-4o-mini",)

# The billed probe costs ~9 prompt tokens + 1 output token on gpt-4o-mini, about $0.000002 at list
# prices; what the user is told about it lives in flows/content (probe_notes).

Outcome = VerificationOutcome
# A permission probe's body is refused in validation: 400 (415 for /v1/files, which wants multipart).
PERMITTED_STATUSES = frozenset({400, 415, 422})


class VerifierError(Exception):
    """A probe that did not succeed; ``result`` is the verdict it implies."""

    def __init__(self, result: VerificationResult) -> None:
        super().__init__(
            f"{result.outcome.value} (http_status={result.http_status}, request_id={result.request_id})"
        )
        self.result = result


class VerifierTransportError(VerifierError):
    """No usable HTTP exchange with OpenAI (timeout, connection refused or reset)."""


class VerifierResponseError(VerifierError):
    """OpenAI answered with an error status, or with a body that is not the JSON we expect."""


# -- classification -----------------------------------------------------------------------------------

_NO_CREDIT_CODES = frozenset(
    {
        "insufficient_quota",
        "credit_balance_exhausted",
        "organization_spend_limit_exceeded",
        "project_spend_limit_exceeded",
        "organization_usage_limit_exceeded",
        "billing_hard_limit_reached",
    }
)
_CODE_OUTCOMES: dict[str, Outcome] = {
    "invalid_api_key": Outcome.INVALID,
    "missing_scope": Outcome.MISSING_SCOPE,
    "account_deactivated": Outcome.ACCOUNT_DEACTIVATED,
    "no_organization": Outcome.NO_ORGANIZATION,
    "billing_not_active": Outcome.BILLING_INACTIVE,
    "unsupported_country_region_territory": Outcome.REGION_BLOCKED,
    "ip_not_authorized": Outcome.IP_NOT_ALLOWED,
    "rate_limit_exceeded": Outcome.RATE_LIMITED,
    "slow_down": Outcome.RATE_LIMITED,
    "model_not_found": Outcome.MODEL_NOT_AVAILABLE,
    "mismatched_organization": Outcome.INDETERMINATE,  # our header, not the key (row 5)
} | {code: Outcome.NO_CREDIT for code in _NO_CREDIT_CODES}

# Message fragments for bodies whose code is null or unknown, checked in this order (rows 1-20).
_MESSAGE_OUTCOMES: tuple[tuple[re.Pattern[str], Outcome, str | None], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), outcome, detail)
    for pattern, outcome, detail in (
        (r"Missing scopes?:", Outcome.MISSING_SCOPE, None),
        (r"Incorrect API key provided", Outcome.INVALID, None),
        (r"OpenAI-Organization header should match", Outcome.INDETERMINATE, "mismatched_organization"),
        (
            r"associated with a deactivated account|account .*has been deactivated",
            Outcome.ACCOUNT_DEACTIVATED,
            None,
        ),
        (r"must be a member of an organization", Outcome.NO_ORGANIZATION, None),
        (r"\bIP\b.*not (?:been )?authori[sz]ed|IP allowlist", Outcome.IP_NOT_ALLOWED, None),
        (r"Country, region, or territory not supported", Outcome.REGION_BLOCKED, None),
        (r"exceeded your current quota", Outcome.NO_CREDIT, "insufficient_quota"),
        (r"account is not active.*billing", Outcome.BILLING_INACTIVE, None),
        (r"Rate limit reached|slow down", Outcome.RATE_LIMITED, None),
        (
            r"does not have access to model|does not exist or you do not have access|"
            r"must be verified to use the model",
            Outcome.MODEL_NOT_AVAILABLE,
            None,
        ),
    )
)
_TYPE_OUTCOMES: dict[str, tuple[Outcome, str | None]] = {  # last resort: help 6614457
    "insufficient_quota": (Outcome.NO_CREDIT, "insufficient_quota"),
    "billing_not_active": (Outcome.BILLING_INACTIVE, None),
}

_SCOPES_RE = re.compile(r"Missing scopes?:\s*(.+?)(?:\.(?:\s|$)|$)", re.IGNORECASE)
_ECHO_RE = re.compile(r"Incorrect API key provided:\s*(.*?)\.?\s+You can find", re.IGNORECASE | re.DOTALL)
_MODEL_RE = re.compile(r"model `([^`]+)`")
# An IP allowlist refusal that names the refused address: the customer must add exactly that one.
_IP_RE = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b|\b(?:[0-9a-f]{1,4}:){2,7}[0-9a-f]{1,4}\b", re.IGNORECASE)
_TRY_AGAIN_RE = re.compile(r"try again in ((?:\d+(?:\.\d+)?(?:ms|h|m|s))+)", re.IGNORECASE)
_DURATION_PART_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def _parse_error(body: bytes) -> tuple[str | None, str, str | None] | None:
    """(code, message, type) from an OpenAI error body; None when it is not JSON at all."""
    try:
        data: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        code, message, type_ = error.get("code"), error.get("message"), error.get("type")
    elif isinstance(error, str):  # seen for scope errors (community thread 1345041)
        code, message, type_ = None, error, None
    elif isinstance(data, dict):
        code, message, type_ = data.get("code"), data.get("message"), data.get("type")
    else:
        code, message, type_ = None, None, None
    return (
        str(code) if code not in (None, "") else None,
        message if isinstance(message, str) else "",
        type_ if isinstance(type_, str) else None,
    )


def _retry_after(headers: httpx.Headers, message: str) -> float | None:
    """Seconds to wait: ``retry-after-ms``, ``Retry-After`` (seconds or date), then "try again in 20s"."""
    try:
        if "retry-after-ms" in headers:
            return max(0.0, float(headers["retry-after-ms"]) / 1000)
    except ValueError:
        pass
    value = headers.get("retry-after")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(value)
                return max(0.0, when.timestamp() - time.time())
            except (TypeError, ValueError):
                pass
    match = _TRY_AGAIN_RE.search(message)
    if match:
        return sum(float(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART_RE.findall(match.group(1)))
    return None


def _scopes(message: str, key: SecretKey | None) -> str | None:
    match = _SCOPES_RE.search(message)
    if not match:
        return None
    return safe_scopes([s for s in re.split(r"[\s,]+", match.group(1)) if s], key)


def _echo(message: str, key: SecretKey | None) -> str | None:
    """OpenAI's masked echo of the key, e.g. ``sk-proj-****abcd``; our own mask if it is not masked.

    OpenAI echoes short strings verbatim, so an echo without asterisks could be the plaintext.
    """
    match = _ECHO_RE.search(message)
    if not match:
        return None
    return safe_echo(match.group(1).strip(), key)


def _model_in(message: str, key: SecretKey | None) -> str | None:
    match = _MODEL_RE.search(message)
    return safe_model(match.group(1), key) if match else None


def classify_error_response(
    response: httpx.Response,
    *,
    key: SecretKey | None = None,
    model: str | None = None,
) -> VerificationResult:
    """Classify one non-2xx OpenAI response (reference section 3). Pure: no I/O.

    ``key`` is removed from the body before anything reads it (see :mod:`bot.services.upstream_text`);
    ``model`` names the model a probe asked for. Every detail is in a whitelisted format.
    """
    status = response.status_code
    request_id = safe_request_id(response.headers.get("x-request-id"))
    parsed = _parse_error(response.content)
    code, message, type_ = parsed if parsed is not None else (None, "", None)
    message = scrub(message, key)
    retry_after = _retry_after(response.headers, message)

    def result(outcome: Outcome, detail: str | None = None) -> VerificationResult:
        return VerificationResult(
            outcome=outcome,
            detail=detail,
            request_id=request_id,
            http_status=status,
            retry_after_s=retry_after if outcome in (Outcome.RATE_LIMITED, Outcome.INDETERMINATE) else None,
        )

    if status >= 500 or parsed is None:  # rows 21, 23: OpenAI trouble or a proxy, key not judged
        return result(Outcome.INDETERMINATE, safe_code(code, key) or f"http_{status}")

    outcome: Outcome | None = _CODE_OUTCOMES.get(code) if code else None
    detail: str | None = None
    if outcome is None and code and code.endswith(("_spend_limit_exceeded", "_usage_limit_exceeded")):
        outcome = Outcome.NO_CREDIT
    if outcome is None:
        for pattern, candidate, fixed_detail in _MESSAGE_OUTCOMES:
            if pattern.search(message):
                outcome, detail = candidate, fixed_detail
                break
    if outcome is None and type_ in _TYPE_OUTCOMES:
        outcome, detail = _TYPE_OUTCOMES[type_]
    if outcome is None:  # unknown answer: never judge the key on it
        return result(Outcome.INDETERMINATE, safe_code(code, key) or f"http_{status}")

    if outcome is Outcome.INVALID:
        detail = _echo(message, key)
    elif outcome is Outcome.MISSING_SCOPE:
        detail = _scopes(message, key)
    elif outcome is Outcome.NO_CREDIT:
        known = code in _NO_CREDIT_CODES or (code and code.endswith("_exceeded"))
        detail = (safe_code(code, key) or detail) if known else detail
    elif outcome is Outcome.MODEL_NOT_AVAILABLE:
        detail = safe_model(model, key) or _model_in(message, key)
    elif outcome is Outcome.IP_NOT_ALLOWED:  # an address in its own format (the pattern), never free text
        found = _IP_RE.search(message)
        detail = found.group(0) if found else None
    elif outcome is Outcome.INDETERMINATE:
        detail = detail or safe_code(code, key)
    return result(outcome, detail)


# -- the verifier -------------------------------------------------------------------------------------


class OpenAIVerifier:
    """Runs the verification probes against OpenAI (or a stand-in) and returns one verdict."""

    def __init__(
        self,
        *,
        base_url: str = DEFAULT_BASE_URL,
        required_models: Sequence[str] | None = None,
        required_capabilities: Sequence[str] | None = None,
        billed_probe: bool = True,
        probe_model: str | None = None,
        timeout: float = 10.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.required_models: tuple[str, ...] = (
            DEFAULT_REQUIRED_MODELS if required_models is None else tuple(required_models)
        )
        self.required_capabilities: tuple[str, ...] = parse_capabilities(
            DEFAULT_CAPABILITIES if required_capabilities is None else required_capabilities)
        self.billed_probe = billed_probe
        self.probe_model = probe_model or (self.required_models[0] if self.required_models else "gpt-4o-mini")
        self.timeout = timeout
        self._owns_client = client is None
        self._client = client or outbound_client(OPENAI_CONNECTIONS)
        # A burst of pastes waits here (up to QUEUE_WAIT_S), not in httpcore's pool (bot/services/bounded.py).
        self._gate = InFlight(OPENAI_CONNECTIONS, wait_s=QUEUE_WAIT_S)

    async def aclose(self) -> None:
        """Close the HTTP client if this verifier created it."""
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> OpenAIVerifier:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def verify(self, key: SecretKey) -> VerificationResult:
        """Classify ``key``: VALID, or the first problem found (see the module docstring)."""
        probes = []
        if "models.read" in self.required_capabilities:
            probes.append(self._list_models(key))
            probes += [self._retrieve_model(key, model) for model in self.required_models]
        probes += [self._permission(key, CAPABILITIES[name]) for name in self.required_capabilities
                   if CAPABILITIES[name].probe.invalid_body]
        if self.billed_probe:
            probes.append(self._billed_request(key))
        outcomes = await asyncio.gather(*probes, return_exceptions=True)
        verdict: VerificationResult | None = None
        last_request_id: str | None = None
        for outcome in outcomes:  # in probe order: the earliest failure decides
            if isinstance(outcome, VerifierError):
                verdict = outcome.result
                break
            if isinstance(outcome, BaseException):
                raise outcome  # a bug, not an OpenAI answer
            last_request_id = outcome or last_request_id
        if verdict is None:
            verdict = VerificationResult(outcome=Outcome.VALID, request_id=last_request_id, http_status=200)
        logger.info(
            "openai verification: outcome=%s http_status=%s request_id=%s",
            verdict.outcome.value,
            verdict.http_status,
            verdict.request_id,
        )
        return verdict

    # -- probes: each returns the x-request-id of a successful answer or raises VerifierError -------

    async def _list_models(self, key: SecretKey) -> str | None:
        response = await self._send("GET", "/models", key)
        data = self._json_or_raise(response)
        if not isinstance(data, dict) or not isinstance(data.get("data"), list):
            raise self._unreadable(response)
        return safe_request_id(response.headers.get("x-request-id"))

    async def _retrieve_model(self, key: SecretKey, model: str) -> str | None:
        response = await self._send("GET", f"/models/{quote(model, safe='')}", key, model=model)
        if not isinstance(self._json_or_raise(response), dict):
            raise self._unreadable(response)
        return safe_request_id(response.headers.get("x-request-id"))

    async def _permission(self, key: SecretKey, capability: Capability) -> str | None:
        """Prove one permission without side effects: OpenAI checks scopes before it validates the body."""
        probe = capability.probe
        try:
            response = await self._send(probe.method, probe.path, key, json_body=dict(PROBE_BODY),
                                        accept=PERMITTED_STATUSES)
        except VerifierResponseError as refused:
            result = refused.result
            if result.outcome is Outcome.MISSING_SCOPE and not result.detail:  # name it even if OpenAI did not
                result = replace(result, detail=", ".join(capability.scopes))
                raise VerifierResponseError(result) from None
            raise
        return response.headers.get("x-request-id")

    async def _billed_request(self, key: SecretKey) -> str | None:
        body = {
            "model": self.probe_model,
            "messages": [{"role": "user", "content": "hi"}],
            "max_completion_tokens": 1,
        }
        response = await self._send("POST", "/chat/completions", key, model=self.probe_model, json_body=body)
        data = self._json_or_raise(response)
        if not isinstance(data, dict) or "choices" not in data:
            raise self._unreadable(response)
        return safe_request_id(response.headers.get("x-request-id"))

    async def _send(
        self,
        method: str,
        path: str,
        key: SecretKey,
        *,
        model: str | None = None,
        json_body: dict[str, Any] | None = None,
        accept: frozenset[int] = frozenset(),
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key.reveal()}", "Accept": "application/json"}
        try:
            response = await send_bounded(
                self._client,
                method,
                self.base_url + path,
                gate=self._gate,
                headers=headers,
                json=json_body,
                timeout=self.timeout,
            )
        except UnreadableResponse as exc:  # over 1 MiB, or a broken gzip body: never a verdict on the key
            unreadable = VerificationResult(Outcome.INDETERMINATE, detail=exc.detail, http_status=exc.status)
            raise VerifierResponseError(unreadable) from None
        except httpx.TimeoutException:
            timed_out = VerificationResult(Outcome.INDETERMINATE, detail="timeout")
            raise VerifierTransportError(timed_out) from None
        except httpx.TransportError as exc:
            detail = f"connection_error:{type(exc).__name__}"
            raise VerifierTransportError(VerificationResult(Outcome.INDETERMINATE, detail=detail)) from None
        if not response.is_success and response.status_code not in accept:
            raise VerifierResponseError(classify_error_response(response, key=key, model=model))
        return response

    @staticmethod
    def _json_or_raise(response: httpx.Response) -> Any:
        try:
            return json.loads(response.content)
        except (ValueError, UnicodeDecodeError):
            raise OpenAIVerifier._unreadable(response) from None

    @staticmethod
    def _unreadable(response: httpx.Response) -> VerifierResponseError:
        """A 2xx that is not OpenAI's JSON: a proxy or a wrong base URL (row 23)."""
        return VerifierResponseError(
            VerificationResult(
                Outcome.INDETERMINATE,
                detail="unexpected_response",
                request_id=safe_request_id(response.headers.get("x-request-id")),
                http_status=response.status_code,
            )
        )
