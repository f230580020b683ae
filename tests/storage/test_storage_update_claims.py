"""An update's claim is committed with the conversation it changed: never lost, never applied twice."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.models import ProcessedUpdate
from storage.repositories import ConversationRepository, ProcessedUpdateRepository


async def test_a_save_with_a_claim_records_the_update(sessions: async_sessionmaker[AsyncSession]) -> None:
    conversations, updates = ConversationRepository(sessions), ProcessedUpdateRepository(sessions)
    row = await conversations.create(chat_id=501, user_id=501, step="welcome")
    assert not await updates.seen(9001)
    row.step = "open_keys_page"
    assert await conversations.save(row, row.version, claim_update=9001)
    assert await updates.seen(9001)
    assert not await updates.claim(9001)  # the claim really is the dedupe row


async def test_a_save_that_loses_the_version_race_claims_nothing(sessions: async_sessionmaker[AsyncSession]) -> None:
    conversations, updates = ConversationRepository(sessions), ProcessedUpdateRepository(sessions)
    row = await conversations.create(chat_id=502, user_id=502, step="welcome")
    stale_version = row.version
    assert await conversations.save(row, stale_version)
    assert not await conversations.save(row, stale_version, claim_update=9002)
    assert not await updates.seen(9002)  # so Telegram's redelivery will be processed


async def test_claiming_an_already_claimed_update_in_a_save_is_harmless(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    conversations, updates = ConversationRepository(sessions), ProcessedUpdateRepository(sessions)
    row = await conversations.create(chat_id=503, user_id=503, step="welcome")
    assert await updates.claim(9003)
    assert await conversations.save(row, row.version, claim_update=9003)
    assert await updates.seen(9003)


async def test_one_read_says_whether_an_update_was_processed_and_loads_the_chat(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    conversations, updates = ConversationRepository(sessions), ProcessedUpdateRepository(sessions)
    assert await conversations.get_unless_processed(504, 9004) == (False, None)  # a chat's first update
    assert await updates.claim(9004)
    assert await conversations.get_unless_processed(504, 9004) == (True, None)  # even with no conversation
    row = await conversations.create(chat_id=504, user_id=7, step="welcome", state={"step": "welcome"},
                                     choices={"plan": "free"}, workspace_id="ws_504")
    seen, loaded = await conversations.get_unless_processed(504, 9005)
    assert not seen and loaded is not None
    assert loaded.model_dump() == row.model_dump() == (await conversations.get(504)).model_dump()  # type: ignore[union-attr]
    loaded.step = "open_keys_page"
    assert await conversations.save(loaded, loaded.version, claim_update=9005)
    assert await conversations.get_unless_processed(504, 9005) == (True, None)
    assert (await conversations.get_unless_processed(504, 9006))[1].step == "open_keys_page"  # type: ignore[union-attr]


async def test_a_save_without_a_claim_claims_nothing_and_a_claim_lands_only_with_its_save(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    # PostgreSQL saves and claims in one statement (a data-modifying CTE); SQLite in one transaction.
    conversations, updates = ConversationRepository(sessions), ProcessedUpdateRepository(sessions)
    row = await conversations.create(chat_id=505, user_id=505, step="welcome")
    assert await conversations.save(row, row.version)
    assert await _claims(sessions) == 0
    stale = row.version - 1
    assert not await conversations.save(row, stale, claim_update=9007)
    assert not await updates.seen(9007)
    assert await conversations.save(row, row.version, claim_update=9007)
    assert await updates.seen(9007) and row.version == 3


async def _claims(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        return int((await session.execute(select(func.count()).select_from(ProcessedUpdate))).scalar_one())
