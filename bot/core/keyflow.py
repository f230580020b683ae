"""Everything the runtime does with a key in hand: verify, connect, remember metadata, hold for retry.

Why one module: every code path that touches key plaintext lives here (plus the HTTP clients), so the
plaintext-canary test has one place to cover and a reviewer one place to read.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from bot.core.ports import ChatRef
from bot.metrics import record_connection, record_verification
from flows import effects as fx
from flows import events as ev
from flows.outcomes import (
    ConnectionOutcome,
    ConnectionResult,
    VerificationOutcome,
    VerificationResult,
)
from flows.secret import SecretKey
from flows.state import Conversation
from storage.fingerprint import fingerprint
from storage.models import KeyRecord
from storage.repositories import KeyRecordRepository

__all__ = ["Connector", "ForeignAction", "KeyFlow", "KeyHolder", "Verifier", "connect_idempotency_key",
           "is_fresh_binding"]

log = logging.getLogger(__name__)
# Answers after which DoubleTick certainly did not connect: the connecting record is settled with them.
# TRANSIENT is not here: a timeout may hide a connection, so the record (and its Idempotency-Key) stays.
SETTLED_REFUSALS = (ConnectionOutcome.VALIDATION_ERROR, ConnectionOutcome.CREDENTIAL_REJECTED)
DISCONNECTED = (ConnectionOutcome.CONNECTED, ConnectionOutcome.DISCONNECTED, ConnectionOutcome.NOT_CONFIGURED)


def connect_idempotency_key(connect_request: str | None, workspace_id: str, fingerprint: str) -> str:
    """The Idempotency-Key of a connect request: one per ``connecting`` key record, never reused.

    From the record's random ``connect_request`` (one per connection intent: a disconnect deletes the
    records, so connecting the same key again later is a new request; record ids are not used because
    SQLite may hand a deleted id out again) plus what the request is about, hashed to 40 hex chars.
    """
    if not connect_request:
        raise ValueError("the connecting record must be stored before its request is named")
    material = f"connect:{connect_request}:{workspace_id}:{fingerprint}"
    return hashlib.sha256(material.encode()).hexdigest()[:40]


class Verifier(Protocol):
    async def verify(self, key: SecretKey) -> VerificationResult: ...


class Connector(Protocol):
    @property
    def configured(self) -> bool: ...

    async def connect(self, workspace_id: str, key: SecretKey, idempotency_key: str) -> ConnectionResult: ...

    async def disconnect(self, workspace_id: str, idempotency_key: str) -> ConnectionResult: ...


class KeyHolder(Protocol):
    """The sealed retry outbox (see bot/core/outbox.py)."""

    async def hold(self, chat_id: int, conversation_id: int, attempt: int, purpose: str,
                   key: SecretKey, workspace_id: str | None, retry_after_s: float | None = None,
                   at_slot: bool = False) -> None: ...

    async def release(self, chat_id: int) -> int: ...

    async def holds(self, chat_id: int) -> bool: ...


@dataclass(frozen=True, slots=True)
class ForeignAction:
    """Another chat replaced or disconnected (``refused``: tried to) the key ``owner_chat_id`` connected."""

    owner_chat_id: int
    owner_user_id: int
    workspace_id: str
    action: str  # "replace" or "disconnect"
    refused: bool


def is_fresh_binding(bound_at: float | None, connection: KeyRecord) -> bool:
    """A link opened after the workspace's key was connected proves the right to change it; a typed id never."""
    if bound_at is None or connection.connected_at is None:
        return False
    connected_at = connection.connected_at
    if connected_at.tzinfo is None:
        connected_at = connected_at.replace(tzinfo=UTC)
    return bound_at > connected_at.timestamp()


class KeyFlow:
    def __init__(self, *, verifier: Verifier, connector: Connector, keys: KeyRecordRepository,
                 fingerprint_secret: bytes, holder: KeyHolder | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.verifier = verifier
        self.connector = connector
        self.keys = keys
        self.fingerprint_secret = fingerprint_secret
        self.holder = holder
        self.clock = clock
        # Told whenever another chat changes (or tries to) a workspace's connection; the runtime tells that chat.
        self.on_foreign: list[Callable[[ForeignAction], Awaitable[None]]] = []

    async def _foreign_connection(self, chat: ChatRef, workspace_id: str | None) -> KeyRecord | None:
        """The workspace's connected key when another chat connected it (by our records)."""
        if not workspace_id:
            return None
        current = await self.keys.connected_in_workspace(workspace_id)
        return current if current is not None and current.chat_id != chat.chat_id else None

    async def _tell(self, owner: KeyRecord, workspace_id: str, action: str, *, refused: bool) -> None:
        notice = ForeignAction(owner.chat_id, owner.user_id, workspace_id, action, refused)
        log.warning("another chat %s the key of workspace %s connected by chat %s",
                    f"tried to {action}" if refused else f"did {action}", workspace_id, owner.chat_id)
        for tell in self.on_foreign:
            try:
                await tell(notice)
            except Exception:  # telling the owner must never break this customer's pipeline
                log.exception("could not tell chat %s about a change to its workspace", owner.chat_id)

    def fingerprint(self, key: SecretKey) -> str:
        return fingerprint(key, self.fingerprint_secret)

    async def perform(self, chat: ChatRef, effect: fx.Effect, key: SecretKey | None,
                      conversation: Conversation | None = None) -> ev.Event | None:
        """Run one network effect and return the verdict as an event for the machine."""
        match effect:
            case fx.Verify(attempt=attempt, workspace_id=workspace_id) if key is not None:
                result = await self.verifier.verify(key)
                record_verification(result.outcome.value)
                if result.outcome == VerificationOutcome.REGION_BLOCKED:  # users are told our team knows
                    log.error("OpenAI refused this server's country or region (HTTP %s): keys cannot be "
                              "verified from here", result.http_status)
                already = False
                if result.outcome == VerificationOutcome.VALID and workspace_id:
                    # only this workspace counts: the same key connected elsewhere must still be connected here
                    found = await self.keys.find_connected_by_fingerprint(self.fingerprint(key), workspace_id)
                    already = found is not None
                return ev.VerificationFinished(attempt, result, already_connected=already)
            case fx.Connect(attempt=attempt, workspace_id=workspace_id, bound_at=bound_at) if key is not None:
                owner = await self._foreign_connection(chat, workspace_id)
                if owner is not None and not is_fresh_binding(bound_at, owner):
                    record_connection(ConnectionOutcome.FOREIGN_WORKSPACE.value)
                    await self._tell(owner, workspace_id, "replace", refused=True)
                    return ev.ConnectionFinished(attempt, ConnectionResult(ConnectionOutcome.FOREIGN_WORKSPACE))
                idempotency = await self._begin_connecting(chat, workspace_id, key)
                connected = await self.connector.connect(workspace_id, key, idempotency)
                record_connection(connected.outcome.value)
                if owner is not None and connected.outcome == ConnectionOutcome.CONNECTED:
                    await self.keys.mark_workspace_disconnected(workspace_id)
                    await self._tell(owner, workspace_id, "replace", refused=False)
                if connected.outcome == ConnectionOutcome.CREDENTIAL_REJECTED:  # users are told support knows
                    log.error("DoubleTick rejected our credential (DOUBLETICK_API_KEY, HTTP %s): no key can be "
                              "connected until an operator fixes it", connected.http_status)
                if connected.outcome in SETTLED_REFUSALS:
                    # DoubleTick did not act: a later paste of this key is a new request with a new key.
                    await self.keys.settle_connecting(chat_id=chat.chat_id, fingerprint=self.fingerprint(key),
                                                      workspace_id=workspace_id,
                                                      outcome=f"connect_{connected.outcome.value}")
                return ev.ConnectionFinished(attempt, connected)
            case fx.Disconnect(workspace_id=workspace_id, bound_at=bound_at):
                owner = await self._foreign_connection(chat, workspace_id)
                if owner is not None and workspace_id and not is_fresh_binding(bound_at, owner):
                    await self._tell(owner, workspace_id, "disconnect", refused=True)
                    return ev.DisconnectFinished(ConnectionResult(ConnectionOutcome.FOREIGN_WORKSPACE))
                removal = ConnectionResult(ConnectionOutcome.NOT_CONFIGURED)
                if self.connector.configured and workspace_id:
                    token = hashlib.sha256(f"disconnect:{chat.chat_id}:{workspace_id}:{self.clock().date()}"
                                           .encode()).hexdigest()[:32]
                    removal = await self.connector.disconnect(workspace_id, token)
                if removal.outcome in DISCONNECTED:
                    await self.keys.delete_for_chat(chat.chat_id)
                    if owner is not None and workspace_id:
                        await self.keys.mark_workspace_disconnected(workspace_id)
                        await self._tell(owner, workspace_id, "disconnect", refused=False)
                return ev.DisconnectFinished(removal)
        return None

    async def _begin_connecting(self, chat: ChatRef, workspace_id: str, key: SecretKey) -> str:
        """Write (or find) the ``connecting`` record, then name the request after it.

        The record is committed before DoubleTick hears of the key, so whatever happens next (a timeout
        after DoubleTick acted, a SIGKILL between its 2xx and our record) the next attempt with the same
        key for the same workspace in this chat, a re-paste or the outbox, finds it and sends the same
        Idempotency-Key: DoubleTick replays its first answer instead of connecting a second time.
        """
        if not self.connector.configured:
            return ""  # nothing will be sent (the connector answers NOT_CONFIGURED), so nothing to record
        fingerprint = self.fingerprint(key)
        record = await self.keys.begin_connecting(chat_id=chat.chat_id, user_id=chat.user_id,
                                                  fingerprint=fingerprint, last_four=key.last_four,
                                                  workspace_id=workspace_id, family="unknown")
        return connect_idempotency_key(record.connect_request, workspace_id, fingerprint)

    async def keep(self, chat: ChatRef, conv: Conversation, effect: fx.Effect, key: SecretKey,
                   conversation_id: int | None = None) -> None:
        """Record non-secret metadata, or seal the key into the retry outbox."""
        match effect:
            case fx.RecordKey(outcome=outcome, connected=connected):
                family = conv.key_family or "unknown"
                if connected and conv.workspace_id:  # (a "connecting" record is not connected: untouched)
                    await self.keys.mark_workspace_disconnected(conv.workspace_id)
                if await self.keys.settle_connecting(chat_id=chat.chat_id, fingerprint=self.fingerprint(key),
                                                     workspace_id=conv.workspace_id, outcome=outcome,
                                                     family=family, connected=connected):
                    return
                if connected:  # after a replacement only the new key counts as connected
                    await self.keys.mark_disconnected(chat.chat_id)
                await self.keys.add(chat_id=chat.chat_id, user_id=chat.user_id,
                                    fingerprint=self.fingerprint(key), last_four=key.last_four,
                                    family=family, outcome=outcome,
                                    workspace_id=conv.workspace_id,
                                    connected_at=self.clock() if connected else None)
            case fx.HoldKey(attempt=attempt, purpose=purpose, retry_after_s=wait, at_slot=at_slot) \
                    if self.holder and conversation_id is not None:
                await self.holder.hold(chat.chat_id, conversation_id, attempt, purpose, key, conv.workspace_id,
                                       retry_after_s=wait, at_slot=at_slot)

    async def release(self, chat: ChatRef) -> None:
        """Shred a held key the user gave up on (no key in hand needed)."""
        if self.holder is not None:
            await self.holder.release(chat.chat_id)

    async def holds(self, chat_id: int) -> bool:
        """Whether a sealed key of this chat waits for its retry (never, without an outbox)."""
        return self.holder is not None and await self.holder.holds(chat_id)

    @staticmethod
    def failure_event(effects: list[fx.Effect]) -> ev.Event | None:
        """The verdict to report when a pipeline crashed: indeterminate, never "invalid"."""
        for effect in effects:
            if isinstance(effect, fx.Verify):
                return ev.VerificationFinished(effect.attempt, VerificationResult(VerificationOutcome.INDETERMINATE))
            if isinstance(effect, fx.Connect):
                return ev.ConnectionFinished(effect.attempt, ConnectionResult(ConnectionOutcome.TRANSIENT))
        return None
