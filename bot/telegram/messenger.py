"""The Telegram calls the core makes (its ChatPort), with Telegram's error strings turned into plain answers.

Why a wrapper: the runtime should ask "delete this" and hear "gone" / "not allowed" / "too old", not
parse ``BadRequest`` texts (PTB strips the "Bad Request: " prefix and capitalises the rest, see
shared/reference/telegram-bot-api.md section 1.3).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

from telegram import Bot, LinkPreviewOptions
from telegram.constants import ParseMode
from telegram.error import BadRequest, Forbidden, RetryAfter, TelegramError

from bot.core.ports import ChatUnreachable, DeleteOutcome
from bot.telegram.view import to_markup
from flows.view import View

__all__ = ["ChatUnreachable", "DeleteOutcome", "Messenger"]

log = logging.getLogger(__name__)
NO_PREVIEW = LinkPreviewOptions(is_disabled=True)


@contextlib.contextmanager
def _reachable(chat_id: int) -> Iterator[None]:
    try:
        yield
    except Forbidden:
        raise ChatUnreachable(chat_id) from None


class Messenger:
    """The core's :class:`~bot.core.ports.ChatPort` over PTB: send, edit and delete messages."""

    def __init__(self, bot: Bot, delete_bot: Bot | None = None) -> None:
        self.bot = bot
        # Deletions of pasted keys may use a separate Bot without the rate limiter, so that removing
        # a secret never waits behind queued guide messages.
        self.delete_bot = delete_bot or bot

    async def send_view(self, chat_id: int, view: View) -> int:
        with _reachable(chat_id):
            message = await self.bot.send_message(chat_id, view.text, parse_mode=ParseMode.HTML,
                                                  reply_markup=to_markup(view), link_preview_options=NO_PREVIEW)
        return message.message_id

    async def edit_view(self, chat_id: int, message_id: int, view: View) -> bool:
        """Edit the guide message in place; False if it no longer exists or can't be edited."""
        try:
            with _reachable(chat_id):
                await self.bot.edit_message_text(view.text, chat_id=chat_id, message_id=message_id,
                                                 parse_mode=ParseMode.HTML, reply_markup=to_markup(view),
                                                 link_preview_options=NO_PREVIEW)
        except BadRequest as exc:
            if "not modified" in exc.message.lower():
                return True
            log.info("guide message %s in chat %s could not be edited: %s", message_id, chat_id, exc.message)
            return False
        return True

    async def send_html(self, chat_id: int, text: str, view: View | None = None) -> int:
        with _reachable(chat_id):
            message = await self.bot.send_message(chat_id, text, parse_mode=ParseMode.HTML,
                                                  reply_markup=to_markup(view) if view else None,
                                                  link_preview_options=NO_PREVIEW)
        return message.message_id

    async def delete(self, chat_id: int, message_id: int, *, attempts: int = 3) -> DeleteOutcome:
        """Delete a message; retries flood waits and network errors a few times, quickly."""
        for _ in range(attempts):
            try:
                await self.delete_bot.delete_message(chat_id, message_id)
                return DeleteOutcome.DELETED
            except BadRequest as exc:
                text = exc.message.lower()
                if "not found" in text:
                    return DeleteOutcome.DELETED
                if "can't be deleted" in text:
                    return DeleteOutcome.NO_RIGHTS if chat_id < 0 else DeleteOutcome.TOO_OLD
                return DeleteOutcome.FAILED
            except Forbidden:
                return DeleteOutcome.NO_RIGHTS
            except RetryAfter as exc:
                delay = exc.retry_after
                seconds = delay.total_seconds() if hasattr(delay, "total_seconds") else float(delay)
                await asyncio.sleep(min(seconds, 2.0))
            except TelegramError as exc:
                log.warning("deleteMessage failed in chat %s: %s", chat_id, type(exc).__name__)
        return DeleteOutcome.FAILED

    async def delete_quietly(self, chat_id: int, message_id: int) -> None:
        """Best-effort removal of the bot's own superseded guide message."""
        with contextlib.suppress(TelegramError):
            await self.bot.delete_message(chat_id, message_id)
