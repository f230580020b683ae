"""A local stand-in for the parts of the OpenAI API the verifier touches.

Why: tests, fault drills, benchmarks and the offline try-it mode need every verification outcome on
demand, over real HTTP, without real keys or network. The answers follow OpenAI's documented and
observed responses, collected with sources in ``shared/reference/openai-keys.md`` section 3 (status,
``error.type``, ``error.code`` and exact message per outcome) and section 4 (response headers):

* error body ``{"error": {"message", "type", "param", "code"}}`` (openai-python ``_exceptions.py``);
* ``x-request-id: req_<32 hex>`` on every response, ``openai-organization``/``openai-version``/
  ``openai-processing-ms`` on authenticated ones (API reference "Debugging requests");
* ``GET /v1/models`` list object, ``GET /v1/models/{id}`` model object, 404 ``model_not_found`` for a
  model the key cannot see (API reference "Models"; WolframResearch/Chatbook#188);
* ``Retry-After`` on throttling 429s only: the billing 429s (``insufficient_quota``,
  ``billing_not_active``) carry none in the captured real headers (lifan0127/ai-research-assistant#174),
  and retrying them "does not restore access" (help.openai.com 5955604).

Keys are looked up by SHA-256: the stand-in never stores or returns a plaintext key. Like OpenAI, an
unknown key gets a 401 that echoes its first 8 and last 4 characters with asterisks between.

Control API (not part of OpenAI): ``POST /_sandbox/keys``, ``POST|GET /_sandbox/config``,
``GET /_sandbox/requests``, ``POST /_sandbox/reset``.
"""

from __future__ import annotations

import hashlib
import json
import random
import secrets
import string
import threading
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bot.standins.faults import Fault, FaultConfig, RawSendMiddleware, drop_connection, hang
from flows.secret import mask_key

__all__ = [
    "Behaviour",
    "FakeOpenAI",
    "OpenAIRequestRecord",
    "OpenAIStandInApp",
    "create_openai_app",
    "openai_echo",
]

KEYS_URL = "https://platform.openai.com/account/api-keys"
MISSING_SCOPE_TAIL = (
    "Check that you have the correct role in your organization (Reader, Writer, Owner) and project "
    "(Member, Owner), and if you're using a restricted API key, that it has the necessary scopes."
)


class Behaviour(StrEnum):
    """How the stand-in answers one registered key."""

    VALID = "valid"
    INVALID = "invalid"
    MISSING_SCOPE_MODELS = "missing_scope_models"  # restricted: everything but Models: Read
    MISSING_SCOPE_REQUEST = "missing_scope_request"  # restricted: everything but Model capabilities: Request
    MISSING_SCOPE_RESPONSES = "missing_scope_responses"  # restricted: everything but Responses: Write
    READ_ONLY = "read_only"  # OpenAI's "Read only" permission level: read scopes on every endpoint
    ACCOUNT_DEACTIVATED = "account_deactivated"
    NO_ORGANIZATION = "no_organization"
    INSUFFICIENT_QUOTA = "insufficient_quota"
    BILLING_NOT_ACTIVE = "billing_not_active"
    MODEL_NOT_AVAILABLE = "model_not_available"
    REGION_BLOCKED = "region_blocked"
    IP_NOT_ALLOWED = "ip_not_allowed"
    RATE_LIMITED = "rate_limited"  # 429 for the first N requests, then valid
    SERVER_ERROR = "server_error"
    TIMEOUT = "timeout"
    NON_JSON = "non_json"


# Model catalogue: ids and creation times as OpenAI lists them.
DEFAULT_MODELS: dict[str, int] = {
    "gpt-4o-mini": 1721172741,
    "gpt-4o": 1715367049,
    "gpt-4.1-mini": 1744318173,
    "text-embedding-3-small": 1705948997,
}


def openai_echo(key: str) -> str:
    """Echo a key the way OpenAI's 401 does: first 8, asterisks, last 4, same length (short: as is)."""
    if len(key) <= 12:
        return key
    return key[:8] + "*" * (len(key) - 12) + key[-4:]


# -- permissions --------------------------------------------------------------------------------------
# OpenAI checks a key's permission per endpoint after authenticating it and before validating the body
# (help.openai.com/en/articles/8867743 "Assign API Key Permissions": All / Restricted / Read Only;
# trufflehog pkg/analyzer/analyzers/openai/scopes.go: a bogus body answers 400 with the permission, 401
# without; shared/reference/openai-keys.md §3 row 7). Scope strings as OpenAI names them in "Missing
# scopes: …": api.model.read (403 on /v1/models, trufflehog), model.request (401, community thread
# 1374480), api.responses.read/write (401, threads 1143672 and 1371602: /v1/responses also needs
# model.request), api.threads.read (401, thread 1378804); the other groups follow the same pattern.
ALL_SCOPES = frozenset({
    "api.model.read", "model.request", "api.responses.read", "api.responses.write", "api.assistants.read",
    "api.assistants.write", "api.threads.read", "api.threads.write", "api.files.read", "api.files.write",
    "api.vector_stores.read", "api.vector_stores.write", "api.fine_tuning.read", "api.fine_tuning.write",
})
READ_SCOPES = frozenset(s for s in ALL_SCOPES if s.endswith(".read"))
BEHAVIOUR_SCOPES: dict[str, frozenset[str]] = {
    "missing_scope_models": ALL_SCOPES - {"api.model.read"},
    "missing_scope_request": ALL_SCOPES - {"model.request"},
    "missing_scope_responses": ALL_SCOPES - {"api.responses.write"},
    "read_only": READ_SCOPES,
}
_MODEL_ENDPOINTS = ("/v1/chat/completions", "/v1/embeddings", "/v1/moderations")
_GROUPS = {"/v1/assistants": "assistants", "/v1/threads": "threads", "/v1/files": "files",
           "/v1/vector_stores": "vector_stores", "/v1/fine_tuning": "fine_tuning"}


def required_scopes(method: str, path: str) -> tuple[tuple[str, ...], int]:
    """The scopes an endpoint needs and the status OpenAI uses when one is missing."""
    if path == "/v1/models" or path.startswith("/v1/models/"):
        return ("api.model.read",), 403
    if path in _MODEL_ENDPOINTS:
        return ("model.request",), 401
    if path == "/v1/responses" or path.startswith("/v1/responses/"):
        return (("api.responses.write", "model.request") if method == "POST" else ("api.responses.read",)), 401
    for prefix, group in _GROUPS.items():
        if path == prefix or path.startswith(prefix + "/"):
            return (f"api.{group}.{'read' if method == 'GET' else 'write'}",), 401
    return (), 401


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class OpenAIRequestRecord:
    """One API request as the stand-in saw it: never the plaintext key."""

    path: str
    method: str
    received_monotonic: float
    key_masked: str | None
    key_sha256: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "method": self.method,
            "received_monotonic": self.received_monotonic,
            "key_masked": self.key_masked,
            "key_sha256": self.key_sha256,
        }


@dataclass(slots=True)
class _Registration:
    behaviour: Behaviour
    rate_limited_left: int = 0
    scopes: frozenset[str] | None = None  # a restricted key's permissions; None: "All"


@dataclass
class FakeOpenAI:
    """State of the stand-in: key registry (by hash), latency, faults, and the request log.

    Thread-safe: the server runs in its own thread while tests register keys from theirs.
    """

    organization: str = "org-doubletickstandin0000001"
    project: str = "proj_DoubleTickStandIn00000001"
    models: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_MODELS))
    unavailable_models: frozenset[str] = frozenset({"gpt-4o-mini", "gpt-4o"})
    latency_ms: float = 0.0
    faults: FaultConfig = field(default_factory=FaultConfig)
    seed: int | None = None

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: dict[str, _Registration] = {}
        self._requests: list[OpenAIRequestRecord] = []
        self._rng = random.Random(self.seed)
        self._initial = (self.latency_ms, self.faults, self.seed)

    # -- registry -------------------------------------------------------------------------------
    def register(self, key: str, behaviour: Behaviour | str, *, times: int = 1,
                 scopes: frozenset[str] | None = None) -> str:
        """Answer ``key`` with ``behaviour``; ``times`` is how many 429s ``rate_limited`` gives first.

        ``scopes`` makes it a Restricted key holding only those (the missing-scope and read-only
        behaviours imply theirs). Returns the key's SHA-256, the handle the request log uses.
        """
        behaviour = Behaviour(behaviour)
        granted = scopes if scopes is not None else BEHAVIOUR_SCOPES.get(behaviour.value)
        registration = _Registration(behaviour, max(0, times), granted)
        digest = _sha256(key)
        with self._lock:
            self._keys[digest] = registration
        return digest

    def scopes_of(self, key: str) -> frozenset[str] | None:
        with self._lock:
            registration = self._keys.get(_sha256(key))
            return registration.scopes if registration is not None else None

    def _take_behaviour(self, key: str) -> Behaviour | None:
        with self._lock:
            registration = self._keys.get(_sha256(key))
            if registration is None:
                return None
            if registration.behaviour is Behaviour.RATE_LIMITED:
                if registration.rate_limited_left > 0:
                    registration.rate_limited_left -= 1
                    return Behaviour.RATE_LIMITED
                return Behaviour.VALID
            return registration.behaviour

    # -- config ---------------------------------------------------------------------------------
    def configure(
        self,
        *,
        latency_ms: float | None = None,
        faults: dict[str, Any] | None = None,
        seed: int | None = None,
    ) -> None:
        """Change latency and fault rates (faults are merged into the current settings)."""
        with self._lock:
            if latency_ms is not None:
                if latency_ms < 0:
                    raise ValueError("latency_ms must be >= 0")
                self.latency_ms = float(latency_ms)
            if faults is not None:
                self.faults = FaultConfig.from_json(faults, self.faults)
            if seed is not None:
                self.seed = seed
                self._rng = random.Random(seed)

    def config_json(self) -> dict[str, Any]:
        with self._lock:
            return {"latency_ms": self.latency_ms, "faults": self.faults.to_json()}

    def _draw(self) -> tuple[float, FaultConfig, Fault]:
        with self._lock:
            return self.latency_ms, self.faults, self.faults.draw(self._rng)

    def _random_status(self, statuses: tuple[int, ...]) -> int:
        with self._lock:
            return self._rng.choice(statuses)

    # -- log --------------------------------------------------------------------------------------
    def _record(self, record: OpenAIRequestRecord) -> None:
        with self._lock:
            self._requests.append(record)

    @property
    def requests(self) -> list[OpenAIRequestRecord]:
        with self._lock:
            return list(self._requests)

    def reset(self) -> None:
        """Forget keys, requests and settings: back to how the stand-in was built."""
        with self._lock:
            self._keys.clear()
            self._requests.clear()
            self.latency_ms, self.faults, self.seed = self._initial
            self._rng = random.Random(self.seed)


# -- responses ------------------------------------------------------------------------------------


def _error(
    status: int,
    message: str,
    type_: str,
    code: str | None,
    headers: dict[str, str] | None = None,
    param: str | None = None,
) -> JSONResponse:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def _no_key() -> JSONResponse:
    # reference section 3 row 2
    return _error(
        401,
        "You didn't provide an API key. You need to provide your API key in an Authorization header "
        "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank "
        "username) if you're accessing the API from your browser and are prompted for a username and "
        f"password. You can obtain an API key from {KEYS_URL}.",
        "invalid_request_error",
        None,
    )


def _invalid_key(key: str) -> JSONResponse:
    # row 1
    return _error(
        401,
        f"Incorrect API key provided: {openai_echo(key)}. You can find your API key at {KEYS_URL}.",
        "invalid_request_error",
        "invalid_api_key",
    )


def _missing_scope(status: int, scopes: tuple[str, ...]) -> JSONResponse:
    # row 7: 403 on /models (trufflehog analyzer), 401 for model.request (community thread 1374480);
    # code null in both observed bodies, so clients must read the message. Several missing scopes are
    # listed comma-separated ("Missing scopes: api.responses.read, api.responses.write", thread 1143672).
    return _error(
        status,
        "You have insufficient permissions for this operation. "
        f"Missing scopes: {', '.join(scopes)}. {MISSING_SCOPE_TAIL}",
        "invalid_request_error",
        None,
    )


def _unknown_argument(name: str) -> JSONResponse:
    # What OpenAI answers for an argument an endpoint does not take (a permission probe's body).
    return _error(400, f"Unrecognized request argument supplied: {name}", "invalid_request_error", None)


def _model_not_found(model: str) -> JSONResponse:
    # row 9
    return _error(
        404,
        f"The model `{model}` does not exist or you do not have access to it.",
        "invalid_request_error",
        "model_not_found",
    )


def _rate_limited(model: str, organization: str, retry_after_s: float) -> JSONResponse:
    # row 19; Retry-After per the error-codes guide ("follow the Retry-After header when present")
    wait = f"{retry_after_s:g}s"
    return _error(
        429,
        f"Rate limit reached for {model} in organization {organization} on requests per min (RPM): "
        f"Limit 3, Used 3, Requested 1. Please try again in {wait}. "
        "Visit https://platform.openai.com/account/rate-limits to learn more.",
        "requests",
        "rate_limit_exceeded",
        headers={"retry-after": f"{retry_after_s:g}"},
    )


def _server_error(status: int) -> Response:
    # row 21
    if status == 502:  # what the edge proxy answers: an HTML page, not JSON
        return Response(
            "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad "
            "Gateway</h1></center></body></html>",
            status_code=502,
            media_type="text/html",
        )
    if status == 503:
        return _error(
            503,
            "The engine is currently overloaded, please try again later.",
            "service_unavailable_error",
            "server_is_overloaded",
        )
    return _error(
        status,
        "The server had an error while processing your request. Sorry about that!",
        "server_error",
        None,
    )


_FIXED_ERRORS: dict[Behaviour, tuple[int, str, str, str | None]] = {
    Behaviour.ACCOUNT_DEACTIVATED: (  # row 3
        401,
        "This key is associated with a deactivated account. If you feel this is an error, contact "
        "us through our help center at help.openai.com.",
        "invalid_request_error",
        "account_deactivated",
    ),
    Behaviour.NO_ORGANIZATION: (  # row 4
        401,
        "You must be a member of an organization to use the API. Please contact us through our help "
        "center at help.openai.com.",
        "invalid_request_error",
        "no_organization",
    ),
    # row 6: official guide title "IP not authorized"; the code is seen in third-party code only
    Behaviour.IP_NOT_ALLOWED: (
        401,
        "Your IP is not authorized to make this request. Your request IP does not match the "
        "configured IP allowlist for your project or organization.",
        "invalid_request_error",
        "ip_not_authorized",
    ),
    Behaviour.REGION_BLOCKED: (  # row 11
        403,
        "Country, region, or territory not supported",
        "request_forbidden",
        "unsupported_country_region_territory",
    ),
}

_BILLING_ERRORS: dict[Behaviour, tuple[str, str, str]] = {
    Behaviour.INSUFFICIENT_QUOTA: (  # row 12
        "You exceeded your current quota, please check your plan and billing details. For more "
        "information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.",
        "insufficient_quota",
        "insufficient_quota",
    ),
    Behaviour.BILLING_NOT_ACTIVE: (  # row 17
        "Your account is not active, please check your billing details on our website.",
        "billing_not_active",
        "billing_not_active",
    ),
}


def _model_object(model: str, created: int) -> dict[str, Any]:
    return {"id": model, "object": "model", "created": created, "owned_by": "system"}


def _chat_completion(model: str) -> dict[str, Any]:
    suffix = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(29))
    return {
        "id": f"chatcmpl-{suffix}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hi", "refusal": None, "annotations": []},
                "logprobs": None,
                "finish_reason": "length",
            }
        ],
        "usage": {"prompt_tokens": 8, "completion_tokens": 1, "total_tokens": 9},
        "service_tier": "default",
        "system_fingerprint": "fp_standin0001",
    }


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    value = value.strip()
    return value if scheme.lower() == "bearer" and value else None


# -- the app ----------------------------------------------------------------------------------------


class _OpenAIHeaders:
    """Adds ``x-request-id`` to every response and OpenAI's diagnostic headers where a key authenticated."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", f"req_{secrets.token_hex(16)}".encode()))
                organization = scope.get("standin.organization")
                if organization:
                    elapsed = int((time.monotonic() - started) * 1000)
                    headers += [
                        (b"openai-organization", organization.encode()),
                        (b"openai-version", b"2020-10-01"),
                        (b"openai-processing-ms", str(elapsed).encode()),
                    ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class OpenAIStandInApp(RawSendMiddleware):
    """The ASGI app returned by :func:`create_openai_app`; ``.fake`` is its state."""

    def __init__(self, app: ASGIApp, fake: FakeOpenAI) -> None:
        super().__init__(app)
        self.fake = fake


def create_openai_app(state: FakeOpenAI | None = None) -> OpenAIStandInApp:
    """Build the stand-in app; pass ``state`` (or read ``app.fake``) to drive it from tests."""
    fake = state or FakeOpenAI()

    async def api(request: Request) -> Response:
        received = time.monotonic()
        body = await request.body()  # read first: hang() consumes ``receive``
        key = _bearer(request)
        fake._record(
            OpenAIRequestRecord(
                path=request.url.path,
                method=request.method,
                received_monotonic=received,
                key_masked=mask_key(key) if key else None,
                key_sha256=_sha256(key) if key else None,
            )
        )
        latency_ms, faults, fault = fake._draw()
        if latency_ms:
            await anyio.sleep(latency_ms / 1000)
        if fault is Fault.RESET and await drop_connection(request):
            return Response(status_code=500)  # never delivered: the socket is gone
        if fault is Fault.TIMEOUT:
            await hang(request, faults.hang_s)
        elif fault is Fault.SERVER_ERROR:
            return _server_error(fake._random_status(faults.server_error_statuses))
        elif fault is Fault.RATE_LIMIT:
            return _rate_limited("gpt-4o-mini", fake.organization, faults.retry_after_s)

        if key is None:
            return _no_key()
        behaviour = fake._take_behaviour(key)
        if behaviour is None or behaviour is Behaviour.INVALID:
            return _invalid_key(key)
        request.scope["standin.organization"] = fake.organization
        return await _answer(request, fake, behaviour, body, faults, fake.scopes_of(key))

    async def register_key(request: Request) -> Response:
        data = await _json_object(request)
        key, behaviour, times = data.get("key"), data.get("behaviour"), data.get("times", 1)
        if (
            not isinstance(key, str)
            or not key
            or behaviour not in {b.value for b in Behaviour}
            or not isinstance(times, int)
        ):
            return JSONResponse(
                {"detail": f"need key, behaviour in {[b.value for b in Behaviour]}, optional integer times"},
                status_code=400,
            )
        digest = fake.register(key, behaviour, times=times)
        return JSONResponse(
            {"key_masked": mask_key(key), "key_sha256": digest, "behaviour": behaviour}, status_code=201
        )

    async def config(request: Request) -> Response:
        if request.method == "POST":
            data = await _json_object(request)
            try:
                fake.configure(
                    latency_ms=data.get("latency_ms"), faults=data.get("faults"), seed=data.get("seed")
                )
            except (TypeError, ValueError) as exc:
                return JSONResponse({"detail": str(exc)}, status_code=400)
        return JSONResponse(fake.config_json())

    async def requests_log(request: Request) -> Response:
        return JSONResponse([record.to_json() for record in fake.requests])

    async def reset(request: Request) -> Response:
        fake.reset()
        return JSONResponse({"reset": True})

    app = Starlette(
        routes=[
            Route("/_sandbox/keys", register_key, methods=["POST"]),
            Route("/_sandbox/config", config, methods=["GET", "POST"]),
            Route("/_sandbox/requests", requests_log, methods=["GET"]),
            Route("/_sandbox/reset", reset, methods=["POST"]),
            Route("/v1/models", api, methods=["GET"]),
            Route("/v1/models/{model:path}", api, methods=["GET"]),
            Route("/v1/chat/completions", api, methods=["POST"]),
            *(Route(path, api, methods=["POST"]) for path in ENDPOINT_ARGUMENTS if path != "/v1/chat/completions"),
            *(Route(path, api, methods=["GET"]) for path in _GROUPS),
        ]
    )
    return OpenAIStandInApp(_OpenAIHeaders(app), fake)


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


# Arguments each POST endpoint takes (API reference), and the ones it requires. Anything else is refused
# with 400 before any work is done, which is what makes a permission probe free.
ENDPOINT_ARGUMENTS: dict[str, tuple[frozenset[str], tuple[str, ...]]] = {
    "/v1/chat/completions": (frozenset({
        "model", "messages", "max_completion_tokens", "max_tokens", "temperature", "top_p", "n", "stream",
        "stream_options", "stop", "presence_penalty", "frequency_penalty", "logit_bias", "logprobs",
        "top_logprobs", "user", "response_format", "seed", "tools", "tool_choice", "parallel_tool_calls",
        "store", "metadata", "reasoning_effort", "service_tier", "modalities", "audio", "prediction",
        "web_search_options", "prompt_cache_key", "safety_identifier", "verbosity"}), ("model", "messages")),
    "/v1/embeddings": (frozenset({"model", "input", "dimensions", "encoding_format", "user"}), ("model", "input")),
    "/v1/moderations": (frozenset({"model", "input"}), ("input",)),
    "/v1/responses": (frozenset({
        "model", "input", "instructions", "max_output_tokens", "temperature", "top_p", "stream", "store",
        "metadata", "previous_response_id", "tools", "tool_choice", "parallel_tool_calls", "reasoning", "text",
        "truncation", "user", "include", "background", "service_tier", "conversation", "prompt"}), ("model",)),
    "/v1/assistants": (frozenset({"model", "name", "description", "instructions", "tools", "tool_resources",
                                  "metadata", "temperature", "top_p", "response_format",
                                  "reasoning_effort"}), ("model",)),
    "/v1/threads": (frozenset({"messages", "tool_resources", "metadata"}), ()),
    "/v1/vector_stores": (frozenset({"file_ids", "name", "expires_after", "chunking_strategy", "metadata"}), ()),
    "/v1/files": (frozenset(), ()),  # multipart/form-data only
}


def _body_error(path: str, body: bytes, content_type: str) -> tuple[Response | None, dict[str, Any]]:
    """Validate a POST body the way OpenAI does: JSON (multipart for files), known arguments, required ones."""
    if path == "/v1/files" and not content_type.startswith("multipart/form-data"):
        return _error(415, "Invalid Content-Type header (application/json), expected multipart/form-data. "
                      "(HINT: If you're using curl, you can pass -F 'key=value')", "invalid_request_error",
                      None), {}
    try:
        payload = json.loads(body) if body else {}
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        return _error(400, "We could not parse the JSON body of your request. (HINT: This likely means "
                      "you aren't using your HTTP library correctly.)", "invalid_request_error", None), {}
    known, required = ENDPOINT_ARGUMENTS.get(path, (frozenset(), ()))
    for name in payload:
        if name not in known:
            return _unknown_argument(name), payload
    for name in required:
        if name not in payload:
            if path == "/v1/chat/completions" and name == "model":
                return _error(400, "you must provide a model parameter", "invalid_request_error", None), payload
            return _error(400, f"Missing required parameter: '{name}'.", "invalid_request_error", None,
                          param=name), payload
    return None, payload


def _created(path: str, payload: dict[str, Any]) -> JSONResponse:
    """A minimal object for a valid request to an endpoint the verifier never calls for real."""
    kind = {"/v1/embeddings": "list", "/v1/moderations": "moderation", "/v1/responses": "response",
            "/v1/assistants": "assistant", "/v1/threads": "thread", "/v1/vector_stores": "vector_store"}[path]
    return JSONResponse({"id": f"{kind}_{secrets.token_hex(12)}", "object": kind, "created_at": int(time.time()),
                         "model": payload.get("model")})


async def _answer(
    request: Request,
    fake: FakeOpenAI,
    behaviour: Behaviour,
    body: bytes,
    faults: FaultConfig,
    scopes: frozenset[str] | None = None,
) -> Response:
    """The answer for an authenticated key, by behaviour and endpoint: account, permission, body, model."""
    path = request.url.path
    is_chat = path == "/v1/chat/completions"
    model = request.path_params.get("model")
    if behaviour in _FIXED_ERRORS:
        status, message, type_, code = _FIXED_ERRORS[behaviour]
        return _error(status, message, type_, code)
    needed, missing_status = required_scopes(request.method, path)
    missing = tuple(scope for scope in needed if scopes is not None and scope not in scopes)
    if missing:
        return _missing_scope(missing_status, missing)
    if request.method == "POST":
        refused, payload = _body_error(path, body, request.headers.get("content-type", ""))
        if refused is not None:
            return refused
        if not is_chat:
            return _created(path, payload)
        model = payload["model"]
        if not isinstance(model, str) or not model:
            return _error(400, "you must provide a model parameter", "invalid_request_error", None)
    elif path in _GROUPS:
        return JSONResponse({"object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False})

    if behaviour is Behaviour.SERVER_ERROR:
        return _server_error(500)
    if behaviour is Behaviour.NON_JSON:
        return Response("<!DOCTYPE html><html><body><h1>Welcome</h1></body></html>", media_type="text/html")
    if behaviour is Behaviour.RATE_LIMITED:
        return _rate_limited(model or "gpt-4o-mini", fake.organization, faults.retry_after_s)
    if behaviour is Behaviour.TIMEOUT:
        await hang(request, faults.hang_s)
    visible = dict(fake.models)
    if behaviour is Behaviour.MODEL_NOT_AVAILABLE:
        if is_chat and model in fake.unavailable_models:  # row 8: the project's model allow-list
            return _error(
                403,
                f"Project `{fake.project}` does not have access to model `{model}`",
                "invalid_request_error",
                "model_not_found",
            )
        visible = {m: c for m, c in visible.items() if m not in fake.unavailable_models}

    if is_chat:
        assert model is not None
        if model not in fake.models:
            return _model_not_found(model)
        if behaviour in _BILLING_ERRORS:
            message, type_, code = _BILLING_ERRORS[behaviour]
            return _error(429, message, type_, code)
        return JSONResponse(_chat_completion(model))
    if model is None:
        return JSONResponse({"object": "list", "data": [_model_object(m, c) for m, c in visible.items()]})
    if model not in visible:
        return _model_not_found(model)
    return JSONResponse(_model_object(model, visible[model]))
