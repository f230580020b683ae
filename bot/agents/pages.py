"""Agent lists (/links, /status) in pages that each fit one Telegram message, with ◀️/▶️ buttons.

Why pages and not a trimmed tail: trimming hid links and customers from support agents (issue 9).
Why the button carries the list, the page and the lookup (and no state is kept on our side): any replica
can answer a press, and a press on an old message shows what that page holds now, never an error.
Callback data ``ap:<list>:<page>[:<key>]`` has no ``|``, so it can never parse as a guide button
(``flows.view.parse_callback_data``); the agent desk's handler matches it first.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot.core.chat_text import TEXT_LIMIT, telegram_length
from flows.content import Content

__all__ = ["LINKS", "PAGE_PATTERN", "STATUS", "PageRequest", "page_buttons", "page_callback", "parse_page_callback",
           "shortened_key", "split_pages"]

PREFIX = "ap"
PAGE_PATTERN = rf"^{PREFIX}:"
LINKS, STATUS = "l", "s"
MAX_CALLBACK_BYTES = 64  # Bot API limit for callback_data
MAX_PAGE = 99_999
HASH_MARK = "*"  # never in a workspace id, username or link number: marks a shortened key
HASH_CHARS = 8


@dataclass(frozen=True, slots=True)
class PageRequest:
    kind: str  # LINKS or STATUS
    page: int  # 1-based, as pressed or typed; clamped to the pages there are now
    key: str = ""  # STATUS: the lookup (workspace id, @username, #link number), maybe shortened


def split_pages(head: str, entries: Sequence[str], marker: Callable[[int, int], str], *, joiner: str = "\n",
                limit: int = TEXT_LIMIT) -> list[str]:
    """Every entry once, in order, as many whole entries a page as fit ``limit`` (as Telegram counts).

    A page is ``head``, the marker ("page X of Y", only when there are several pages), then its entries.
    While packing, the marker is measured at its widest (page and total = the number of entries), so the
    real one never makes a page longer. An entry too long even alone still gets a page of its own
    (``bot/telegram/fit.py`` would otherwise cut that one message rather than Telegram refusing it).
    """
    def render(chunk: Sequence[str], page: int, total: int) -> str:
        top = head if total == 1 else "\n".join(part for part in (head, marker(page, total)) if part)
        return joiner.join(part for part in (top, *chunk) if part)

    def fits(text: str) -> bool:
        return telegram_length(text, "HTML") <= limit

    whole = render(entries, 1, 1)
    if fits(whole):
        return [whole]
    widest = len(entries)
    chunks: list[list[str]] = [[]]
    for entry in entries:
        if chunks[-1] and not fits(render([*chunks[-1], entry], widest, widest)):
            chunks.append([])
        chunks[-1].append(entry)
    return [render(chunk, number, len(chunks)) for number, chunk in enumerate(chunks, start=1)]


def page_callback(kind: str, page: int, key: str = "") -> str:
    """``ap:<kind>:<page>[:<key>]`` within 64 bytes; a key too long keeps its start plus a hash of the whole."""
    start = f"{PREFIX}:{kind}:{page}"
    data = f"{start}:{key}" if key else start
    if len(data.encode()) <= MAX_CALLBACK_BYTES:
        return data
    digest = hashlib.sha256(key.encode()).hexdigest()[:HASH_CHARS]
    kept = key
    while kept and len(f"{start}:{kept}{HASH_MARK}{digest}".encode()) > MAX_CALLBACK_BYTES:
        kept = kept[:-1]
    return f"{start}:{kept}{HASH_MARK}{digest}"


def shortened_key(key: str) -> tuple[str, str] | None:
    """(the kept start, the hash) of a shortened key; None for a whole one."""
    kept, mark, digest = key.rpartition(HASH_MARK)
    if not mark or len(digest) != HASH_CHARS:
        return None
    return kept, digest


def is_key_of(candidate: str, digest: str) -> bool:
    return hashlib.sha256(candidate.encode()).hexdigest()[:HASH_CHARS] == digest


def parse_page_callback(data: str | None) -> PageRequest | None:
    """The request a page button carries; None for anything else (forged, oversized, not ours)."""
    if not data or len(data.encode()) > MAX_CALLBACK_BYTES:
        return None
    parts = data.split(":", 3)
    if len(parts) < 3 or parts[0] != PREFIX or parts[1] not in (LINKS, STATUS):
        return None
    page = parts[2]
    if not page.isascii() or not page.isdigit() or not 1 <= int(page) <= MAX_PAGE:
        return None
    key = parts[3] if len(parts) == 4 else ""
    if (parts[1] == STATUS) != bool(key):
        return None
    return PageRequest(parts[1], int(page), key)


def page_buttons(content: Content, kind: str, page: int, total: int, key: str = "") -> InlineKeyboardMarkup | None:
    """◀️ Previous / Next ▶️ where there is a page to go to; nothing for a single page."""
    row = []
    if page > 1:
        row.append(InlineKeyboardButton(content.button("page_previous"),
                                        callback_data=page_callback(kind, page - 1, key)))
    if page < total:
        row.append(InlineKeyboardButton(content.button("page_next"), callback_data=page_callback(kind, page + 1, key)))
    return InlineKeyboardMarkup([row]) if row else None
