"""PTB handlers: each turns one kind of update into a flow event and hands it to the runtime.

Thin on purpose, in the style of PTB's examples: no decisions here beyond "which event is this".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ChatType
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TelegramError
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bot.core.intake import Intake
from bot.core.ports import ChatRef, ChatUnreachable
from bot.core.runtime import HandleResult, Runtime
from bot.telegram.redelivery import Redelivery
from bot.telegram.secret_guard import SecretGuard, message_of
from bot.updates import chat_of
from flows import events as ev
from flows.content import load_content
from flows.inspection import might_carry_secret
from flows.state import Conversation
from flows.view import LANGUAGE_CALLBACK, parse_callback_data, parse_language_callback, render_reply

__all__ = ["BotHandlers"]

log = logging.getLogger(__name__)

COMMAND_EVENTS: dict[str, type[ev.RestartAsked | ev.CancelAsked | ev.HelpAsked | ev.PrivacyAsked
                                | ev.ReplaceAsked | ev.DisconnectAsked | ev.StopRemindersAsked]] = {
    "restart": ev.RestartAsked,
    "cancel": ev.CancelAsked,
    "help": ev.HelpAsked,
    "privacy": ev.PrivacyAsked,
    "replace": ev.ReplaceAsked,
    "disconnect": ev.DisconnectAsked,
    "stop_reminders": ev.StopRemindersAsked,
}
MEDIA = (filters.PHOTO | filters.Sticker.ALL | filters.Document.ALL | filters.VIDEO | filters.VOICE
         | filters.AUDIO | filters.ANIMATION | filters.VIDEO_NOTE | filters.CONTACT | filters.LOCATION
         | filters.POLL | filters.Dice.ALL)
PRIVATE = filters.ChatType.PRIVATE
ANSWER_RETRY_PAUSES_S = (0.3, 1.0, None)  # well inside Telegram's ~15 s for answering a query


def media_kind(update: Update) -> str:
    message = message_of(update)
    if message is None:
        return "message"
    for kind in ("photo", "sticker", "document", "video", "voice", "audio", "animation", "video_note",
                 "contact", "location", "poll", "dice"):
        if getattr(message, kind, None):
            return kind.replace("_", " ")
    return "message"


@dataclass
class BotHandlers:
    runtime: Runtime
    intake: Intake
    guard: SecretGuard
    redelivery: Redelivery | None = None  # polling: a transient failure is handled again (webhook: 503)

    def register(self, app: Application) -> None:
        """All wiring in one place."""
        app.add_handler(MessageHandler(filters.ChatType.GROUPS, self.group_message))
        app.add_handler(CommandHandler("start", self.start, PRIVATE))
        app.add_handler(CommandHandler("language", self.language, PRIVATE & filters.UpdateType.MESSAGE))
        for name in COMMAND_EVENTS:
            app.add_handler(CommandHandler(name, self.command, PRIVATE & filters.UpdateType.MESSAGE))
        app.add_handler(CallbackQueryHandler(self.language_chosen, pattern=f"^{LANGUAGE_CALLBACK}\\|"))
        app.add_handler(CallbackQueryHandler(self.button))
        app.add_handler(MessageHandler(PRIVATE & filters.UpdateType.EDITED_MESSAGE, self.edited))
        app.add_handler(MessageHandler(PRIVATE & (filters.TEXT | filters.CAPTION), self.text))
        app.add_handler(MessageHandler(PRIVATE & MEDIA, self.media))
        app.add_error_handler(self.error)

    async def start(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Begin, or resume where the user left off."""
        chat = chat_of(update)
        if chat:
            payload = context.args[0] if context.args else None
            await self.runtime.handle(chat, ev.Started(payload), update_id=update.update_id)

    async def command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Map /restart, /cancel, /help, /privacy, /replace, /disconnect to their events."""
        chat = chat_of(update)
        message = update.effective_message
        if chat and message and message.text:
            if might_carry_secret(message.text):
                await self._refuse_secret_command(chat, update.update_id)
                return
            name = message.text.split()[0][1:].split("@")[0].lower()
            await self.runtime.handle(chat, COMMAND_EVENTS[name](), update_id=update.update_id)

    async def _refuse_secret_command(self, chat: ChatRef, update_id: int) -> None:
        """A command carrying key text (the guard deleted it): run nothing, keep nothing, echo nothing."""
        if not await self.runtime.updates.claim(update_id):
            return
        await self.runtime.audit.record("command.refused_secret", chat_id=chat.chat_id, actor_user_id=chat.user_id)
        text = load_content(await self.runtime.language_of(chat)).notice("command_with_secret")
        with contextlib.suppress(ChatUnreachable):
            await self.runtime.messenger.send_html(chat.chat_id, text)

    async def language(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/language: the six languages as buttons (not a guide step: the guide stays where it is)."""
        chat = chat_of(update)
        message = update.effective_message
        if chat and message and message.text and might_carry_secret(message.text):
            await self._refuse_secret_command(chat, update.update_id)
        elif chat:
            await self.runtime.show_language_picker(chat)

    async def language_chosen(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A /language button: switch at once; the guide message is re-rendered in place."""
        query = update.callback_query
        chat = chat_of(update)
        if query is None or chat is None:
            return
        code = parse_language_callback(query.data)
        private = update.effective_chat is None or update.effective_chat.type == ChatType.PRIVATE
        if code is not None and private:
            pressed = query.message.message_id if query.message else None
            await self.runtime.set_language(chat, code, update_id=update.update_id, picker_message_id=pressed)
        try:
            await query.answer()
        except TelegramError as exc:  # an old query: Telegram refuses late answers
            log.info("callback answer refused: %s", type(exc).__name__)

    async def button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A press on an inline button; forged or stale data just re-shows the current step."""
        query = update.callback_query
        chat = chat_of(update)
        if query is None or chat is None:
            return
        if update.effective_chat is not None and update.effective_chat.type != ChatType.PRIVATE:
            # the guide only lives in private chats; nothing to do elsewhere (an old query may be refused)
            with contextlib.suppress(TelegramError):
                await query.answer()
            return
        step, action = parse_callback_data(query.data) or ("", "")
        pressed = query.message.message_id if query.message else None
        answered: list[bool] = []

        async def answer(result: HandleResult | None) -> None:
            """Answered once, right after the commit and before any edit (or at the end if skipped).

            Telegram wants an answer even with no text, and refuses it once the query is ~15 s old
            (https://core.telegram.org/bots/api#answercallbackquery), so a flood wait on the edit must
            not come first.
            """
            if answered:
                return
            answered.append(True)
            text = (result.toast if result else "") or None
            for pause in ANSWER_RETRY_PAUSES_S:  # 5xx or timeout: again, while the query is young
                try:
                    await query.answer(text)
                    return
                except (BadRequest, Forbidden, RetryAfter) as exc:  # too old, or the limiter gave up
                    log.info("callback answer refused: %s", type(exc).__name__)
                    return
                except TelegramError as exc:
                    log.info("callback answer failed (%s); %s", type(exc).__name__,
                             "trying again" if pause is not None else "giving up")
                    if pause is None:
                        return
                    await asyncio.sleep(pause)

        try:
            await self.runtime.handle(chat, ev.ButtonPressed(step, action), update_id=update.update_id,
                                      pressed_message_id=pressed, decided=answer)
        finally:
            await answer(None)

    async def text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Text (or a captioned media message): a paste at the paste step, else a stray message."""
        chat = chat_of(update)
        message = message_of(update)
        if chat is None or message is None:
            return
        verdict = self.guard.verdict_for(update)
        text = message.text or message.caption or ""
        forwarded = message.forward_origin is not None

        async def event(conv: Conversation) -> ev.Event:
            return await self.intake.text_event(conv, chat_id=chat.chat_id, user_id=chat.user_id,
                                                message_id=message.message_id, text=text,
                                                verdict=verdict, forwarded=forwarded)

        await self.runtime.handle(chat, event, update_id=update.update_id)

    async def edited(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """An edit only matters if it put a secret into an earlier message (the guard deleted it)."""
        if not self.guard.has_verdict(update):
            return
        await self.text(update, context)

    async def media(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Photos, stickers, files ...: deleted at the paste step; elsewhere a gentle pointer."""
        chat = chat_of(update)
        message = message_of(update)
        if chat is None or message is None:
            return
        verdict = self.guard.verdict_for(update)
        kind = media_kind(update)

        async def event(conv: Conversation) -> ev.Event:
            return await self.intake.media_event(conv, chat_id=chat.chat_id, message_id=message.message_id,
                                                 kind=kind, verdict=verdict)

        await self.runtime.handle(chat, event, update_id=update.update_id)

    async def group_message(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Never verify in groups: say what happened and point to the private chat."""
        chat = update.effective_chat
        message = message_of(update)
        if chat is None or message is None or chat.type == ChatType.CHANNEL:
            return
        verdict = self.guard.verdict_for(update)
        words = (message.text or "").split()  # a message of only spaces has no first word
        is_start = bool(words) and words[0].split("@")[0] == "/start"
        if verdict is None and not is_start:
            return
        name = "group_redirect" if verdict is None else ("group_deleted" if verdict.deleted
                                                         else "group_cannot_delete")
        user = update.effective_user
        # The user's own language: the one chosen in their private chat with the bot, else their app's.
        language = None
        if user is not None:
            language = await self.runtime.language_of(ChatRef(user.id, user.id, None, user.language_code or "en"))
        content = load_content(language)
        text = render_reply(name, content, self.runtime.view_settings)
        link = f"https://t.me/{context.bot.username}"
        markup = InlineKeyboardMarkup([[InlineKeyboardButton("💬 " + content.button("open_private"),
                                                             url=link)]])
        try:  # a group that became a supergroup is followed by the rate limiter (ChatMigrated)
            await context.bot.send_message(chat.id, text, reply_markup=markup)
        except Forbidden:
            log.info("group %s refuses our messages (removed or restricted)", chat.id)
        except TelegramError as exc:  # the deletion (or not) stands; the note is a courtesy
            log.warning("could not post the note in group %s: %s", chat.id, type(exc).__name__)

    async def error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Log the error class and where; never the update's contents (it may hold a key)."""
        error = context.error
        update_id = update.update_id if isinstance(update, Update) else None
        if isinstance(error, NetworkError) and update_id is None:  # polling hiccup: PTB retries by itself
            log.warning("network trouble talking to Telegram: %s", type(error).__name__)
            return
        if isinstance(error, Forbidden | ChatUnreachable):  # blocked or removed: nothing to tell anyone
            log.info("chat of update %s refuses our messages: %s", update_id, type(error).__name__)
            return
        if self.redelivery is not None and isinstance(update, Update) and error is not None \
                and self.redelivery.again(update, error):
            return
        log.error("error while handling update %s: %s", update_id, type(error).__name__,
                  exc_info=error)
