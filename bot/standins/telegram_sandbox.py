"""The control API under ``/_sandbox/``: play the user's side and look inside the stand-in.

Why HTTP as well as Python methods: the e2e harness and the try-it mode may run the bot in another
process; plain JSON over HTTP works from anywhere. Every route maps 1:1 onto a ``FakeTelegram``
method, so the two surfaces cannot drift. Answers are plain JSON (not the Bot API envelope);
failures are ``{"error": "..."}`` with a 4xx status.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.standins.telegram_state import FakeTelegram, SandboxError

__all__ = ["sandbox_routes"]


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _int(value: str | None, name: str, default: int | None = None) -> int | None:
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise SandboxError(400, f"{name} must be an integer") from None


def _post(action: Callable[..., Any]) -> Callable[[Request], Any]:
    """Route a JSON object body onto ``action``'s keyword arguments, rejecting unknown keys."""
    parameters = inspect.signature(action).parameters.values()
    open_ended = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
    accepted = {p.name for p in parameters}

    async def endpoint(request: Request) -> Response:
        try:
            raw = await request.body()
            body = json.loads(raw) if raw else {}
            if not isinstance(body, dict):
                raise SandboxError(400, "the body must be a JSON object")
            unknown = set(body) - accepted
            if unknown and not open_ended:
                raise SandboxError(400, f"unknown fields: {sorted(unknown)}")
            result = action(**body)
        except SandboxError as error:
            return _error(error.status, error.message)
        except (TypeError, ValueError) as error:
            return _error(400, str(error))
        return JSONResponse({} if result is None else result)

    return endpoint


def sandbox_routes(fake: FakeTelegram) -> list[Route]:
    """All ``/_sandbox/...`` routes bound to ``fake``."""

    async def messages(request: Request) -> Response:
        try:
            chat_id = _int(request.path_params["chat_id"], "chat_id")
            bot_id = _int(request.query_params.get("bot_id"), "bot_id")
            return JSONResponse(fake.messages(chat_id or 0, bot_id=bot_id))
        except SandboxError as error:
            return _error(error.status, error.message)

    async def calls(request: Request) -> Response:
        try:
            since = _int(request.query_params.get("since"), "since", 0) or 0
            return JSONResponse(fake.calls(since, request.query_params.get("method")))
        except SandboxError as error:
            return _error(error.status, error.message)

    async def updates(request: Request) -> Response:
        try:
            return JSONResponse(fake.updates(bot_id=_int(request.query_params.get("bot_id"), "bot_id")))
        except SandboxError as error:
            return _error(error.status, error.message)

    async def bot(request: Request) -> Response:
        try:
            return JSONResponse(fake.bot_info(bot_id=_int(request.query_params.get("bot_id"), "bot_id")))
        except SandboxError as error:
            return _error(error.status, error.message)

    async def callbacks(request: Request) -> Response:
        try:
            bot_id = _int(request.query_params.get("bot_id"), "bot_id")
            return JSONResponse(fake.callback_answers(bot_id=bot_id))
        except SandboxError as error:
            return _error(error.status, error.message)

    async def wait(request: Request) -> Response:
        query = request.query_params
        try:
            chat_id = _int(query.get("chat_id"), "chat_id")
            if chat_id is None:
                raise SandboxError(400, "chat_id is required")
            after_seq = _int(query.get("after_seq"), "after_seq", 0) or 0
            timeout = min(60.0, float(query.get("timeout") or 5.0))
        except SandboxError as error:
            return _error(error.status, error.message)
        except ValueError:
            return _error(400, "timeout must be a number")
        return JSONResponse(await fake.wait_for_calls(chat_id, after_seq, timeout, query.get("method")))

    def reset() -> dict[str, Any]:
        fake.reset()
        return {"reset": True}

    return [
        Route("/_sandbox/send", _post(fake.send), methods=["POST"]),
        Route("/_sandbox/edit", _post(fake.edit), methods=["POST"]),
        Route("/_sandbox/press", _post(fake.press), methods=["POST"]),
        Route("/_sandbox/press_button", _post(fake.press_button), methods=["POST"]),
        Route("/_sandbox/block", _post(fake.block), methods=["POST"]),
        Route("/_sandbox/chat_config", _post(fake.configure_chat), methods=["POST"]),
        Route("/_sandbox/migrate", _post(fake.migrate_group), methods=["POST"]),
        Route("/_sandbox/age", _post(fake.age_message), methods=["POST"]),
        Route("/_sandbox/config", _post(fake.configure), methods=["POST"]),
        Route("/_sandbox/reset", _post(reset), methods=["POST"]),
        Route("/_sandbox/chats/{chat_id}/messages", messages, methods=["GET"]),
        Route("/_sandbox/calls", calls, methods=["GET"]),
        Route("/_sandbox/updates", updates, methods=["GET"]),
        Route("/_sandbox/callbacks", callbacks, methods=["GET"]),
        Route("/_sandbox/bot", bot, methods=["GET"]),
        Route("/_sandbox/wait", wait, methods=["GET"]),
    ]
