"""Handoff tokens and the link service over a real database (both backends), with a controllable clock."""

from __future__ import annotations

import re
import struct
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.agents.links import (
    TOKEN_BYTES,
    HandoffError,
    HandoffService,
    LinkState,
    RedemptionOutcome,
    digest_of,
    new_token,
    parse_duration,
    qr_png,
    token_from,
)
from flows import events as ev
from storage.repositories import AuditLog, HandoffRepository, KeyRecordRepository
from tests.clock import FakeClock

Sessions = async_sessionmaker[AsyncSession]
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
AGENT, ANA, EVE = 4242, 5001, 666
BOT = "DoubleTickOnboardingBot"
URL = re.compile(rf"https://t\.me/{BOT}\?start=([A-Za-z0-9_-]+)")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def service(sessions: Sessions, clock: FakeClock) -> HandoffService:
    return HandoffService(HandoffRepository(sessions, clock=clock), AuditLog(sessions, clock=clock),
                          bot_username=BOT, clock=clock)


def token_of(url: str) -> str:
    match = URL.fullmatch(url)
    assert match, url
    return match.group(1)


# -- tokens ------------------------------------------------------------------------------------------

def test_tokens_are_long_random_base64url_and_fit_a_start_payload() -> None:
    tokens = {new_token() for _ in range(2000)}
    assert len(tokens) == 2000
    assert TOKEN_BYTES * 8 >= 128
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{24}", t) for t in tokens)


def test_the_stored_digest_is_sha256_hex_of_the_token() -> None:
    assert digest_of("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


@pytest.mark.parametrize("given", [
    "https://t.me/DoubleTickOnboardingBot?start=AbCdEfGhIjKlMnOpQrStUvWx",
    "t.me/DoubleTickOnboardingBot?start=AbCdEfGhIjKlMnOpQrStUvWx",
    "/start AbCdEfGhIjKlMnOpQrStUvWx",
    "  AbCdEfGhIjKlMnOpQrStUvWx ",
])
def test_a_token_is_read_from_a_link_a_start_command_or_itself(given: str) -> None:
    assert token_from(given) == "AbCdEfGhIjKlMnOpQrStUvWx"


@pytest.mark.parametrize("given", ["ws_demo", "@ana", "https://t.me/bot?start=short", "x" * 65,
                                   "AbCdEfGhIjKlMnOpQrSt<script>", ""])
def test_anything_else_is_not_a_token(given: str) -> None:
    assert token_from(given) is None


@pytest.mark.parametrize(("given", "expected"), [("72h", timedelta(hours=72)), ("30m", timedelta(minutes=30)),
                                                 ("3d", timedelta(days=3)), ("12", timedelta(hours=12)),
                                                 ("1.5h", timedelta(minutes=90))])
def test_durations(given: str, expected: timedelta) -> None:
    assert parse_duration(given) == expected


@pytest.mark.parametrize("given", ["0h", "31d", "soon", "-1h", "10s"])
def test_silly_durations_are_refused(given: str) -> None:
    with pytest.raises(HandoffError):
        parse_duration(given)


def test_the_qr_code_is_a_png() -> None:
    png = qr_png("https://t.me/DoubleTickOnboardingBot?start=AbCdEfGhIjKlMnOpQrStUvWx")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = struct.unpack(">II", png[16:24])
    assert width == height >= 200


# -- the service -------------------------------------------------------------------------------------

async def test_a_created_link_is_stored_only_as_a_digest(service: HandoffService, engine: AsyncEngine) -> None:
    link = await service.create("ws_demo", via="bot", workspace_name="Demo Workspace", label="Ana", created_by=AGENT)
    token = token_of(link.url)
    assert link.expires_at == T0 + timedelta(hours=72)
    async with engine.connect() as connection:
        rows = (await connection.execute(text("SELECT * FROM handoff_link"))).all()
        audit = (await connection.execute(text("SELECT kind, detail FROM audit_event"))).all()
    dumped = repr(rows) + repr(audit)
    assert token not in dumped and digest_of(token) in dumped
    assert [kind for kind, _ in audit] == ["handoff.created"]


@pytest.mark.parametrize(("workspace", "label", "reason"), [
    ("", None, "bad_workspace"), ("has space", None, "bad_workspace"), ("x" * 70, None, "bad_workspace"),
    ("ws_demo", "y" * 65, "bad_label"),
])
async def test_bad_requests_are_refused(service: HandoffService, workspace: str, label: str | None,
                                        reason: str) -> None:
    with pytest.raises(HandoffError) as caught:
        await service.create(workspace, via="api", label=label)
    assert caught.value.reason == reason


async def test_the_first_user_is_bound_then_reopens_and_others_are_refused(service: HandoffService) -> None:
    token = token_of((await service.create("ws_demo", via="bot", created_by=AGENT)).url)
    first = await service.redeem(token, user_id=ANA, chat_id=ANA)
    assert first.outcome == RedemptionOutcome.REDEEMED and first.link is not None
    assert first.link.redeemed_by_user_id == ANA
    assert (await service.redeem(token, user_id=ANA, chat_id=ANA)).outcome == RedemptionOutcome.REOPENED
    assert (await service.redeem(token, user_id=EVE, chat_id=EVE)).outcome == RedemptionOutcome.USED


async def test_an_expired_link_is_refused_but_its_bound_user_may_reopen_it(service: HandoffService,
                                                                          clock: FakeClock) -> None:
    unused = token_of((await service.create("ws_a", via="cli", ttl=timedelta(hours=1))).url)
    used = token_of((await service.create("ws_b", via="cli", ttl=timedelta(hours=1))).url)
    await service.redeem(used, user_id=ANA, chat_id=ANA)
    clock.now += timedelta(hours=1)
    assert (await service.redeem(unused, user_id=ANA, chat_id=ANA)).outcome == RedemptionOutcome.EXPIRED
    assert (await service.redeem(used, user_id=ANA, chat_id=ANA)).outcome == RedemptionOutcome.REOPENED


async def test_a_revoked_link_is_refused_even_to_its_bound_user(service: HandoffService) -> None:
    created = await service.create("ws_demo", via="bot", created_by=AGENT)
    token = token_of(created.url)
    await service.redeem(token, user_id=ANA, chat_id=ANA)
    assert await service.revoke(created.id, by=AGENT + 1) is None  # not theirs
    revoked = await service.revoke(created.id, by=AGENT)
    assert revoked is not None and LinkState.of(revoked, T0) == LinkState.REVOKED
    assert (await service.redeem(token, user_id=ANA, chat_id=ANA)).outcome == RedemptionOutcome.REVOKED


@pytest.mark.parametrize("mangle", [
    lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # one character changed
    lambda t: t[:-2],  # truncated
    lambda t: t + "x",  # extended
    lambda t: "",
    lambda t: "../../etc/passwd",
    lambda t: "AbCdEfGhIjKlMnOpQrStUvWx",  # well formed but never issued
])
async def test_forged_and_tampered_tokens_are_unknown(service: HandoffService, mangle) -> None:  # type: ignore[no-untyped-def]
    token = token_of((await service.create("ws_demo", via="bot")).url)
    redemption = await service.redeem(mangle(token), user_id=EVE, chat_id=EVE)
    assert redemption.outcome == RedemptionOutcome.UNKNOWN and redemption.link is None
    assert (await service.redeem(token, user_id=ANA, chat_id=ANA)).outcome == RedemptionOutcome.REDEEMED


async def test_the_invitation_event_says_whether_the_workspace_is_connected(service: HandoffService,
                                                                         sessions: Sessions) -> None:
    token = token_of((await service.create("ws_demo", via="bot", workspace_name="Demo Workspace")).url)
    redemption = await service.redeem(token, user_id=ANA, chat_id=ANA)
    opened = T0.timestamp()  # freshness counts from the first opening (the clock is at T0)
    assert await service.invitation_event(redemption) == ev.InvitationRedeemed("ws_demo", "Demo Workspace",
                                                                               bound_at=opened)
    await KeyRecordRepository(sessions).add(chat_id=1, user_id=1, fingerprint=digest_of("k"), last_four="wxyz",
                                            family="project", outcome="connected", workspace_id="ws_demo",
                                            connected_at=T0)
    assert await service.invitation_event(redemption) == ev.InvitationRedeemed(
        "ws_demo", "Demo Workspace", already_connected=True, connected_last_four="wxyz", bound_at=opened)
    refused = await service.redeem(token, user_id=EVE, chat_id=EVE)
    assert await service.invitation_event(refused) == ev.InvitationRefused("used")


async def test_a_workspace_name_given_once_is_used_for_later_links(service: HandoffService) -> None:
    await service.create("ws_demo", via="cli", workspace_name="Demo Workspace")
    assert (await service.create("ws_demo", via="bot")).workspace_name == "Demo Workspace"


async def test_every_redemption_is_audited_without_the_token(service: HandoffService, sessions: Sessions) -> None:
    token = token_of((await service.create("ws_demo", via="bot", created_by=AGENT)).url)
    await service.redeem(token, user_id=ANA, chat_id=ANA)
    await service.redeem(token, user_id=EVE, chat_id=EVE)
    events = await AuditLog(sessions).recent(10)
    assert [(e.kind, e.detail.get("outcome")) for e in reversed(events)] == [
        ("handoff.created", None), ("handoff.redeemed", "redeemed"), ("handoff.refused", "used")]
    assert token not in repr([e.detail for e in events])
