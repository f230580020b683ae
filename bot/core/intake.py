"""Turn a user's message into the machine's event, deciding what counts as a paste.

Rules: at the paste step (and after a failed paste) any text or media is deleted and treated as an
attempt; elsewhere only what the secret guard flagged is. A message that carried a secret but could not
be deleted becomes ``DeletionFailed``: the key is exposed and must not be used.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from bot.core.ports import ChatPort, DeleteOutcome, GuardVerdict
from flows import events as ev
from flows.inspection import inspect_pasted_text
from flows.machine import Policy, paste_is_checked
from flows.state import Conversation
from flows.steps import PIPELINE_STEPS, Step
from storage.repositories import LimitRepository
from storage.repositories.limits import Window

__all__ = ["PASTE_STEPS", "Intake", "SubmissionLimits"]

PASTE_STEPS = frozenset({Step.PASTE_KEY, Step.KEY_PROBLEM})
REASONS = {DeleteOutcome.NO_RIGHTS: "no_rights", DeleteOutcome.TOO_OLD: "too_old"}


class SubmissionLimits:
    """At most N key submissions per user per hour and M verifications per minute for the whole bot.

    Counted in the database (:class:`~storage.repositories.limits.LimitRepository`), so replicas
    together allow exactly N and M, not N and M each; consumed before any request leaves for OpenAI.
    """

    def __init__(self, repo: LimitRepository, per_user_per_hour: int, global_per_minute: int,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._repo = repo
        self._per_user = per_user_per_hour
        self._global = Window("keys:all", global_per_minute, timedelta(minutes=1))
        self._clock = clock

    async def retry_in_minutes(self, user_id: int) -> int | None:
        """Consume one submission; None if allowed, else minutes until the user may try again."""
        mine = Window(f"keys:user:{user_id}", self._per_user, timedelta(hours=1))
        wait = await self._repo.consume((mine, self._global), self._clock())
        return None if wait is None else max(1, math.ceil(wait.total_seconds() / 60))


class Intake:
    def __init__(self, messenger: ChatPort, limits: SubmissionLimits, policy: Policy | None = None) -> None:
        self.messenger = messenger
        self.limits = limits
        self.policy = policy

    async def text_event(self, conv: Conversation, *, chat_id: int, user_id: int, message_id: int, text: str,
                         verdict: GuardVerdict | None, forwarded: bool) -> ev.Event:
        if verdict is None and conv.step not in PASTE_STEPS:
            return ev.TextSent(text)
        deletion = verdict.deletion if verdict else await self.messenger.delete(chat_id, message_id)
        pasted = inspect_pasted_text(text)
        if deletion != DeleteOutcome.DELETED and pasted.looks_secret:
            return ev.DeletionFailed(REASONS.get(deletion, "other"))
        # Only a paste that will really be checked uses up the allowance (not one sent while busy, nor one
        # sent before the workspace is known).
        checked = paste_is_checked(conv, self.policy) if self.policy else conv.step not in PIPELINE_STEPS
        counts = pasted.should_verify and checked
        retry = await self.limits.retry_in_minutes(user_id) if counts else None
        return ev.KeyPasted(pasted, forwarded=forwarded, retry_in_minutes=retry)

    async def media_event(self, conv: Conversation, *, chat_id: int, message_id: int, kind: str,
                          verdict: GuardVerdict | None) -> ev.Event:
        if verdict is None and conv.step in PASTE_STEPS:
            await self.messenger.delete(chat_id, message_id)
        elif verdict is not None and not verdict.deleted:
            return ev.DeletionFailed(REASONS.get(verdict.deletion, "other"))
        return ev.MediaSent(kind, deleted=verdict is not None)
