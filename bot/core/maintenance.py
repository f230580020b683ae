"""Periodic housekeeping: forget idle conversations (the retention /privacy promises), audit events older
than the same retention, and old update ids.

Idempotent, so every replica may run it; deleting the same rows twice is harmless.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from bot.core.periodic import PeriodicJob
from storage.repositories import AuditLog, ConversationRepository, ProcessedUpdateRepository

__all__ = ["Maintenance"]

log = logging.getLogger(__name__)
# Telegram keeps undelivered updates for 24 hours; remembering ids for two days covers any redelivery.
UPDATE_ID_MEMORY = timedelta(days=2)


class Maintenance(PeriodicJob):
    name = "retention housekeeping"

    def __init__(self, conversations: ConversationRepository, updates: ProcessedUpdateRepository, *,
                 retention: timedelta, interval_s: float = 3600.0, audit: AuditLog | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.conversations = conversations
        self.updates = updates
        self.audit = audit
        self.retention = retention
        super().__init__(interval_s)
        self.clock = clock

    async def run_once(self) -> tuple[int, int]:
        now = self.clock()
        forgotten = await self.conversations.delete_idle(now - self.retention)
        pruned = await self.updates.prune(now - UPDATE_ID_MEMORY)
        purged = await self.audit.purge_older_than(now - self.retention) if self.audit is not None else 0
        if forgotten or pruned or purged:
            log.info("retention: forgot %d idle conversations, %d audit events and %d old update ids", forgotten,
                     purged, pruned)
        return forgotten, pruned
