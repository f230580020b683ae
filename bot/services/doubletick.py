"""Connect a verified OpenAI key to a DoubleTick workspace (and disconnect it).

Why configuration and not constants: DoubleTick's public API (docs.doubletick.io, base URL
``https://public.doubletick.io``) documents messaging, templates, chats and webhooks but no endpoint
that stores a workspace's OpenAI key; today a user pastes the key in Settings → Integrations → OpenAI.
So the path and the operator credential are configuration, and with either missing the connector
answers NOT_CONFIGURED without sending anything (the bot then walks the user through the manual step).

The request shape follows DoubleTick's documented conventions:

* ``Authorization: <api key>``: the raw key, no ``Bearer`` (security scheme ``apiKey`` in header
  ``Authorization`` in the "DoubleTick Public APIs" OpenAPI; curl sample on docs.doubletick.io);
* errors as ``{"message", "error", "statusCode"}``, ``message`` a string or a list of validation
  messages; 401 ``"Invalid public api key"`` for a bad credential (docs.doubletick.io/docs/
  get-wallet-balance; 400 "Incorrect payload" schema in the same OpenAPI).

Chosen for the integration endpoint (``connect_path``, e.g. ``/v1/integrations/openai``)::

    POST   {connect_path}                 connect
           Authorization: <operator key>
           Idempotency-Key: <caller's key, the same on every retry>
           {"workspaceId": "...", "apiKey": "sk-...", "keyFingerprint": "hmac-sha256:<hex>"}
    DELETE {connect_path}/{workspaceId}   disconnect (same two headers, no body)

``keyFingerprint`` is HMAC-SHA256 of the key under ``FINGERPRINT_SECRET`` (the keyed fingerprint the bot
stores, so support can match DoubleTick's record to the bot's without either side holding the key), or
absent without that secret. Never an unkeyed SHA-256: keys have a known shape, and a plain hash of one is
a cheap oracle for anyone who sees the request or DoubleTick's logs (issue 10).
``Idempotency-Key`` (the IETF httpapi draft, as Stripe uses it) makes a
redelivered Telegram update or a retry after a timeout connect once, not twice.

Outcomes: 2xx → CONNECTED / DISCONNECTED; 401/403 → CREDENTIAL_REJECTED (our credential: an operator
problem); 400/422 and other 4xx → VALIDATION_ERROR with DoubleTick's ``message``; 408/429/5xx,
timeouts and connection errors are retried with exponential backoff (tenacity), honouring
``Retry-After``, and end as TRANSIENT if they persist.

Exceptions (raised between attempts, returned as results; never carry key material)::

    ConnectorError
     ├── ConnectorTransportError   no usable HTTP exchange (retryable)
     └── ConnectorResponseError    DoubleTick answered with an error status (retryable if 408/429/5xx)
"""

from __future__ import annotations

import email.utils
import json
import logging
import time
from typing import Any
from urllib.parse import quote

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt
from tenacity.stop import stop_base
from tenacity.wait import wait_base, wait_exponential_jitter

from bot.services.bounded import InFlight, UnreadableResponse, outbound_client, send_bounded
from bot.services.upstream_text import safe_message
from flows.outcomes import ConnectionOutcome, ConnectionResult
from flows.secret import SecretKey
from storage.fingerprint import fingerprint

__all__ = [
    "DEFAULT_BASE_URL",
    "ConnectorError",
    "ConnectorResponseError",
    "ConnectorTransportError",
    "DoubleTickConnector",
]

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://public.doubletick.io"
_RETRYABLE_STATUSES = frozenset({408, 429})


class ConnectorError(Exception):
    """An attempt that did not succeed; ``result`` is the verdict if no attempt is left."""

    retryable: bool = False

    def __init__(self, result: ConnectionResult, *, retryable: bool = False) -> None:
        super().__init__(f"{result.outcome.value} (http_status={result.http_status})")
        self.result = result
        self.retryable = retryable


class ConnectorTransportError(ConnectorError):
    """No usable HTTP exchange with DoubleTick (timeout, connection refused or reset)."""


class ConnectorResponseError(ConnectorError):
    """DoubleTick answered with an error status."""


def _message(response: httpx.Response, key: SecretKey | None) -> str | None:
    """DoubleTick's ``message`` (a string or a list of validation messages) when it is a plain sentence
    with no key text in it (see :mod:`bot.services.upstream_text`); None otherwise."""
    try:
        data: Any = json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        return None
    message = data.get("message") if isinstance(data, dict) else None
    if isinstance(message, list):
        message = "; ".join(str(item) for item in message)
    return safe_message(message, key) if isinstance(message, str) and message else None


def _retry_after(headers: httpx.Headers) -> float | None:
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


class _WaitRetryAfterOrBackoff(wait_base):
    """Exponential backoff with jitter, but never shorter than the server's Retry-After."""

    def __init__(self, base_s: float, max_s: float) -> None:
        self._backoff = wait_exponential_jitter(multiplier=base_s, max=max_s, jitter=base_s)

    def __call__(self, retry_state: RetryCallState) -> float:
        backoff = self._backoff(retry_state)
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        retry_after = exc.result.retry_after_s if isinstance(exc, ConnectorError) else None
        return max(backoff, retry_after or 0.0)


class _StopIfRetryAfterTooLong(stop_base):
    """Give up at once when the server asks for a longer pause than we will wait in-line."""

    def __init__(self, max_s: float) -> None:
        self._max_s = max_s

    def __call__(self, retry_state: RetryCallState) -> bool:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        retry_after = exc.result.retry_after_s if isinstance(exc, ConnectorError) else None
        return retry_after is not None and retry_after > self._max_s


class DoubleTickConnector:
    """Stores a workspace's OpenAI key at DoubleTick through the configured integration endpoint."""

    def __init__(
        self,
        *,
        base_url: str = DEFAULT_BASE_URL,
        api_key: SecretKey | None = None,
        connect_path: str | None = None,
        timeout: float = 10.0,
        max_attempts: int = 3,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 8.0,
        max_retry_after_s: float = 30.0,
        fingerprint_secret: bytes | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self.connect_path = "/" + connect_path.strip("/") if connect_path else None
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.max_retry_after_s = max_retry_after_s
        self._fingerprint_secret = fingerprint_secret or None
        self._owns_client = client is None
        self._client = client or outbound_client()
        self._gate = InFlight()  # the bursts wait here, not in httpcore's pool (bot/services/bounded.py)

    @property
    def configured(self) -> bool:
        """True when both the endpoint and the operator credential are set."""
        return self._api_key is not None and self.connect_path is not None

    async def aclose(self) -> None:
        """Close the HTTP client if this connector created it."""
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> DoubleTickConnector:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def connect(self, workspace_id: str, key: SecretKey, idempotency_key: str) -> ConnectionResult:
        """Store ``key`` for ``workspace_id``; repeating ``idempotency_key`` never connects twice."""
        if not self.configured:
            return ConnectionResult(ConnectionOutcome.NOT_CONFIGURED)
        payload = {"workspaceId": workspace_id, "apiKey": key.reveal()}  # the one place the key must go
        if self._fingerprint_secret is not None:
            payload["keyFingerprint"] = "hmac-sha256:" + fingerprint(key, self._fingerprint_secret)
        body = json.dumps(payload).encode()
        del payload
        return await self._call(
            "POST", str(self.connect_path), idempotency_key, body, success=ConnectionOutcome.CONNECTED, key=key
        )

    async def disconnect(self, workspace_id: str, idempotency_key: str) -> ConnectionResult:
        """Remove the workspace's OpenAI key at DoubleTick."""
        if not self.configured:
            return ConnectionResult(ConnectionOutcome.NOT_CONFIGURED)
        path = f"{self.connect_path}/{quote(workspace_id, safe='')}"
        return await self._call("DELETE", path, idempotency_key, None, success=ConnectionOutcome.DISCONNECTED)

    async def _call(
        self,
        method: str,
        path: str,
        idempotency_key: str,
        body: bytes | None,
        *,
        success: ConnectionOutcome,
        key: SecretKey | None = None,
    ) -> ConnectionResult:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.max_attempts) | _StopIfRetryAfterTooLong(self.max_retry_after_s),
            wait=_WaitRetryAfterOrBackoff(self.backoff_base_s, self.backoff_max_s),
            retry=retry_if_exception(lambda exc: isinstance(exc, ConnectorError) and exc.retryable),
            reraise=True,
        )
        result: ConnectionResult
        try:
            result = await retrying(self._attempt, method, path, idempotency_key, body, success, key)
        except ConnectorError as exc:
            result = exc.result
        logger.info(
            "doubletick %s %s: outcome=%s http_status=%s",
            method,
            self.connect_path,
            result.outcome.value,
            result.http_status,
        )
        return result

    async def _attempt(
        self,
        method: str,
        path: str,
        idempotency_key: str,
        body: bytes | None,
        success: ConnectionOutcome,
        key: SecretKey | None = None,
    ) -> ConnectionResult:
        assert self._api_key is not None
        headers = {
            "Authorization": self._api_key.reveal(),  # documented: the raw key, no "Bearer"
            "Idempotency-Key": idempotency_key,
            "Accept": "application/json",
        }
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            response = await send_bounded(
                self._client,
                method,
                self.base_url + path,
                gate=self._gate,
                headers=headers,
                content=body,
                timeout=self.timeout,
            )
        except UnreadableResponse as exc:
            # over 1 MiB or a broken gzip body: whether DoubleTick acted is unknown, so a retry under the
            # same Idempotency-Key (safe: it connects once) and, if that persists, TRANSIENT
            raise ConnectorTransportError(
                ConnectionResult(ConnectionOutcome.TRANSIENT, detail=exc.detail, http_status=exc.status),
                retryable=True,
            ) from None
        except httpx.TimeoutException:
            raise ConnectorTransportError(
                ConnectionResult(ConnectionOutcome.TRANSIENT, detail="timeout"),
                retryable=True,
            ) from None
        except httpx.TransportError as exc:
            detail = f"connection_error:{type(exc).__name__}"
            raise ConnectorTransportError(
                ConnectionResult(ConnectionOutcome.TRANSIENT, detail=detail),
                retryable=True,
            ) from None
        status = response.status_code
        if response.is_success:
            return ConnectionResult(success, http_status=status)
        message = _message(response, key)
        if status in _RETRYABLE_STATUSES or status >= 500:
            result = ConnectionResult(
                ConnectionOutcome.TRANSIENT,
                detail=message or f"http_{status}",
                retry_after_s=_retry_after(response.headers),
                http_status=status,
            )
            raise ConnectorResponseError(result, retryable=True)
        if status in (401, 403):
            outcome = ConnectionOutcome.CREDENTIAL_REJECTED
        else:  # 400/422 validation; 404/409 and other 4xx are also a request DoubleTick will not take
            outcome = ConnectionOutcome.VALIDATION_ERROR
        detail = message or f"error {status}"  # a message we cannot vouch for becomes a generic detail
        raise ConnectorResponseError(ConnectionResult(outcome, detail=detail, http_status=status))
