"""A hostile OpenAI (or a proxy in front of it) echoes the caller's key everywhere it can (issue 10 item 3).

The stand-in here reads the ``Authorization`` header it is sent and puts the key into the one field each
case names: ``error.code``, the "Missing scopes: …" list, "model `…`", a "starred" echo that stars almost
nothing, ``x-request-id``, a key split by U+2063, a fragment. Before issue 10 each of these reached
``VerificationResult.detail`` (and so ``problem_detail`` and the ``editMessageText`` body) or the request
id in the log. Now the result holds no 12-character piece of the key, and each detail is in its format.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import fields

import httpx
import pytest

from bot.services.openai import OpenAIVerifier
from flows.outcomes import VerificationOutcome as Outcome
from flows.outcomes import VerificationResult
from flows.secret import SecretKey
from tests.e2e.pasting import fresh_key

KEY = fresh_key("project", "Hostile")
HELP = " You can find your API key at https://platform.openai.com/account/api-keys."


def body(message: str | None, code: str | None, type_: str = "invalid_request_error") -> bytes:
    return json.dumps({"error": {"message": message, "type": type_, "param": None, "code": code}}).encode()


# name -> (status, body from the key, extra headers from the key, outcome, detail)
Echo = Callable[[str], bytes]
HOSTILE: dict[str, tuple[int, Echo, Callable[[str], dict[str, str]], Outcome, str | None]] = {
    "key as error.code": (400, lambda k: body("bad", k), lambda k: {}, Outcome.INDETERMINATE, "http_400"),
    "key as error.code on a 500": (500, lambda k: body("oops", k), lambda k: {}, Outcome.INDETERMINATE,
                                   "http_500"),
    "split key as error.code": (400, lambda k: body("bad", "\u2063".join(k)), lambda k: {}, Outcome.INDETERMINATE,
                                "http_400"),
    "key in Missing scopes": (401, lambda k: body(f"Missing scopes: api.model.read, {k}. Check it.", "missing_scope"),
                              lambda k: {}, Outcome.MISSING_SCOPE, "api.model.read"),
    "only the key in Missing scopes": (401, lambda k: body(f"Missing scopes: {k}.", None), lambda k: {},
                                       Outcome.MISSING_SCOPE, None),
    "lower-cased key piece as a scope": (401, lambda k: body(f"Missing scopes: api.{k[8:40].lower()}.", None),
                                         lambda k: {}, Outcome.MISSING_SCOPE, None),
    "starred echo that stars one character": (
        401, lambda k: body(f"Incorrect API key provided: {k[:-5]}*{k[-4:]}.{HELP}", "invalid_api_key"),
        lambda k: {}, Outcome.INVALID, SecretKey(KEY).masked),
    "starred echo with the body in the clear": (
        401, lambda k: body(f"Incorrect API key provided: sk-proj-****{k[8:]}.{HELP}", "invalid_api_key"),
        lambda k: {}, Outcome.INVALID, SecretKey(KEY).masked),
    "honest starred echo": (
        401, lambda k: body(f"Incorrect API key provided: sk-proj-{'*' * 30}{k[-4:]}.{HELP}", "invalid_api_key"),
        lambda k: {}, Outcome.INVALID, "sk-proj-" + "*" * 30 + KEY[-4:]),
    "key as the model": (404, lambda k: body(f"The model `{k}` does not exist or you do not have access to it.",
                                             None), lambda k: {}, Outcome.MODEL_NOT_AVAILABLE, None),
    "key as a quota code": (429, lambda k: body("You exceeded your current quota.", k.lower() + "_exceeded",
                                                "insufficient_quota"), lambda k: {}, Outcome.NO_CREDIT,
                            "insufficient_quota"),
    "key in x-request-id": (401, lambda k: body("Incorrect API key provided: x." + HELP, "invalid_api_key"),
                            lambda k: {"x-request-id": "req_" + k[8:]}, Outcome.INVALID, SecretKey(KEY).masked),
}


def no_piece_of_the_key(result: VerificationResult) -> None:
    shown = repr(result) + "".join(str(getattr(result, f.name)) for f in fields(result))
    folded = "".join(c for c in shown if c.isalnum() or c in "-_")
    for start in range(len(KEY) - 12):
        assert KEY[start : start + 12] not in folded, start
        assert KEY[start : start + 12].lower() not in folded.lower(), start


@pytest.mark.parametrize("name", list(HOSTILE))
async def test_a_hostile_openai_cannot_get_the_key_into_the_result(name: str) -> None:
    status, make_body, make_headers, outcome, detail = HOSTILE[name]

    def handler(request: httpx.Request) -> httpx.Response:
        key = request.headers["authorization"].removeprefix("Bearer ")
        return httpx.Response(status, content=make_body(key), headers=make_headers(key))

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        # without the model probe the model id comes from OpenAI's message, the field under attack
        result = await OpenAIVerifier(client=client, required_models=(), billed_probe=False).verify(SecretKey(KEY))
    assert (result.outcome, result.detail) == (outcome, detail)
    assert result.request_id is None
    no_piece_of_the_key(result)


async def test_honest_details_survive() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, content=body("The model `gpt-4o-mini` does not exist or you do not have access "
                                                "to it.", "model_not_found"),
                              headers={"x-request-id": "req_" + "0123456789abcdef" * 2})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        result = await OpenAIVerifier(client=client, billed_probe=False).verify(SecretKey(KEY))
    assert (result.outcome, result.detail) == (Outcome.MODEL_NOT_AVAILABLE, "gpt-4o-mini")
    assert result.request_id == "req_" + "0123456789abcdef" * 2


# --- answers too large or undecodable (issue 10 item 6) ----------------------------------------------------


class EndlessBody(httpx.AsyncByteStream):
    """A body of ``total`` bytes handed out in 64 KiB chunks, counting how many the client pulled."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.pulled = 0

    async def __aiter__(self):  # type: ignore[no-untyped-def]
        while self.pulled < self.total:
            self.pulled += 65536
            yield b"x" * 65536


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_a_huge_openai_answer_is_cut_at_one_mib_and_indeterminate(declared: bool) -> None:
    streams: list[EndlessBody] = []

    def handler(request: httpx.Request) -> httpx.Response:
        streams.append(stream := EndlessBody(200 * 2**20))  # one per probe: several run at once
        headers = {"content-length": str(stream.total)} if declared else {}
        return httpx.Response(200, headers=headers, stream=stream)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        result = await OpenAIVerifier(client=client, required_models=(), billed_probe=False).verify(SecretKey(KEY))
    assert (result.outcome, result.detail) == (Outcome.INDETERMINATE, "response_too_large")
    assert streams and all(stream.pulled <= 2**20 + 65536 for stream in streams)  # no further than the cap


async def test_a_broken_gzip_answer_is_indeterminate_not_a_crash() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        # a stream, not content=: httpx decodes content= at once, a network body only when it is read
        return httpx.Response(200, headers={"content-encoding": "gzip"}, stream=httpx.ByteStream(b"not gzip"))

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        result = await OpenAIVerifier(client=client, required_models=(), billed_probe=False).verify(SecretKey(KEY))
    assert (result.outcome, result.detail) == (Outcome.INDETERMINATE, "undecodable_response")


async def test_a_gzip_bomb_counts_at_its_inflated_size() -> None:
    import gzip

    bomb = gzip.compress(b"0" * (8 * 2**20))  # 8 MiB inflated, a few KB on the wire

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-encoding": "gzip"}, stream=httpx.ByteStream(bomb))

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        result = await OpenAIVerifier(client=client, required_models=(), billed_probe=False).verify(SecretKey(KEY))
    assert (result.outcome, result.detail) == (Outcome.INDETERMINATE, "response_too_large")


@pytest.mark.parametrize(("headers", "content", "detail"), [
    ({}, b"x" * (2 * 2**20), "response_too_large"),
    ({"content-encoding": "gzip"}, b"broken", "undecodable_response"),
])
async def test_doubletick_answers_too_large_or_broken_are_transient(headers: dict[str, str], content: bytes,
                                                                   detail: str) -> None:
    from bot.services.doubletick import DoubleTickConnector
    from flows.outcomes import ConnectionOutcome

    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.headers["idempotency-key"])
        return httpx.Response(201, headers=headers, stream=httpx.ByteStream(content))

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        dt = DoubleTickConnector(api_key=SecretKey("key_operator123"), connect_path="/x", client=client,
                                 backoff_base_s=0.001, backoff_max_s=0.01)
        result = await dt.connect("ws_1", SecretKey(KEY), "idem-1")
    assert (result.outcome, result.detail) == (ConnectionOutcome.TRANSIENT, detail)
    assert calls == ["idem-1"] * 3  # retried under the same Idempotency-Key
