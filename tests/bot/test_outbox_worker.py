"""The outbox worker's pass (issue 10 items 6 and 7), with the real ``build_bot`` wiring and a database.

Before issue 10 one row whose handling raised (a broken gzip answer raised ``httpx.DecodingError`` there)
aborted the whole pass, and a row sealed under a key-encryption key this replica lacks was deleted and its
user told to start over, although the replica that sealed it could still open it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.telegram.application import BotApp
from flows.secret import SecretKey
from storage.db import session_factory
from storage.models import OutboxItem
from storage.repositories import ConversationRepository, OutboxRepository
from storage.sealing import KeyRing, aad_for
from tests.e2e.pasting import fresh_key


def _item(conversation_id: int, chat_id: int, sealed: bytes, kek_id: str, due: datetime) -> OutboxItem:
    now = datetime.now(UTC)
    return OutboxItem(chat_id=chat_id, conversation_id=conversation_id, purpose="verify", sealed=sealed,
                      kek_id=kek_id, next_attempt_at=due, expires_at=now + timedelta(minutes=15), created_at=now)


async def test_one_bad_row_never_stops_the_pass_and_an_unknown_key_id_is_left(bot_app: BotApp) -> None:
    assert bot_app.worker is not None and bot_app.engine is not None
    sessions = session_factory(bot_app.engine)
    conversations, outbox = ConversationRepository(sessions), OutboxRepository(sessions)
    keyring = bot_app.settings.keyring()
    assert keyring is not None
    now = datetime.now(UTC)
    key = SecretKey(fresh_key())

    # 1: a corrupt conversation state makes handling raise (its attempt is not a number)
    broken = await conversations.create(chat_id=1, user_id=1, step="held", state={"step": "held", "attempt": "x"})
    # 2: the user moved on: the row is shredded
    moved = await conversations.create(chat_id=2, user_id=2, step="start", state={"step": "start"})
    # 3: sealed by a replica with a newer key-encryption key than ours
    newer = await conversations.create(chat_id=3, user_id=3, step="held", state={"step": "held", "attempt": 1})
    assert broken.id and moved.id and newer.id
    other_ring = KeyRing([("k-newer-replica", b"\x01" * 32)])
    sealed_elsewhere, other_kid = other_ring.seal(key, aad_for(newer.id, 3, "verify", attempt=1, workspace_id=None))
    sealed_here, kid = keyring.seal(key, aad_for(broken.id, 1, "verify", attempt=1, workspace_id=None))
    first = await outbox.put(_item(broken.id, 1, sealed_here, kid, now - timedelta(minutes=3)))
    second = await outbox.put(_item(moved.id, 2, sealed_here, kid, now - timedelta(minutes=2)))
    third = await outbox.put(_item(newer.id, 3, sealed_elsewhere, other_kid, now - timedelta(minutes=1)))
    assert first.id and second.id and third.id

    assert await bot_app.worker.run_once() == 3  # no exception: the bad first row did not end the pass

    assert await outbox.get(second.id) is None  # handled after the bad row
    assert await outbox.get(first.id) is not None  # kept: its lease runs out and it is tried again
    left = await outbox.get(third.id)
    assert left is not None and left.sealed == sealed_elsewhere  # left whole for the replica that has the key
    assert left.lock_owner is None and left.next_attempt_at > now  # released at once, due again soon
    opened = other_ring.open(left.sealed, left.kek_id, aad_for(newer.id, 3, "verify", attempt=1, workspace_id=None))
    assert opened.reveal() == key.reveal()
