"""The sealed retry outbox: hold a key, encrypted, while OpenAI or DoubleTick recovers, then finish.

Why: an indeterminate verification (OpenAI 5xx, timeouts) or a transient DoubleTick failure should not
make the customer start over, and must not keep the plaintext around either. The key is sealed with
AES-GCM (associated data binds it to its conversation and purpose) under a key-encryption key that
lives only in configuration, kept for at most ``OUTBOX_HOLD_MINUTES``, retried with exponential backoff,
and the row is deleted (not marked) on success, definitive failure or expiry. Workers on several
replicas share rows through ``claim_due`` (``SKIP LOCKED`` on PostgreSQL).
"""

from __future__ import annotations

import logging
import os
import random
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING

from bot.core.periodic import PeriodicJob
from bot.core.ports import ChatRef
from flows import effects as fx
from flows import events as ev
from flows.outcomes import ConnectionOutcome, ConnectionResult, VerificationOutcome, VerificationResult
from flows.secret import SecretKey
from flows.state import Conversation
from flows.steps import Step
from storage.models import OutboxItem, OutboxPurpose
from storage.repositories import ConversationRepository, OutboxRepository
from storage.sealing import KeyRing, SealingError, aad_for

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.core.keyflow import KeyFlow
    from bot.core.runtime import Runtime

__all__ = ["OutboxWorker", "RetryPolicy", "SealedOutbox", "rotate_pending"]

log = logging.getLogger(__name__)
UNSURE = {VerificationOutcome.INDETERMINATE, VerificationOutcome.RATE_LIMITED}


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    hold: timedelta = timedelta(minutes=15)
    first_delay_s: float = 5.0
    max_delay_s: float = 120.0

    def delay(self, attempts: int, retry_after_s: float | None = None) -> float:
        """Exponential backoff with jitter, never shorter than what the service asked for."""
        base = min(self.max_delay_s, self.first_delay_s * 2 ** max(0, attempts - 1))
        return max(base * random.uniform(0.8, 1.2), retry_after_s or 0.0)


class SealedOutbox:
    """Seals keys into outbox rows (the runtime's ``KeyHolder``)."""

    def __init__(self, repo: OutboxRepository, keyring: KeyRing, policy: RetryPolicy,
                 clock: Callable[[], datetime] = _now) -> None:
        self.repo = repo
        self.keyring = keyring
        self.policy = policy
        self.clock = clock

    async def hold(self, chat_id: int, conversation_id: int, attempt: int, purpose: str, key: SecretKey,
                   workspace_id: str | None, retry_after_s: float | None = None, at_slot: bool = False) -> None:
        """Seal ``key``; the first try comes after backoff, or exactly at the booked slot (``at_slot``)."""
        aad = aad_for(conversation_id, chat_id, purpose, attempt=attempt, workspace_id=workspace_id)
        sealed, kek_id = self.keyring.seal(key, aad)
        now = self.clock()
        first = (retry_after_s or 0.0) if at_slot else self.policy.delay(1, retry_after_s)
        await self.repo.put(OutboxItem(chat_id=chat_id, conversation_id=conversation_id,
                                       purpose=OutboxPurpose(purpose).value, sealed=sealed, kek_id=kek_id,
                                       attempts=0,
                                       next_attempt_at=now + timedelta(seconds=first),
                                       expires_at=now + self.policy.hold, created_at=now))
        log.info("key of chat %s held in the outbox for %s (purpose %s)", chat_id, self.policy.hold, purpose)

    async def release(self, chat_id: int) -> int:
        """The user gave up waiting: shred the chat's sealed keys now instead of at expiry."""
        return await self.repo.delete_for_chat(chat_id)

    async def holds(self, chat_id: int) -> bool:
        """Whether a sealed key of this chat still waits here (recovery finds held chats that have none)."""
        return await self.repo.holds(chat_id)


class OutboxWorker(PeriodicJob):
    """Retries held keys; exactly one worker (of any replica) handles a row at a time."""

    name = "outbox worker"

    def __init__(self, *, repo: OutboxRepository, conversations: ConversationRepository, keyring: KeyRing,
                 runtime: Runtime, keyflow: KeyFlow, policy: RetryPolicy, poll_s: float = 1.0,
                 lease_s: float = 120.0, clock: Callable[[], datetime] = _now) -> None:
        self.repo = repo
        self.conversations = conversations
        self.keyring = keyring
        self.runtime = runtime
        self.keyflow = keyflow
        self.policy = policy
        super().__init__(poll_s)
        self.lease_s = lease_s
        self.clock = clock
        self.owner = f"{socket.gethostname()}:{os.getpid()}"


    async def run_once(self) -> int:
        """Handle every row that is due now; returns how many were handled."""
        items = await self.repo.claim_due(self.clock(), self.owner, int(self.lease_s), limit=20)
        # Rows whose hold ran out before a retry (the bot was down): report the give-up, then shred.
        items += await self.repo.claim_due(self.clock(), self.owner, int(self.lease_s), limit=20, expired=True)
        for item in items:
            try:
                await self._handle(item)
            except Exception as error:  # one bad row never stops the pass: its lease runs out, it comes back
                log.error("outbox row %s failed (%s); the others go on", item.id, type(error).__name__)
        return len(items)

    async def _handle(self, item: OutboxItem) -> None:
        assert item.id is not None
        row = await self.conversations.get(item.chat_id)
        conv = Conversation.from_record(row.state) if row is not None and row.state else None
        if row is None or conv is None or conv.step != Step.HELD or row.id != item.conversation_id:
            await self.repo.delete(item.id)  # the user moved on (/cancel, /restart): shred it
            return
        chat = ChatRef(row.chat_id, row.user_id, row.username, row.language)
        expired = self.clock() >= item.expires_at
        if not self.keyring.knows(item.kek_id) and not expired:
            # Sealed by a replica that already has a newer key-encryption key (a rotation rolling out):
            # leave it for one that can open it; at expiry anyone reports the give-up and shreds it.
            log.warning("outbox row %s is sealed under a key-encryption key this replica lacks; left for "
                        "another replica", item.id)
            await self.repo.reschedule(item.id, self.clock() + timedelta(seconds=self.policy.first_delay_s),
                                       item.attempts, owner=self.owner)
            return
        if expired and not self.keyring.knows(item.kek_id):
            await self._finish(item, chat, _give_up(item.purpose, conv.attempt), None)
            return
        try:
            key = self.keyring.open(item.sealed, item.kek_id, aad_for(
                item.conversation_id, item.chat_id, item.purpose, attempt=conv.attempt,
                workspace_id=conv.workspace_id))
        except SealingError:
            # Sealed for another attempt or workspace of this conversation (a paste after /restart, a row left
            # by a crash) or tampered with: nothing it says is about the current attempt, so no verdict is
            # reported for it. If the current attempt has no seal either, recovery tells the user.
            log.error("outbox row %s failed authentication (another attempt or workspace, or tampered); dropped",
                      item.id)
            await self.repo.delete(item.id)
            return
        try:
            event = await self._attempt(chat, conv, item, key, expired)
            if event is None:
                return
            await self._finish(item, chat, event, key)
        finally:
            del key

    async def _finish(self, item: OutboxItem, chat: ChatRef, event: ev.Event, key: SecretKey | None) -> None:
        """Shred the row, then save its verdict, both under the chat's locks (see ``Runtime.resume``): a
        crash in between leaves ``held`` with nothing sealed, which recovery tells the user about."""
        assert item.id is not None
        await self.runtime.resume(chat, event, key, discard=partial(self.repo.delete, item.id))

    async def _attempt(self, chat: ChatRef, conv: Conversation, item: OutboxItem, key: SecretKey,
                       expired: bool) -> ev.Event | None:
        """One retry through the same key flow as a fresh paste; None when rescheduled for later."""
        if expired:
            return _give_up(item.purpose, conv.attempt)
        effect: fx.Effect = fx.Verify(conv.attempt, conv.workspace_id) if item.purpose == OutboxPurpose.VERIFY \
            else fx.Connect(conv.attempt, conv.workspace_id or "", conv.bound_at)
        event = await self.keyflow.perform(chat, effect, key)
        match event:
            case ev.VerificationFinished(result=result) if result.outcome in UNSURE:
                return await self._reschedule(item, result.retry_after_s, event)
            case ev.ConnectionFinished(result=result) if result.outcome == ConnectionOutcome.TRANSIENT:
                return await self._reschedule(item, result.retry_after_s, event)
        return event

    async def _reschedule(self, item: OutboxItem, retry_after_s: float | None,
                          final: ev.Event) -> ev.Event | None:
        assert item.id is not None
        attempts = item.attempts + 1
        due = self.clock() + timedelta(seconds=self.policy.delay(attempts + 1, retry_after_s))
        if due >= item.expires_at:
            return final  # no time left for another try: report the last unsure verdict
        await self.repo.reschedule(item.id, due, attempts, owner=self.owner)
        return None


def _give_up(purpose: str, attempt: int) -> ev.Event:
    if purpose == OutboxPurpose.VERIFY:
        return ev.VerificationFinished(attempt, VerificationResult(VerificationOutcome.INDETERMINATE))
    return ev.ConnectionFinished(attempt, ConnectionResult(ConnectionOutcome.TRANSIENT))


async def rotate_pending(settings: Settings) -> int:
    """Re-seal every pending row under the newest key-encryption key (``onboarding-bot keys rotate``)."""
    from storage.db import create_engine, session_factory

    if settings.key_encryption_keys is None:
        raise SystemExit("KEY_ENCRYPTION_KEYS is not set")
    keyring = KeyRing.from_spec(settings.key_encryption_keys.get_secret_value())
    engine = create_engine(settings.database_url)
    try:
        sessions = session_factory(engine)
        repo, conversations = OutboxRepository(sessions), ConversationRepository(sessions)
        count = 0
        for item in await repo.all_for_rewrap(exclude_kek_id=keyring.newest_id):
            assert item.id is not None
            row = await conversations.get(item.chat_id)
            conv = Conversation.from_record(row.state) if row is not None and row.state else None
            if conv is None or row is None or row.id != item.conversation_id:
                continue  # the user moved on: the worker shreds it
            aad = aad_for(item.conversation_id, item.chat_id, item.purpose, attempt=conv.attempt,
                          workspace_id=conv.workspace_id)
            try:
                sealed, kek_id = keyring.rewrap(item.sealed, item.kek_id, aad)
            except SealingError:
                continue  # not openable here (another attempt, or a key this ring lacks): left as it is
            count += await repo.replace_sealed(item.id, sealed, kek_id)
        return count
    finally:
        await engine.dispose()
