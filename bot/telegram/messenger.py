"""The Telegram calls the core makes (its ChatPort), with Telegram's error strings turned into plain answers.

Why a wrapper: the runtime should ask "delete this" and hear "gone" / "not allowed" / "too old", not
parse ``BadRequest`` texts (PTB strips the "Bad Request: " prefix and capitalises the rest, see
shared/reference/telegram-bot-api.md section 1.3). Sends and edits raise only the port's two errors:
``ChatUnreachable`` (Forbidden: blocked, kicked) and ``ChatDeliveryFailed`` (a flood wait with its
``retry_after``, a 5xx, a timeout, a refused request), so the core can keep its committed state and
show it again later.

Deleting a pasted key is different: it is retried until it succeeds or Telegram says it is impossible
(see :meth:`Messenger.delete`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

from telegram import Bot, LinkPreviewOptions
from telegram.constants import ParseMode
from telegram.error import BadRequest, ChatMigrated, Forbidden, NetworkError, RetryAfter, TelegramError

from bot.core.ports import ChatDeliveryFailed, ChatUnreachable, DeleteOutcome
from bot.telegram.fit import fit_html
from bot.telegram.ratelimit import seconds_of
from bot.telegram.view import to_markup
from flows.content import load_content
from flows.view import View

__all__ = ["ChatUnreachable", "DeleteOutcome", "Messenger", "classify_delete_error"]

log = logging.getLogger(__name__)
NO_PREVIEW = LinkPreviewOptions(is_disabled=True)
DELETE_DEADLINE_S = 60.0  # keep trying to delete a pasted key this long before telling the user
DELETE_SLOW_AFTER_S = 3.0  # say "deleting…" only when it takes longer than this
DELETE_FIRST_BACKOFF_S = 0.25  # after a 5xx or timeout; doubles up to DELETE_MAX_BACKOFF_S
DELETE_MAX_BACKOFF_S = 5.0
DELETE_AFTER_DEADLINE_S = 600.0  # past the deadline, keep removing the message in the background this long


@contextlib.contextmanager
def _delivery(chat_id: int) -> Iterator[None]:
    """PTB's errors as the port's: Forbidden -> unreachable, anything else -> failed (with retry_after)."""
    try:
        yield
    except Forbidden:
        raise ChatUnreachable(chat_id) from None
    except RetryAfter as exc:
        raise ChatDeliveryFailed(chat_id, "flood wait", seconds_of(exc.retry_after)) from None
    except ChatMigrated as exc:  # a group became a supergroup; sends already followed it (ratelimit.py)
        raise ChatDeliveryFailed(chat_id, f"migrated to {exc.new_chat_id}") from None
    except TelegramError as exc:
        raise ChatDeliveryFailed(chat_id, type(exc).__name__) from None


def classify_delete_error(exc: TelegramError, chat_id: int) -> DeleteOutcome | None:
    """What a deleteMessage error means; None when trying again may help (429, 5xx, timeout).

    From https://core.telegram.org/bots/api#deletemessage: a bot can delete its own and others'
    messages in private chats if they are younger than 48 hours, others' messages in groups only with
    the can_delete_messages right. "message to delete not found" means it is already gone: success.
    """
    if isinstance(exc, RetryAfter | NetworkError) and not isinstance(exc, BadRequest):
        return None  # TimedOut and 5xx are NetworkError in PTB; BadRequest subclasses NetworkError
    if isinstance(exc, Forbidden | ChatMigrated):
        return DeleteOutcome.NO_RIGHTS  # not a member any more, or the message stayed in the old group
    if isinstance(exc, BadRequest):
        text = exc.message.lower()
        if "not found" in text:
            return DeleteOutcome.DELETED
        if "can't be deleted" in text or "not enough rights" in text or "have no rights" in text:
            return DeleteOutcome.NO_RIGHTS if chat_id < 0 else DeleteOutcome.TOO_OLD
    return DeleteOutcome.FAILED


class Messenger:
    """The core's :class:`~bot.core.ports.ChatPort` over PTB: send, edit and delete messages."""

    def __init__(self, bot: Bot, delete_bot: Bot | None = None, *, delete_deadline_s: float = DELETE_DEADLINE_S,
                 delete_slow_after_s: float = DELETE_SLOW_AFTER_S,
                 delete_after_deadline_s: float = DELETE_AFTER_DEADLINE_S) -> None:
        self.bot = bot
        # Deletions of pasted keys use a separate Bot without the rate limiter, so that removing a
        # secret never waits behind queued guide messages or another chat's flood wait.
        self.delete_bot = delete_bot or bot
        self.delete_deadline_s = delete_deadline_s
        self.delete_slow_after_s = delete_slow_after_s
        self.clock: Callable[[], float] = time.monotonic  # replaceable in tests
        self.delete_after_deadline_s = delete_after_deadline_s
        self._background: set[asyncio.Task[None]] = set()
        # Deletions that answered PENDING, until their final outcome has been collected (or they settled).
        self._pending: dict[tuple[int, int], concurrent.futures.Future[DeleteOutcome]] = {}

    async def send_view(self, chat_id: int, view: View) -> int:
        with _delivery(chat_id):
            message = await self.bot.send_message(chat_id, view.text, parse_mode=ParseMode.HTML,
                                                  reply_markup=to_markup(view), link_preview_options=NO_PREVIEW)
        return message.message_id

    async def edit_view(self, chat_id: int, message_id: int, view: View) -> bool:
        """Edit the guide message in place; False if it no longer exists or can't be edited."""
        try:
            with _delivery(chat_id):
                try:
                    await self.bot.edit_message_text(view.text, chat_id=chat_id, message_id=message_id,
                                                     parse_mode=ParseMode.HTML, reply_markup=to_markup(view),
                                                     link_preview_options=NO_PREVIEW)
                except BadRequest as exc:
                    if "not modified" in exc.message.lower():
                        return True
                    log.info("guide message %s in chat %s could not be edited: %s", message_id, chat_id,
                             exc.message)
                    return False
        except ChatDeliveryFailed as failed:
            if failed.retry_after is None and "migrated" in failed.reason:
                return False  # the old group's message can't be edited; a new one goes to the new chat
            raise
        return True

    async def send_html(self, chat_id: int, text: str, view: View | None = None) -> int:
        with _delivery(chat_id):
            message = await self.bot.send_message(chat_id, text, parse_mode=ParseMode.HTML,
                                                  reply_markup=to_markup(view) if view else None,
                                                  link_preview_options=NO_PREVIEW)
        return message.message_id

    # -- deleting a pasted key -------------------------------------------------------------------------
    async def delete(self, chat_id: int, message_id: int, *, language: str = "en") -> DeleteOutcome:
        """Delete a message, retrying until it is gone or Telegram says it can't be.

        Flood waits are honoured in full; 5xx and timeouts are retried with a growing pause; all of it
        within ``delete_deadline_s``. After that the caller hears PENDING (Telegram never said it can't:
        the key waits unused, it is not exposed) while the deletion goes on in the background for
        ``delete_after_deadline_s``; :meth:`deletion_settled` gives its final outcome (FAILED if it never
        got through). If it takes longer than ``delete_slow_after_s`` the user is told "deleting…"
        (removed again once done).
        """
        done = asyncio.Event()
        notice = asyncio.ensure_future(self._say_deleting(chat_id, language, done))
        try:
            outcome, pending_wait = await self._delete_until(chat_id, message_id, self.delete_deadline_s)
        finally:
            done.set()
            self._in_background(self._take_back(chat_id, notice))
        if outcome is None:
            log.warning("could not delete message %s in chat %s within %.0f s; still trying in the background",
                        message_id, chat_id, self.delete_deadline_s)
            settled: concurrent.futures.Future[DeleteOutcome] = concurrent.futures.Future()
            self._pending[(chat_id, message_id)] = settled
            self._in_background(self._delete_later(chat_id, message_id, pending_wait, settled))
            return DeleteOutcome.PENDING
        return outcome

    def deletion_settled(self, chat_id: int, message_id: int) -> concurrent.futures.Future[DeleteOutcome] | None:
        """The final outcome of a deletion that answered PENDING (taken: asked once per message)."""
        return self._pending.pop((chat_id, message_id), None)

    async def _delete_until(self, chat_id: int, message_id: int,
                            budget_s: float) -> tuple[DeleteOutcome | None, float]:
        """The outcome, or (None, next wait) when the budget ran out first."""
        started = self.clock()
        backoff = DELETE_FIRST_BACKOFF_S
        while True:
            try:
                await self.delete_bot.delete_message(chat_id, message_id)
                return DeleteOutcome.DELETED, 0.0
            except TelegramError as exc:
                outcome = classify_delete_error(exc, chat_id)
                if outcome is not None:
                    if outcome == DeleteOutcome.FAILED:
                        log.warning("deleteMessage refused in chat %s: %s", chat_id, type(exc).__name__)
                    return outcome, 0.0
                if isinstance(exc, RetryAfter):
                    wait = seconds_of(exc.retry_after)  # in full: an earlier retry only earns another 429
                else:
                    wait, backoff = backoff, min(backoff * 2, DELETE_MAX_BACKOFF_S)
                log.info("deleteMessage in chat %s: %s; trying again in %.2f s", chat_id, type(exc).__name__, wait)
            if self.clock() + wait - started > budget_s:
                return None, wait
            await asyncio.sleep(wait)

    async def _delete_later(self, chat_id: int, message_id: int, wait: float,
                            settled: concurrent.futures.Future[DeleteOutcome]) -> None:
        outcome: DeleteOutcome | None = None
        try:
            await asyncio.sleep(wait)
            outcome, _ = await self._delete_until(chat_id, message_id, self.delete_after_deadline_s)
            log.info("late deletion of message %s in chat %s: %s", message_id, chat_id, outcome or "gave up")
        finally:  # also when cancelled at shutdown: whoever waits hears it was not deleted
            if not settled.done():
                settled.set_result(outcome or DeleteOutcome.FAILED)
            if self._pending.get((chat_id, message_id)) is settled and outcome is not None:
                del self._pending[(chat_id, message_id)]

    async def _say_deleting(self, chat_id: int, language: str, done: asyncio.Event) -> int | None:
        """If deleting takes a while, tell the user (one try, never in the way of the deletion)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), self.delete_slow_after_s)
            return None  # done quickly: nothing to say
        text, mode = fit_html(load_content(language).reply("deleting_key"))
        try:
            message = await self.delete_bot.send_message(chat_id, text, parse_mode=mode)
        except TelegramError as exc:
            log.info("could not say 'deleting…' in chat %s: %s", chat_id, type(exc).__name__)
            return None
        return message.message_id

    async def _take_back(self, chat_id: int, notice: asyncio.Future[int | None]) -> None:
        """Remove the "deleting…" note once the deletion is settled (the guide says what happened)."""
        notice_id = await notice
        if notice_id:
            await self.delete_quietly(chat_id, notice_id)

    def _in_background(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def settle(self, timeout: float) -> None:
        """Wait a little for background deletions (shutdown), then stop them."""
        if self._background:
            _done, pending = await asyncio.wait(set(self._background), timeout=timeout)
            for task in pending:
                task.cancel()

    async def delete_quietly(self, chat_id: int, message_id: int) -> None:
        """Remove a superseded message of the bot's (an old guide, a "deleting…" note), never in the way.

        One try now. A flood wait, a 5xx or a timeout is retried in the background, honouring
        ``retry_after``: an old guide left under the new one keeps buttons that invite presses. A message
        Telegram no longer lets us delete (older than 48 hours) loses its buttons instead.
        """
        try:
            await self.bot.delete_message(chat_id, message_id)
            return
        except TelegramError as exc:
            outcome = classify_delete_error(exc, chat_id)
            wait = seconds_of(exc.retry_after) if isinstance(exc, RetryAfter) else DELETE_FIRST_BACKOFF_S
        if outcome is None:
            self._in_background(self._delete_superseded_later(chat_id, message_id, wait))
        elif outcome is not DeleteOutcome.DELETED:
            await self._strip_buttons(chat_id, message_id)

    async def _delete_superseded_later(self, chat_id: int, message_id: int, wait: float) -> None:
        await asyncio.sleep(wait)
        outcome, _ = await self._delete_until(chat_id, message_id, DELETE_AFTER_DEADLINE_S)
        if outcome is not DeleteOutcome.DELETED:
            await self._strip_buttons(chat_id, message_id)

    async def _strip_buttons(self, chat_id: int, message_id: int) -> None:
        with contextlib.suppress(TelegramError):
            await self.bot.edit_message_reply_markup(chat_id, message_id, reply_markup=None)
