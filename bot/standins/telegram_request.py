"""Decode one Bot API HTTP request the way the real server does, and shape its answers.

Why everything stays a string: the Bot API server (tdlib/telegram-bot-api, ``Query``/``Client.cpp``)
keeps every argument as a string and each method parses what it needs (``get_integer_arg`` clamps,
``to_bool``, ``json_decode`` for objects). PTB v22 posts ``application/x-www-form-urlencoded`` or
``multipart/form-data`` where non-string values are JSON-encoded (``telegram/request/_requestparameter.py``,
``RequestParameter.json_value``; ``_httpxrequest.py`` passes ``data=json_parameters, files=...``).
Keeping strings and parsing per field reproduces the server's leniency for every client style.

Docs followed: https://core.telegram.org/bots/api#making-requests (GET and POST; query string,
urlencoded, JSON except for uploads, multipart; answers are ``{"ok": ..., "result" | "description",
"error_code", "parameters"}``).
"""

from __future__ import annotations

import email.message
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse

__all__ = [
    "ApiError",
    "ApiRequest",
    "Upload",
    "bad_request",
    "decode_request",
    "error_response",
    "ok_response",
    "to_integer",
]

# Free-text fields that must never be JSON-decoded when a call is recorded ("123" stays a string).
_TEXT_FIELDS = frozenset({
    "text", "caption", "description", "short_description", "name", "secret_token", "url", "parse_mode",
    "callback_query_id", "language_code", "action", "data", "query", "title", "ip_address",
})


class ApiError(Exception):
    """A Bot API failure: becomes ``{"ok": false, "error_code", "description", "parameters"?}``."""

    def __init__(self, error_code: int, description: str, parameters: dict[str, Any] | None = None) -> None:
        super().__init__(description)
        self.error_code = error_code
        self.description = description
        self.parameters = parameters

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ok": False, "error_code": self.error_code, "description": self.description}
        if self.parameters:
            out["parameters"] = self.parameters
        return out


def bad_request(message: str) -> ApiError:
    """400 with the server's "Bad Request: " prefix (``fail_query_with_error`` in Client.cpp)."""
    return ApiError(400, f"Bad Request: {message}")


@dataclass(frozen=True)
class Upload:
    """One file part of a multipart request."""

    name: str
    filename: str
    content_type: str
    data: bytes


def to_integer(raw: str) -> int:
    """Parse like ``td::to_integer``: optional sign, leading digits, junk ignored, empty -> 0."""
    text = raw.strip()
    sign = 1
    if text[:1] in "+-" and text:
        sign = -1 if text[0] == "-" else 1
        text = text[1:]
    digits = ""
    for char in text:
        if not char.isdigit():
            break
        digits += char
    return sign * int(digits) if digits else 0


@dataclass
class ApiRequest:
    """A decoded call: method name as sent, string arguments and uploaded files."""

    method_name: str
    args: dict[str, str] = field(default_factory=dict)
    files: dict[str, Upload] = field(default_factory=dict)

    @property
    def method(self) -> str:
        """Method names are case-insensitive (the server lower-cases them before lookup)."""
        return self.method_name.lower()

    def arg(self, name: str) -> str:
        return self.args.get(name, "")

    def has(self, name: str) -> bool:
        return bool(self.args.get(name, ""))

    def int_arg(self, name: str, default: int = 0, lo: int | None = None, hi: int | None = None) -> int:
        """``get_integer_arg``: missing -> default, then clamp (the server clamps, it doesn't reject)."""
        raw = self.args.get(name, "")
        value = to_integer(raw) if raw else default
        if lo is not None:
            value = max(lo, value)
        if hi is not None:
            value = min(hi, value)
        return value

    def bool_arg(self, name: str) -> bool:
        """``Client::to_bool``: "true", "yes" or "1", case-insensitive."""
        return self.args.get(name, "").lower() in ("true", "yes", "1")

    def json_arg(self, name: str, what: str) -> Any:
        """Decode a JSON-encoded argument; ``None`` when absent, 400 when malformed."""
        raw = self.args.get(name, "")
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise bad_request(f"can't parse {what} JSON object") from None

    def recorded_params(self) -> dict[str, Any]:
        """Arguments for the call log: JSON decoded where it is JSON, uploads as their size only."""
        out: dict[str, Any] = {}
        for key, raw in self.args.items():
            out[key] = raw if key in _TEXT_FIELDS else _maybe_json(raw)
        for key, upload in self.files.items():
            out[key] = {"file_name": upload.filename, "length": len(upload.data),
                        "content_type": upload.content_type}
        return out


def _maybe_json(raw: str) -> Any:
    try:
        value = json.loads(raw)
    except ValueError:
        return raw
    return value if isinstance(value, int | float | bool | list | dict) else raw


def _stringify(value: Any) -> str | None:
    """A JSON body value as the server sees it: strings verbatim, everything else re-encoded."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _parse_multipart(content_type: str, body: bytes) -> tuple[dict[str, str], dict[str, Upload]]:
    """Split a multipart/form-data body (no python-multipart dependency needed for this)."""
    header = email.message.Message()
    header["content-type"] = content_type
    boundary = header.get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        raise bad_request("multipart boundary is missing")
    args: dict[str, str] = {}
    files: dict[str, Upload] = {}
    for chunk in body.split(b"--" + boundary.encode("latin-1"))[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, data = chunk.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        data = data.removesuffix(b"\r\n")
        part = email.message.Message()
        for line in head.decode("utf-8", "replace").split("\r\n"):
            key, sep, value = line.partition(":")
            if sep:
                part[key.strip()] = value.strip()
        name = part.get_param("name", header="content-disposition")
        filename = part.get_filename()
        if not isinstance(name, str):
            continue
        if filename is None:
            args[name] = data.decode("utf-8", "replace")
        else:
            files[name] = Upload(name, filename, part.get_content_type(), data)
    return args, files


async def decode_request(request: Request, method_name: str) -> ApiRequest:
    """Read query string plus body (JSON, urlencoded or multipart) into one ``ApiRequest``."""
    call = ApiRequest(method_name=method_name)
    call.args.update(request.query_params.items())
    body = await request.body()
    content_type = request.headers.get("content-type", "")
    kind = content_type.split(";", 1)[0].strip().lower()
    if not body:
        return call
    if kind == "application/json":
        try:
            payload = json.loads(body)
        except ValueError:
            raise bad_request("can't parse JSON object") from None
        if isinstance(payload, dict):
            for key, value in payload.items():
                text = _stringify(value)
                if text is not None:
                    call.args[str(key)] = text
    elif kind == "multipart/form-data":
        args, files = _parse_multipart(content_type, body)
        call.args.update(args)
        call.files.update(files)
    else:  # x-www-form-urlencoded, and what the server treats the same way
        call.args.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    return call


def ok_response(result: Any, description: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {"ok": True, "result": result}
    if description:
        body["description"] = description
    return JSONResponse(body)


def error_response(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.error_code)
