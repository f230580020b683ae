"""Prometheus metrics: one registry per process, small recording helpers, and the /metrics body.

Why module-level: the runtime, the secret guard and the Telegram request layer each record one thing,
and threading a metrics object through every constructor would buy nothing (Prometheus is per
process anyway). Every label value comes from a closed set (update types, step names, outcome enums,
Bot API method names), never from user text, so no label can carry a key or a name.

Several replicas: each serves its own /metrics; sum the counters across replicas. The gauges read
from the database (outbox depth, conversations by step) are the same on every replica: use max().
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.process_collector import ProcessCollector
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from storage.models import Conversation, OutboxItem

__all__ = [
    "CONTENT_TYPE",
    "COUNT_GROUP",
    "REGISTRY",
    "count_update",
    "record_connection",
    "record_guard_verdict",
    "record_rate_limited",
    "record_reminder",
    "record_step_entered",
    "record_verification",
    "record_webhook",
    "refresh_from_database",
    "render",
    "update_type",
]

CONTENT_TYPE = CONTENT_TYPE_LATEST
REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)

COUNT_GROUP = -100  # PTB handler group of count_update: before every other group, alone in its group
UPDATE_TYPES = ("message", "edited_message", "callback_query", "my_chat_member")
_METHOD = re.compile(r"^[A-Za-z]{1,64}$")

UPDATES = Counter("onboarding_updates", "Telegram updates received (before dedupe), by type.", ["type"],
                  registry=REGISTRY)
STEPS = Counter("onboarding_guide_step_entered", "Conversations entering a guide step (the funnel; "
                "Back re-enters a step and counts again; the pseudo-steps reminder_sent and "
                "came_back_after_reminder count reminders and the customers who returned after one).", ["step"],
                registry=REGISTRY)
CONVERSATIONS = Gauge("onboarding_conversations", "Stored conversations by current step (from the "
                      "database at scrape time).", ["step"], registry=REGISTRY)
VERIFICATIONS = Counter("onboarding_verifications", "OpenAI key verifications, by outcome.", ["outcome"],
                        registry=REGISTRY)
CONNECTIONS = Counter("onboarding_connections", "DoubleTick connect calls, by outcome.", ["outcome"],
                      registry=REGISTRY)
EXPOSURE = Histogram("onboarding_key_exposure_seconds", "Exposure window: from the secret guard seeing a "
                     "key-shaped message to Telegram answering its deleteMessage.", ["deletion"],
                     buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
                     registry=REGISTRY)
OUTBOX_DEPTH = Gauge("onboarding_outbox_depth", "Sealed retry-outbox rows waiting (from the database at "
                     "scrape time).", registry=REGISTRY)
RATE_LIMITED = Counter("onboarding_telegram_rate_limited", "Telegram Bot API answers with 429 Too Many "
                       "Requests, by method.", ["method"], registry=REGISTRY)
WEBHOOK = Counter("onboarding_webhook_requests", "Webhook requests, by result (accepted, forbidden, "
                  "bad_request, failed, unavailable).", ["result"], registry=REGISTRY)
PIPELINES = Gauge("onboarding_key_pipelines_running", "Verify/connect pipelines in flight in this process.",
                  registry=REGISTRY)


def update_type(update: object) -> str:
    """The kind of a Telegram update, from a closed set."""
    for kind in UPDATE_TYPES:
        if getattr(update, kind, None) is not None:
            return kind
    return "other"


async def count_update(update: object, context: Any) -> None:
    """PTB TypeHandler callback (group COUNT_GROUP): count every update once it passed the secret guard."""
    UPDATES.labels(update_type(update)).inc()


def record_step_entered(step: str) -> None:
    STEPS.labels(step).inc()


def record_reminder(event: str) -> None:
    """The funnel counts reminders sent and customers who came back after one (as pseudo-steps)."""
    STEPS.labels("reminder_sent" if event == "sent" else "came_back_after_reminder").inc()


def record_verification(outcome: str) -> None:
    VERIFICATIONS.labels(outcome).inc()


def record_connection(outcome: str) -> None:
    CONNECTIONS.labels(outcome).inc()


def record_guard_verdict(verdict: Any) -> None:
    """SecretGuard observer: the exposure window of one deleted (or undeletable) message."""
    EXPOSURE.labels(str(verdict.deletion)).observe(max(0.0, verdict.deleted_at - verdict.received_at))


def record_rate_limited(method: str) -> None:
    RATE_LIMITED.labels(method if _METHOD.match(method) else "other").inc()


def record_webhook(result: str) -> None:
    WEBHOOK.labels(result).inc()


async def refresh_from_database(sessions: async_sessionmaker[AsyncSession], pipelines_running: int = 0,
                                known_steps: Iterable[str] = ()) -> None:
    """Set the gauges that live in the database; called by /metrics before rendering."""
    async with sessions() as session:
        depth = (await session.execute(select(func.count()).select_from(OutboxItem))).scalar_one()
        rows = (await session.execute(select(col(Conversation.step), func.count())
                                      .group_by(col(Conversation.step)))).all()
    OUTBOX_DEPTH.set(int(depth))
    counts = {str(step): int(count) for step, count in rows}
    for step in {*known_steps, *counts}:
        CONVERSATIONS.labels(step).set(counts.get(step, 0))
    PIPELINES.set(pipelines_running)


def render() -> bytes:
    """The text exposition of every metric in this process."""
    return generate_latest(REGISTRY)
