"""The one place that owns Telegram's length limits: every outgoing text and caption is fitted here.

Why: a message over the limit is refused with 400 "message is too long" and never shown, which left
users stuck until /restart (issue 9). The limits and the way Telegram measures
(after entity parsing, in UTF-16 code units) are the chat port's contract, in :mod:`bot.core.chat_text`.

How: a text that fits goes out unchanged. A longer HTML text is cut at whole blocks (paragraphs, then
lines) so every tag stays balanced, with "… N more not shown" at the end. If not even that works, the
text goes out as plain text, cut to the limit: better a plain message than none. That is the last
resort: agent lists (/links, /status) never reach it, they are split into pages that fit by
``bot/agents/pages.py`` with the same ``telegram_length``.
"""

from __future__ import annotations

import html
import re
from typing import Any

from bot.core.chat_text import CAPTION_LIMIT, TEXT_LIMIT, telegram_length, utf16_units, visible_text
from flows.content import load_content

__all__ = ["fit_html", "fit_request"]

_OPEN = re.compile(r"<([a-zA-Z][a-zA-Z0-9-]*)(?:\s[^>]*)?>")
_CLOSE = re.compile(r"</([a-zA-Z][a-zA-Z0-9-]*)\s*>")
_TEXT_METHODS = frozenset({"sendMessage", "editMessageText"})


def _balanced(text: str) -> bool:
    stack: list[str] = []
    for match in re.finditer(r"</?[a-zA-Z][^>]*>", text):
        tag = match.group(0)
        closing = _CLOSE.fullmatch(tag)
        if closing:
            if not stack or stack.pop() != closing.group(1).lower():
                return False
        elif (opening := _OPEN.fullmatch(tag)) is not None:
            stack.append(opening.group(1).lower())
    return not stack


def _more(count: int) -> str:
    return html.escape(load_content("en").meta("trimmed").format(count=count))


def _cut(pieces: list[str], joiner: str, limit: int) -> str | None:
    """The longest balanced prefix of whole pieces, with the count of pieces left out."""
    for keep in range(len(pieces) - 1, 0, -1):
        candidate = joiner.join(pieces[:keep]) + "\n\n<i>" + _more(len(pieces) - keep) + "</i>"
        if telegram_length(candidate, "HTML") <= limit and _balanced(candidate):
            return candidate
    return None


def _plain(text: str, parse_mode: str | None, limit: int) -> str:
    plain = visible_text(text, parse_mode)
    out: list[str] = []
    used = 0
    for char in plain:
        size = utf16_units(char)
        if used + size > limit - 1:
            break
        out.append(char)
        used += size
    return "".join(out) + "…"


def fit_html(text: str, limit: int = TEXT_LIMIT, parse_mode: str | None = "HTML") -> tuple[str, str | None]:
    """``text`` fitted to ``limit``, and the parse mode to send it with (None when it became plain)."""
    if telegram_length(text, parse_mode) <= limit:
        return text, parse_mode
    if parse_mode and parse_mode.upper() == "HTML":
        for joiner in ("\n\n", "\n"):
            pieces = text.split(joiner)
            if len(pieces) > 1 and (cut := _cut(pieces, joiner, limit)) is not None:
                return cut, parse_mode
    return _plain(text, parse_mode, limit), None


def fit_request(endpoint: str, data: dict[str, Any]) -> None:
    """Fit ``text`` (send/edit) or ``caption`` of one Bot API request in place."""
    for name, limit in (("text", TEXT_LIMIT), ("caption", CAPTION_LIMIT)):
        value = data.get(name)
        if not isinstance(value, str) or (name == "text" and endpoint not in _TEXT_METHODS):
            continue
        mode = data.get("parse_mode")
        fitted, new_mode = fit_html(value, limit, mode if isinstance(mode, str) else None)
        if fitted is not value:
            data[name] = fitted
            if new_mode is None:
                data.pop("parse_mode", None)
                data.pop(f"{name}_entities", None)
