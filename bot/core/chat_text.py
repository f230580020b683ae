"""What fits in one chat message: Telegram's length limits, measured the way Telegram counts.

Why in the core: the limits are part of the chat port's contract (a text over them is refused with 400
"message is too long" and never shown, issue 9), and both the adapter that cuts texts
(``bot/telegram/fit.py``) and the agent lists that split into pages (``bot/agents/pages.py``) measure
with the same rule. sendMessage / editMessageText take "1-4096 characters after entities parsing",
captions "0-1024 characters after entities parsing" (https://core.telegram.org/bots/api#sendmessage,
#editmessagetext, #sendphoto); Telegram counts UTF-16 code units, never fewer than Python's characters.
"""

from __future__ import annotations

import html
import re

__all__ = ["CAPTION_LIMIT", "TEXT_LIMIT", "telegram_length", "utf16_units", "visible_text"]

TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024
_TAG = re.compile(r"<[^>]*>")


def utf16_units(text: str) -> int:
    """Telegram's unit of length: UTF-16 code units (an emoji outside the BMP counts two)."""
    return len(text.encode("utf-16-le")) // 2


def visible_text(text: str, parse_mode: str | None) -> str:
    """What the user reads: for HTML, the text after entity parsing (tags removed, entities decoded)."""
    if parse_mode and parse_mode.upper() == "HTML":
        return html.unescape(_TAG.sub("", text))
    return text


def telegram_length(text: str, parse_mode: str | None) -> int:
    """Length as Telegram counts it: after entity parsing, in UTF-16 code units."""
    return utf16_units(visible_text(text, parse_mode))
