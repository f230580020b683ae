"""Who sent a PTB update, and in which chat: the core's :class:`~bot.core.ports.ChatRef` of an update.

Why its own module: the chat handlers (``bot/telegram``) and the agent commands (``bot/agents``) both
read updates, and the agents wing must not import the Telegram wing (imports point one way, see
``tests/test_layout.py``).
"""

from __future__ import annotations

from telegram import Update

from bot.core.ports import ChatRef

__all__ = ["chat_of"]


def chat_of(update: Update) -> ChatRef | None:
    """The chat and user of an update (a private chat's id is the user's), or None without a user."""
    user = update.effective_user
    chat = update.effective_chat
    if user is None:
        return None
    chat_id = chat.id if chat is not None else user.id
    return ChatRef(chat_id, user.id, user.username, user.language_code or "en")
