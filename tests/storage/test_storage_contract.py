"""Contract tests for the repositories, run unchanged on every backend (SQLite and PostgreSQL).

Each test gets a freshly migrated database through the ``sessions`` fixture in tests/conftest.py.
"""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from flows.secret import SecretKey
from storage.fingerprint import fingerprint
from storage.models import Conversation, OutboxItem
from storage.repositories import (
    AuditLog,
    ConversationRepository,
    KeyRecordRepository,
    OutboxRepository,
    ProcessedUpdateRepository,
)
from storage.sealing import KeyRing, aad_for
from tests.clock import FakeClock

Sessions = async_sessionmaker[AsyncSession]

T0 = datetime(2026, 1, 15, 9, 30, tzinfo=UTC)
SUPERGROUP_CHAT_ID = -1_001_234_567_890_123  # Telegram chat ids need 64 bits
BIG_USER_ID = 7_123_456_789
FP_SECRET = b"fingerprint-secret-for-tests-only"


def fp(text: str) -> str:
    return fingerprint(SecretKey(text), FP_SECRET)


class TestConversations:
    async def test_get_returns_none_for_an_unknown_chat(self, sessions: Sessions) -> None:
        assert await ConversationRepository(sessions).get(42) is None

    async def test_create_then_get_round_trips_every_field(self, sessions: Sessions) -> None:
        repo = ConversationRepository(sessions, clock=FakeClock(T0))
        created = await repo.create(
            chat_id=SUPERGROUP_CHAT_ID,
            user_id=BIG_USER_ID,
            step="paste_key",
            username="ana",
            language="pt",
            choices={"plan": "pay-as-you-go", "role": "owner"},
            state={"attempts": 2, "hints": ["a", "b"], "nested": {"x": None}},
            guide_message_id=3_000_000_000,
            workspace_id="ws_123",
        )
        loaded = await repo.get(SUPERGROUP_CHAT_ID)
        assert loaded is not None
        assert loaded.id == created.id is not None
        assert (loaded.chat_id, loaded.user_id, loaded.username, loaded.language) == (
            SUPERGROUP_CHAT_ID,
            BIG_USER_ID,
            "ana",
            "pt",
        )
        assert loaded.step == "paste_key"
        assert loaded.choices == {"plan": "pay-as-you-go", "role": "owner"}
        assert loaded.state == {"attempts": 2, "hints": ["a", "b"], "nested": {"x": None}}
        assert loaded.guide_message_id == 3_000_000_000
        assert loaded.workspace_id == "ws_123"
        assert loaded.version == 1
        assert loaded.last_outcome is None
        assert loaded.created_at == loaded.updated_at == loaded.step_entered_at == T0

    async def test_timestamps_read_back_as_aware_utc(self, sessions: Sessions) -> None:
        ist = timezone(timedelta(hours=5, minutes=30))
        repo = ConversationRepository(sessions, clock=lambda: datetime(2026, 3, 1, 12, 0, tzinfo=ist))
        await repo.create(chat_id=1, user_id=1, step="start")
        loaded = await repo.get(1)
        assert loaded is not None
        assert loaded.created_at.tzinfo is not None
        assert loaded.created_at.utcoffset() == timedelta(0)
        assert loaded.created_at == datetime(2026, 3, 1, 6, 30, tzinfo=UTC)

    async def test_naive_datetimes_are_refused(self, sessions: Sessions) -> None:
        repo = ConversationRepository(sessions, clock=lambda: datetime(2026, 3, 1, 12, 0))
        with pytest.raises(Exception, match="naive"):
            await repo.create(chat_id=1, user_id=1, step="start")

    async def test_create_for_an_existing_chat_returns_the_stored_row(self, sessions: Sessions) -> None:
        repo = ConversationRepository(sessions)
        first = await repo.create(chat_id=5, user_id=1, step="start", username="first")
        second = await repo.create(chat_id=5, user_id=2, step="other", username="second")
        assert second.id == first.id
        assert (second.user_id, second.step, second.username) == (1, "start", "first")
        assert await repo.count() == 1

    async def test_concurrent_creates_for_one_chat_make_one_row(self, sessions: Sessions) -> None:
        repo = ConversationRepository(sessions)
        results = await asyncio.gather(*(repo.create(chat_id=77, user_id=n, step="start") for n in range(6)))
        assert len({conv.id for conv in results}) == 1
        assert await repo.count() == 1

    async def test_save_writes_changes_and_bumps_the_version(self, sessions: Sessions) -> None:
        clock = FakeClock(T0)
        repo = ConversationRepository(sessions, clock=clock)
        conv = await repo.create(chat_id=9, user_id=1, step="start")
        clock.advance(minutes=5)
        conv.step = "create_key"
        conv.choices = {"plan": "free"}
        conv.state = {"n": 1}
        conv.workspace_id = "ws_9"
        conv.guide_message_id = 12
        conv.last_outcome = "valid"
        assert await repo.save(conv, expected_version=1) is True
        assert conv.version == 2
        loaded = await repo.get(9)
        assert loaded is not None
        assert loaded.version == 2
        assert (loaded.step, loaded.choices, loaded.state) == ("create_key", {"plan": "free"}, {"n": 1})
        assert (loaded.workspace_id, loaded.guide_message_id, loaded.last_outcome) == ("ws_9", 12, "valid")
        assert loaded.updated_at == T0 + timedelta(minutes=5)
        assert loaded.created_at == T0

    async def test_save_with_a_stale_version_is_refused_and_changes_nothing(self, sessions: Sessions) -> None:
        repo = ConversationRepository(sessions)
        conv = await repo.create(chat_id=9, user_id=1, step="start")
        conv.step = "a"
        assert await repo.save(conv, expected_version=1)
        stale = await repo.get(9)
        assert stale is not None
        stale.step = "b"
        assert await repo.save(stale, expected_version=1) is False
        loaded = await repo.get(9)
        assert loaded is not None
        assert (loaded.step, loaded.version) == ("a", 2)

    async def test_concurrent_saves_of_one_version_have_exactly_one_winner(self, sessions: Sessions) -> None:
        repo = ConversationRepository(sessions)
        await repo.create(chat_id=11, user_id=1, step="start")
        copies = [await repo.get(11) for _ in range(4)]
        for index, copy in enumerate(copies):
            assert copy is not None
            copy.step = f"step_{index}"
        outcomes = await asyncio.gather(*(repo.save(copy, expected_version=1) for copy in copies if copy))
        assert sorted(outcomes) == [False, False, False, True]
        winner = copies[outcomes.index(True)]
        loaded = await repo.get(11)
        assert loaded is not None and winner is not None
        assert (loaded.step, loaded.version) == (winner.step, 2)

    async def test_step_entered_at_moves_only_when_the_step_changes(self, sessions: Sessions) -> None:
        clock = FakeClock(T0)
        repo = ConversationRepository(sessions, clock=clock)
        conv = await repo.create(chat_id=3, user_id=1, step="start")
        clock.advance(minutes=1)
        conv.state = {"touched": True}
        assert await repo.save(conv, conv.version)
        assert conv.step_entered_at == T0
        clock.advance(minutes=1)
        conv.step = "paste_key"
        assert await repo.save(conv, conv.version)
        assert conv.step_entered_at == T0 + timedelta(minutes=2)
        loaded = await repo.get(3)
        assert loaded is not None
        assert loaded.step_entered_at == T0 + timedelta(minutes=2)
        assert loaded.version == 3

    async def test_set_guide_message_records_the_id_without_a_version_bump(self, sessions: Sessions) -> None:
        repo = ConversationRepository(sessions)
        await repo.create(chat_id=4, user_id=1, step="start")
        await repo.set_guide_message(4, 4_000_000_001)
        loaded = await repo.get(4)
        assert loaded is not None
        assert (loaded.guide_message_id, loaded.version) == (4_000_000_001, 1)
        await repo.set_guide_message(4, None)
        cleared = await repo.get(4)
        assert cleared is not None and cleared.guide_message_id is None
        await repo.set_guide_message(404, 1)  # unknown chat: nothing to do, no error

    async def test_set_language_stores_the_choice_and_later_saves_keep_it(self, sessions: Sessions) -> None:
        repo = ConversationRepository(sessions)
        await repo.create(chat_id=5, user_id=1, step="start", language="en")
        await repo.set_language(5, "pt-BR")
        loaded = await repo.get(5)
        assert loaded is not None and (loaded.language, loaded.version) == ("pt-BR", 1)
        loaded.step = "next"
        assert await repo.save(loaded, 1)
        again = await repo.get(5)
        assert again is not None and again.language == "pt-BR"

    async def test_save_needs_a_created_conversation(self, sessions: Sessions) -> None:
        with pytest.raises(ValueError, match="created first"):
            await ConversationRepository(sessions).save(Conversation(chat_id=1, user_id=1, step="x"), 1)

    async def test_delete_removes_the_conversation_and_shreds_its_outbox(self, sessions: Sessions) -> None:
        conversations = ConversationRepository(sessions)
        outbox = OutboxRepository(sessions)
        conv = await conversations.create(chat_id=21, user_id=1, step="verify")
        other = await conversations.create(chat_id=22, user_id=1, step="verify")
        assert conv.id is not None and other.id is not None
        mine = await outbox.put(_outbox_item(conv.id, 21))
        theirs = await outbox.put(_outbox_item(other.id, 22))
        assert await conversations.delete(21) is True
        assert await conversations.get(21) is None
        assert mine.id is not None and theirs.id is not None
        assert await outbox.get(mine.id) is None
        assert await outbox.get(theirs.id) is not None
        assert await conversations.delete(21) is False

    async def test_deleting_a_conversation_row_cascades_to_its_outbox(self, sessions: Sessions) -> None:
        # The foreign key is the second line of defence behind ConversationRepository.delete.
        conversations = ConversationRepository(sessions)
        outbox = OutboxRepository(sessions)
        conv = await conversations.create(chat_id=23, user_id=1, step="verify")
        assert conv.id is not None
        item = await outbox.put(_outbox_item(conv.id, 999))  # chat id deliberately different
        async with sessions.begin() as session:
            row = (await session.scalars(select(Conversation).where(col(Conversation.id) == conv.id))).one()
            await session.delete(row)
        assert item.id is not None
        assert await outbox.get(item.id) is None

    async def test_find_stale_returns_idle_conversations_at_the_given_steps(self, sessions: Sessions) -> None:
        clock = FakeClock(T0)
        repo = ConversationRepository(sessions, clock=clock)
        await repo.create(chat_id=1, user_id=1, step="paste_key")  # T0
        clock.advance(minutes=10)
        await repo.create(chat_id=2, user_id=1, step="paste_key")  # T0+10
        await repo.create(chat_id=3, user_id=1, step="done")  # T0+10, other step
        clock.advance(minutes=50)
        await repo.create(chat_id=4, user_id=1, step="create_key")  # T0+60, too recent
        stale = await repo.find_stale({"paste_key", "create_key"}, idle_since=T0 + timedelta(minutes=30))
        assert [conv.chat_id for conv in stale] == [1, 2]
        limited = await repo.find_stale(["paste_key"], idle_since=T0 + timedelta(minutes=30), limit=1)
        assert [conv.chat_id for conv in limited] == [1]
        assert await repo.find_stale([], idle_since=T0 + timedelta(days=1)) == []

    async def test_find_stale_dates_by_step_entry_not_by_the_last_save(self, sessions: Sessions) -> None:
        clock = FakeClock(T0)
        repo = ConversationRepository(sessions, clock=clock)
        row = await repo.create(chat_id=1, user_id=1, step="verifying")  # entered at T0
        clock.advance(minutes=40)
        assert await repo.save(row, row.version)  # a /start at the same step, saved at T0+40
        stale = await repo.find_stale({"verifying"}, idle_since=T0 + timedelta(minutes=30))
        assert [conv.chat_id for conv in stale] == [1]

    async def test_count_counts_conversations(self, sessions: Sessions) -> None:
        repo = ConversationRepository(sessions)
        assert await repo.count() == 0
        for chat_id in (1, 2, 3):
            await repo.create(chat_id=chat_id, user_id=1, step="start")
        assert await repo.count() == 3


class TestProcessedUpdates:
    async def test_an_update_can_be_claimed_only_once(self, sessions: Sessions) -> None:
        repo = ProcessedUpdateRepository(sessions)
        assert await repo.claim(123_456_789_012) is True
        assert await repo.claim(123_456_789_012) is False
        assert await repo.claim(123_456_789_013) is True

    async def test_concurrent_claims_of_one_update_have_one_winner(self, sessions: Sessions) -> None:
        repo = ProcessedUpdateRepository(sessions)
        outcomes = await asyncio.gather(*(repo.claim(5) for _ in range(6)))
        assert sorted(outcomes) == [False] * 5 + [True]

    async def test_prune_deletes_only_old_claims(self, sessions: Sessions) -> None:
        clock = FakeClock(T0)
        repo = ProcessedUpdateRepository(sessions, clock=clock)
        await repo.claim(1)
        await repo.claim(2)
        clock.advance(hours=2)
        await repo.claim(3)
        assert await repo.prune(older_than=T0 + timedelta(hours=1)) == 2
        assert await repo.claim(1) is True  # forgotten, so claimable again
        assert await repo.claim(3) is False
        assert await repo.prune(older_than=T0) == 0


class TestKeyRecords:
    async def test_add_refuses_anything_but_a_hex_fingerprint(self, sessions: Sessions) -> None:
        repo = KeyRecordRepository(sessions)
        with pytest.raises(ValueError, match="fingerprint"):
            await repo.add(
                chat_id=1,
                user_id=1,
                fingerprint="sk-proj-abc",
                last_four="abcd",
                family="project",
                outcome="valid",
            )
        with pytest.raises(ValueError, match="last_four"):
            await repo.add(
                chat_id=1,
                user_id=1,
                fingerprint=fp("k"),
                last_four="abcde",
                family="project",
                outcome="valid",
            )

    async def test_a_connected_key_is_found_by_fingerprint(self, sessions: Sessions) -> None:
        clock = FakeClock(T0)
        repo = KeyRecordRepository(sessions, clock=clock)
        key_fp = fp("sk-proj-one")
        record = await repo.add(
            chat_id=SUPERGROUP_CHAT_ID,
            user_id=BIG_USER_ID,
            fingerprint=key_fp,
            last_four="-one",
            family="project",
            outcome="valid",
        )
        assert record.id is not None
        assert await repo.find_connected_by_fingerprint(key_fp) is None  # verified, not yet connected
        clock.advance(minutes=1)
        assert await repo.mark_connected(record.id, workspace_id="ws_1") is True
        found = await repo.find_connected_by_fingerprint(key_fp)
        assert found is not None
        assert (found.id, found.workspace_id, found.connected_at) == (
            record.id,
            "ws_1",
            T0 + timedelta(minutes=1),
        )
        assert found.chat_id == SUPERGROUP_CHAT_ID
        assert await repo.find_connected_by_fingerprint(key_fp, workspace_id="ws_1") is not None
        assert await repo.find_connected_by_fingerprint(key_fp, workspace_id="ws_2") is None
        assert await repo.find_connected_by_fingerprint(fp("sk-proj-two")) is None
        assert await repo.mark_connected(10_000, workspace_id="ws_1") is False

    async def test_disconnected_keys_are_no_longer_found(self, sessions: Sessions) -> None:
        repo = KeyRecordRepository(sessions)
        key_fp = fp("sk-proj-one")
        await repo.add(
            chat_id=1,
            user_id=1,
            fingerprint=key_fp,
            last_four="-one",
            family="project",
            outcome="connected",
            workspace_id="ws",
            connected_at=T0,
        )
        await repo.add(
            chat_id=1, user_id=1, fingerprint=fp("x"), last_four="x", family="user", outcome="invalid"
        )
        assert await repo.mark_disconnected(1, at=T0 + timedelta(days=1)) == 1
        assert await repo.find_connected_by_fingerprint(key_fp) is None
        assert await repo.mark_disconnected(1) == 0

    async def test_latest_for_chat_is_the_newest_record(self, sessions: Sessions) -> None:
        clock = FakeClock(T0)
        repo = KeyRecordRepository(sessions, clock=clock)
        assert await repo.latest_for_chat(1) is None
        await repo.add(
            chat_id=1, user_id=1, fingerprint=fp("a"), last_four="aaaa", family="project", outcome="invalid"
        )
        clock.advance(seconds=1)
        await repo.add(
            chat_id=1, user_id=1, fingerprint=fp("b"), last_four="bbbb", family="project", outcome="valid"
        )
        await repo.add(
            chat_id=2, user_id=1, fingerprint=fp("c"), last_four="cccc", family="project", outcome="valid"
        )
        latest = await repo.latest_for_chat(1)
        assert latest is not None
        assert (latest.last_four, latest.outcome, latest.created_at) == (
            "bbbb",
            "valid",
            T0 + timedelta(seconds=1),
        )

    async def test_delete_for_chat_forgets_only_that_chat(self, sessions: Sessions) -> None:
        repo = KeyRecordRepository(sessions)
        for chat_id in (1, 1, 2):
            await repo.add(
                chat_id=chat_id,
                user_id=1,
                fingerprint=fp(str(chat_id)),
                last_four="1",
                family="p",
                outcome="o",
            )
        assert await repo.delete_for_chat(1) == 2
        assert await repo.latest_for_chat(1) is None
        assert await repo.latest_for_chat(2) is not None


class TestAuditLog:
    async def test_recent_lists_newest_first_with_kind_filter_and_limit(self, sessions: Sessions) -> None:
        clock = FakeClock(T0)
        log = AuditLog(sessions, clock=clock)
        await log.record(
            "key_verified", chat_id=SUPERGROUP_CHAT_ID, actor_user_id=BIG_USER_ID, outcome="valid"
        )
        clock.advance(seconds=1)
        await log.record("key_connected", chat_id=1, workspace_id="ws", fingerprint_prefix="abc123")
        clock.advance(seconds=1)
        await log.record("key_verified", chat_id=2, outcome="invalid", codes=["invalid_api_key"], n=1)
        events = await log.recent()
        assert [event.kind for event in events] == ["key_verified", "key_connected", "key_verified"]
        assert events[0].detail == {"outcome": "invalid", "codes": ["invalid_api_key"], "n": 1}
        assert events[0].at == T0 + timedelta(seconds=2)
        assert events[2].chat_id == SUPERGROUP_CHAT_ID and events[2].actor_user_id == BIG_USER_ID
        verified = await log.recent(kind="key_verified")
        assert [event.chat_id for event in verified] == [2, SUPERGROUP_CHAT_ID]
        assert len(await log.recent(limit=1)) == 1

    @pytest.mark.parametrize(
        "detail",
        [
            {"key": SecretKey("sk-proj-AUDITCANARY1234")},
            {"nested": {"deeper": [SecretKey("sk-proj-AUDITCANARY1234")]}},
            {"raw": b"sk-proj-AUDITCANARY1234"},
        ],
        ids=["secret-key", "nested-secret-key", "bytes"],
    )
    async def test_record_refuses_key_material(self, sessions: Sessions, detail: dict[str, Any]) -> None:
        log = AuditLog(sessions)
        with pytest.raises(TypeError) as caught:
            await log.record("oops", chat_id=1, **detail)
        assert "AUDITCANARY" not in str(caught.value)
        assert await log.recent() == []

    async def test_record_refuses_detail_that_is_not_json(self, sessions: Sessions) -> None:
        with pytest.raises(TypeError):
            await AuditLog(sessions).record("oops", when=object())


def _outbox_item(
    conversation_id: int,
    chat_id: int,
    *,
    next_attempt_at: datetime = T0,
    expires_at: datetime = T0 + timedelta(minutes=15),
    sealed: bytes = b"\x00" * 12 + b"ciphertext-and-tag",
    kek_id: str = "k0",
    purpose: str = "verify",
) -> OutboxItem:
    return OutboxItem(
        chat_id=chat_id,
        conversation_id=conversation_id,
        purpose=purpose,
        sealed=sealed,
        kek_id=kek_id,
        next_attempt_at=next_attempt_at,
        expires_at=expires_at,
        created_at=T0,
    )


async def _conversation_id(sessions: Sessions, chat_id: int = 500) -> int:
    conv = await ConversationRepository(sessions).create(chat_id=chat_id, user_id=1, step="verify")
    assert conv.id is not None
    return conv.id


class TestOutbox:
    async def test_put_then_get_round_trips_the_sealed_bytes(self, sessions: Sessions) -> None:
        outbox = OutboxRepository(sessions)
        conv_id = await _conversation_id(sessions)
        blob = bytes(range(256))
        item = await outbox.put(_outbox_item(conv_id, 500, sealed=blob, purpose="connect"))
        assert item.id is not None
        loaded = await outbox.get(item.id)
        assert loaded is not None
        assert (loaded.sealed, loaded.kek_id, loaded.purpose, loaded.attempts) == (blob, "k0", "connect", 0)
        assert loaded.expires_at == T0 + timedelta(minutes=15)
        assert "ciphertext" not in repr(loaded) and "\\x00" not in repr(loaded)

    async def test_put_refuses_an_unknown_purpose(self, sessions: Sessions) -> None:
        conv_id = await _conversation_id(sessions)
        with pytest.raises(ValueError, match="purpose"):
            await OutboxRepository(sessions).put(_outbox_item(conv_id, 500, purpose="exfiltrate"))

    async def test_claim_due_leases_only_due_unexpired_unleased_items(self, sessions: Sessions) -> None:
        outbox = OutboxRepository(sessions)
        conv_id = await _conversation_id(sessions)
        now = T0 + timedelta(minutes=1)
        due_early = await outbox.put(_outbox_item(conv_id, 500, next_attempt_at=T0))
        due_late = await outbox.put(_outbox_item(conv_id, 500, next_attempt_at=T0 + timedelta(seconds=30)))
        await outbox.put(_outbox_item(conv_id, 500, next_attempt_at=now + timedelta(seconds=1)))  # not yet
        await outbox.put(_outbox_item(conv_id, 500, expires_at=now))  # expired
        claimed = await outbox.claim_due(now, owner="worker-a", lease_seconds=60, limit=10)
        assert [item.id for item in claimed] == [due_early.id, due_late.id]
        assert all(item.lock_owner == "worker-a" for item in claimed)
        assert all(item.locked_until == now + timedelta(seconds=60) for item in claimed)
        assert await outbox.claim_due(now, owner="worker-b", lease_seconds=60) == []

    async def test_claim_due_respects_the_limit(self, sessions: Sessions) -> None:
        outbox = OutboxRepository(sessions)
        conv_id = await _conversation_id(sessions)
        for offset in range(5):
            await outbox.put(_outbox_item(conv_id, 500, next_attempt_at=T0 + timedelta(seconds=offset)))
        now = T0 + timedelta(minutes=1)
        first = await outbox.claim_due(now, owner="a", lease_seconds=60, limit=2)
        second = await outbox.claim_due(now, owner="b", lease_seconds=60, limit=2)
        third = await outbox.claim_due(now, owner="c", lease_seconds=60, limit=2)
        assert [len(first), len(second), len(third)] == [2, 2, 1]
        assert [item.next_attempt_at for item in first + second + third] == [
            T0 + timedelta(seconds=s) for s in range(5)
        ]

    async def test_an_expired_lease_can_be_claimed_again(self, sessions: Sessions) -> None:
        outbox = OutboxRepository(sessions)
        conv_id = await _conversation_id(sessions)
        item = await outbox.put(_outbox_item(conv_id, 500))
        now = T0 + timedelta(seconds=1)
        assert [i.id for i in await outbox.claim_due(now, owner="crashed", lease_seconds=30)] == [item.id]
        assert await outbox.claim_due(now + timedelta(seconds=29), owner="b", lease_seconds=30) == []
        again = await outbox.claim_due(now + timedelta(seconds=31), owner="b", lease_seconds=30)
        assert [(i.id, i.lock_owner) for i in again] == [(item.id, "b")]

    async def test_concurrent_claimers_never_get_the_same_item(self, sessions: Sessions) -> None:
        outbox = OutboxRepository(sessions)
        conv_id = await _conversation_id(sessions)
        put = [await outbox.put(_outbox_item(conv_id, 500, next_attempt_at=T0)) for _ in range(12)]
        now = T0 + timedelta(minutes=1)
        batches = await asyncio.gather(
            *(outbox.claim_due(now, owner=f"worker-{n}", lease_seconds=60, limit=3) for n in range(6))
        )
        claimed = [item.id or 0 for batch in batches for item in batch]
        assert len(claimed) == len(set(claimed))
        for n, batch in enumerate(batches):
            assert all(item.lock_owner == f"worker-{n}" for item in batch)
        rest = await outbox.claim_due(now, owner="sweeper", lease_seconds=60, limit=100)
        assert sorted(claimed + [item.id or 0 for item in rest]) == sorted(item.id or 0 for item in put)

    async def test_reschedule_releases_the_lease_and_counts_the_attempt(self, sessions: Sessions) -> None:
        outbox = OutboxRepository(sessions)
        conv_id = await _conversation_id(sessions)
        item = await outbox.put(_outbox_item(conv_id, 500))
        assert item.id is not None
        now = T0 + timedelta(seconds=1)
        await outbox.claim_due(now, owner="a", lease_seconds=60)
        later = now + timedelta(seconds=20)
        assert await outbox.reschedule(item.id, later, 1, owner="someone-else") is False
        assert await outbox.reschedule(item.id, later, 1, owner="a") is True
        loaded = await outbox.get(item.id)
        assert loaded is not None
        assert (loaded.attempts, loaded.next_attempt_at, loaded.locked_until, loaded.lock_owner) == (
            1,
            later,
            None,
            None,
        )
        assert await outbox.claim_due(now + timedelta(seconds=10), owner="b", lease_seconds=60) == []
        assert len(await outbox.claim_due(later, owner="b", lease_seconds=60)) == 1
        assert await outbox.reschedule(10_000, later, 1) is False

    async def test_delete_removes_the_row(self, sessions: Sessions) -> None:
        outbox = OutboxRepository(sessions)
        conv_id = await _conversation_id(sessions)
        item = await outbox.put(_outbox_item(conv_id, 500))
        assert item.id is not None
        assert await outbox.delete(item.id) is True
        assert await outbox.get(item.id) is None
        assert await outbox.pending_count() == 0
        async with sessions() as session:
            assert (await session.scalars(select(OutboxItem))).all() == []
        assert await outbox.delete(item.id) is False

    async def test_claim_due_skips_rows_locked_by_another_transaction(
        self, backend: str, sessions: Sessions
    ) -> None:
        if backend != "postgres":
            pytest.skip("row locks are PostgreSQL's; SQLite serialises whole write transactions")
        outbox = OutboxRepository(sessions)
        conv_id = await _conversation_id(sessions)
        held = await outbox.put(_outbox_item(conv_id, 500, next_attempt_at=T0))
        free = await outbox.put(_outbox_item(conv_id, 500, next_attempt_at=T0 + timedelta(seconds=1)))
        async with sessions.begin() as holder:
            await holder.execute(select(OutboxItem).where(col(OutboxItem.id) == held.id).with_for_update())
            claimed = await asyncio.wait_for(
                outbox.claim_due(T0 + timedelta(minutes=1), owner="b", lease_seconds=60), timeout=5
            )
            assert [item.id for item in claimed] == [free.id]
        again = await outbox.claim_due(T0 + timedelta(minutes=1), owner="c", lease_seconds=60)
        assert [item.id for item in again] == [held.id]

    async def test_deleted_sealed_bytes_do_not_linger_in_the_sqlite_files(
        self, backend: str, database_url: str, sessions: Sessions
    ) -> None:
        if backend != "sqlite":
            pytest.skip("file-level check of SQLite's secure_delete")
        outbox = OutboxRepository(sessions)
        conv_id = await _conversation_id(sessions)
        marker = b"SEALED-BYTES-CANARY-" + os.urandom(8).hex().encode()
        item = await outbox.put(_outbox_item(conv_id, 500, sealed=marker))
        assert item.id is not None
        assert await outbox.delete(item.id)
        async with sessions.kw["bind"].connect() as connection:  # a checkpoint runs outside any transaction
            autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
            await autocommit.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        path = Path(make_url(database_url).database or "")
        for file in path.parent.glob(path.name + "*"):
            assert marker not in file.read_bytes(), file.name

    async def test_delete_expired_deletes_only_expired_rows_even_when_leased(
        self, sessions: Sessions
    ) -> None:
        outbox = OutboxRepository(sessions)
        conv_id = await _conversation_id(sessions)
        leased = await outbox.put(_outbox_item(conv_id, 500, expires_at=T0 + timedelta(minutes=5)))
        await outbox.put(_outbox_item(conv_id, 500, expires_at=T0 + timedelta(minutes=5)))
        keep = await outbox.put(_outbox_item(conv_id, 500, expires_at=T0 + timedelta(minutes=20)))
        await outbox.claim_due(T0 + timedelta(seconds=1), owner="a", lease_seconds=3600, limit=1)
        assert leased.id is not None and keep.id is not None
        assert await outbox.delete_expired(T0 + timedelta(minutes=10)) == 2
        assert await outbox.get(leased.id) is None
        assert await outbox.get(keep.id) is not None
        assert await outbox.pending_count() == 1
        assert await outbox.delete_expired(T0 + timedelta(minutes=10)) == 0

    async def test_delete_for_chat_shreds_only_that_chat(self, sessions: Sessions) -> None:
        outbox = OutboxRepository(sessions)
        conv_a = await _conversation_id(sessions, 1)
        conv_b = await _conversation_id(sessions, 2)
        await outbox.put(_outbox_item(conv_a, 1))
        await outbox.put(_outbox_item(conv_a, 1, purpose="connect"))
        await outbox.put(_outbox_item(conv_b, 2))
        assert await outbox.delete_for_chat(1) == 2
        assert await outbox.pending_count() == 1

    async def test_rotation_rewraps_every_item_under_the_newest_kek(self, sessions: Sessions) -> None:
        outbox = OutboxRepository(sessions)
        conv_id = await _conversation_id(sessions, 500)
        old_kek, new_kek = os.urandom(32), os.urandom(32)
        key = SecretKey("sk-proj-ROTATIONCANARY-abcd")
        aad = aad_for(conv_id, 500, "verify", attempt=1, workspace_id="ws_rotation")
        sealed, kek_id = KeyRing([("k-old", old_kek)]).seal(key, aad)
        item = await outbox.put(_outbox_item(conv_id, 500, sealed=sealed, kek_id=kek_id))
        assert item.id is not None

        rotating = KeyRing([("k-new", new_kek), ("k-old", old_kek)])
        for pending in await outbox.all_for_rewrap(exclude_kek_id=rotating.newest_id):
            assert pending.id is not None
            pending_aad = aad_for(pending.conversation_id, pending.chat_id, pending.purpose, attempt=1,
                                  workspace_id="ws_rotation")
            resealed, resealed_kek = rotating.rewrap(pending.sealed, pending.kek_id, pending_aad)
            assert await outbox.replace_sealed(pending.id, resealed, resealed_kek)

        assert await outbox.all_for_rewrap(exclude_kek_id="k-new") == []
        assert len(await outbox.all_for_rewrap()) == 1
        loaded = await outbox.get(item.id)
        assert loaded is not None
        assert loaded.kek_id == "k-new"
        # The old KEK can now be dropped from the configuration.
        assert KeyRing([("k-new", new_kek)]).open(loaded.sealed, loaded.kek_id, aad) == key
        assert await outbox.replace_sealed(10_000, b"x", "k") is False
