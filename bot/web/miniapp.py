"""The key-entry Mini App: a page inside Telegram whose key goes straight to us, never as a message.

Routes (served beside the webhook, or by ``run`` in polling mode when PUBLIC_BASE_URL is set):

- ``GET /miniapp/key``: the page, in the user's language (``?lang=`` from the button, else
  Accept-Language), right-to-left for Arabic and the other RTL scripts; our own CSS and JS only.
- ``GET /miniapp/static/{key.js,key.css}``.
- ``POST /miniapp/api/key`` ``{"init_data": ..., "key": ...}``, answered in the contract's order:
  401 ``bad_init_data`` (signature, age, more than 3 submissions of one initData), 400 (not that JSON
  object, or over 8 KiB), 422 ``not_a_key`` with the inspection kind and the chat's help text,
  409 ``not_at_paste_step``, 202 ``checking``. The key enters the same runtime pipeline as a pasted one
  (same submission limits, outcomes, sealed outbox); the guide message in the chat shows the verdict.
- ``GET /miniapp/api/status``: the conversation's state for the page, authenticated by the same
  initData (``Authorization: tma <initData>``).

The body is never logged; the key is wrapped in :class:`SecretKey` while the JSON is parsed. Rate limits:
every API request per client address, key submissions per Telegram user (per process, like the
chat's limits). With a reverse proxy, uvicorn's FORWARDED_ALLOW_IPS makes the client address real.
"""

from __future__ import annotations

import html
import json
import logging
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from bot.core.intake import PASTE_STEPS, Admission, SubmissionLimits, queues_sealed
from bot.core.ports import ChatRef
from bot.core.runtime import Runtime, conversation_of
from bot.web.initdata import InitData, InvalidInitData, validate_init_data
from flows import events as ev
from flows.content import MINIAPP_TEXTS, Content, load_content
from flows.inspection import inspect_pasted_text
from flows.locales import locale_for
from flows.machine import paste_is_checked
from flows.secret import SecretKey
from flows.state import Conversation
from flows.steps import Step
from flows.view import render_problem, render_step
from storage.repositories import InitDataUseRepository

if TYPE_CHECKING:
    from bot.telegram.application import BotApp

__all__ = ["MAX_BODY_BYTES", "MAX_SUBMISSIONS_PER_INIT_DATA", "MiniApp", "miniapp_routes", "security_headers"]

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 8 * 1024  # the contract's limit (a key is ~170 characters, initData well under 1 KiB)
READ_LIMIT_BYTES = 64 * 1024  # read this much to authenticate before refusing a large body with 400
MAX_SUBMISSIONS_PER_INIT_DATA = 3  # a typo or two, then the page must be opened again
TELEGRAM_SCRIPT = "https://telegram.org/js/telegram-web-app.js"
RTL_LOCALES = frozenset({"ar", "fa", "he", "ur"})
STATIC = Path(__file__).with_name("static")
STATIC_TYPES = {"key.js": "text/javascript; charset=utf-8", "key.css": "text/css; charset=utf-8"}
CHECKING_STEPS = frozenset({Step.VERIFYING, Step.CONNECTING})
CSP = ("default-src 'none'; "
       f"script-src 'self' {TELEGRAM_SCRIPT}; "
       "style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; "
       "frame-ancestors https://web.telegram.org")  # Telegram Web shows Mini Apps in a frame
_TAG = re.compile(r"<[^>]+>")


class _NotAtPasteStep(Exception):
    """The conversation does not accept a key right now (checked under the chat's lock)."""


def security_headers(request: Request) -> dict[str, str]:
    """Headers on every Mini App response; HSTS only when the request came over HTTPS."""
    headers = {"Content-Security-Policy": CSP, "Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
               "X-Content-Type-Options": "nosniff", "Cross-Origin-Opener-Policy": "same-origin",
               "Permissions-Policy": "camera=(), microphone=(), geolocation=()"}
    if request.url.scheme == "https":
        headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
    return headers


def plain(text: str) -> str:
    """Telegram HTML as plain text for the page (shown with textContent, never as HTML)."""
    return html.unescape(_TAG.sub("", text)).strip()


def page_texts(content: Content) -> dict[str, str]:
    """The page's texts in ``content``'s language, English for any a translation still lacks."""
    english = load_content("en")
    texts: dict[str, str] = {}
    for name in MINIAPP_TEXTS:
        try:
            texts[name] = content.miniapp(name)
        except KeyError:
            texts[name] = english.miniapp(name)
    return texts


def _language(request: Request) -> str:
    wanted = request.query_params.get("lang") or request.headers.get("accept-language", "")
    tag = re.split(r"[,;]", wanted, maxsplit=1)[0].strip()
    return tag if re.fullmatch(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*", tag) else "en"


def render_page(content: Content) -> str:
    """The page: no inline script or style; texts travel to key.js in data attributes."""
    texts = page_texts(content)
    esc = {name: html.escape(value, quote=True) for name, value in texts.items()}
    direction = "rtl" if content.locale in RTL_LOCALES or locale_for(content.locale).rtl else "ltr"
    data = " ".join(f'data-t-{name}="{value}"' for name, value in esc.items())
    return f"""<!doctype html>
<html lang="{html.escape(content.locale)}" dir="{direction}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1, viewport-fit=cover">
<meta name="referrer" content="no-referrer">
<meta name="color-scheme" content="light dark">
<title>{esc["title"]}</title>
<link rel="stylesheet" href="static/key.css">
<script src="{TELEGRAM_SCRIPT}"></script>
<script src="static/key.js" defer></script>
</head>
<body {data}>
<main>
<h1>{esc["title"]}</h1>
<p class="intro">{esc["intro"]}</p>
<form id="form" novalidate>
<label for="key">{esc["label"]}</label>
<div class="field">
<input id="key" name="key" type="password" dir="ltr" autocomplete="off" autocapitalize="off" autocorrect="off"
 spellcheck="false" maxlength="4000" placeholder="{esc["placeholder"]}" aria-describedby="status help">
<button type="button" id="toggle" aria-controls="key" aria-pressed="false">{esc["show"]}</button>
</div>
<button type="submit" id="submit">{esc["submit"]}</button>
</form>
<p id="status" role="status" aria-live="polite"></p>
<p id="help" class="help" hidden></p>
<p class="note">{esc["what_happens"]}</p>
</main>
</body>
</html>
"""


class MiniApp:
    """The Mini App's HTTP handlers over the bot's runtime (no state of its own beyond rate limits)."""

    def __init__(self, *, bot_token: str, runtime: Runtime, limits: SubmissionLimits, uses: InitDataUseRepository,
                 max_age_s: float, submissions_per_user_per_hour: int, requests_per_address_per_minute: int,
                 clock: Callable[[], float] = time.time) -> None:
        self._token = bot_token
        self.runtime = runtime
        self.limits = limits
        self.uses = uses
        self.max_age_s = max_age_s
        self.clock = clock
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._per_user: RateLimitItem = parse(f"{submissions_per_user_per_hour}/hour")
        self._per_address: RateLimitItem = parse(f"{requests_per_address_per_minute}/minute")
        self._static = {name: (STATIC / name).read_bytes() for name in STATIC_TYPES}
        self._pruned_at = 0.0

    @classmethod
    def from_bot(cls, bot_app: BotApp) -> MiniApp:
        from storage.db import session_factory

        settings = bot_app.settings
        if settings.telegram_bot_token is None or bot_app.engine is None or bot_app.intake is None:
            raise SystemExit("the Mini App needs TELEGRAM_BOT_TOKEN and the bot's database")
        return cls(bot_token=settings.telegram_bot_token.get_secret_value(), runtime=bot_app.runtime,
                   limits=bot_app.intake.limits, uses=InitDataUseRepository(session_factory(bot_app.engine)),
                   max_age_s=settings.miniapp_max_age_s,
                   submissions_per_user_per_hour=settings.miniapp_submissions_per_user_per_hour,
                   requests_per_address_per_minute=settings.miniapp_requests_per_address_per_minute)

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/miniapp/key", self.page, methods=["GET"]),
            Route("/miniapp/static/{name}", self.static, methods=["GET"]),
            Route("/miniapp/api/key", self.submit, methods=["POST"]),
            Route("/miniapp/api/status", self.status, methods=["GET"]),
        ]

    # -- helpers --------------------------------------------------------------------------------
    def _json(self, request: Request, status: int, body: dict[str, Any]) -> JSONResponse:
        return JSONResponse(body, status_code=status, headers=security_headers(request))

    def _error(self, request: Request, status: int, error: str, **extra: Any) -> JSONResponse:
        return self._json(request, status, {"error": error, **extra})

    async def _address_allowed(self, request: Request) -> bool:
        address = request.client.host if request.client else "unknown"
        return await self._limiter.hit(self._per_address, "miniapp-address", address)

    def _validate(self, init_data: object) -> InitData | None:
        if not isinstance(init_data, str):
            return None
        try:
            return validate_init_data(init_data, self._token, max_age_s=self.max_age_s, now=self.clock())
        except InvalidInitData as error:
            log.info("Mini App request with bad initData refused (%s)", error)
            return None

    async def _count_use(self, auth: InitData) -> int:
        expires = datetime.fromtimestamp(auth.auth_date + self.max_age_s + 60, UTC)
        uses = await self.uses.use(auth.digest, expires)
        if self.clock() - self._pruned_at > 600:  # now and then, whichever replica: expired rows go
            self._pruned_at = self.clock()
            await self.uses.prune()
        return uses

    # -- routes ---------------------------------------------------------------------------------
    async def page(self, request: Request) -> Response:
        content = load_content(_language(request))
        return Response(render_page(content), media_type="text/html; charset=utf-8",
                        headers=security_headers(request))

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in self._static:
            return Response("not found", status_code=404, media_type="text/plain",
                            headers=security_headers(request))
        return Response(self._static[name], media_type=STATIC_TYPES[name], headers=security_headers(request))

    async def submit(self, request: Request) -> Response:
        if not await self._address_allowed(request):
            return self._error(request, 429, "rate_limited")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > READ_LIMIT_BYTES:
                return self._error(request, 400, "bad_request")
        data = _parse_body(bytes(body))
        size = len(body)
        del body
        auth = self._validate(data.get("init_data") if isinstance(data, dict) else None)
        if auth is None:
            return self._error(request, 401, "bad_init_data")
        if await self._count_use(auth) > MAX_SUBMISSIONS_PER_INIT_DATA:
            log.info("Mini App initData of user %s used again after %s submissions: refused", auth.user_id,
                     MAX_SUBMISSIONS_PER_INIT_DATA)
            return self._error(request, 401, "bad_init_data")
        if not await self._limiter.hit(self._per_user, "miniapp-user", str(auth.user_id)):
            return self._error(request, 429, "rate_limited")
        if size > MAX_BODY_BYTES or not isinstance(data, dict) or set(data) != {"init_data", "key"} \
                or not isinstance(data["key"], SecretKey | str):
            return self._error(request, 400, "bad_request")
        key = data.pop("key")
        pasted = inspect_pasted_text(key.reveal() if isinstance(key, SecretKey) else key)
        del key, data
        # The chat's language (stored on its conversation, /language may have changed it), else the app's.
        content = load_content(await self.runtime.language_of(ChatRef(auth.user_id, auth.user_id, auth.username,
                                                                      auth.language)))
        if not pasted.should_verify or pasted.key is None:
            help_text = render_problem(pasted.kind.value, content, self.runtime.view_settings, pasted.provider)
            return self._error(request, 422, "not_a_key", kind=pasted.kind.value, help=plain(help_text))
        return await self._enter_pipeline(request, auth, pasted)

    async def _enter_pipeline(self, request: Request, auth: InitData, pasted: Any) -> Response:
        """Hand the key to the runtime exactly as a paste would be, if the chat waits for one."""
        chat = ChatRef(auth.user_id, auth.user_id, auth.username, auth.language)  # private chat: id = user id
        if await self.runtime.conversations.get(chat.chat_id) is None:
            return self._error(request, 409, "not_at_paste_step")
        policy = self.runtime.policy

        async def event(conv: Conversation) -> ev.Event:
            if conv.step not in PASTE_STEPS or (policy.requires_invitation and not conv.workspace_id):
                raise _NotAtPasteStep
            # as for a paste: only a key that will really be checked uses up the allowance
            sealed = queues_sealed(policy)
            admission = await self.limits.admit(auth.user_id, can_hold=sealed,
                                                max_wait_s=policy.queue_hold_s if sealed else None) \
                if paste_is_checked(conv, policy) else Admission()
            return ev.KeyPasted(pasted, forwarded=False, retry_in_minutes=admission.retry_in_minutes,
                                queued_s=admission.queued_s, via_miniapp=True)

        try:
            await self.runtime.handle(chat, event)
        except _NotAtPasteStep:
            return self._error(request, 409, "not_at_paste_step")
        except Exception as error:  # never with the key: the exception's class only
            log.error("Mini App submission of user %s failed: %s", auth.user_id, type(error).__name__)
            return self._error(request, 503, "unavailable")
        log.info("key of user %s arrived through the Mini App", auth.user_id)
        return self._json(request, 202, {"status": "checking"})

    async def status(self, request: Request) -> Response:
        if not await self._address_allowed(request):
            return self._error(request, 429, "rate_limited")
        supplied = request.headers.get("authorization", "")
        init_data = supplied[4:] if supplied[:4].lower() == "tma " else request.headers.get("x-telegram-init-data")
        auth = self._validate(init_data)
        if auth is None:
            return self._error(request, 401, "bad_init_data")
        conv = conversation_of(await self.runtime.conversations.get(auth.user_id))
        if conv is None:
            return self._json(request, 200, {"state": "none", "step": None, "text": ""})
        language = await self.runtime.language_of(ChatRef(auth.user_id, auth.user_id, auth.username, auth.language))
        view = render_step(conv, load_content(language), self.runtime.view_settings)
        return self._json(request, 200, {"state": _state(conv), "step": conv.step.value, "text": plain(view.text)})


def _state(conv: Conversation) -> str:
    if conv.step in CHECKING_STEPS:
        return "checking"
    if conv.step == Step.HELD:
        return "held"
    if conv.step == Step.KEY_PROBLEM:
        return "problem"
    if conv.step in PASTE_STEPS:
        return "waiting"
    return "done"


def _wrap_key(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """JSON object hook: the key is a SecretKey from the moment it is parsed (an empty one stays "")."""
    return {name: SecretKey(value) if name == "key" and isinstance(value, str) and value else value
            for name, value in pairs}


def _parse_body(body: bytes) -> object:
    try:
        return json.loads(body, object_pairs_hook=_wrap_key)
    except (ValueError, UnicodeDecodeError):
        return None


def miniapp_routes(bot_app: BotApp) -> list[BaseRoute]:
    """The Mini App's routes when PUBLIC_BASE_URL is set, else none."""
    if not bot_app.settings.public_base_url:
        return []
    return MiniApp.from_bot(bot_app).routes()
