"""What the machine asks the world to do; the runtime performs these after saving the new state."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = [
    "Audit",
    "AwaitDeletion",
    "Connect",
    "Disconnect",
    "Effect",
    "Forget",
    "HoldKey",
    "RecordKey",
    "ReleaseHeld",
    "Render",
    "Reply",
    "Verify",
]


@dataclass(frozen=True, slots=True)
class Render:
    """Show the current step. ``fresh``: send a new guide message at the bottom of the chat (the user
    typed something, so an edit far above would go unseen) instead of editing the guide in place."""

    fresh: bool = False
    notice: str | None = None  # content key of a one-line note shown above the step
    notice_params: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Reply:
    """A separate informational message (help, privacy, goodbye)."""

    text: str  # content key
    params: Mapping[str, str] = field(default_factory=dict)  # placeholders of that text (escaped when shown)


@dataclass(frozen=True, slots=True)
class Verify:
    """Verify the key in hand (the one from the KeyPasted event being processed)."""

    attempt: int
    workspace_id: str | None = None  # "already connected" is judged within this workspace only
    wait_s: float = 0.0  # checks are busy: the slot booked for this key comes this much later


@dataclass(frozen=True, slots=True)
class Connect:
    attempt: int
    workspace_id: str
    bound_at: float | None = None  # when a link bound this chat to the workspace (None: typed, never)


@dataclass(frozen=True, slots=True)
class HoldKey:
    """Seal the key in hand into the retry outbox: ``purpose`` is "verify" or "connect"."""

    attempt: int
    purpose: str
    retry_after_s: float | None = None  # the service asked for at least this pause (Retry-After)
    at_slot: bool = False  # queued for a busy check: try exactly after retry_after_s (its booked slot)


@dataclass(frozen=True, slots=True)
class AwaitDeletion:
    """Wait (in memory, never stored) for the background deletion of ``message_id`` to settle, then feed
    back ``DeletionConfirmed(attempt, …)`` or ``DeletionFailed(…, attempt)``. ``attempt`` None: nothing
    of the message is used; only a final failure is told."""

    message_id: int
    attempt: int | None


@dataclass(frozen=True, slots=True)
class Disconnect:
    workspace_id: str | None
    bound_at: float | None = None  # as in Connect: acting on another chat's connection needs a fresh link


@dataclass(frozen=True, slots=True)
class RecordKey:
    """Keep non-secret metadata of the key in hand (fingerprint, last four, family, outcome)."""

    outcome: str
    connected: bool


@dataclass(frozen=True, slots=True)
class ReleaseHeld:
    """Shred the key held for a retry: the user stopped waiting (or connects it by hand)."""


@dataclass(frozen=True, slots=True)
class Forget:
    """Delete the conversation's stored progress (/cancel)."""


@dataclass(frozen=True, slots=True)
class Audit:
    kind: str
    detail: Mapping[str, str] = field(default_factory=dict)


Effect = (Render | Reply | Verify | Connect | HoldKey | Disconnect | RecordKey | ReleaseHeld | Forget | Audit
          | AwaitDeletion)
