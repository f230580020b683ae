"""DoubleTickConnector: every outcome, retries with Retry-After, and idempotent connects."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from bot.services.doubletick import DoubleTickConnector
from bot.standins.doubletick import (
    DEFAULT_CONNECT_PATH,
    DEMO_OPERATOR_KEY,
    FakeDoubleTick,
    create_doubletick_app,
)
from bot.standins.server import BackgroundServer, free_port
from flows.outcomes import ConnectionOutcome as Outcome
from flows.secret import SecretKey

KEY = "sk-proj-" + "ConnectorTestKey0000" + "T3Blbk" + "FJ" + "ConnectorTestKeyabcd"
WS = "ws_demo"


@pytest.fixture(scope="module")
def fake() -> FakeDoubleTick:
    return FakeDoubleTick()


@pytest.fixture(scope="module")
def base_url(fake: FakeDoubleTick) -> Iterator[str]:
    with BackgroundServer(create_doubletick_app(fake)) as server:
        yield server.url


@pytest.fixture(autouse=True)
def fresh(fake: FakeDoubleTick) -> None:
    fake.reset()


def connector(base_url: str, **overrides: Any) -> DoubleTickConnector:
    settings: dict[str, Any] = {
        "base_url": base_url,
        "api_key": SecretKey(DEMO_OPERATOR_KEY),
        "connect_path": DEFAULT_CONNECT_PATH,
        "timeout": 1.0,
        "max_attempts": 3,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.05,
    }
    return DoubleTickConnector(**(settings | overrides))


async def test_connect_stores_a_fingerprint_and_last_four(fake: FakeDoubleTick, base_url: str) -> None:
    async with connector(base_url) as dt:
        result = await dt.connect(WS, SecretKey(KEY), "idem-1")
    assert (result.outcome, result.http_status) == (Outcome.CONNECTED, 201)
    workspace = fake.workspace(WS)
    assert workspace is not None and workspace.connected and workspace.connect_count == 1
    assert workspace.key_sha256 == hashlib.sha256(KEY.encode()).hexdigest()
    assert workspace.key_last_four == "abcd"
    async with httpx.AsyncClient(base_url=base_url) as client:
        for path in ("/_sandbox/workspaces", "/_sandbox/requests", "/_sandbox/config"):
            assert KEY not in (await client.get(path)).text


async def test_same_idempotency_key_connects_once(fake: FakeDoubleTick, base_url: str) -> None:
    async with connector(base_url) as dt:
        first = await dt.connect(WS, SecretKey(KEY), "idem-redelivered")
        second = await dt.connect(WS, SecretKey(KEY), "idem-redelivered")
    assert first.outcome is second.outcome is Outcome.CONNECTED
    workspace = fake.workspace(WS)
    assert workspace is not None and workspace.connect_count == 1
    assert len(fake.requests) == 2


async def test_a_new_idempotency_key_connects_again(fake: FakeDoubleTick, base_url: str) -> None:
    async with connector(base_url) as dt:
        await dt.connect(WS, SecretKey(KEY), "idem-a")
        await dt.connect(WS, SecretKey(KEY), "idem-b")
    workspace = fake.workspace(WS)
    assert workspace is not None and workspace.connect_count == 2


async def test_idempotency_key_reused_for_another_request_is_refused(base_url: str) -> None:
    async with connector(base_url) as dt:
        await dt.connect(WS, SecretKey(KEY), "idem-x")
        other = await dt.connect("ws_acme", SecretKey(KEY), "idem-x")
    assert (other.outcome, other.http_status) == (Outcome.VALIDATION_ERROR, 409)


async def test_disconnect_forgets_the_key(fake: FakeDoubleTick, base_url: str) -> None:
    async with connector(base_url) as dt:
        await dt.connect(WS, SecretKey(KEY), "idem-c")
        result = await dt.disconnect(WS, "idem-d")
    assert (result.outcome, result.http_status) == (Outcome.DISCONNECTED, 200)
    workspace = fake.workspace(WS)
    assert workspace is not None and not workspace.connected
    assert workspace.key_sha256 is None and workspace.key_last_four is None


async def test_bad_operator_credential_is_rejected_without_retries(
    fake: FakeDoubleTick, base_url: str
) -> None:
    async with connector(base_url, api_key=SecretKey("key_wrongwrongwrong")) as dt:
        result = await dt.connect(WS, SecretKey(KEY), "idem-e")
    assert (result.outcome, result.detail, result.http_status) == (
        Outcome.CREDENTIAL_REJECTED,
        "Invalid public api key",
        401,
    )
    assert len(fake.requests) == 1


async def test_validation_messages_become_the_detail(base_url: str) -> None:
    async with connector(base_url) as dt:
        result = await dt.connect(WS, SecretKey("not-an-openai-key"), "idem-f")
    assert (result.outcome, result.detail, result.http_status) == (
        Outcome.VALIDATION_ERROR,
        "apiKey must be an OpenAI secret key",
        400,
    )


async def test_unknown_workspace_is_a_validation_error(base_url: str) -> None:
    async with connector(base_url) as dt:
        result = await dt.connect("ws_nope", SecretKey(KEY), "idem-g")
    assert (result.outcome, result.detail, result.http_status) == (
        Outcome.VALIDATION_ERROR,
        "Workspace ws_nope not found",
        404,
    )


@pytest.mark.parametrize("missing", ["api_key", "connect_path"])
async def test_not_configured_sends_nothing(missing: str, fake: FakeDoubleTick, base_url: str) -> None:
    async with connector(base_url, **{missing: None}) as dt:
        assert not dt.configured
        connected = await dt.connect(WS, SecretKey(KEY), "idem-h")
        disconnected = await dt.disconnect(WS, "idem-i")
    assert connected.outcome is disconnected.outcome is Outcome.NOT_CONFIGURED
    assert fake.requests == []


async def test_5xx_is_retried_with_the_same_idempotency_key(fake: FakeDoubleTick, base_url: str) -> None:
    fake.fail_next(2, 503)
    async with connector(base_url) as dt:
        result = await dt.connect(WS, SecretKey(KEY), "idem-j")
    assert result.outcome is Outcome.CONNECTED
    assert [r.status for r in fake.requests] == [503, 503, 201]
    assert {r.idempotency_key for r in fake.requests} == {"idem-j"}


async def test_persistent_failure_ends_transient(fake: FakeDoubleTick, base_url: str) -> None:
    fake.fail_next(10, 500)
    async with connector(base_url) as dt:
        result = await dt.connect(WS, SecretKey(KEY), "idem-k")
    assert (result.outcome, result.detail, result.http_status) == (
        Outcome.TRANSIENT,
        "Internal server error",
        500,
    )
    assert len(fake.requests) == 3


async def test_retry_after_is_honoured(fake: FakeDoubleTick, base_url: str) -> None:
    fake.fail_next(1, 429, retry_after_s=0.3)
    async with connector(base_url) as dt:
        result = await dt.connect(WS, SecretKey(KEY), "idem-l")
    assert result.outcome is Outcome.CONNECTED
    first, second = fake.requests
    assert first.status == 429 and second.received_monotonic - first.received_monotonic >= 0.3


async def test_a_long_retry_after_is_handed_back_not_slept(fake: FakeDoubleTick, base_url: str) -> None:
    fake.fail_next(1, 429, retry_after_s=120)
    async with connector(base_url, max_retry_after_s=5) as dt:
        result = await dt.connect(WS, SecretKey(KEY), "idem-m")
    assert (result.outcome, result.retry_after_s, result.http_status) == (Outcome.TRANSIENT, 120.0, 429)
    assert len(fake.requests) == 1


async def test_connection_resets_are_retried_then_transient(fake: FakeDoubleTick, base_url: str) -> None:
    fake.configure(faults={"reset": 1.0})
    async with connector(base_url) as dt:
        result = await dt.connect(WS, SecretKey(KEY), "idem-n")
    assert result.outcome is Outcome.TRANSIENT
    assert result.detail is not None and result.detail.startswith("connection_error")
    assert len(fake.requests) == 3


async def test_hanging_server_is_transient(fake: FakeDoubleTick, base_url: str) -> None:
    fake.configure(faults={"timeout": 1.0})
    async with connector(base_url, timeout=0.1, max_attempts=2) as dt:
        result = await dt.connect(WS, SecretKey(KEY), "idem-o")
    assert (result.outcome, result.detail) == (Outcome.TRANSIENT, "timeout")


async def test_nothing_listening_is_transient() -> None:
    async with connector(f"http://127.0.0.1:{free_port()}", max_attempts=2) as dt:
        result = await dt.connect(WS, SecretKey(KEY), "idem-p")
    assert result.outcome is Outcome.TRANSIENT


class LoseFirstResponse(httpx.AsyncBaseTransport):
    """Delivers the first request, then drops its answer: the classic reason to retry a connect."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.calls = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        response = await self.inner.handle_async_request(request)
        if self.calls == 1:
            await response.aread()
            raise httpx.ReadTimeout("answer lost", request=request)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_lost_answer_is_retried_without_connecting_twice(fake: FakeDoubleTick, base_url: str) -> None:
    async with httpx.AsyncClient(transport=LoseFirstResponse()) as client:
        result = await connector(base_url, client=client).connect(WS, SecretKey(KEY), "idem-q")
    assert result.outcome is Outcome.CONNECTED
    workspace = fake.workspace(WS)
    assert workspace is not None and workspace.connect_count == 1
    assert len(fake.requests) == 2


async def test_no_plaintext_in_results_or_logs(base_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with connector(base_url) as dt:
        results = [
            await dt.connect(WS, SecretKey(KEY), "idem-r"),
            await dt.disconnect(WS, "idem-s"),
            await dt.connect("ws_nope", SecretKey(KEY), "idem-t"),
        ]
    for result in results:
        assert KEY not in repr(result)
    assert KEY not in caplog.text and DEMO_OPERATOR_KEY not in caplog.text


# -- MockTransport: request shape, and answers the stand-in does not give ------------------------------


async def test_request_shape_follows_doubletick_conventions() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201 if request.method == "POST" else 200, json={})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        dt = DoubleTickConnector(
            api_key=SecretKey("key_operator123"), connect_path="v1/integrations/openai/", client=client,
            fingerprint_secret=b"fingerprint-secret-for-this-test",
        )
        await dt.connect("ws/1", SecretKey(KEY), "idem-u")
        await dt.disconnect("ws/1", "idem-v")
    post, delete = seen
    assert str(post.url) == "https://public.doubletick.io/v1/integrations/openai"
    assert post.headers["authorization"] == "key_operator123"  # raw key, no Bearer
    assert post.headers["idempotency-key"] == "idem-u"
    assert json.loads(post.content) == {
        "workspaceId": "ws/1",
        "apiKey": KEY,
        # issue 10: keyed (HMAC under FINGERPRINT_SECRET), never an unkeyed SHA-256 of the key
        "keyFingerprint": "hmac-sha256:" + hmac.new(b"fingerprint-secret-for-this-test", KEY.encode(),
                                                    hashlib.sha256).hexdigest(),
    }
    assert hashlib.sha256(KEY.encode()).hexdigest() not in post.content.decode()
    assert (delete.method, delete.url.raw_path) == ("DELETE", b"/v1/integrations/openai/ws%2F1")
    assert delete.headers["idempotency-key"] == "idem-v" and not delete.content


@pytest.mark.parametrize(
    ("status", "body", "outcome", "detail"),
    [
        (
            403,
            {"message": "Forbidden resource", "error": "Forbidden", "statusCode": 403},
            Outcome.CREDENTIAL_REJECTED,
            "Forbidden resource",
        ),
        (
            422,
            {"message": "workspace has no AI plan", "error": "Unprocessable Entity", "statusCode": 422},
            Outcome.VALIDATION_ERROR,
            "workspace has no AI plan",
        ),
        (
            400,
            {"message": ["workspaceId must be a string", "apiKey should not be empty"], "statusCode": 400},
            Outcome.VALIDATION_ERROR,
            "workspaceId must be a string; apiKey should not be empty",
        ),
        (
            400,
            {"message": [f"apiKey {KEY} is not allowed"], "statusCode": 400},
            Outcome.VALIDATION_ERROR,
            "error 400",  # issue 10: a message that held key text becomes a generic detail
        ),
        (400, {"message": f"bad key {KEY[8:30]}", "statusCode": 400}, Outcome.VALIDATION_ERROR, "error 400"),
        (400, {"message": "bad key " + "\u2063".join(KEY), "statusCode": 400}, Outcome.VALIDATION_ERROR,
         "error 400"),
        (400, {"message": "bad key <b>x</b>", "statusCode": 400}, Outcome.VALIDATION_ERROR, "error 400"),
        (400, "<html>bad</html>", Outcome.VALIDATION_ERROR, "error 400"),
    ],
)
async def test_error_bodies(status: int, body: object, outcome: Outcome, detail: str | None) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(body, str):
            return httpx.Response(status, text=body)
        return httpx.Response(status, json=body)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        dt = DoubleTickConnector(api_key=SecretKey("key_operator123"), connect_path="/x", client=client)
        result = await dt.connect(WS, SecretKey(KEY), "idem-w")
    assert (result.outcome, result.detail, result.http_status) == (outcome, detail, status)
    assert KEY not in repr(result)


async def test_without_a_fingerprint_secret_no_fingerprint_is_sent() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        dt = DoubleTickConnector(api_key=SecretKey("key_operator123"), connect_path="/x", client=client)
        await dt.connect("ws_1", SecretKey(KEY), "idem-f")
    assert json.loads(seen[0].content) == {"workspaceId": "ws_1", "apiKey": KEY}
