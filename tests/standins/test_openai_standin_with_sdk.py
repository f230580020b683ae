"""The official ``openai`` SDK, pointed at the stand-in, raises what the docs say OpenAI makes it raise.

If the stand-in drifted from OpenAI's wire format, the SDK (which parses ``error.code`` and maps status
codes to exception classes, openai-python README "Handling errors") would notice first.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx
import openai
import pytest

from bot.standins.demo_keys import DEMO_KEYS, register_demo_keys
from bot.standins.openai import FakeOpenAI, create_openai_app, openai_echo
from bot.standins.server import BackgroundServer

REQUEST_ID = re.compile(r"^req_[0-9a-f]{32}$")
Call = Callable[[openai.AsyncOpenAI], Awaitable[Any]]


def list_models(client: openai.AsyncOpenAI) -> Awaitable[Any]:
    return client.models.list()


def retrieve_model(client: openai.AsyncOpenAI) -> Awaitable[Any]:
    return client.models.retrieve("gpt-4o-mini")


def chat(client: openai.AsyncOpenAI) -> Awaitable[Any]:
    return client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_completion_tokens=1
    )


@pytest.fixture(scope="module")
def fake() -> FakeOpenAI:
    return FakeOpenAI()


@pytest.fixture(scope="module")
def base_url(fake: FakeOpenAI) -> Iterator[str]:
    with BackgroundServer(create_openai_app(fake)) as server:
        yield server.url


@pytest.fixture(autouse=True)
def fresh(fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_ORG_ID", "OPENAI_PROJECT_ID", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    fake.reset()
    register_demo_keys(fake)


_open_clients: list[openai.AsyncOpenAI] = []


@pytest.fixture(autouse=True)
async def close_clients() -> AsyncIterator[None]:
    yield
    while _open_clients:
        await _open_clients.pop().close()


def sdk(base_url: str, key: str, timeout: float = 5.0) -> openai.AsyncOpenAI:
    """An SDK client with retries off, as a probe should be (reference section 3); closed after the test."""
    client = openai.AsyncOpenAI(api_key=key, base_url=base_url + "/v1", max_retries=0, timeout=timeout)
    _open_clients.append(client)
    return client


CASES: list[tuple[str, Call, type[openai.APIStatusError], str | None]] = [
    ("invalid", list_models, openai.AuthenticationError, "invalid_api_key"),
    ("missing_scope", list_models, openai.PermissionDeniedError, None),
    ("missing_request_scope", chat, openai.AuthenticationError, None),
    ("account_deactivated", list_models, openai.AuthenticationError, "account_deactivated"),
    ("no_organization", list_models, openai.AuthenticationError, "no_organization"),
    ("no_credit", chat, openai.RateLimitError, "insufficient_quota"),
    ("billing_inactive", chat, openai.RateLimitError, "billing_not_active"),
    ("model_not_available", retrieve_model, openai.NotFoundError, "model_not_found"),
    ("model_not_available", chat, openai.PermissionDeniedError, "model_not_found"),
    ("region_blocked", list_models, openai.PermissionDeniedError, "unsupported_country_region_territory"),
    ("ip_not_allowed", list_models, openai.AuthenticationError, "ip_not_authorized"),
    ("rate_limited", list_models, openai.RateLimitError, "rate_limit_exceeded"),
    ("openai_down", list_models, openai.InternalServerError, None),
]


@pytest.mark.parametrize(
    ("name", "call", "error", "code"), CASES, ids=[f"{name}-{call.__name__}" for name, call, _, _ in CASES]
)
async def test_behaviour_raises_the_documented_exception(
    name: str,
    call: Call,
    error: type[openai.APIStatusError],
    code: str | None,
    base_url: str,
) -> None:
    key = DEMO_KEYS[name].key
    with pytest.raises(error) as raised:
        await call(sdk(base_url, key))
    assert type(raised.value) is error
    assert raised.value.code == code
    assert raised.value.request_id is not None and REQUEST_ID.match(raised.value.request_id)
    assert key not in str(raised.value)


async def test_invalid_key_message_echoes_first_8_and_last_4(base_url: str) -> None:
    key = "sk-proj-" + "NeverRegistered00000" + "T3Blbk" + "FJ" + "NeverRegistered0wxyz"
    with pytest.raises(openai.AuthenticationError) as raised:
        await list_models(sdk(base_url, key))
    assert raised.value.code == "invalid_api_key"
    assert f"Incorrect API key provided: {openai_echo(key)}." in raised.value.message
    assert openai_echo(key) == key[:8] + "*" * (len(key) - 12) + "wxyz"
    assert key not in raised.value.message


async def test_rate_limit_carries_retry_after_and_then_lifts(base_url: str) -> None:
    client = sdk(base_url, DEMO_KEYS["rate_limited"].key)
    with pytest.raises(openai.RateLimitError) as raised:
        await list_models(client)
    assert raised.value.response.headers["retry-after"] == "1"
    assert "Please try again in 1s." in raised.value.message
    page = await list_models(client)
    assert "gpt-4o-mini" in [model.id for model in page.data]


async def test_hanging_key_times_out(fake: FakeOpenAI, base_url: str) -> None:
    fake.register("sk-proj-Hangs", "timeout")
    with pytest.raises(openai.APITimeoutError):
        await list_models(sdk(base_url, "sk-proj-Hangs", timeout=0.2))


async def test_connection_reset_is_a_connection_error(fake: FakeOpenAI, base_url: str) -> None:
    fake.configure(faults={"reset": 1.0})
    with pytest.raises(openai.APIConnectionError):
        await list_models(sdk(base_url, DEMO_KEYS["valid"].key))


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_injected_server_errors(status: int, fake: FakeOpenAI, base_url: str) -> None:
    fake.configure(faults={"server_error": 1.0, "server_error_statuses": [status]})
    with pytest.raises(openai.InternalServerError) as raised:
        await list_models(sdk(base_url, DEMO_KEYS["valid"].key))
    assert raised.value.status_code == status


async def test_valid_key_lists_retrieves_and_completes(base_url: str) -> None:
    client = sdk(base_url, DEMO_KEYS["service_account_valid"].key)
    page = await list_models(client)
    assert all(model.object == "model" and model.owned_by for model in page.data)
    model = await retrieve_model(client)
    assert (model.id, model.created) == ("gpt-4o-mini", 1721172741)
    completion = await chat(client)
    assert completion.object == "chat.completion" and completion.usage is not None
    assert completion.choices[0].finish_reason == "length"
    assert completion._request_id is not None and REQUEST_ID.match(completion._request_id)


async def test_unknown_model_is_not_found(base_url: str) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        await sdk(base_url, DEMO_KEYS["valid"].key).models.retrieve("gpt-9")
    assert raised.value.code == "model_not_found"


async def test_missing_authorization_header(base_url: str) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.get(base_url + "/v1/models")
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["message"].startswith("You didn't provide an API key.")
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", None, None)
    assert REQUEST_ID.match(response.headers["x-request-id"])
    assert "openai-organization" not in response.headers


async def test_authenticated_answers_name_the_organization(fake: FakeOpenAI, base_url: str) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.get(
            base_url + "/v1/models", headers={"Authorization": f"Bearer {DEMO_KEYS['valid'].key}"}
        )
    assert response.headers["openai-organization"] == fake.organization
    assert response.headers["openai-version"] == "2020-10-01"
    assert response.json()["object"] == "list"


async def test_latency_is_applied(fake: FakeOpenAI, base_url: str) -> None:
    fake.configure(latency_ms=150)
    client = sdk(base_url, DEMO_KEYS["valid"].key)
    started = time.monotonic()
    await list_models(client)
    assert time.monotonic() - started >= 0.15


# -- the control API ------------------------------------------------------------------------------------


async def test_sandbox_registers_keys_and_logs_only_masks(base_url: str) -> None:
    key = "sk-proj-" + "SandboxRegistered000" + "T3Blbk" + "FJ" + "SandboxRegistered000"
    async with httpx.AsyncClient(base_url=base_url) as client:
        assert (await client.post("/_sandbox/reset")).status_code == 200
        created = await client.post("/_sandbox/keys", json={"key": key, "behaviour": "no_organization"})
        assert created.status_code == 201 and key not in created.text
        refused = await client.post("/_sandbox/keys", json={"key": key, "behaviour": "nonsense"})
        assert refused.status_code == 400
        await client.get("/v1/models", headers={"Authorization": f"Bearer {key}"})
        log = await client.get("/_sandbox/requests")
    assert key not in log.text
    (entry,) = log.json()
    assert entry["path"] == "/v1/models" and entry["method"] == "GET"
    assert entry["key_masked"] == "sk-proj-…" + key[-4:] and len(entry["key_sha256"]) == 64
    assert isinstance(entry["received_monotonic"], float)


async def test_sandbox_config_validates_and_round_trips(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url) as client:
        ok = await client.post("/_sandbox/config", json={"latency_ms": 5, "faults": {"rate_limit": 0.25}})
        bad = await client.post("/_sandbox/config", json={"faults": {"rate_limit": 2}})
        unknown = await client.post("/_sandbox/config", json={"faults": {"gremlins": 0.1}})
        current = (await client.get("/_sandbox/config")).json()
    assert ok.status_code == 200 and bad.status_code == 400 and unknown.status_code == 400
    assert current["latency_ms"] == 5 and current["faults"]["rate_limit"] == 0.25


# -- per-endpoint permissions (help.openai.com/en/articles/8867743; trufflehog scopes.go) ---------------


async def _call(base_url: str, key: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=base_url) as client:
        return await client.request(method, path, headers={"Authorization": f"Bearer {key}"}, **kwargs)


@pytest.mark.parametrize("demo, method, path, status, scopes", [
    ("read_only", "GET", "/v1/models", 200, None),
    ("read_only", "POST", "/v1/chat/completions", 401, "model.request"),
    ("read_only", "POST", "/v1/responses", 401, "api.responses.write, model.request"),
    ("missing_scope", "GET", "/v1/models/gpt-4o-mini", 403, "api.model.read"),
    ("missing_scope", "POST", "/v1/embeddings", 400, None),
    ("missing_request_scope", "POST", "/v1/embeddings", 401, "model.request"),
    ("missing_responses_scope", "POST", "/v1/responses", 401, "api.responses.write"),
    ("missing_responses_scope", "POST", "/v1/chat/completions", 400, None),
    ("valid", "POST", "/v1/responses", 400, None),
    ("valid", "POST", "/v1/assistants", 400, None),
    ("valid", "POST", "/v1/files", 415, None),
])
async def test_each_endpoint_checks_its_permission_before_the_body(
        base_url: str, demo: str, method: str, path: str, status: int, scopes: str | None) -> None:
    probe = {"doubletick_permission_probe": True} if method == "POST" else None
    answer = await _call(base_url, DEMO_KEYS[demo].key, method, path, json=probe)
    assert answer.status_code == status, answer.text
    message = answer.json().get("error", {}).get("message", "") if status != 200 else ""
    if scopes:
        assert message.startswith("You have insufficient permissions for this operation. "
                                  f"Missing scopes: {scopes}.")
    elif status == 400:
        assert message == "Unrecognized request argument supplied: doubletick_permission_probe"


async def test_the_sdk_raises_permission_denied_for_a_read_only_key(base_url: str) -> None:
    client = openai.AsyncOpenAI(api_key=DEMO_KEYS["read_only"].key, base_url=base_url + "/v1", max_retries=0)
    try:
        await client.models.list()
        with pytest.raises(openai.AuthenticationError, match=r"Missing scopes: model\.request"):
            await chat(client)
    finally:
        await client.close()
