"""What the core needs from the outside chat world, owned by the core: who a chat is, and a small port.

Why a port: the runtime, the key intake and the agent feature ask "send", "edit", "delete", "answer"
and hear plain outcomes; the Telegram adapter (``bot/telegram/messenger.py``) implements this
protocol, so ``bot/core`` never imports PTB or the adapter, and a test can hand the core any
implementation.
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from flows.view import View

__all__ = ["ChatDeliveryFailed", "ChatPort", "ChatRef", "ChatUnreachable", "DeleteOutcome", "GuardVerdict"]


@dataclass(frozen=True, slots=True)
class ChatRef:
    """Who an event is about: a private chat and its user."""

    chat_id: int
    user_id: int
    username: str | None = None
    language: str = "en"


class DeleteOutcome(StrEnum):
    DELETED = "deleted"  # gone (also when it was already gone: deletion is idempotent)
    NO_RIGHTS = "no_rights"  # a group where the bot may not delete others' messages
    TOO_OLD = "too_old"  # older than 48 hours
    FAILED = "failed"  # network trouble or anything unexpected
    # Not gone by the deadline, but Telegram never said it can't be (only 429s, 5xx, timeouts): the deletion
    # goes on in the background; its final outcome comes through ``ChatPort.deletion_settled``.
    PENDING = "pending"


@dataclass(frozen=True, slots=True)
class GuardVerdict:
    """What the secret guard did with a message before the core saw it."""

    deletion: DeleteOutcome
    received_at: float  # time.monotonic() when the guard saw the update
    deleted_at: float
    # PENDING: the background deletion's final outcome (thread-safe: the guard lane runs on its own loop).
    settled: Future[DeleteOutcome] | None = None

    @property
    def deleted(self) -> bool:
        return self.deletion == DeleteOutcome.DELETED


class ChatUnreachable(Exception):
    """The chat refuses delivery (the user blocked the bot, or it left the group).

    Not an error of ours: the conversation is saved, and the user finds their place again with /start.
    """

    def __init__(self, chat_id: int) -> None:
        super().__init__(f"chat {chat_id} cannot be reached")
        self.chat_id = chat_id


class ChatDeliveryFailed(Exception):
    """A message could not be shown now (flood wait, 5xx, timeout, a refused request).

    ``retry_after``: the seconds Telegram asked us to wait (a 429), else None. The core never cancels a
    committed effect for this: it shows the saved state again later (see ``Runtime``).
    """

    def __init__(self, chat_id: int, reason: str, retry_after: float | None = None) -> None:
        super().__init__(f"chat {chat_id}: {reason}")
        self.chat_id = chat_id
        self.reason = reason
        self.retry_after = retry_after


class ChatPort(Protocol):
    """The chat calls the core makes; :class:`ChatUnreachable` when the chat refuses delivery,
    :class:`ChatDeliveryFailed` when it could not be done now (sends and edits; ``delete`` retries
    by itself and answers with a :class:`DeleteOutcome`)."""

    async def send_view(self, chat_id: int, view: View) -> int: ...

    async def edit_view(self, chat_id: int, message_id: int, view: View) -> bool: ...

    async def send_html(self, chat_id: int, text: str, view: View | None = None) -> int: ...

    async def delete(self, chat_id: int, message_id: int, *, language: str = "en") -> DeleteOutcome: ...

    async def delete_quietly(self, chat_id: int, message_id: int) -> None: ...

    def deletion_settled(self, chat_id: int, message_id: int) -> Future[DeleteOutcome] | None:
        """The final outcome of a deletion that answered PENDING (None if there is none)."""
        ...
