"""The DoubleTick stand-in speaks DoubleTick's documented error shapes and never keeps a plaintext key."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator

import httpx
import pytest

from bot.standins.doubletick import (
    DEFAULT_CONNECT_PATH,
    DEMO_OPERATOR_KEY,
    FakeDoubleTick,
    create_doubletick_app,
)
from bot.standins.server import BackgroundServer

KEY = "sk-proj-" + "StandInDoubleTick000" + "T3Blbk" + "FJ" + "StandInDoubleTick0wx"
AUTH = {"Authorization": DEMO_OPERATOR_KEY, "Idempotency-Key": "idem-1"}


@pytest.fixture(scope="module")
def fake() -> FakeDoubleTick:
    return FakeDoubleTick()


@pytest.fixture(scope="module")
def client(fake: FakeDoubleTick) -> Iterator[httpx.Client]:
    with BackgroundServer(create_doubletick_app(fake)) as server, httpx.Client(base_url=server.url) as c:
        yield c


@pytest.fixture(autouse=True)
def fresh(fake: FakeDoubleTick) -> None:
    fake.reset()


def connect(client: httpx.Client, headers: dict[str, str] = AUTH, **body: object) -> httpx.Response:
    return client.post(
        DEFAULT_CONNECT_PATH, headers=headers, json={"workspaceId": "ws_demo", "apiKey": KEY} | body
    )


def test_bad_credential_gets_the_documented_401(client: httpx.Client) -> None:
    response = connect(
        client, headers={"Authorization": "Bearer " + DEMO_OPERATOR_KEY, "Idempotency-Key": "i"}
    )
    assert response.status_code == 401
    assert response.json() == {
        "message": "Invalid public api key",
        "error": "Unauthorized",
        "statusCode": 401,
    }


def test_validation_errors_list_every_problem(client: httpx.Client) -> None:
    response = client.post(DEFAULT_CONNECT_PATH, headers={"Authorization": DEMO_OPERATOR_KEY}, json={})
    body = response.json()
    assert response.status_code == 400 and body["error"] == "Bad Request" and body["statusCode"] == 400
    assert "Idempotency-Key header should not be empty" in body["message"]
    assert (
        "workspaceId should not be empty" in body["message"] and "apiKey must be a string" in body["message"]
    )


def test_an_unkeyed_fingerprint_is_refused(client: httpx.Client) -> None:
    response = connect(client, keyFingerprint="sha256:" + "0" * 64)
    assert response.json()["message"] == ["keyFingerprint must be hmac-sha256:<64 hex>"]


def test_unknown_route_is_nest_404(client: httpx.Client) -> None:
    response = client.post("/v1/elsewhere", headers=AUTH, json={})
    assert response.json() == {
        "message": "Cannot POST /v1/elsewhere",
        "error": "Not Found",
        "statusCode": 404,
    }


def test_replay_is_marked_and_does_not_act_twice(client: httpx.Client) -> None:
    first, second = connect(client), connect(client)
    assert first.status_code == second.status_code == 201 and first.json() == second.json()
    assert second.headers["idempotent-replayed"] == "true"
    state = client.get("/_sandbox/workspaces").json()["ws_demo"]
    assert state == {
        "name": "Demo Workspace",
        "connected": True,
        "key_sha256": hashlib.sha256(KEY.encode()).hexdigest(),
        "key_last_four": KEY[-4:],
        "connect_count": 1,
    }


def test_a_reused_key_with_another_body_is_refused_and_acts_not(client: httpx.Client) -> None:
    assert connect(client).status_code == 201
    other = connect(client, workspaceId="ws_acme")
    assert other.status_code == 409 and "different request" in other.json()["message"]
    assert client.get("/_sandbox/workspaces").json()["ws_acme"]["connect_count"] == 0


def test_a_timed_out_request_acts_and_its_retry_replays(client: httpx.Client) -> None:
    """The lost 2xx: the stand-in connects after the client gave up; the retry (same key) must not act again."""
    client.post("/_sandbox/config", json={"faults": {"timeout": 1.0, "hang_s": 2.0}})
    with pytest.raises(httpx.TimeoutException):
        client.post(DEFAULT_CONNECT_PATH, headers=AUTH, json={"workspaceId": "ws_demo", "apiKey": KEY}, timeout=0.3)
    client.post("/_sandbox/config", json={"faults": {"timeout": 0.0}})
    deadline = time.monotonic() + 5
    while client.get("/_sandbox/workspaces").json()["ws_demo"]["connect_count"] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)  # the hang ends when the stand-in sees the client gone
    retried = connect(client)
    assert retried.status_code == 201 and retried.headers["idempotent-replayed"] == "true"
    assert client.get("/_sandbox/workspaces").json()["ws_demo"]["connect_count"] == 1


def test_fail_next_and_throttling_carry_retry_after(client: httpx.Client) -> None:
    client.post("/_sandbox/config", json={"fail_next": {"count": 1, "status": 429, "retry_after_s": 2}})
    throttled = connect(client)
    assert throttled.status_code == 429 and throttled.headers["retry-after"] == "2"
    assert throttled.json() == {"statusCode": 429, "message": "ThrottlerException: Too Many Requests"}
    assert connect(client).status_code == 201


def test_sandbox_views_hold_no_plaintext(client: httpx.Client) -> None:
    connect(client)
    client.delete(f"{DEFAULT_CONNECT_PATH}/ws_demo", headers={**AUTH, "Idempotency-Key": "idem-2"})
    requests = client.get("/_sandbox/requests").json()
    texts = [client.get(p).text for p in ("/_sandbox/requests", "/_sandbox/workspaces", "/_sandbox/config")]
    assert all(KEY not in text and DEMO_OPERATOR_KEY not in text for text in texts)
    assert [(r["method"], r["status"], r["workspace_id"]) for r in requests] == [
        ("POST", 201, "ws_demo"),
        ("DELETE", 200, "ws_demo"),
    ]
    assert requests[0]["key_masked"] == "sk-proj-…" + KEY[-4:]


def test_sandbox_config_adds_workspaces_and_credentials(client: httpx.Client) -> None:
    response = client.post(
        "/_sandbox/config", json={"api_keys": ["key_other0001"], "workspaces": {"ws_new": "New"}}
    )
    assert response.json()["workspaces"]["ws_new"] == "New"
    assert connect(client, workspaceId="ws_new").status_code == 401  # the demo credential was replaced
    ok = connect(
        client, headers={"Authorization": "key_other0001", "Idempotency-Key": "z"}, workspaceId="ws_new"
    )
    assert ok.status_code == 201
