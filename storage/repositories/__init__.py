"""Async repositories over an ``async_sessionmaker``, one module per table.

Why repositories: the runtime speaks in intentions ("claim this update", "save if unchanged"), and each
method is one short transaction, so no caller holds a database transaction across a network call.
"""

from storage.repositories.agents import AgentRepository
from storage.repositories.audit import AuditLog
from storage.repositories.conversations import ConversationRepository
from storage.repositories.handoffs import HandoffRepository
from storage.repositories.key_records import KeyRecordRepository
from storage.repositories.limits import LimitRepository
from storage.repositories.miniapp import InitDataUseRepository
from storage.repositories.outbox import OutboxRepository
from storage.repositories.reminders import ReminderRepository
from storage.repositories.updates import ProcessedUpdateRepository

__all__ = [
    "AgentRepository",
    "AuditLog",
    "ConversationRepository",
    "HandoffRepository",
    "InitDataUseRepository",
    "KeyRecordRepository",
    "LimitRepository",
    "OutboxRepository",
    "ProcessedUpdateRepository",
    "ReminderRepository",
]
