"""A local stand-in for DoubleTick's (not yet public) OpenAI-integration endpoint.

Why: the connector, the outbox retries and the try-it mode need a DoubleTick that connects keys,
rejects bad credentials and bad bodies, throttles and fails on demand, and proves that a redelivered
request connects only once. It follows DoubleTick's documented conventions (docs.doubletick.io and
the "DoubleTick Public APIs" OpenAPI):

* the operator credential arrives raw in ``Authorization`` (security scheme ``apiKey``, no Bearer);
* errors are NestJS-shaped ``{"message", "error", "statusCode"}``: 401 ``"Invalid public api key"``
  (docs/get-wallet-balance), 400 with ``message`` a list of validation messages, 404
  ``"Cannot POST /x"`` for an unknown route, 429 ``"ThrottlerException: Too Many Requests"`` with
  ``Retry-After``, 500 ``"Internal server error"``.

The endpoint itself is the shape chosen in ``bot/services/doubletick.py`` (``POST {connect_path}`` and
``DELETE {connect_path}/{workspaceId}``, both with ``Idempotency-Key``). A repeated Idempotency-Key
replays the first response (``Idempotent-Replayed: true``) without acting again; reusing it for a
different request is a 409, as in Stripe's idempotency design.

Nothing secret is stored: per workspace only ``connected``, the key's SHA-256, its last four
characters and ``connect_count``; credentials are kept as hashes; the request log holds masks.

Control API: ``POST|GET /_sandbox/config``, ``GET /_sandbox/workspaces``, ``GET /_sandbox/requests``,
``POST /_sandbox/reset``.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from bot.standins.faults import Fault, FaultConfig, RawSendMiddleware, drop_connection, hang
from flows.secret import mask_key

__all__ = [
    "DEFAULT_CONNECT_PATH",
    "DEMO_OPERATOR_KEY",
    "DEMO_WORKSPACES",
    "DoubleTickRequestRecord",
    "DoubleTickStandInApp",
    "FakeDoubleTick",
    "WorkspaceState",
    "create_doubletick_app",
    "nest_error",
]

DEFAULT_CONNECT_PATH = "/v1/integrations/openai"
DEMO_OPERATOR_KEY = "key_DemoOperatorStandIn0001"  # DoubleTick keys look like ``key_xxxxxxxxxx``
DEMO_WORKSPACES: dict[str, str] = {"ws_demo": "Demo Workspace", "ws_acme": "Acme Retail"}

_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    408: "Request Timeout",
    409: "Conflict",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def nest_error(
    status: int,
    message: str | list[str] | None = None,
    *,
    retry_after_s: float | None = None,
) -> JSONResponse:
    """A NestJS-style error body, as DoubleTick sends them."""
    if status == 500 and message is None:  # NestJS's default for an unhandled exception
        body: dict[str, Any] = {"statusCode": 500, "message": "Internal server error"}
    elif status == 429 and message is None:  # @nestjs/throttler
        body = {"statusCode": 429, "message": "ThrottlerException: Too Many Requests"}
    else:
        reason = _REASONS.get(status, "Error")
        body = {"message": message if message is not None else reason, "error": reason, "statusCode": status}
    headers = {"retry-after": f"{retry_after_s:g}"} if retry_after_s is not None else None
    return JSONResponse(body, status_code=status, headers=headers)


@dataclass(slots=True)
class WorkspaceState:
    """What the stand-in keeps per workspace: never the key itself."""

    name: str
    connected: bool = False
    key_sha256: str | None = None
    key_last_four: str | None = None
    connect_count: int = 0


@dataclass(slots=True)
class DoubleTickRequestRecord:
    """One API request as the stand-in saw it (masks and hashes only)."""

    path: str
    method: str
    received_monotonic: float
    idempotency_key: str | None
    workspace_id: str | None = None
    key_masked: str | None = None
    key_sha256: str | None = None
    status: int | None = None  # None: no answer was sent (reset or hang)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class _Stored:
    fingerprint: str
    status: int
    body: dict[str, Any]


class FakeDoubleTick:
    """State of the stand-in. Thread-safe: the server runs in its own thread."""

    def __init__(
        self,
        *,
        api_keys: Iterable[str] = (DEMO_OPERATOR_KEY,),
        workspaces: Mapping[str, str] | None = None,
        connect_path: str = DEFAULT_CONNECT_PATH,
        latency_ms: float = 0.0,
        faults: FaultConfig | None = None,
        seed: int | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._initial_credentials = frozenset(_sha256(k) for k in api_keys)  # hashes only
        self._initial_workspaces = dict(DEMO_WORKSPACES if workspaces is None else workspaces)
        self._initial_settings = ("/" + connect_path.strip("/"), latency_ms, faults or FaultConfig(), seed)
        self._apply_initial()

    def _apply_initial(self) -> None:
        self.connect_path, self.latency_ms, self.faults, self.seed = self._initial_settings
        self._credentials = set(self._initial_credentials)
        self._workspaces = {ws: WorkspaceState(name) for ws, name in self._initial_workspaces.items()}
        self._idempotency: dict[tuple[str, str], _Stored] = {}
        self._requests: list[DoubleTickRequestRecord] = []
        self._fail_next: tuple[int, int, float | None] = (0, 500, None)
        self._rng = random.Random(self.seed)

    # -- configuration ----------------------------------------------------------------------------------
    def configure(
        self,
        *,
        api_keys: Iterable[str] | None = None,
        workspaces: Mapping[str, str] | None = None,
        connect_path: str | None = None,
        latency_ms: float | None = None,
        faults: Mapping[str, Any] | None = None,
        seed: int | None = None,
    ) -> None:
        """Replace credentials or add workspaces; merge fault settings."""
        with self._lock:
            if api_keys is not None:
                self._credentials = {_sha256(k) for k in api_keys}
            for ws, name in (workspaces or {}).items():
                self._workspaces.setdefault(ws, WorkspaceState(name)).name = name
            if connect_path is not None:
                self.connect_path = "/" + connect_path.strip("/")
            if latency_ms is not None:
                if latency_ms < 0:
                    raise ValueError("latency_ms must be >= 0")
                self.latency_ms = float(latency_ms)
            if faults is not None:
                self.faults = FaultConfig.from_json(faults, self.faults)
            if seed is not None:
                self.seed = seed
                self._rng = random.Random(seed)

    def fail_next(self, count: int, status: int, retry_after_s: float | None = None) -> None:
        """Answer the next ``count`` API requests with ``status`` (plus Retry-After if given)."""
        if count < 0 or not 400 <= status <= 599:
            raise ValueError("count must be >= 0 and status an HTTP error status")
        with self._lock:
            self._fail_next = (count, status, retry_after_s)

    def config_json(self) -> dict[str, Any]:
        with self._lock:
            count, status, retry_after = self._fail_next
            return {
                "connect_path": self.connect_path,
                "latency_ms": self.latency_ms,
                "faults": self.faults.to_json(),
                "fail_next": {"count": count, "status": status, "retry_after_s": retry_after},
                "workspaces": {ws: state.name for ws, state in self._workspaces.items()},
            }

    def workspace(self, workspace_id: str) -> WorkspaceState | None:
        with self._lock:
            state = self._workspaces.get(workspace_id)
            return None if state is None else WorkspaceState(**asdict(state))

    def workspaces_json(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {ws: asdict(state) for ws, state in self._workspaces.items()}

    @property
    def requests(self) -> list[DoubleTickRequestRecord]:
        with self._lock:
            return [DoubleTickRequestRecord(**asdict(r)) for r in self._requests]

    def reset(self) -> None:
        """Back to how the stand-in was built: workspaces disconnected, logs and caches empty."""
        with self._lock:
            self._apply_initial()

    # -- per request ----------------------------------------------------------------------------------
    def _record(self, record: DoubleTickRequestRecord) -> None:
        with self._lock:
            self._requests.append(record)

    def _draw(self) -> tuple[float, FaultConfig, Fault, tuple[int, float | None] | None]:
        """Latency, faults, the random fault, and a forced failure if ``fail_next`` is armed."""
        with self._lock:
            forced = None
            count, status, retry_after = self._fail_next
            if count > 0:
                self._fail_next = (count - 1, status, retry_after)
                forced = (status, retry_after)
            return self.latency_ms, self.faults, self.faults.draw(self._rng), forced

    def _random_status(self, statuses: tuple[int, ...]) -> int:
        with self._lock:
            return self._rng.choice(statuses)

    def _credential_ok(self, value: str | None) -> bool:
        with self._lock:
            return value is not None and _sha256(value) in self._credentials


class DoubleTickStandInApp(RawSendMiddleware):
    """The ASGI app returned by :func:`create_doubletick_app`; ``.fake`` is its state."""

    def __init__(self, app: ASGIApp, fake: FakeDoubleTick) -> None:
        super().__init__(app)
        self.fake = fake


def create_doubletick_app(state: FakeDoubleTick | None = None) -> DoubleTickStandInApp:
    """Build the stand-in app; pass ``state`` (or read ``app.fake``) to drive it from tests."""
    fake = state or FakeDoubleTick()

    async def api(request: Request) -> Response:
        record = DoubleTickRequestRecord(
            path=request.url.path,
            method=request.method,
            received_monotonic=time.monotonic(),
            idempotency_key=request.headers.get("idempotency-key"),
        )
        raw = await request.body()  # read first: hang() consumes ``receive``
        payload = _parse(raw)
        if isinstance(payload, dict):
            api_key = payload.get("apiKey")
            if isinstance(api_key, str) and api_key:
                record.key_masked, record.key_sha256 = mask_key(api_key), _sha256(api_key)
            workspace_id = payload.get("workspaceId")
            record.workspace_id = workspace_id if isinstance(workspace_id, str) else None
        fake._record(record)
        response = await _handle(request, fake, record, raw, payload)
        record.status = response.status_code if response is not None else None
        return response if response is not None else Response(status_code=500)

    async def config(request: Request) -> Response:
        if request.method == "POST":
            data = _parse(await request.body())
            if not isinstance(data, dict):
                return JSONResponse({"detail": "expected a JSON object"}, status_code=400)
            try:
                fake.configure(
                    api_keys=data.get("api_keys"),
                    workspaces=data.get("workspaces"),
                    connect_path=data.get("connect_path"),
                    latency_ms=data.get("latency_ms"),
                    faults=data.get("faults"),
                    seed=data.get("seed"),
                )
                if isinstance(data.get("fail_next"), dict):
                    spec = data["fail_next"]
                    fake.fail_next(
                        int(spec.get("count", 1)), int(spec.get("status", 500)), spec.get("retry_after_s")
                    )
            except (TypeError, ValueError, AttributeError) as exc:
                return JSONResponse({"detail": str(exc)}, status_code=400)
        return JSONResponse(fake.config_json())

    async def workspaces(request: Request) -> Response:
        return JSONResponse(fake.workspaces_json())

    async def requests_log(request: Request) -> Response:
        return JSONResponse([r.to_json() for r in fake.requests])

    async def reset(request: Request) -> Response:
        fake.reset()
        return JSONResponse({"reset": True})

    app = Starlette(
        routes=[
            Route("/_sandbox/config", config, methods=["GET", "POST"]),
            Route("/_sandbox/workspaces", workspaces, methods=["GET"]),
            Route("/_sandbox/requests", requests_log, methods=["GET"]),
            Route("/_sandbox/reset", reset, methods=["POST"]),
            Route("/{path:path}", api, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
        ]
    )
    return DoubleTickStandInApp(app, fake)


def _parse(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return _INVALID_JSON


_INVALID_JSON = object()


async def _handle(
    request: Request,
    fake: FakeDoubleTick,
    record: DoubleTickRequestRecord,
    raw: bytes,
    payload: Any,
) -> Response | None:
    """Faults, routing, auth, validation, idempotency, then the effect. None: connection dropped."""
    latency_ms, faults, fault, forced = fake._draw()
    if latency_ms:
        await anyio.sleep(latency_ms / 1000)
    if forced is not None:
        status, retry_after = forced
        if status == 429 and retry_after is None:
            retry_after = faults.retry_after_s
        return nest_error(status, retry_after_s=retry_after)
    if fault is Fault.RESET and await drop_connection(request):
        return None
    if fault is Fault.TIMEOUT:
        await hang(request, faults.hang_s)
    elif fault is Fault.SERVER_ERROR:
        return nest_error(fake._random_status(faults.server_error_statuses))
    elif fault is Fault.RATE_LIMIT:
        return nest_error(429, retry_after_s=faults.retry_after_s)

    path, method = request.url.path, request.method
    prefix = fake.connect_path + "/"
    tail = path[len(prefix) :] if path.startswith(prefix) else ""
    if method == "POST" and path == fake.connect_path:
        action, workspace_id = "connect", None
    elif method == "DELETE" and tail and "/" not in tail:
        action, workspace_id = "disconnect", tail
        record.workspace_id = workspace_id
    else:
        return nest_error(404, f"Cannot {method} {path}")

    if not fake._credential_ok(request.headers.get("authorization")):
        return nest_error(401, "Invalid public api key")

    idempotency_key = request.headers.get("idempotency-key")
    problems: list[str] = []
    if not idempotency_key:
        problems.append("Idempotency-Key header should not be empty")
    if action == "connect":
        if payload is _INVALID_JSON:
            return nest_error(400, "Unexpected token in JSON body")
        problems += _connect_problems(payload)
    if problems:
        return nest_error(400, problems)
    assert idempotency_key is not None

    # Idempotency, as a real API does it (IETF draft-ietf-httpapi-idempotency-key-header; Stripe's
    # "Idempotent requests"): the same key with the same request replays the first answer and acts no
    # second time; the same key with a different request is refused (409; Stripe answers 400
    # idempotency_error, the draft 422); keys are scoped to the credential. Assumptions the bot relies
    # on (see its "connecting" key record): DoubleTick keeps a key at least as long as a user takes to
    # paste again (Stripe: 24 h; here: the stand-in's lifetime); an answer is stored only once the
    # request was acted on, so a 5xx/429 injected *before* acting (and validation failures) may be
    # retried under the same key, while a hang (``Fault.TIMEOUT`` above) acts *after* the client gave up: the
    # lost 2xx that a retry under the same key must not turn into a second connection.
    fingerprint = _sha256(f"{method} {path} ") + _sha256(raw.decode(errors="replace"))
    scope = (_sha256(request.headers["authorization"]), idempotency_key)  # per credential, like Stripe
    with fake._lock:
        stored = fake._idempotency.get(scope)
        if stored is not None:
            if stored.fingerprint != fingerprint:
                return nest_error(409, "Idempotency-Key was already used for a different request")
            replayed = {"idempotent-replayed": "true"}
            return JSONResponse(stored.body, status_code=stored.status, headers=replayed)
        if action == "connect":
            status, body = _connect(fake, payload)
        else:
            assert workspace_id is not None
            status, body = _disconnect(fake, workspace_id)
        if status < 500:
            fake._idempotency[scope] = _Stored(fingerprint, status, body)
    return JSONResponse(body, status_code=status)


def _connect_problems(payload: Any) -> list[str]:
    if not isinstance(payload, dict):
        return ["workspaceId must be a string", "apiKey must be a string"]
    problems: list[str] = []
    workspace_id, api_key = payload.get("workspaceId"), payload.get("apiKey")
    fingerprint = payload.get("keyFingerprint")
    if not isinstance(workspace_id, str) or not workspace_id:
        problems += ["workspaceId should not be empty", "workspaceId must be a string"]
    if not isinstance(api_key, str) or not api_key:
        problems += ["apiKey should not be empty", "apiKey must be a string"]
    elif (
        not api_key.startswith("sk-")
        or api_key.startswith("sk-admin-")
        or not api_key.isprintable()
        or any(c.isspace() for c in api_key)
    ):
        problems.append("apiKey must be an OpenAI secret key")
    elif fingerprint is not None and not (isinstance(fingerprint, str)
                                          and re.fullmatch(r"hmac-sha256:[0-9a-f]{64}", fingerprint)):
        # the bot sends a keyed fingerprint (HMAC under its own secret) or none; the receiver can only
        # check its form, and an unkeyed hash of the key is refused (it would be a guessing oracle)
        problems.append("keyFingerprint must be hmac-sha256:<64 hex>")
    return problems


def _connect(fake: FakeDoubleTick, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """Connect under ``fake._lock``."""
    workspace_id, api_key = payload["workspaceId"], payload["apiKey"]
    workspace = fake._workspaces.get(workspace_id)
    if workspace is None:
        return 404, _error_body(404, f"Workspace {workspace_id} not found")
    workspace.connected = True
    workspace.key_sha256, workspace.key_last_four = _sha256(api_key), api_key[-4:]
    workspace.connect_count += 1
    return 201, {
        "workspaceId": workspace_id,
        "workspaceName": workspace.name,
        "provider": "openai",
        "connected": True,
        "keyLastFour": workspace.key_last_four,
    }


def _disconnect(fake: FakeDoubleTick, workspace_id: str) -> tuple[int, dict[str, Any]]:
    """Disconnect under ``fake._lock``; disconnecting twice is not an error."""
    workspace = fake._workspaces.get(workspace_id)
    if workspace is None:
        return 404, _error_body(404, f"Workspace {workspace_id} not found")
    workspace.connected, workspace.key_sha256, workspace.key_last_four = False, None, None
    return 200, {"workspaceId": workspace_id, "provider": "openai", "connected": False}


def _error_body(status: int, message: str) -> dict[str, Any]:
    return {"message": message, "error": _REASONS.get(status, "Error"), "statusCode": status}
