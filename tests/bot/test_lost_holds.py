"""A conversation held for a retry whose sealed key is not in the outbox is told at once, not after 16 minutes.

Found by the short drill in CI: one user's chat showed "held" at the end. Saving ``held`` and sealing the key
are two writes; a SIGKILL (or a database restart past the busy-database retries) between them left a
conversation waiting on a retry nothing would ever make, and ``/start`` only showed "held" again until the
whole hold window (``OUTBOX_HOLD_MINUTES`` + 1 minute) ran out. The outbox worker had the same gap the other
way round: it shredded the row, then (outside the chat's locks) saved the verdict the row carried; now the
shred and the save happen under the chat's locks, so recovery can tell a crash from a verdict on its way.
A row sealed for another attempt (left by a crash, or from before a /restart) used to report a give-up for
the current attempt; it is dropped without a word.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.core.ports import ChatRef
from bot.core.runtime import conversation_of
from bot.standins.sandbox import SANDBOX_BOT_TOKEN
from bot.standins.telegram import FakeTelegram
from bot.telegram.application import BotApp
from flows.outcomes import VerificationOutcome, VerificationResult
from flows.secret import SecretKey
from flows.steps import Step
from storage.db import session_factory
from storage.repositories import OutboxRepository
from tests.e2e.pasting import fresh_key

INTERRUPTED = "I was interrupted while checking your key"
BOT_ID = int(SANDBOX_BOT_TOKEN.split(":")[0])


class Valid:
    async def verify(self, key: SecretKey) -> VerificationResult:
        return VerificationResult(VerificationOutcome.VALID)


async def held(app: BotApp, telegram: FakeTelegram, chat_id: int) -> tuple[ChatRef, int]:
    """A chat whose conversation was saved at ``held`` (attempt 1), as a paste that met a busy OpenAI leaves it."""
    telegram.send(chat_id, "hello", bot_id=BOT_ID)  # the chat exists at Telegram, so the bot can write to it
    row = await app.runtime.conversations.create(
        chat_id=chat_id, user_id=chat_id, step="held",
        state={"step": "held", "attempt": 1, "workspace_id": f"ws_{chat_id}", "step_entered_at": app.runtime.clock()})
    assert row.id is not None
    return ChatRef(chat_id, chat_id), row.id


def later(app: BotApp, seconds: float) -> None:
    real_clock = app.runtime.clock
    app.runtime.clock = lambda: real_clock() + seconds


async def seal(app: BotApp, chat: ChatRef, conversation_id: int, due_now: bool = False) -> None:
    holder = app.runtime.keyflow.holder
    assert holder is not None
    await holder.hold(chat.chat_id, conversation_id, 1, "verify", SecretKey(fresh_key()), f"ws_{chat.chat_id}",
                      retry_after_s=0.0 if due_now else None, at_slot=due_now)


async def held_and_due(app: BotApp, telegram: FakeTelegram, chat_id: int) -> ChatRef:
    """A held chat whose key is sealed and due now, with an OpenAI that would accept it."""
    app.runtime.keyflow.verifier = Valid()
    chat, conversation_id = await held(app, telegram, chat_id)
    await seal(app, chat, conversation_id, due_now=True)
    return chat


def outbox_of(app: BotApp) -> OutboxRepository:
    assert app.engine is not None
    return OutboxRepository(session_factory(app.engine))


async def test_a_held_conversation_with_nothing_sealed_is_told_to_paste_again(
        bot_app: BotApp, telegram: tuple[FakeTelegram, str]) -> None:
    chat, _ = await held(bot_app, telegram[0], 1)
    assert await bot_app.runtime.recover_interrupted() == 0  # young: the seal may still be on its way

    later(bot_app, bot_app.runtime.policy.pipeline_timeout_s + 1)
    assert await bot_app.runtime.recover_interrupted() == 1

    after = conversation_of(await bot_app.runtime.conversations.get(chat.chat_id))
    assert after is not None and after.step == Step.PASTE_KEY
    texts = [m.get("text", "") for m in telegram[0].messages(chat.chat_id, bot_id=BOT_ID)]
    assert any(INTERRUPTED in text for text in texts), texts
    assert await bot_app.runtime.recover_interrupted() == 0  # told once


async def test_a_held_conversation_whose_key_is_sealed_is_left_to_the_outbox(
        bot_app: BotApp, telegram: tuple[FakeTelegram, str]) -> None:
    chat, conversation_id = await held(bot_app, telegram[0], 2)
    await seal(bot_app, chat, conversation_id)
    later(bot_app, bot_app.runtime.policy.pipeline_timeout_s + 1)

    assert await bot_app.runtime.recover_interrupted() == 0
    still = conversation_of(await bot_app.runtime.conversations.get(chat.chat_id))
    assert still is not None and still.step == Step.HELD
    assert await outbox_of(bot_app).holds(chat.chat_id)


async def test_a_user_who_keeps_saving_the_held_conversation_is_still_told_in_time(
        bot_app: BotApp, telegram: tuple[FakeTelegram, str], monkeypatch: pytest.MonkeyPatch) -> None:
    chat, _ = await held(bot_app, telegram[0], 6)
    timeout = bot_app.runtime.policy.pipeline_timeout_s
    later(bot_app, timeout + 1)
    conversations = bot_app.runtime.conversations
    real_clock = conversations._clock
    monkeypatch.setattr(conversations, "_clock", lambda: real_clock() + timedelta(seconds=timeout + 1))
    row = await conversations.get(chat.chat_id)
    assert row is not None
    assert await conversations.save(row, row.version)  # a /start at held: saved just now, the step unchanged

    assert await bot_app.runtime.recover_interrupted() == 1
    after = conversation_of(await conversations.get(chat.chat_id))
    assert after is not None and after.step == Step.PASTE_KEY


async def test_a_worker_that_dies_before_it_reaches_the_chat_keeps_the_row_for_a_retry(
        bot_app: BotApp, telegram: tuple[FakeTelegram, str], monkeypatch: pytest.MonkeyPatch) -> None:
    assert bot_app.worker is not None
    chat = await held_and_due(bot_app, telegram[0], 3)

    async def killed(*_args: object) -> None:
        raise RuntimeError("the process died before the verdict was saved")

    real_resume = bot_app.runtime.resume
    monkeypatch.setattr(bot_app.runtime, "resume", killed)
    assert await bot_app.worker.run_once() == 1
    assert await outbox_of(bot_app).holds(chat.chat_id)  # kept: its lease runs out and it is tried again

    monkeypatch.setattr(bot_app.runtime, "resume", real_resume)
    worker = bot_app.worker
    worker.clock = lambda: datetime.now(UTC) + timedelta(seconds=worker.lease_s + 1)  # the lease has run out
    assert await bot_app.worker.run_once() == 1
    assert not await outbox_of(bot_app).holds(chat.chat_id)
    after = conversation_of(await bot_app.runtime.conversations.get(chat.chat_id))
    assert after is not None and after.step == Step.DT_LOG_IN  # verified; connecting by hand (no auto-connect)


async def test_a_verdict_lost_after_its_row_was_shredded_is_told_as_an_interruption(
        bot_app: BotApp, telegram: tuple[FakeTelegram, str], monkeypatch: pytest.MonkeyPatch) -> None:
    assert bot_app.worker is not None
    chat = await held_and_due(bot_app, telegram[0], 4)
    conversations = bot_app.runtime.conversations

    async def database_gone(*_args: object, **_kwargs: object) -> bool:
        raise ConnectionError("the database went away between the shred and the save")

    monkeypatch.setattr(conversations, "save", database_gone)
    assert await bot_app.worker.run_once() == 1
    monkeypatch.undo()
    assert not await outbox_of(bot_app).holds(chat.chat_id)  # shredded under the lock, verdict not saved
    still = conversation_of(await conversations.get(chat.chat_id))
    assert still is not None and still.step == Step.HELD

    later(bot_app, bot_app.runtime.policy.pipeline_timeout_s + 1)
    assert await bot_app.runtime.recover_interrupted() == 1
    told = conversation_of(await conversations.get(chat.chat_id))
    assert told is not None and told.step == Step.PASTE_KEY


async def test_a_row_sealed_for_another_attempt_is_dropped_without_a_verdict(
        bot_app: BotApp, telegram: tuple[FakeTelegram, str]) -> None:
    assert bot_app.worker is not None
    chat, conversation_id = await held(bot_app, telegram[0], 5)
    await seal(bot_app, chat, conversation_id, due_now=True)  # sealed for attempt 1
    row = await bot_app.runtime.conversations.get(chat.chat_id)
    assert row is not None and row.state is not None
    row.state = {**row.state, "attempt": 2}  # the user pasted again (after a /restart) and waits on attempt 2
    assert await bot_app.runtime.conversations.save(row, row.version)
    before = len(telegram[0].messages(chat.chat_id, bot_id=BOT_ID))

    assert await bot_app.worker.run_once() == 1
    assert not await outbox_of(bot_app).holds(chat.chat_id)
    after = conversation_of(await bot_app.runtime.conversations.get(chat.chat_id))
    assert after is not None and after.step == Step.HELD and after.attempt == 2  # no give-up for attempt 2
    assert len(telegram[0].messages(chat.chat_id, bot_id=BOT_ID)) == before  # nothing said about it
