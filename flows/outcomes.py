"""What can come back from OpenAI and DoubleTick, as plain values the machine branches on.

Why here: the flow decides what to tell the user for each outcome, so the outcome classes belong to the
pure domain. The httpx clients in ``bot/`` produce these values; nothing here does I/O.
Classes follow ``shared/reference/openai-keys.md`` section 3 (branch on ``error.code``, never on the
status alone; "indeterminate" is never "invalid").
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["ConnectionOutcome", "ConnectionResult", "VerificationOutcome", "VerificationResult"]


class VerificationOutcome(StrEnum):
    VALID = "valid"
    INVALID = "invalid"  # 401 invalid_api_key: typo, truncated, revoked, auto-disabled after a leak
    MISSING_SCOPE = "missing_scope"  # restricted key lacks a permission (detail names the scope)
    ACCOUNT_DEACTIVATED = "account_deactivated"
    NO_ORGANIZATION = "no_organization"
    NO_CREDIT = "no_credit"  # insufficient_quota family (detail names the code)
    BILLING_INACTIVE = "billing_inactive"
    MODEL_NOT_AVAILABLE = "model_not_available"  # detail names the model
    REGION_BLOCKED = "region_blocked"  # operator problem: our server's location; key not judged
    IP_NOT_ALLOWED = "ip_not_allowed"  # the key's project has an IP allowlist without our address
    RATE_LIMITED = "rate_limited"  # throttled; detail.retry_after_s
    INDETERMINATE = "indeterminate"  # timeouts, 5xx, non-JSON: never reported as invalid

    @property
    def is_definitive_failure(self) -> bool:
        """True when retrying the same key cannot help."""
        return self not in {
            VerificationOutcome.VALID,
            VerificationOutcome.RATE_LIMITED,
            VerificationOutcome.INDETERMINATE,
            VerificationOutcome.REGION_BLOCKED,
        }


@dataclass(frozen=True, slots=True)
class VerificationResult:
    """One verification verdict. Carries no key material beyond OpenAI's own masked echo."""

    outcome: VerificationOutcome
    detail: str | None = None  # missing scope, quota code, model id, or OpenAI's masked echo
    retry_after_s: float | None = None
    request_id: str | None = None  # x-request-id, for support
    http_status: int | None = None


class ConnectionOutcome(StrEnum):
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"  # a disconnect request succeeded
    CREDENTIAL_REJECTED = "credential_rejected"  # our DoubleTick credential: operator problem
    VALIDATION_ERROR = "validation_error"  # DoubleTick refused the request body (detail says why)
    TRANSIENT = "transient"  # 5xx, 429, timeouts: retried
    NOT_CONFIGURED = "not_configured"  # no endpoint configured: the guided Step 2 instead
    # Another chat connected this workspace's key and this chat holds no link opened since: refused
    # before DoubleTick is called (replacing or disconnecting someone else's key needs a fresh link).
    FOREIGN_WORKSPACE = "foreign_workspace"


@dataclass(frozen=True, slots=True)
class ConnectionResult:
    outcome: ConnectionOutcome
    detail: str | None = None
    retry_after_s: float | None = None
    http_status: int | None = None
