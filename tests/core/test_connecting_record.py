"""A connection survives a SIGKILL between DoubleTick's 2xx and our record of it, without connecting twice.

The real KeyFlow, key-record repository (SQLite and PostgreSQL) and DoubleTick connector over HTTP; the
only fake is DoubleTick itself (the stand-in, which replays a repeated Idempotency-Key like the real API).
A "crash" is a KeyFlow that called DoubleTick and was then dropped before the machine's RecordKey ran;
the "restart" is a new KeyFlow on the same database.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.core.keyflow import KeyFlow, connect_idempotency_key
from bot.core.ports import ChatRef
from bot.services.doubletick import DoubleTickConnector
from bot.standins.doubletick import DEFAULT_CONNECT_PATH, DEMO_OPERATOR_KEY, FakeDoubleTick, create_doubletick_app
from bot.standins.server import BackgroundServer
from flows import effects as fx
from flows import events as ev
from flows.outcomes import ConnectionOutcome, VerificationResult
from flows.secret import SecretKey
from flows.state import Conversation
from flows.steps import Step
from storage.fingerprint import fingerprint
from storage.repositories import KeyRecordRepository
from storage.repositories.key_records import CONNECTING

WS = "ws_demo"
CHAT = ChatRef(chat_id=5150, user_id=5150, username=None, language="en")
SECRET = secrets.token_bytes(32)


class _NoVerifier:
    async def verify(self, key: SecretKey) -> VerificationResult:
        raise AssertionError("not used here")


@pytest.fixture(scope="module")
def doubletick() -> Iterator[tuple[FakeDoubleTick, str]]:
    fake = FakeDoubleTick()
    with BackgroundServer(create_doubletick_app(fake)) as server:
        yield fake, server.url


@pytest.fixture
async def connector(doubletick: tuple[FakeDoubleTick, str]) -> AsyncIterator[DoubleTickConnector]:
    fake, url = doubletick
    fake.reset()
    async with DoubleTickConnector(base_url=url, api_key=SecretKey(DEMO_OPERATOR_KEY),
                                   connect_path=DEFAULT_CONNECT_PATH, timeout=2.0, backoff_base_s=0.01,
                                   backoff_max_s=0.05) as dt:
        yield dt


def _key() -> SecretKey:
    return SecretKey("sk-proj-" + secrets.token_urlsafe(24).replace("-", "a").replace("_", "b") + "T3BlbkFJ"
                     + secrets.token_urlsafe(24).replace("-", "c").replace("_", "d"))


def _flow(sessions: async_sessionmaker[AsyncSession], connector: DoubleTickConnector) -> KeyFlow:
    return KeyFlow(verifier=_NoVerifier(), connector=connector, keys=KeyRecordRepository(sessions),
                   fingerprint_secret=SECRET)


def _conv(attempt: int) -> Conversation:
    return Conversation(step=Step.CONNECTING, workspace_id=WS, attempt=attempt, key_family="project")


async def test_a_repaste_after_a_crash_replays_instead_of_connecting_again(
        sessions: async_sessionmaker[AsyncSession], connector: DoubleTickConnector,
        doubletick: tuple[FakeDoubleTick, str]) -> None:
    fake, _ = doubletick
    key = _key()
    keys = KeyRecordRepository(sessions)

    crashed = _flow(sessions, connector)  # DoubleTick connects, then the process dies before RecordKey
    first = await crashed.perform(CHAT, fx.Connect(1, WS), key)
    assert isinstance(first, ev.ConnectionFinished) and first.result.outcome == ConnectionOutcome.CONNECTED
    left = await keys.latest_for_chat(CHAT.chat_id)
    assert left is not None and left.outcome == CONNECTING and left.connected_at is None
    # The verdict step must not see it as connected: we do not know that it is (until DoubleTick says so).
    assert await keys.find_connected_by_fingerprint(fingerprint(key, SECRET), WS) is None

    restarted = _flow(sessions, connector)  # the user pastes the same key again: a new attempt number
    again = await restarted.perform(CHAT, fx.Connect(2, WS), key)
    assert isinstance(again, ev.ConnectionFinished) and again.result.outcome == ConnectionOutcome.CONNECTED
    await restarted.keep(CHAT, _conv(2), fx.RecordKey("connected", connected=True), key)

    workspace = fake.workspace(WS)
    assert workspace is not None and workspace.connect_count == 1, "DoubleTick acted once"
    posts = [r for r in fake.requests if r.method == "POST"]
    assert [r.status for r in posts] == [201, 201]
    expected = connect_idempotency_key(left.connect_request, WS, left.fingerprint)
    assert posts[0].idempotency_key == posts[1].idempotency_key == expected
    record = await keys.latest_for_chat(CHAT.chat_id)
    assert record is not None and record.id == left.id, "the connecting record became the connected one"
    assert record.outcome == "connected" and record.connected_at is not None and record.family == "project"
    assert await keys.find_connected_by_fingerprint(fingerprint(key, SECRET), WS) is not None


async def test_a_timeout_after_doubletick_acted_is_retried_under_the_same_key(
        sessions: async_sessionmaker[AsyncSession], connector: DoubleTickConnector,
        doubletick: tuple[FakeDoubleTick, str]) -> None:
    """The stand-in acts after the client gave up (a hang, then the effect: the lost 2xx); the outbox retries."""
    fake, url = doubletick
    fake.configure(faults={"timeout": 1.0, "hang_s": 3.0})
    key = _key()
    async with DoubleTickConnector(base_url=url, api_key=SecretKey(DEMO_OPERATOR_KEY),
                                   connect_path=DEFAULT_CONNECT_PATH, timeout=0.3, max_attempts=1) as impatient:
        lost = await _flow(sessions, impatient).perform(CHAT, fx.Connect(1, WS), key)
    flow = _flow(sessions, connector)
    assert isinstance(lost, ev.ConnectionFinished) and lost.result.outcome == ConnectionOutcome.TRANSIENT
    fake.configure(faults={"timeout": 0.0})
    retried = await flow.perform(CHAT, fx.Connect(1, WS), key)
    assert isinstance(retried, ev.ConnectionFinished) and retried.result.outcome == ConnectionOutcome.CONNECTED
    workspace = fake.workspace(WS)
    assert workspace is not None and workspace.connect_count == 1
    assert len({r.idempotency_key for r in fake.requests if r.method == "POST"}) == 1


async def test_a_refusal_settles_the_record_so_the_next_paste_is_a_new_request(
        sessions: async_sessionmaker[AsyncSession], connector: DoubleTickConnector,
        doubletick: tuple[FakeDoubleTick, str]) -> None:
    fake, _ = doubletick
    flow, key, keys = _flow(sessions, connector), _key(), KeyRecordRepository(sessions)
    fake.configure(api_keys=["key_SomeoneElse000000"])  # our operator credential is refused (401)
    refused = await flow.perform(CHAT, fx.Connect(1, WS), key)
    assert isinstance(refused, ev.ConnectionFinished)
    assert refused.result.outcome == ConnectionOutcome.CREDENTIAL_REJECTED
    record = await keys.latest_for_chat(CHAT.chat_id)
    assert record is not None and record.outcome == "connect_credential_rejected"
    fake.configure(api_keys=[DEMO_OPERATOR_KEY])  # the operator fixed it; the user pastes again
    ok = await flow.perform(CHAT, fx.Connect(2, WS), key)
    assert isinstance(ok, ev.ConnectionFinished) and ok.result.outcome == ConnectionOutcome.CONNECTED
    keys_used = [r.idempotency_key for r in fake.requests if r.method == "POST"]
    assert len(set(keys_used)) == 2, "a settled record is never reused"


async def test_a_disconnect_forgets_the_record_so_reconnecting_is_a_new_request(
        sessions: async_sessionmaker[AsyncSession], connector: DoubleTickConnector,
        doubletick: tuple[FakeDoubleTick, str]) -> None:
    fake, _ = doubletick
    flow, key = _flow(sessions, connector), _key()
    await flow.perform(CHAT, fx.Connect(1, WS), key)
    await flow.keep(CHAT, _conv(1), fx.RecordKey("connected", connected=True), key)
    removed = await flow.perform(CHAT, fx.Disconnect(WS), None)
    assert isinstance(removed, ev.DisconnectFinished)
    await flow.perform(CHAT, fx.Connect(2, WS), key)
    workspace = fake.workspace(WS)
    assert workspace is not None and workspace.connected and workspace.connect_count == 2


async def test_replacing_a_key_leaves_only_the_new_one_connected(
        sessions: async_sessionmaker[AsyncSession], connector: DoubleTickConnector) -> None:
    flow, old, new, keys = _flow(sessions, connector), _key(), _key(), KeyRecordRepository(sessions)
    await flow.perform(CHAT, fx.Connect(1, WS), old)
    await flow.keep(CHAT, _conv(1), fx.RecordKey("connected", connected=True), old)
    await flow.perform(CHAT, fx.Connect(2, WS), new)
    await flow.keep(CHAT, _conv(2), fx.RecordKey("connected", connected=True), new)
    assert await keys.find_connected_by_fingerprint(fingerprint(old, SECRET), WS) is None
    assert await keys.find_connected_by_fingerprint(fingerprint(new, SECRET), WS) is not None
