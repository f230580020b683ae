"""Issue 14 in the runtime: a key queued for a busy check waits in its pipeline task, then is verified.

With the real ``build_bot`` wiring and database; the verifier is a recorder. Recovery (which tells
users whose pipeline died with its process) must time a waiting key from its slot, and a shutdown drops
waiting keys at once instead of waiting for their slot.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.core.ports import ChatRef
from bot.core.runtime import conversation_of
from bot.standins.telegram import FakeTelegram
from bot.telegram.application import BotApp, build_bot
from flows import events as ev
from flows.inspection import inspect_pasted_text
from flows.outcomes import VerificationOutcome, VerificationResult
from flows.secret import SecretKey
from flows.steps import Step
from storage.migrate import upgrade
from tests.bot.support import sandbox_settings
from tests.e2e.pasting import fresh_key


class Recorder:
    def __init__(self) -> None:
        self.at: list[float] = []

    async def verify(self, key: SecretKey) -> VerificationResult:
        self.at.append(time.monotonic())
        return VerificationResult(VerificationOutcome.VALID)


@pytest.fixture
async def bot_app(telegram: tuple[FakeTelegram, str], tmp_path: Path) -> AsyncIterator[BotApp]:
    created = build_bot(sandbox_settings(telegram[1], tmp_path, outbox_hold_minutes=0))
    await upgrade(created.settings.database_url)
    yield created
    for close in created.closers:
        await close()


async def at_paste_step(app: BotApp, chat_id: int) -> ChatRef:
    await app.runtime.conversations.create(chat_id=chat_id, user_id=chat_id, step="paste_key",
                                           state={"step": "paste_key", "workspace_id": f"ws_{chat_id}"})
    return ChatRef(chat_id, chat_id)


def queued_paste(wait_s: float) -> ev.KeyPasted:
    return ev.KeyPasted(inspect_pasted_text(fresh_key()), queued_s=wait_s)


async def test_a_waiting_key_is_verified_at_its_slot_and_recovery_leaves_it_alone(bot_app: BotApp) -> None:
    runtime = bot_app.runtime
    assert runtime.policy.queue_hold_s == 0  # OUTBOX_HOLD_MINUTES=0: nothing can be held, keys wait here
    recorder = Recorder()
    runtime.keyflow.verifier = recorder
    chat = await at_paste_step(bot_app, 1)
    pasted_at = time.monotonic()
    await runtime.handle(chat, queued_paste(0.8))
    waiting = conversation_of(await runtime.conversations.get(1))
    assert waiting is not None and waiting.step == Step.VERIFYING and waiting.check_at is not None
    assert recorder.at == [] and runtime.pipelines_running == 1

    # Past the pipeline timeout since the paste, but not since the slot: not an interrupted pipeline.
    real_clock = runtime.clock
    runtime.clock = lambda: real_clock() + runtime.policy.pipeline_timeout_s + 0.5
    try:
        assert await runtime.recover_interrupted() == 0
    finally:
        runtime.clock = real_clock

    await runtime.settle(timeout=10)
    assert len(recorder.at) == 1 and recorder.at[0] - pasted_at >= 0.75
    done = conversation_of(await runtime.conversations.get(1))
    assert done is not None and done.step == Step.DT_LOG_IN  # verified (no DoubleTick here: by hand)


async def test_a_user_who_moved_on_is_not_checked_and_shutdown_drops_waiting_keys(bot_app: BotApp) -> None:
    runtime = bot_app.runtime
    recorder = Recorder()
    runtime.keyflow.verifier = recorder
    gone = await at_paste_step(bot_app, 2)
    await runtime.handle(gone, queued_paste(0.3))
    await runtime.handle(gone, ev.RestartAsked())  # moved on while the key waited
    stays = await at_paste_step(bot_app, 3)
    await runtime.handle(stays, queued_paste(60.0))
    await asyncio.sleep(0.5)
    runtime.stop_queued()
    started = time.monotonic()
    await runtime.drain(timeout=10)
    assert time.monotonic() - started < 2 and runtime.pipelines_running == 0
    assert recorder.at == []  # neither key went to OpenAI


async def test_a_key_sealed_for_its_slot_is_tried_exactly_then_not_after_backoff() -> None:
    from datetime import UTC, datetime, timedelta

    from bot.core.outbox import RetryPolicy, SealedOutbox
    from storage.models import OutboxItem
    from storage.sealing import KeyRing

    class Repo:
        def __init__(self) -> None:
            self.items: list[OutboxItem] = []

        async def put(self, item: OutboxItem) -> OutboxItem:
            self.items.append(item)
            return item

    now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    repo = Repo()
    outbox = SealedOutbox(repo, KeyRing([("k1", b"\x02" * 32)]), RetryPolicy(first_delay_s=5.0),  # type: ignore[arg-type]
                          clock=lambda: now)
    await outbox.hold(1, 1, 1, "verify", SecretKey(fresh_key()), "ws_1", retry_after_s=1.5, at_slot=True)
    await outbox.hold(2, 2, 1, "verify", SecretKey(fresh_key()), "ws_2", retry_after_s=1.5)
    assert repo.items[0].next_attempt_at == now + timedelta(seconds=1.5)
    assert repo.items[1].next_attempt_at >= now + timedelta(seconds=4)  # backoff: 5 s with jitter
