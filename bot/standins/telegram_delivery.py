"""Handing updates to the bot: getUpdates long polling and webhook pushes, as the real server does.

Why it is modelled closely: exposure-window and ordering metrics are measured from the moment an
update is handed over, so the stand-in must hand it over the way Telegram does.

Followed:
- https://core.telegram.org/bots/api#getupdates -- ``offset`` confirms earlier updates, a negative
  offset keeps only the last ``-offset``; ``limit`` 1-100; long polling with ``timeout``.
- tdlib/telegram-bot-api Client.cpp ``process_get_updates_query`` / ``do_get_updates`` /
  ``abort_long_poll``: timeout clamped to 0..50 (``LONG_POLL_MAX_TIMEOUT``), a new waiting getUpdates
  terminates the *earlier* one with 409 "Conflict: terminated by other getUpdates request; make sure
  that only one bot instance is running", setWebhook terminates it with "Conflict: terminated by
  setWebhook request", getUpdates while a webhook is set answers 409.
- https://core.telegram.org/bots/api#setwebhook and WebhookActor.cpp: POST JSON with
  ``X-Telegram-Bot-Api-Secret-Token``; one update in flight per queue (chat for messages, user for
  callback queries); queues in parallel up to ``max_connections``; retry non-2xx with doubling
  backoff, honouring a ``Retry-After`` header. Backoff here is shortened for tests (0.2 s doubling,
  2 s cap; configurable) and an update is dropped after a configurable number of attempts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import httpx

from bot.standins.telegram_request import ApiError, ApiRequest
from bot.standins.telegram_validate import allowed_updates_arg
from bot.standins.telegram_world import BotWorld, Settings, UpdateRecord, WebhookState

__all__ = [
    "CONFLICT_OTHER_POLL",
    "CONFLICT_SET_WEBHOOK",
    "CONFLICT_WEBHOOK_ACTIVE",
    "SET_WEBHOOK_ABORT",
    "Notifier",
    "WebhookDispatcher",
    "get_updates",
]


class DeliveryHost(Protocol):
    """What delivery needs of the stand-in (``FakeTelegram`` implements it); keeps the layers one way."""

    lock: Any
    notifier: Notifier
    settings: Settings

    def owns(self, world: BotWorld) -> bool: ...

    def world_if_exists(self, bot_id: int) -> BotWorld | None: ...

CONFLICT_OTHER_POLL = ("Conflict: terminated by other getUpdates request; make sure that only one bot "
                       "instance is running")
CONFLICT_SET_WEBHOOK = "Conflict: terminated by setWebhook request"
CONFLICT_WEBHOOK_ACTIVE = ("Conflict: can't use getUpdates method while webhook is active; use "
                           "deleteWebhook to delete the webhook first")
LONG_POLL_MAX_TIMEOUT = 50
SET_WEBHOOK_ABORT = object()  # marks a long poll that setWebhook terminated


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Notifier:
    """Wakes waiters on any event loop whenever the world changes (safe to call from any thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._generation = 0
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    @property
    def generation(self) -> int:
        with self._lock:
            return self._generation

    def notify(self) -> None:
        with self._lock:
            self._generation += 1
            waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            with contextlib.suppress(RuntimeError):  # a closed loop's waiter is gone anyway
                loop.call_soon_threadsafe(_resolve, future)

    async def wait(self, since: int, within_s: float, also: asyncio.Future[Any] | None = None) -> bool:
        """Return True once the generation moved past ``since`` (or ``also`` finished), False on timeout."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._generation != since:
                return True
            self._waiters.append((loop, future))
        waits: set[asyncio.Future[Any]] = {future}
        if also is not None:
            waits.add(also)
        try:
            done, _ = await asyncio.wait(waits, timeout=max(0.0, within_s),
                                         return_when=asyncio.FIRST_COMPLETED)
            return bool(done)
        finally:
            future.cancel()
            with self._lock:
                self._waiters = [(lp, fut) for lp, fut in self._waiters if fut is not future]


def _confirm(world: BotWorld, offset: int) -> None:
    pending = world.pending()
    if offset < 0:
        for update in pending[: max(0, len(pending) + offset)]:
            update.confirmed = True
    elif offset > 0:
        for update in pending:
            if update.update_id < offset:
                update.confirmed = True


def _select(world: BotWorld, offset: int, limit: int) -> list[UpdateRecord]:
    chosen = [u for u in world.pending() if offset <= 0 or u.update_id >= offset]
    return chosen[:limit]


def _hand_over(batch: list[UpdateRecord]) -> list[dict[str, Any]]:
    now = time.monotonic()
    for update in batch:
        update.attempts += 1
        update.delivered = True
        update.handed_over_monotonic = now
        if update.first_handed_over_monotonic is None:
            update.first_handed_over_monotonic = now
    return [update.to_api() for update in batch]


async def get_updates(
    fake: DeliveryHost, world: BotWorld, req: ApiRequest,
    disconnected: Callable[[], Awaitable[Any]] | None = None,
) -> list[dict[str, Any]]:
    """The getUpdates method, long polling included."""
    with fake.lock:
        if world.webhook is not None:
            raise ApiError(409, CONFLICT_WEBHOOK_ACTIVE)
        offset = req.int_arg("offset", 0)
        limit = req.int_arg("limit", 100, 1, 100)
        timeout = req.int_arg("timeout", 0, 0, LONG_POLL_MAX_TIMEOUT)
        allowed = allowed_updates_arg(req)
        if allowed is not None:
            world.allowed_updates = allowed
        _confirm(world, offset)
        batch = _select(world, offset, limit)
        if batch or timeout == 0:
            return _hand_over(batch)
        me = object()
        replaced, world.poller = world.poller, me
        since = fake.notifier.generation
    if replaced is not None:
        fake.notifier.notify()  # the earlier poll wakes up and finds it was replaced
    deadline = time.monotonic() + timeout
    watcher = asyncio.ensure_future(disconnected()) if disconnected is not None else None
    try:
        while True:
            await fake.notifier.wait(since, deadline - time.monotonic(), watcher)
            with fake.lock:
                since = fake.notifier.generation
                if not fake.owns(world):  # the stand-in was reset: end quietly
                    return []
                if world.poller is not me:
                    by_webhook = world.poller is SET_WEBHOOK_ABORT
                    raise ApiError(409, CONFLICT_SET_WEBHOOK if by_webhook else CONFLICT_OTHER_POLL)
                gone = watcher is not None and watcher.done()
                batch = [] if gone else _select(world, offset, limit)
                if batch or gone or time.monotonic() >= deadline:
                    world.poller = None
                    return _hand_over(batch)
    finally:
        if watcher is not None:
            watcher.cancel()


class WebhookDispatcher:
    """Pushes pending updates to the webhook: serial per queue, parallel across queues."""

    def __init__(self, fake: DeliveryHost) -> None:
        self._fake = fake
        self._workers: dict[tuple[int, int, tuple[str, int]], asyncio.Task[None]] = {}
        self._slots: dict[tuple[int, int], asyncio.Semaphore] = {}
        self._client: httpx.AsyncClient | None = None

    def kick(self, bot_id: int) -> None:
        """Start a worker for every queue that has pending updates (runs on the server loop)."""
        with self._fake.lock:
            world = self._fake.world_if_exists(bot_id)
            if world is None or world.webhook is None:
                return
            generation = world.webhook.generation
            for key in dict.fromkeys(u.queue_key for u in world.pending()):
                slot = (bot_id, generation, key)
                if slot not in self._workers:
                    self._workers[slot] = asyncio.get_running_loop().create_task(self._run(*slot))

    async def close(self) -> None:
        for task in list(self._workers.values()):
            task.cancel()
        self._workers.clear()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _semaphore(self, bot_id: int, generation: int, size: int) -> asyncio.Semaphore:
        return self._slots.setdefault((bot_id, generation), asyncio.Semaphore(size))

    async def _run(self, bot_id: int, generation: int, key: tuple[str, int]) -> None:
        slot = (bot_id, generation, key)
        try:
            while True:
                with self._fake.lock:
                    world = self._fake.world_if_exists(bot_id)
                    hook = world.webhook if world is not None else None
                    head = None
                    if world is not None and hook is not None and hook.generation == generation:
                        head = next((u for u in world.updates if u.pending and u.queue_key == key), None)
                    if hook is None or head is None:
                        self._workers.pop(slot, None)
                        return
                    url, secret, max_connections = hook.url, hook.secret_token, hook.max_connections
                    body = json.dumps(head.to_api(), ensure_ascii=False).encode("utf-8")
                async with self._semaphore(bot_id, generation, max_connections):
                    with self._fake.lock:
                        reached_before = head.delivered
                        _hand_over([head])
                        head.delivered = reached_before  # a webhook POST counts once it got an answer
                    ok, reached, error, retry_after = await self._post(
                        url, secret, body, self._fake.settings.webhook_timeout_s)
                with self._fake.lock:
                    current = hook if world is not None and world.webhook is hook else None
                    delay = self._settle(head, current, ok, reached, error, retry_after)
                self._fake.notifier.notify()  # an attempt finished: observers re-check
                if delay is not None:
                    await asyncio.sleep(delay)
        except asyncio.CancelledError:
            self._workers.pop(slot, None)
            raise
        finally:
            self._fake.notifier.notify()

    def _settle(self, head: UpdateRecord, hook: WebhookState | None, ok: bool, reached: bool,
                error: str | None, retry_after: float | None) -> float | None:
        """Record one attempt's outcome; return the delay before a retry (None: move on)."""
        head.delivered = head.delivered or reached
        if ok:
            head.confirmed = True
            return None
        head.last_error = error
        settings = self._fake.settings
        if hook is not None:
            hook.last_error_date = int(time.time())
            hook.last_error_message = error
        backoff = settings.webhook_retry_initial_s * 2 ** (head.attempts - 1)
        delay = min(backoff, settings.webhook_retry_max_s) if retry_after is None else retry_after
        expired = time.monotonic() + delay > head.expires_monotonic
        if head.attempts >= settings.webhook_max_attempts or expired:
            head.dropped = True
            return None
        return delay

    async def _post(self, url: str, secret: str, body: bytes,
                    limit_s: float) -> tuple[bool, bool, str | None, float | None]:
        """(acknowledged, reached the bot, error text as getWebhookInfo shows it, Retry-After)."""
        if self._client is None:
            self._client = httpx.AsyncClient(trust_env=False)  # never route loopback through a proxy
        headers = {"Content-Type": "application/json"}
        if secret:
            headers["X-Telegram-Bot-Api-Secret-Token"] = secret
        try:
            response = await self._client.post(url, content=body, headers=headers, timeout=limit_s)
        except httpx.TimeoutException:
            return False, True, "Read timeout expired", None
        except httpx.HTTPError:
            return False, False, "Connection refused", None
        if 200 <= response.status_code < 300:
            return True, True, None, None
        retry_after: float | None = None
        header = response.headers.get("retry-after", "")
        if header.strip().isdigit():
            retry_after = float(min(3600, int(header.strip())))
        error = f"Wrong response from the webhook: {response.status_code} {response.reason_phrase}"
        return False, True, error, retry_after
