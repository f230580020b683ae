"""Everything that can happen to a conversation, as values the machine consumes.

The adapter turns Telegram updates into these; the runtime turns verdicts from OpenAI and DoubleTick
into these. ``KeyPasted`` holds the key only in memory (as a ``SecretKey`` inside ``PastedText``).
"""

from __future__ import annotations

from dataclasses import dataclass

from flows.inspection import PastedText
from flows.outcomes import ConnectionResult, VerificationResult

__all__ = [
    "ButtonPressed",
    "CancelAsked",
    "ConnectionFinished",
    "DeletionConfirmed",
    "DeletionFailed",
    "DeletionPending",
    "DisconnectAsked",
    "DisconnectFinished",
    "Event",
    "HelpAsked",
    "HoldLost",
    "InvitationRedeemed",
    "InvitationRefused",
    "KeyPasted",
    "MediaSent",
    "PrivacyAsked",
    "ReplaceAsked",
    "RestartAsked",
    "Started",
    "StopRemindersAsked",
    "TextSent",
    "VerificationFinished",
    "WorkspaceChangedElsewhere",
]


@dataclass(frozen=True, slots=True)
class Started:
    """/start, possibly days later: resume where the user left off."""

    payload: str | None = None


@dataclass(frozen=True, slots=True)
class RestartAsked:
    pass


@dataclass(frozen=True, slots=True)
class CancelAsked:
    pass


@dataclass(frozen=True, slots=True)
class HelpAsked:
    pass


@dataclass(frozen=True, slots=True)
class PrivacyAsked:
    pass


@dataclass(frozen=True, slots=True)
class ReplaceAsked:
    pass


@dataclass(frozen=True, slots=True)
class DisconnectAsked:
    pass


@dataclass(frozen=True, slots=True)
class StopRemindersAsked:
    """/stop_reminders, or the reminder's own button."""


@dataclass(frozen=True, slots=True)
class ButtonPressed:
    """An inline button; ``step`` is the step the button was drawn for (untrusted: may be forged)."""

    step: str
    action: str


@dataclass(frozen=True, slots=True)
class KeyPasted:
    """Something pasted where a key may be: already deleted from the chat by the runtime."""

    pasted: PastedText
    forwarded: bool = False
    retry_in_minutes: int | None = None  # set when the user is over the submission limit
    queued_s: float | None = None  # checks are busy (bot-wide limit): the check starts this much later
    via_miniapp: bool = False  # typed in the Mini App: it never was a message, nothing was deleted


@dataclass(frozen=True, slots=True)
class TextSent:
    """Ordinary text that carries no secret (the runtime checked)."""

    text: str


@dataclass(frozen=True, slots=True)
class MediaSent:
    kind: str  # photo, sticker, document, voice, ...
    deleted: bool = False  # removed because it may carry a key (e.g. a file named like a key file)


@dataclass(frozen=True, slots=True)
class DeletionFailed:
    """A message with a key could not be deleted: the key is exposed and must be revoked.

    ``late``: the deletion outlived the deadline and Telegram finally refused (or the background window
    ended); ``attempt`` is the paste that waited in ``deleting`` for it (None: nothing waited).
    """

    reason: str  # "no_rights", "too_old", "other"
    attempt: int | None = None
    late: bool = False


@dataclass(frozen=True, slots=True)
class DeletionPending:
    """A message with (maybe) a key is not deleted yet, and Telegram never said it can't be: only 429s,
    5xx or timeouts until the deadline. The deletion goes on; the key (``pasted``, in memory) waits unused.

    ``pasted`` is None when nothing from the message can be used (a file, a sticker)."""

    message_id: int
    pasted: PastedText | None = None
    forwarded: bool = False


@dataclass(frozen=True, slots=True)
class DeletionConfirmed:
    """The message of the paste that entered ``deleting`` with ``attempt`` is gone at last: the paste goes
    on as if it had just arrived (``paste``, built by the runtime with the submission limits applied)."""

    attempt: int
    paste: KeyPasted


@dataclass(frozen=True, slots=True)
class VerificationFinished:
    attempt: int
    result: VerificationResult
    already_connected: bool = False  # the same key (by fingerprint) is already connected here


@dataclass(frozen=True, slots=True)
class ConnectionFinished:
    attempt: int
    result: ConnectionResult


@dataclass(frozen=True, slots=True)
class HoldLost:
    """The conversation waits at ``held`` with ``attempt`` but the outbox holds no sealed key for it (the
    process died between saving the step and sealing the key, or the seal could not be written): nothing
    would ever retry it, so the user must hear it now rather than when the hold window ends."""

    attempt: int


@dataclass(frozen=True, slots=True)
class DisconnectFinished:
    result: ConnectionResult


@dataclass(frozen=True, slots=True)
class InvitationRedeemed:
    """The user opened an agent's handoff link or a signed link (checked by the runtime): bind them to its
    workspace."""

    workspace_id: str
    workspace_name: str | None = None
    already_connected: bool = False  # the workspace has a connected key already (by our records)
    connected_last_four: str | None = None  # of that key, so the user can recognise it
    via: str = "agent_link"  # or "signed_link" (a self-serve link from the dashboard)
    # Since when the link proves the right to change the workspace's connection: an agent link's first
    # opening, a signed link's mint time. None proves nothing (a legacy signed link without a mint time):
    # such a chat may connect a workspace nobody connected, never replace or disconnect another chat's key.
    bound_at: float | None = None


@dataclass(frozen=True, slots=True)
class InvitationRefused:
    """The user opened a handoff link that cannot be used: "expired", "revoked", "used" or "unknown".

    With ``unbind``, the link that bound this user to that workspace was revoked: the binding goes too
    (unless a key is connected or being checked already).
    """

    reason: str
    unbind: str | None = None  # the workspace id whose binding ends


@dataclass(frozen=True, slots=True)
class WorkspaceChangedElsewhere:
    """Told to the chat that connected ``workspace_id``: another chat replaced or disconnected its key
    (``refused``: tried to, without a fresh link, and nothing changed)."""

    workspace_id: str
    action: str  # "replace" or "disconnect"
    refused: bool


Event = (
    Started
    | RestartAsked
    | CancelAsked
    | HelpAsked
    | PrivacyAsked
    | ReplaceAsked
    | DisconnectAsked
    | StopRemindersAsked
    | ButtonPressed
    | KeyPasted
    | TextSent
    | MediaSent
    | DeletionFailed
    | DeletionPending
    | DeletionConfirmed
    | VerificationFinished
    | HoldLost
    | ConnectionFinished
    | DisconnectFinished
    | InvitationRedeemed
    | InvitationRefused
    | WorkspaceChangedElsewhere
)
