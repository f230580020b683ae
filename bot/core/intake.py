"""Turn a user's message into the machine's event, deciding what counts as a paste.

Rules: at the paste step (and after a failed paste) any text or media is deleted and treated as an
attempt; elsewhere only what the secret guard flagged is. A message that carried a secret and that
Telegram said cannot be deleted becomes ``DeletionFailed``: the key is exposed and must not be used. One
that is merely not deleted yet (429s, 5xx past the deadline) becomes ``DeletionPending``: the key waits
unused until the background deletion settles (see ``Runtime``), and its handle is kept here till then.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bot.core.ports import ChatPort, DeleteOutcome, GuardVerdict
from flows import events as ev
from flows.inspection import PastedText, inspect_pasted_text
from flows.machine import Policy, paste_is_checked
from flows.state import Conversation
from flows.steps import PIPELINE_STEPS, Step
from storage.repositories import LimitRepository
from storage.repositories.limits import Window

__all__ = ["PASTE_STEPS", "Admission", "Intake", "SubmissionLimits", "queues_sealed"]

PASTE_STEPS = frozenset({Step.PASTE_KEY, Step.KEY_PROBLEM})
REASONS = {DeleteOutcome.NO_RIGHTS: "no_rights", DeleteOutcome.TOO_OLD: "too_old"}
MAX_PENDING_DELETIONS = 10_000
COUNTING_SLACK_S = 1.0  # see _minutes


@dataclass(frozen=True, slots=True)
class Admission:
    """What the limits say about one paste: refused for ``retry_in_minutes``, or checked in ``queued_s``."""

    retry_in_minutes: int | None = None  # the user is over a limit: nothing is checked
    queued_s: float | None = None  # checks are busy: the slot booked for this key is this far ahead


class SubmissionLimits:
    """At most N key submissions per user per hour and M verifications per minute for the whole bot.

    Counted in the database (:class:`~storage.repositories.limits.LimitRepository`), so replicas
    together allow exactly N and M, not N and M each; consumed before any request leaves for OpenAI.
    The per-user limit refuses (abuse protection); the bot-wide one queues (issue 14): a paste over it
    books the next free slot and is checked then, up to ``max_wait_s`` ahead. A key that would wait in
    this process's memory (no sealed outbox) takes one of ``max_waiting`` seats until its slot comes;
    with every seat taken the paste is refused like before, honestly, instead of piling up.
    """

    def __init__(self, repo: LimitRepository, per_user_per_hour: int, global_per_minute: int,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC), *, max_waiting: int = 200,
                 max_wait_s: float = 600.0) -> None:
        self._repo = repo
        self._per_user = per_user_per_hour
        self._global = Window("keys:all", global_per_minute, timedelta(minutes=1))
        self._clock = clock
        self.max_waiting = max_waiting
        self.max_wait_s = max_wait_s
        self._slots: list[datetime] = []  # booked slots of keys waiting in this process, sorted

    def waiting_here(self) -> int:
        """Keys of this process waiting in memory for their slot (a slot that has come frees its seat)."""
        now = self._clock()
        del self._slots[:bisect.bisect_right(self._slots, now)]
        return len(self._slots)

    async def admit(self, user_id: int, *, can_hold: bool, max_wait_s: float | None = None) -> Admission:
        """Consume one submission; a full bot-wide window books a later slot instead of refusing.

        ``can_hold``: the key can wait sealed in the outbox, so it takes no seat here. ``max_wait_s``
        lowers the longest wait (the outbox hold must outlast it); 0 refuses at either window.
        """
        mine = Window(f"keys:user:{user_id}", self._per_user, timedelta(hours=1))
        now = self._clock()
        seat = can_hold or self.waiting_here() < self.max_waiting
        longest = min(self.max_wait_s, max_wait_s if max_wait_s is not None else self.max_wait_s)
        booking = await self._repo.book((mine,), self._global, now,
                                        timedelta(seconds=longest if seat else 0.0))
        if booking.refused is not None:
            return Admission(retry_in_minutes=_minutes(booking.refused))
        assert booking.at is not None
        if booking.at <= now:
            return Admission()
        if not can_hold:
            bisect.insort(self._slots, booking.at)
        return Admission(queued_s=(booking.at - now).total_seconds())


def _minutes(wait: timedelta) -> int:
    """Whole minutes to tell the user. Limits count hits per whole second, rounded up, so a wait is up to a
    second longer than the true one; that second must not turn "60 minutes" into "61"."""
    return max(1, math.ceil((wait.total_seconds() - COUNTING_SLACK_S) / 60))


class Intake:
    def __init__(self, messenger: ChatPort, limits: SubmissionLimits, policy: Policy | None = None) -> None:
        self.messenger = messenger
        self.limits = limits
        self.policy = policy
        # Deletions still under way past the deadline, by (chat, message): their final outcome.
        self._pending: dict[tuple[int, int], Future[DeleteOutcome]] = {}

    def _keep_pending(self, chat_id: int, message_id: int, verdict: GuardVerdict | None) -> None:
        handle = verdict.settled if verdict else self.messenger.deletion_settled(chat_id, message_id)
        if handle is not None:
            self._pending[(chat_id, message_id)] = handle
            while len(self._pending) > MAX_PENDING_DELETIONS:
                self._pending.pop(next(iter(self._pending)))

    def settled(self, chat_id: int, message_id: int) -> Future[DeleteOutcome] | None:
        """The final outcome of a deletion that was PENDING (taken: one waiter per message)."""
        return self._pending.pop((chat_id, message_id), None)

    async def text_event(self, conv: Conversation, *, chat_id: int, user_id: int, message_id: int, text: str,
                         verdict: GuardVerdict | None, forwarded: bool) -> ev.Event:
        if verdict is None and conv.step not in PASTE_STEPS:
            return ev.TextSent(text)
        deletion = verdict.deletion if verdict else await self.messenger.delete(chat_id, message_id)
        pasted = inspect_pasted_text(text)
        if deletion == DeleteOutcome.PENDING and pasted.looks_secret:
            self._keep_pending(chat_id, message_id, verdict)
            return ev.DeletionPending(message_id, pasted, forwarded=forwarded)
        if deletion != DeleteOutcome.DELETED and pasted.looks_secret:
            return ev.DeletionFailed(REASONS.get(deletion, "other"))
        return await self.paste_event(conv, user_id=user_id, pasted=pasted, forwarded=forwarded)

    async def paste_event(self, conv: Conversation, *, user_id: int, pasted: PastedText,
                          forwarded: bool) -> ev.KeyPasted:
        """A paste whose message is gone, with the submission limits applied (also for one that waited in
        ``deleting`` for its message to go)."""
        # Only a paste that will really be checked uses up the allowance (not one sent while busy, nor one
        # sent before the workspace is known).
        checked = paste_is_checked(conv, self.policy) if self.policy else conv.step not in PIPELINE_STEPS
        counts = pasted.should_verify and checked
        sealed = queues_sealed(self.policy)
        longest = self.policy.queue_hold_s if sealed and self.policy is not None else None
        admission = await self.limits.admit(user_id, can_hold=sealed, max_wait_s=longest) \
            if counts else Admission()
        return ev.KeyPasted(pasted, forwarded=forwarded, retry_in_minutes=admission.retry_in_minutes,
                            queued_s=admission.queued_s)

    async def media_event(self, conv: Conversation, *, chat_id: int, message_id: int, kind: str,
                          verdict: GuardVerdict | None) -> ev.Event:
        if verdict is None and conv.step in PASTE_STEPS:
            if await self.messenger.delete(chat_id, message_id) == DeleteOutcome.PENDING:
                self._keep_pending(chat_id, message_id, None)
                return ev.DeletionPending(message_id, None)
        elif verdict is not None and verdict.deletion == DeleteOutcome.PENDING:
            self._keep_pending(chat_id, message_id, verdict)
            return ev.DeletionPending(message_id, None)
        elif verdict is not None and not verdict.deleted:
            return ev.DeletionFailed(REASONS.get(verdict.deletion, "other"))
        return ev.MediaSent(kind, deleted=verdict is not None)


def queues_sealed(policy: Policy | None) -> bool:
    """Whether a key queued for a busy check waits sealed in the outbox (as the machine decides), not here."""
    return policy is not None and policy.can_hold and policy.queue_hold_s > 0
