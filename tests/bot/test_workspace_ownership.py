"""Only the chat that connected a workspace, or one holding a link opened since, may change its connection.

The key flow over a real database (both backends) with a recording DoubleTick connector: a refused attempt
never reaches DoubleTick, and the chat that connected the workspace is told either way.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.agents.signed_links import SignedLinkOutcome, proof_time, sign_payload, verify_payload
from bot.core.keyflow import ForeignAction, KeyFlow
from bot.core.ports import ChatRef
from flows import effects as fx
from flows import events as ev
from flows.outcomes import ConnectionOutcome, ConnectionResult, VerificationResult
from flows.secret import SecretKey
from storage.fingerprint import fingerprint
from storage.repositories import KeyRecordRepository
from tests.clock import FakeClock

Sessions = async_sessionmaker[AsyncSession]
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
SECRET = b"fingerprint-secret-for-tests-0123"
VICTIM, ATTACKER = ChatRef(1001, 1001), ChatRef(2002, 2002)
VICTIM_KEY = SecretKey("sk-proj-" + "V" * 40 + "T3BlbkFJ" + "v" * 40)
ATTACKER_KEY = SecretKey("sk-proj-" + "A" * 40 + "T3BlbkFJ" + "a" * 40)


class RecordingConnector:
    configured = True

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    async def connect(self, workspace_id: str, key: SecretKey, idempotency_key: str) -> ConnectionResult:
        self.calls.append(("connect", workspace_id))
        return ConnectionResult(ConnectionOutcome.CONNECTED)

    async def disconnect(self, workspace_id: str, idempotency_key: str) -> ConnectionResult:
        self.calls.append(("disconnect", workspace_id))
        return ConnectionResult(ConnectionOutcome.DISCONNECTED)


class NoVerifier:
    async def verify(self, key: SecretKey) -> VerificationResult:  # pragma: no cover - not used here
        raise AssertionError("not called")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
async def setup(sessions: Sessions, clock: FakeClock):
    keys = KeyRecordRepository(sessions, clock=clock)
    connector = RecordingConnector()
    flow = KeyFlow(verifier=NoVerifier(), connector=connector, keys=keys, fingerprint_secret=SECRET, clock=clock)
    told: list[ForeignAction] = []

    async def tell(change: ForeignAction) -> None:
        told.append(change)

    flow.on_foreign.append(tell)
    await keys.add(chat_id=VICTIM.chat_id, user_id=VICTIM.user_id, fingerprint=fingerprint(VICTIM_KEY, SECRET),
                   last_four="vvvv", family="project", outcome="connected", workspace_id="ws_demo",
                   connected_at=T0)
    clock.advance(minutes=5)
    return flow, connector, keys, told


@pytest.mark.parametrize("bound_at", [None, (T0 - timedelta(hours=1)).timestamp(), T0.timestamp()])
async def test_replacing_another_chats_key_without_a_fresh_link_is_refused(setup, bound_at: float | None) -> None:
    flow, connector, keys, told = setup
    event = await flow.perform(ATTACKER, fx.Connect(1, "ws_demo", bound_at), ATTACKER_KEY)
    assert event == ev.ConnectionFinished(1, ConnectionResult(ConnectionOutcome.FOREIGN_WORKSPACE))
    assert connector.calls == []  # DoubleTick never heard of it
    assert told == [ForeignAction(VICTIM.chat_id, VICTIM.user_id, "ws_demo", "replace", refused=True)]
    still = await keys.connected_in_workspace("ws_demo")
    assert still is not None and still.chat_id == VICTIM.chat_id


async def test_disconnecting_another_chats_key_without_a_fresh_link_is_refused(setup) -> None:
    flow, connector, keys, told = setup
    event = await flow.perform(ATTACKER, fx.Disconnect("ws_demo", None), None)
    assert event == ev.DisconnectFinished(ConnectionResult(ConnectionOutcome.FOREIGN_WORKSPACE))
    assert connector.calls == []
    assert told == [ForeignAction(VICTIM.chat_id, VICTIM.user_id, "ws_demo", "disconnect", refused=True)]
    assert await keys.connected_in_workspace("ws_demo") is not None


async def test_a_link_opened_after_the_connection_may_replace_it_and_the_owner_is_told(setup) -> None:
    flow, connector, keys, told = setup
    fresh = (T0 + timedelta(minutes=1)).timestamp()
    event = await flow.perform(ATTACKER, fx.Connect(1, "ws_demo", fresh), ATTACKER_KEY)
    assert event == ev.ConnectionFinished(1, ConnectionResult(ConnectionOutcome.CONNECTED))
    assert connector.calls == [("connect", "ws_demo")]
    assert told == [ForeignAction(VICTIM.chat_id, VICTIM.user_id, "ws_demo", "replace", refused=False)]
    assert await keys.connected_in_workspace("ws_demo") is None  # the victim's record no longer claims it


async def test_a_link_opened_after_the_connection_may_disconnect_it(setup) -> None:
    flow, connector, keys, told = setup
    fresh = (T0 + timedelta(minutes=1)).timestamp()
    event = await flow.perform(ATTACKER, fx.Disconnect("ws_demo", fresh), None)
    assert event == ev.DisconnectFinished(ConnectionResult(ConnectionOutcome.DISCONNECTED))
    assert connector.calls == [("disconnect", "ws_demo")]
    assert told == [ForeignAction(VICTIM.chat_id, VICTIM.user_id, "ws_demo", "disconnect", refused=False)]
    assert await keys.connected_in_workspace("ws_demo") is None


async def test_the_chat_that_connected_it_needs_no_link(setup) -> None:
    flow, connector, _keys, told = setup
    assert await flow.perform(VICTIM, fx.Connect(2, "ws_demo", None), VICTIM_KEY) == \
        ev.ConnectionFinished(2, ConnectionResult(ConnectionOutcome.CONNECTED))
    assert await flow.perform(VICTIM, fx.Disconnect("ws_demo", None), None) == \
        ev.DisconnectFinished(ConnectionResult(ConnectionOutcome.DISCONNECTED))
    assert connector.calls == [("connect", "ws_demo"), ("disconnect", "ws_demo")] and told == []


async def test_a_workspace_nobody_connected_is_free(setup) -> None:
    flow, connector, _keys, told = setup
    assert await flow.perform(ATTACKER, fx.Connect(1, "ws_new", None), ATTACKER_KEY) == \
        ev.ConnectionFinished(1, ConnectionResult(ConnectionOutcome.CONNECTED))
    assert connector.calls == [("connect", "ws_new")] and told == []


LINK_SECRET = b"self-serve-secret-for-ownership-tests-0123"


def _opened_later(payload: str, opened: datetime) -> float | None:
    """What the bot binds when ``payload`` is opened at ``opened``: the link's proof time (see commands.py)."""
    verdict = verify_payload(payload, LINK_SECRET, opened)
    assert verdict.outcome == SignedLinkOutcome.VALID
    return proof_time(verdict, opened)


async def test_a_reusable_link_minted_before_the_connection_stays_stale_however_late_it_is_opened(setup) -> None:
    """Issue 10's follow-up: the victim's own 30-day link, opened by someone else after the victim connected."""
    flow, connector, keys, told = setup
    minted = int((T0 - timedelta(minutes=10)).timestamp())
    old_link = sign_payload("ws_demo", minted + 30 * 86400, LINK_SECRET, issued_at=minted)
    bound_at = _opened_later(old_link, T0 + timedelta(days=3))
    assert bound_at == minted  # not the opening time, which is after the connection
    assert await flow.perform(ATTACKER, fx.Connect(1, "ws_demo", bound_at), ATTACKER_KEY) == \
        ev.ConnectionFinished(1, ConnectionResult(ConnectionOutcome.FOREIGN_WORKSPACE))
    assert await flow.perform(ATTACKER, fx.Disconnect("ws_demo", bound_at), None) == \
        ev.DisconnectFinished(ConnectionResult(ConnectionOutcome.FOREIGN_WORKSPACE))
    legacy = _opened_later(_legacy_link("ws_demo", minted + 30 * 86400), T0 + timedelta(days=3))
    assert legacy is None  # an s1 link carries no mint time: never fresh
    assert await flow.perform(ATTACKER, fx.Disconnect("ws_demo", legacy), None) == \
        ev.DisconnectFinished(ConnectionResult(ConnectionOutcome.FOREIGN_WORKSPACE))
    assert connector.calls == []
    assert [(t.action, t.refused) for t in told] == [("replace", True), ("disconnect", True), ("disconnect", True)]
    assert (await keys.connected_in_workspace("ws_demo")) is not None

    minted_after = int((T0 + timedelta(seconds=1)).timestamp())
    new_link = sign_payload("ws_demo", minted_after + 3600, LINK_SECRET, issued_at=minted_after)
    fresh = _opened_later(new_link, T0 + timedelta(minutes=30))
    assert await flow.perform(ATTACKER, fx.Disconnect("ws_demo", fresh), None) == \
        ev.DisconnectFinished(ConnectionResult(ConnectionOutcome.DISCONNECTED))
    assert connector.calls == [("disconnect", "ws_demo")] and told[-1].refused is False


def _legacy_link(workspace: str, expires: int) -> str:
    body = f"s1{expires:08x}"
    tag = hmac.new(LINK_SECRET, (body + workspace).encode(), hashlib.sha256).digest()[:12]
    return body + base64.urlsafe_b64encode(tag).decode() + workspace
