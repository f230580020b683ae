"""OpenAIVerifier: every outcome over real HTTP against the stand-in, odd bodies through MockTransport."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import fields
from typing import Any

import httpx
import pytest

from bot.services.openai import OpenAIVerifier
from bot.standins.demo_keys import DEMO_KEYS, register_demo_keys
from bot.standins.openai import FakeOpenAI, create_openai_app, openai_echo
from bot.standins.server import BackgroundServer, free_port
from flows.outcomes import VerificationOutcome as Outcome
from flows.outcomes import VerificationResult
from flows.secret import SecretKey

REQUEST_ID = re.compile(r"^req_[0-9a-f]{32}$")
UNKNOWN_KEY = "sk-proj-" + "Unknown0Key0Never0Re" + "T3Blbk" + "FJ" + "abcdefghij0123456789"


@pytest.fixture(scope="module")
def fake() -> FakeOpenAI:
    return FakeOpenAI()


@pytest.fixture(scope="module")
def base_url(fake: FakeOpenAI) -> Iterator[str]:
    with BackgroundServer(create_openai_app(fake)) as server:
        yield server.url + "/v1"


@pytest.fixture(autouse=True)
def fresh(fake: FakeOpenAI) -> None:
    fake.reset()
    register_demo_keys(fake)


def verifier(base_url: str, *, timeout: float = 2.0, **kwargs: Any) -> OpenAIVerifier:
    return OpenAIVerifier(base_url=base_url, timeout=timeout, **kwargs)


def assert_no_plaintext(plaintext: str, result: VerificationResult, *texts: str) -> None:
    assert plaintext not in repr(result)
    for f in fields(result):
        assert plaintext not in str(getattr(result, f.name))
    for text in texts:
        assert plaintext not in text
        assert plaintext[8:-4] not in text  # not even the middle of it


EXPECTED = {
    "valid": (Outcome.VALID, None, 200),
    "service_account_valid": (Outcome.VALID, None, 200),
    "missing_scope": (Outcome.MISSING_SCOPE, "api.model.read", 403),
    "missing_request_scope": (Outcome.MISSING_SCOPE, "model.request", 401),
    "read_only": (Outcome.MISSING_SCOPE, "model.request", 401),
    "missing_responses_scope": (Outcome.VALID, None, 200),  # responses is not required by default
    "account_deactivated": (Outcome.ACCOUNT_DEACTIVATED, None, 401),
    "no_organization": (Outcome.NO_ORGANIZATION, None, 401),
    "no_credit": (Outcome.NO_CREDIT, "insufficient_quota", 429),
    "billing_inactive": (Outcome.BILLING_INACTIVE, None, 429),
    "model_not_available": (Outcome.MODEL_NOT_AVAILABLE, "gpt-4o-mini", 404),
    "region_blocked": (Outcome.REGION_BLOCKED, None, 403),
    "ip_not_allowed": (Outcome.IP_NOT_ALLOWED, None, 401),
    "openai_down": (Outcome.INDETERMINATE, "http_500", 500),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
async def test_each_demo_key_gets_its_outcome(
    name: str,
    base_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    demo = DEMO_KEYS[name]
    async with verifier(base_url) as v:
        result = await v.verify(SecretKey(demo.key))
    outcome, detail, status = EXPECTED[name]
    assert (result.outcome, result.detail, result.http_status) == (outcome, detail, status)
    assert result.request_id is not None and REQUEST_ID.match(result.request_id)
    assert_no_plaintext(demo.key, result, caplog.text)


def test_every_outcome_has_a_demo_key() -> None:
    assert set(EXPECTED) | {"invalid", "rate_limited"} == set(DEMO_KEYS)
    covered = {outcome for outcome, _, _ in EXPECTED.values()} | {Outcome.INVALID, Outcome.RATE_LIMITED}
    assert covered == set(Outcome)


@pytest.mark.parametrize("key", [DEMO_KEYS["invalid"].key, UNKNOWN_KEY])
async def test_unrecognised_key_is_invalid_with_openais_masked_echo(
    key: str,
    base_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with verifier(base_url) as v:
        result = await v.verify(SecretKey(key))
    assert result.outcome is Outcome.INVALID and result.http_status == 401
    assert result.detail == openai_echo(key)
    assert result.detail.startswith(key[:8]) and result.detail.endswith(key[-4:])
    assert len(result.detail) == len(key) and "*" in result.detail
    assert_no_plaintext(key, result, caplog.text)


async def test_short_key_echoed_verbatim_by_openai_is_masked_by_us(base_url: str) -> None:
    async with verifier(base_url) as v:
        result = await v.verify(SecretKey("sk-abc123"))
    assert result.outcome is Outcome.INVALID
    assert result.detail is not None and "sk-abc123" not in result.detail


async def test_rate_limited_key_reports_retry_after_then_passes(base_url: str) -> None:
    key = SecretKey(DEMO_KEYS["rate_limited"].key)
    async with verifier(base_url) as v:
        first = await v.verify(key)
        second = await v.verify(key)
    assert (first.outcome, first.retry_after_s, first.http_status) == (Outcome.RATE_LIMITED, 1.0, 429)
    assert second.outcome is Outcome.VALID


async def test_key_hanging_past_the_timeout_is_indeterminate(fake: FakeOpenAI, base_url: str) -> None:
    fake.register("sk-proj-HangingKey0000000000000000000000000000000000001", "timeout")
    started = time.monotonic()
    async with verifier(base_url, timeout=0.2) as v:
        result = await v.verify(SecretKey("sk-proj-HangingKey0000000000000000000000000000000000001"))
    assert (result.outcome, result.detail) == (Outcome.INDETERMINATE, "timeout")
    assert time.monotonic() - started < 2.0  # the probes run concurrently: one timeout, not three


async def test_html_200_is_indeterminate(fake: FakeOpenAI, base_url: str) -> None:
    fake.register("sk-proj-HtmlProxy000000000000000000000000000000000000001", "non_json")
    async with verifier(base_url) as v:
        result = await v.verify(SecretKey("sk-proj-HtmlProxy000000000000000000000000000000000000001"))
    assert (result.outcome, result.detail, result.http_status) == (
        Outcome.INDETERMINATE,
        "unexpected_response",
        200,
    )


@pytest.mark.parametrize("fault", ["server_error", "reset", "rate_limit"])
async def test_injected_faults_are_never_invalid(fault: str, fake: FakeOpenAI, base_url: str) -> None:
    fake.configure(faults={fault: 1.0})
    async with verifier(base_url) as v:
        result = await v.verify(SecretKey(DEMO_KEYS["invalid"].key))
    expected = Outcome.RATE_LIMITED if fault == "rate_limit" else Outcome.INDETERMINATE
    assert result.outcome is expected
    if fault == "reset":
        assert result.detail is not None and result.detail.startswith("connection_error")


async def test_nothing_listening_is_indeterminate() -> None:
    async with verifier(f"http://127.0.0.1:{free_port()}/v1") as v:
        result = await v.verify(SecretKey(DEMO_KEYS["valid"].key))
    assert result.outcome is Outcome.INDETERMINATE
    assert result.detail is not None and result.detail.startswith("connection_error")


async def test_project_without_the_model_is_caught_by_the_billed_probe(base_url: str) -> None:
    async with verifier(base_url, required_models=[], probe_model="gpt-4o") as v:
        result = await v.verify(SecretKey(DEMO_KEYS["model_not_available"].key))
    assert (result.outcome, result.detail, result.http_status) == (Outcome.MODEL_NOT_AVAILABLE, "gpt-4o", 403)


async def test_without_the_billed_probe_an_empty_account_looks_valid(fake: FakeOpenAI, base_url: str) -> None:
    async with verifier(base_url, billed_probe=False) as v:
        result = await v.verify(SecretKey(DEMO_KEYS["no_credit"].key))
    assert result.outcome is Outcome.VALID  # reference 3.1: /models never reveals billing
    assert {(r.method, r.path) for r in fake.requests} == {
        ("GET", "/v1/models"),
        ("GET", "/v1/models/gpt-4o-mini"),
        ("POST", "/v1/chat/completions"),  # the permission probe, refused in validation before billing
    }


async def test_the_stand_in_saw_hashes_not_keys(fake: FakeOpenAI, base_url: str) -> None:
    key = DEMO_KEYS["valid"].key
    async with verifier(base_url) as v:
        await v.verify(SecretKey(key))
    async with httpx.AsyncClient() as client:
        log = (await client.get(base_url.removesuffix("/v1") + "/_sandbox/requests")).text
    assert key not in log
    assert {(r["method"], r["path"]) for r in json.loads(log)} == {
        ("GET", "/v1/models"),
        ("GET", "/v1/models/gpt-4o-mini"),
        ("POST", "/v1/chat/completions"),
    }


# -- permissions: OPENAI_REQUIRED_CAPABILITIES, proven per capability (issue 11 item 5) ----------------


@pytest.mark.parametrize("billed", [True, False])
@pytest.mark.parametrize("name, scope", [("missing_request_scope", "model.request"), ("read_only", "model.request"),
                                         ("missing_scope", "api.model.read")])
async def test_a_key_missing_a_required_permission_is_missing_scope_with_or_without_the_billed_probe(
        base_url: str, billed: bool, name: str, scope: str) -> None:
    async with verifier(base_url, billed_probe=billed) as v:
        result = await v.verify(SecretKey(DEMO_KEYS[name].key))
    assert (result.outcome, result.detail) == (Outcome.MISSING_SCOPE, scope)


async def test_responses_is_proven_when_required_and_the_probe_creates_nothing(
        fake: FakeOpenAI, base_url: str) -> None:
    capabilities = ["models.read", "chat.completions", "responses"]
    async with verifier(base_url, billed_probe=False, required_capabilities=capabilities) as v:
        refused = await v.verify(SecretKey(DEMO_KEYS["missing_responses_scope"].key))
        fine = await v.verify(SecretKey(DEMO_KEYS["valid"].key))
    assert (refused.outcome, refused.detail) == (Outcome.MISSING_SCOPE, "api.responses.write")
    assert fine.outcome is Outcome.VALID
    paths = [(r.method, r.path) for r in fake.requests]
    assert ("POST", "/v1/responses") in paths and ("POST", "/v1/chat/completions") in paths


async def test_without_models_read_no_model_listing_is_needed(fake: FakeOpenAI, base_url: str) -> None:
    key = DEMO_KEYS["missing_scope"].key  # a restricted key without Models: Read
    async with verifier(base_url, billed_probe=False, required_capabilities=["chat.completions"]) as v:
        result = await v.verify(SecretKey(key))
    assert result.outcome is Outcome.VALID
    assert {r.path for r in fake.requests} == {"/v1/chat/completions"}


async def test_an_unknown_key_is_still_invalid_through_a_permission_probe(base_url: str) -> None:
    async with verifier(base_url, required_capabilities=["responses"], billed_probe=False) as v:
        result = await v.verify(SecretKey(UNKNOWN_KEY))
    assert result.outcome is Outcome.INVALID


def test_unknown_capabilities_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown capabilities chat"):
        OpenAIVerifier(required_capabilities=["chat"])


# -- MockTransport: request shape and bodies the stand-in does not produce ----------------------------

KEY = "sk-proj-" + "MockTransport0000000" + "T3Blbk" + "FJ" + "MockTransport0000000"


async def test_requests_carry_bearer_auth_only_and_a_one_token_probe() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/chat/completions"):
            return httpx.Response(200, json={"id": "chatcmpl-1", "object": "chat.completion", "choices": []})
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json={"object": "list", "data": []})
        return httpx.Response(200, json={"id": "gpt-4o-mini", "object": "model"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        result = await OpenAIVerifier(client=client).verify(SecretKey(KEY))
    assert result.outcome is Outcome.VALID
    assert sorted(str(r.url) for r in seen) == [
        "https://api.openai.com/v1/chat/completions",
        "https://api.openai.com/v1/chat/completions",
        "https://api.openai.com/v1/models",
        "https://api.openai.com/v1/models/gpt-4o-mini",
    ]
    for request in seen:
        assert request.headers["authorization"] == f"Bearer {KEY}"
        assert "openai-organization" not in request.headers and "openai-project" not in request.headers
    posts = [json.loads(r.content) for r in seen if r.method == "POST"]
    probe = next(p for p in posts if "model" in p)
    assert probe["max_completion_tokens"] == 1 and probe["model"] == "gpt-4o-mini"
    assert {"doubletick_permission_probe": True} in posts  # the free permission probe: refused in validation


def scope_message(scopes: str) -> str:
    return (
        f"You have insufficient permissions for this operation. Missing scopes: {scopes}. Check that you..."
    )


def err(message: str | None, code: str | None = None, type_: str | None = "invalid_request_error") -> bytes:
    return json.dumps({"error": {"message": message, "type": type_, "param": None, "code": code}}).encode()


ODD_ANSWERS: dict[str, tuple[int, bytes, dict[str, str], Outcome, str | None, float | None]] = {
    "bare string scope error": (
        401,
        json.dumps({"error": scope_message("api.model.read")}).encode(),
        {},
        Outcome.MISSING_SCOPE,
        "api.model.read",
        None,
    ),
    "missing_scope code, two scopes": (
        401,
        err(scope_message("api.responses.write, api.model.read"), "missing_scope"),
        {},
        Outcome.MISSING_SCOPE,
        "api.responses.write, api.model.read",
        None,
    ),
    "missing_scope code, no message": (
        403,
        err(None, "missing_scope"),
        {},
        Outcome.MISSING_SCOPE,
        None,
        None,
    ),
    "html 200": (
        200,
        b"<html><body>Welcome to nginx</body></html>",
        {"content-type": "text/html"},
        Outcome.INDETERMINATE,
        "unexpected_response",
        None,
    ),
    "json 200 of the wrong shape": (
        200,
        b'{"hello": "world"}',
        {},
        Outcome.INDETERMINATE,
        "unexpected_response",
        None,
    ),
    "html 401": (401, b"<html>Unauthorized</html>", {}, Outcome.INDETERMINATE, "http_401", None),
    "error null": (401, b'{"error": null}', {}, Outcome.INDETERMINATE, "http_401", None),
    "json list": (401, b"[]", {}, Outcome.INDETERMINATE, "http_401", None),
    "old quota body, code null": (
        429,
        err(
            "You exceeded your current quota, please check your plan and billing details.",
            None,
            "insufficient_quota",
        ),
        {},
        Outcome.NO_CREDIT,
        "insufficient_quota",
        None,
    ),
    "credit_balance_exhausted": (
        429,
        err("x", "credit_balance_exhausted", "insufficient_quota"),
        {},
        Outcome.NO_CREDIT,
        "credit_balance_exhausted",
        None,
    ),
    "project spend limit": (
        429,
        err("x", "project_spend_limit_exceeded", "insufficient_quota"),
        {},
        Outcome.NO_CREDIT,
        "project_spend_limit_exceeded",
        None,
    ),
    "org usage limit": (
        429,
        err("x", "organization_usage_limit_exceeded", "insufficient_quota"),
        {},
        Outcome.NO_CREDIT,
        "organization_usage_limit_exceeded",
        None,
    ),
    "future *_spend_limit_exceeded": (
        429,
        err("x", "workspace_spend_limit_exceeded"),
        {},
        Outcome.NO_CREDIT,
        "workspace_spend_limit_exceeded",
        None,
    ),
    "billing inactive, code null": (
        429,
        err(
            "Your account is not active, please check your billing details on our website.",
            None,
            "billing_not_active",
        ),
        {},
        Outcome.BILLING_INACTIVE,
        None,
        None,
    ),
    "rate limit, wait in message": (
        429,
        err(
            "Rate limit reached for gpt-4o-mini ... Please try again in 20s. Visit ...",
            "rate_limit_exceeded",
            "requests",
        ),
        {},
        Outcome.RATE_LIMITED,
        None,
        20.0,
    ),
    "rate limit, wait in ms": (
        429,
        err("... Please try again in 859ms. Visit ...", "rate_limit_exceeded", "tokens"),
        {},
        Outcome.RATE_LIMITED,
        None,
        0.859,
    ),
    "rate limit, wait in minutes": (
        429,
        err("... Please try again in 1m30.5s. Visit ...", "rate_limit_exceeded", "tokens"),
        {},
        Outcome.RATE_LIMITED,
        None,
        90.5,
    ),
    "slow_down with Retry-After": (
        429,
        err("slow down", "slow_down", "rate_limit_error"),
        {"retry-after": "2"},
        Outcome.RATE_LIMITED,
        None,
        2.0,
    ),
    "retry-after-ms wins": (
        429,
        err("x", "rate_limit_exceeded"),
        {"retry-after-ms": "250", "retry-after": "9"},
        Outcome.RATE_LIMITED,
        None,
        0.25,
    ),
    "mismatched organization": (
        401,
        err("OpenAI-Organization header should match organization for API key", "mismatched_organization"),
        {},
        Outcome.INDETERMINATE,
        "mismatched_organization",
        None,
    ),
    "no key sent": (
        401,
        err("You didn't provide an API key. You need to provide ...", None),
        {},
        Outcome.INDETERMINATE,
        "http_401",
        None,
    ),
    "ip allowlist, code only": (401, err("x", "ip_not_authorized"), {}, Outcome.IP_NOT_ALLOWED, None, None),
    "ip allowlist, message only": (
        401,
        err("IP not authorized", None),
        {},
        Outcome.IP_NOT_ALLOWED,
        None,
        None,
    ),
    "deactivated, newer wording": (
        401,
        err("The OpenAI account associated with this API key has been deactivated.", None),
        {},
        Outcome.ACCOUNT_DEACTIVATED,
        None,
        None,
    ),
    "org verification gate": (
        400,
        err(
            "Your organization must be verified to use the model `gpt-5`. Please go to ...",
            "unsupported_value",
        ),
        {},
        Outcome.MODEL_NOT_AVAILABLE,
        "gpt-5",
        None,
    ),
    "5xx never judges the key": (
        500,
        err("Incorrect API key provided: sk-p***abcd.", "invalid_api_key"),
        {},
        Outcome.INDETERMINATE,
        "invalid_api_key",
        None,
    ),
    "503 with Retry-After": (
        503,
        err("The engine is currently overloaded", "server_is_overloaded", "service_unavailable_error"),
        {"retry-after": "3"},
        Outcome.INDETERMINATE,
        "server_is_overloaded",
        3.0,
    ),
    # an unknown code becomes a generic detail (issue 10): a code is shown only when it is one we know
    "unknown 4xx": (418, err("I'm a teapot", "teapot"), {}, Outcome.INDETERMINATE, "http_418", None),
}


@pytest.mark.parametrize("name", sorted(ODD_ANSWERS))
async def test_odd_answers_are_classified_defensively(name: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    status, body, headers, outcome, detail, retry_after = ODD_ANSWERS[name]

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body, headers={"x-request-id": "req_" + "0" * 32, **headers})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        v = OpenAIVerifier(client=client, required_models=[], billed_probe=False)
        result = await v.verify(SecretKey(KEY))
    assert (result.outcome, result.detail, result.http_status) == (outcome, detail, status)
    assert result.retry_after_s == pytest.approx(retry_after) if retry_after else result.retry_after_s is None
    assert result.request_id == "req_" + "0" * 32
    assert_no_plaintext(KEY, result, caplog.text)


async def test_model_not_found_names_the_model_we_asked_for() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"object": "list", "data": []})
        return httpx.Response(
            404,
            content=err("The model `o9` does not exist or you do not have access to it.", "model_not_found"),
        )

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        v = OpenAIVerifier(client=client, required_models=["o9"], billed_probe=False)
        result = await v.verify(SecretKey(KEY))
    assert (result.outcome, result.detail, result.http_status) == (Outcome.MODEL_NOT_AVAILABLE, "o9", 404)


async def test_earliest_failing_probe_decides() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(429, content=err("x", "insufficient_quota", "insufficient_quota"))
        return httpx.Response(403, content=err(scope_message("api.model.read")))

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        result = await OpenAIVerifier(client=client).verify(SecretKey(KEY))
    assert (result.outcome, result.detail) == (Outcome.MISSING_SCOPE, "api.model.read")


async def test_verbatim_echo_never_becomes_the_detail() -> None:
    short = "sk-12345678901"

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            401,
            content=err(
                f"Incorrect API key provided: {short}. You can find your API key "
                "at https://platform.openai.com/account/api-keys.",
                "invalid_api_key",
            ),
        )

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        result = await OpenAIVerifier(client=client, billed_probe=False).verify(SecretKey(short))
    assert result.outcome is Outcome.INVALID
    assert result.detail == SecretKey(short).masked and short not in repr(result)


def test_an_ip_allowlist_refusal_that_names_the_address_passes_it_on() -> None:
    from bot.services.openai import classify_error_response

    body = err("Your IP 203.0.113.9 is not authorized to make this request.", "ip_not_authorized")
    result = classify_error_response(httpx.Response(401, content=body))
    assert (result.outcome, result.detail) == (Outcome.IP_NOT_ALLOWED, "203.0.113.9")
    plain = classify_error_response(httpx.Response(401, content=err("Your IP is not authorized.", "ip_not_authorized")))
    assert (plain.outcome, plain.detail) == (Outcome.IP_NOT_ALLOWED, None)
