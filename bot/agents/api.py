"""``POST /api/handoffs`` for DoubleTick's support tooling: create a handoff link (and read its progress).

Why a route list: the web server (webhook, health, metrics) mounts ``handoff_routes(...)`` next to its own
routes; :func:`create_handoff_app` serves them alone (tests, or a separate internal port).
Authentication is one bearer token from configuration, compared in constant time (both sides hashed
first, so not even the length leaks). Without a configured token the API answers 503 to everyone.

    POST /api/handoffs            {"workspace_id": "ws_demo", "workspace_name": "Demo Workspace",
                                   "label": "Ana from Acme", "expires_in": "72h", "agent_user_id": 4242}
      201 {"id", "link", "workspace_id", "workspace_name", "label", "expires_at", "agent_user_id",
           "qr_png_base64"}
    GET  /api/handoffs/{id}       the link's state and its customer's progress (no key material beyond
                                  the last four characters and a fingerprint prefix)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.agents.links import HandoffError, HandoffService, LinkState, parse_duration
from bot.agents.roles import AgentDirectory, Role
from bot.agents.status import StatusDesk
from storage.fingerprint import fingerprint_prefix

__all__ = ["HandoffApi", "create_handoff_app", "handoff_routes"]

log = logging.getLogger(__name__)

FIELDS = frozenset({"workspace_id", "workspace_name", "label", "expires_in", "expires_in_hours", "agent_user_id"})
NO_STORE = {"Cache-Control": "no-store"}


@dataclass
class HandoffApi:
    """What the routes need; ``token`` None disables the API."""

    service: HandoffService
    status: StatusDesk
    directory: AgentDirectory
    token: str | None

    def authorised(self, request: Request) -> bool:
        if not self.token:
            return False
        scheme, _, presented = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            return False
        expected = hashlib.sha256(self.token.encode()).digest()
        return hmac.compare_digest(hashlib.sha256(presented.strip().encode()).digest(), expected)


def _error(status: int, reason: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": reason, "message": message}, status_code=status,
                        headers={**NO_STORE, **(headers or {})})


def _guard(api: HandoffApi, request: Request) -> JSONResponse | None:
    if not api.token:
        return _error(503, "disabled", "the handoff API is disabled: HANDOFF_API_TOKEN is not set")
    if not api.authorised(request):
        log.warning("handoff API: refused an unauthenticated %s from %s", request.method,
                    request.client.host if request.client else "?")
        return _error(401, "unauthorised", "a valid bearer token is required",
                      {"WWW-Authenticate": 'Bearer realm="handoffs"'})
    return None


def _ttl(body: dict[str, Any]) -> timedelta | None:
    if body.get("expires_in") is not None:
        return parse_duration(str(body["expires_in"]))
    hours = body.get("expires_in_hours")
    if hours is None:
        return None
    if isinstance(hours, bool) or not isinstance(hours, int | float):
        raise HandoffError("bad_expiry", "expires_in_hours must be a number")
    return parse_duration(f"{hours}h")


def _optional_text(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise HandoffError(f"bad_{name}", f"{name} must be a string")
    return value


async def _create(api: HandoffApi, request: Request) -> Response:
    refused = _guard(api, request)
    if refused is not None:
        return refused
    try:
        body = json.loads(await request.body() or b"null")
    except ValueError:
        return _error(400, "bad_json", "the body must be a JSON object")
    if not isinstance(body, dict):
        return _error(400, "bad_json", "the body must be a JSON object")
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        return _error(422, "unknown_fields", f"unknown fields: {', '.join(unknown)}")
    try:
        workspace_id = body.get("workspace_id")
        if not isinstance(workspace_id, str):
            raise HandoffError("bad_workspace", "workspace_id is required")
        agent = body.get("agent_user_id")
        if agent is not None and (isinstance(agent, bool) or not isinstance(agent, int)
                                  or await api.directory.role_of(agent) < Role.AGENT):
            raise HandoffError("unknown_agent", "agent_user_id must be the Telegram user id of a support agent")
        link = await api.service.create(workspace_id, via="api", workspace_name=_optional_text(body, "workspace_name"),
                                        label=_optional_text(body, "label"), ttl=_ttl(body), created_by=agent)
    except HandoffError as exc:
        return _error(422, exc.reason, str(exc))
    return JSONResponse({
        "id": link.id, "link": link.url, "workspace_id": link.workspace_id, "workspace_name": link.workspace_name,
        "label": link.label, "expires_at": link.expires_at.isoformat(), "agent_user_id": link.created_by,
        "qr_png_base64": base64.b64encode(link.qr_png()).decode("ascii"),
    }, status_code=201, headers=NO_STORE)


async def _read(api: HandoffApi, request: Request) -> Response:
    refused = _guard(api, request)
    if refused is not None:
        return refused
    link = await api.service.links.get(int(request.path_params["link_id"]))
    if link is None:
        return _error(404, "not_found", "no such handoff link")
    report = await api.status.for_link(link)
    connection = None
    if report.connection is not None:
        key = report.connection
        connection = {"family": key.family, "last_four": key.last_four,
                      "fingerprint_prefix": fingerprint_prefix(key.fingerprint),
                      "connected_at": key.connected_at.isoformat() if key.connected_at else None}
    return JSONResponse({
        "id": link.id, "workspace_id": link.workspace_id, "workspace_name": link.workspace_name,
        "label": link.label, "state": LinkState.of(link, api.service.clock()).value,
        "created_at": link.created_at.isoformat(), "expires_at": link.expires_at.isoformat(),
        "redeemed_at": link.redeemed_at.isoformat() if link.redeemed_at else None,
        "customer": report.customers[0].as_json() if report.customers else None,
        "workspace_connection": connection,
    }, headers=NO_STORE)


def handoff_routes(api: HandoffApi | Callable[[], HandoffApi]) -> list[Route]:
    """The routes to mount; ``api`` may be a callable when it is only built at start-up."""

    def resolve() -> HandoffApi:
        return api() if callable(api) else api

    async def create(request: Request) -> Response:
        return await _create(resolve(), request)

    async def read(request: Request) -> Response:
        return await _read(resolve(), request)

    return [Route("/api/handoffs", create, methods=["POST"]),
            Route("/api/handoffs/{link_id:int}", read, methods=["GET"])]


def create_handoff_app(api: HandoffApi | None = None, *, database_url: str | None = None,
                       token: str | None = None, bot_username: str | None = None, agents: tuple[int, ...] = (),
                       admins: tuple[int, ...] = (), default_ttl: timedelta = timedelta(hours=72)) -> Starlette:
    """Serve only the handoff API: around a ready ``api``, or one built on ``database_url`` at start-up."""
    if api is not None:
        return Starlette(routes=handoff_routes(api))
    if database_url is None or bot_username is None:
        raise ValueError("create_handoff_app needs an api, or a database_url and a bot_username")
    holder: list[HandoffApi] = []

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        from storage.db import create_engine, session_factory
        from storage.repositories import AgentRepository, AuditLog, HandoffRepository

        engine = create_engine(database_url)
        sessions = session_factory(engine)
        links = HandoffRepository(sessions)
        service = HandoffService(links, AuditLog(sessions), bot_username=bot_username, default_ttl=default_ttl)
        holder.append(HandoffApi(service, StatusDesk(links),
                                 AgentDirectory(AgentRepository(sessions), agents=agents, admins=admins), token))
        try:
            yield
        finally:
            await engine.dispose()

    return Starlette(routes=handoff_routes(lambda: holder[0]), lifespan=lifespan)
