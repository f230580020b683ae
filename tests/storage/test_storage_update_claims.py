"""An update's claim is committed with the conversation it changed: never lost, never applied twice."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

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
