"""Message text as the Bot API server prepares it: parse_mode parsing, trimming, limits, auto-entities.

Why this matters to a stand-in: PTB's ``CommandHandler`` only fires when a message carries a
``bot_command`` entity at offset 0, and a bot that emits broken HTML must get the same 400 the real
server gives ("can't parse entities: ..."), or the bug ships.

Followed: https://core.telegram.org/bots/api#formatting-options (supported HTML tags, the four named
entities ``&lt; &gt; &amp; &quot;``, numeric entities, offsets in UTF-16 code units) and
https://core.telegram.org/bots/api#sendmessage ("1-4096 characters after entities parsing"). Error
wording and parsing rules follow TDLib's ``parse_html`` / ``decode_html_entity``
(td/telegram/MessageEntity.cpp): byte offsets, "Unsupported start tag", "Unmatched end tag",
"Can't find end tag corresponding to start tag".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from bot.standins.telegram_markdown import MarkupError, parse_markdown, parse_markdown_v2
from bot.standins.telegram_request import bad_request

__all__ = [
    "MAX_CAPTION_LENGTH",
    "MAX_TEXT_LENGTH",
    "MarkupError",
    "auto_entities",
    "parse_html",
    "prepare_text",
    "strip_markup",
    "utf16_len",
]

MAX_TEXT_LENGTH = 4096
MAX_CAPTION_LENGTH = 1024

_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_TAG_TYPES = {
    "b": "bold", "strong": "bold", "i": "italic", "em": "italic", "u": "underline", "ins": "underline",
    "s": "strikethrough", "strike": "strikethrough", "del": "strikethrough", "tg-spoiler": "spoiler",
    "span": "spoiler", "a": "text_link", "code": "code", "pre": "pre", "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
}
# find_bot_commands / find_urls in TDLib, reduced to what a private-chat bot meets.
_COMMAND = re.compile(r"(?<![\w/.])/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,32})?(?![\w/])")
_URL = re.compile(r"https?://[^\s<>\"]+", re.IGNORECASE)


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, the unit of every entity offset."""
    return len(text.encode("utf-16-le")) // 2


def _byte_offset(text: str, index: int) -> int:
    return len(text[:index].encode("utf-8"))


def _decode_entity(text: str, pos: int) -> tuple[str, int] | None:
    """``decode_html_entity``: the four named ones and numeric ones; anything else stays literal."""
    end, n = pos + 1, len(text)
    if end < n and text[end] == "#":
        end += 1
        base, digits = 10, "0123456789"
        if end < n and text[end] == "x":
            end, base, digits = end + 1, 16, "0123456789abcdefABCDEF"
        start = end
        while end < n and text[end] in digits:
            end += 1
        value = int(text[start:end], base) if end > start else 0
        if value == 0 or value >= 0x10FFFF or 0xD800 <= value <= 0xDFFF or end - pos >= 10:
            return None
        char = chr(value)
    else:
        start = end
        while end < n and text[end].isascii() and text[end].isalpha():
            end += 1
        named = _NAMED.get(text[start:end])
        if named is None:
            return None
        char = named
    if end < n and text[end] == ";":
        end += 1
    return char, end


@dataclass
class _Open:
    tag: str
    start: int
    attrs: dict[str, str] = field(default_factory=dict)


def _close(opened: _Open, end: int, stack: list[_Open], entities: list[dict[str, Any]]) -> None:
    length = end - opened.start
    if length <= 0:
        return
    kind = _TAG_TYPES[opened.tag]
    entity: dict[str, Any] = {"offset": opened.start, "length": length, "type": kind}
    if opened.tag == "code" and stack and stack[-1].tag == "pre" and stack[-1].start == opened.start:
        language = opened.attrs.get("class", "")
        if language.startswith("language-"):
            stack[-1].attrs["language"] = language.removeprefix("language-")
            return
    if kind == "pre" and opened.attrs.get("language"):
        entity["language"] = opened.attrs["language"]
    elif kind == "text_link":
        url = opened.attrs.get("href", "")
        if not re.match(r"^(https?|tg|ton)://\S+|^[\w.-]+\.[a-z]{2,}\S*$", url, re.IGNORECASE):
            return  # TDLib drops links whose URL fails check_url
        entity["url"] = url
    elif kind == "blockquote" and "expandable" in opened.attrs:
        entity["type"] = "expandable_blockquote"
    elif kind == "custom_emoji":
        if not opened.attrs.get("emoji-id"):
            return
        entity["custom_emoji_id"] = opened.attrs["emoji-id"]
    entities.append(entity)


def _read_attrs(source: str, i: int, tag: str, begin: int) -> tuple[dict[str, str], int]:
    """Parse ``name=value`` pairs up to ``>``; returns the attributes and the index after ``>``."""
    attrs: dict[str, str] = {}
    n = len(source)
    while True:
        while i < n and source[i].isspace():
            i += 1
        if i >= n:
            raise MarkupError(f"Unclosed start tag at byte offset {begin}")
        if source[i] == ">":
            return attrs, i + 1
        start = i
        while i < n and not source[i].isspace() and source[i] not in "=>":
            i += 1
        name = source[start:i].lower()
        if not name:
            raise MarkupError(f'Empty attribute name in the tag "{tag}" at byte offset {begin}')
        while i < n and source[i].isspace():
            i += 1
        if i >= n:
            raise MarkupError(f"Unclosed start tag at byte offset {begin}")
        if source[i] != "=":
            attrs[name] = ""  # value-less attribute such as <blockquote expandable>
            continue
        i += 1
        while i < n and source[i].isspace():
            i += 1
        if i >= n:
            raise MarkupError(f"Unclosed start tag at byte offset {begin}")
        if source[i] in "'\"":
            quote, value = source[i], []
            i += 1
            while i < n and source[i] != quote:
                decoded = _decode_entity(source, i) if source[i] == "&" else None
                if decoded:
                    value.append(decoded[0])
                    i = decoded[1]
                else:
                    value.append(source[i])
                    i += 1
            if i >= n:
                raise MarkupError(f"Unclosed start tag at byte offset {begin}")
            attrs[name] = "".join(value)
            i += 1
        else:
            start = i
            while i < n and (source[i].isalnum() or source[i] in ".-"):
                i += 1
            attrs[name] = source[start:i].lower()
            if i < n and not source[i].isspace() and source[i] != ">":
                offset = _byte_offset(source, start)
                raise MarkupError(f"Unexpected end of name token at byte offset {offset}")


def parse_html(source: str) -> tuple[str, list[dict[str, Any]]]:
    """Return (plain text, entities) or raise ``MarkupError`` with TDLib's wording."""
    out: list[str] = []
    utf16 = 0
    stack: list[_Open] = []
    entities: list[dict[str, Any]] = []
    i, n = 0, len(source)
    while i < n:
        char = source[i]
        if char == "&":
            decoded = _decode_entity(source, i)
            if decoded:
                out.append(decoded[0])
                utf16 += utf16_len(decoded[0])
                i = decoded[1]
                continue
        if char != "<":
            out.append(char)
            utf16 += utf16_len(char)
            i += 1
            continue
        begin = _byte_offset(source, i)
        i += 1
        if i < n and source[i] == "/":
            start = i = i + 1
            while i < n and not source[i].isspace() and source[i] != ">":
                i += 1
            name = source[start:i].lower()
            while i < n and source[i].isspace():
                i += 1
            if i >= n or source[i] != ">":
                raise MarkupError(f"Unclosed end tag at byte offset {begin}")
            i += 1
            if not stack:
                raise MarkupError(f"Unexpected end tag at byte offset {begin}")
            opened = stack.pop()
            if name and name != opened.tag:
                raise MarkupError(f'Unmatched end tag at byte offset {begin}, expected "</{opened.tag}>", '
                                  f'found "</{name}>"')
            _close(opened, utf16, stack, entities)
            continue
        start = i
        while i < n and not source[i].isspace() and source[i] != ">":
            i += 1
        if i >= n:
            raise MarkupError(f"Unclosed start tag at byte offset {begin}")
        tag = source[start:i].lower()
        if tag not in _TAG_TYPES:
            raise MarkupError(f'Unsupported start tag "{tag}" at byte offset {begin}')
        attrs, i = _read_attrs(source, i, tag, begin)
        if tag == "span" and attrs.get("class") != "tg-spoiler":
            raise MarkupError(f'Tag "span" must have class "tg-spoiler" at byte offset {begin}')
        stack.append(_Open(tag, utf16, attrs))
    if stack:
        raise MarkupError(f'Can\'t find end tag corresponding to start tag "{stack[-1].tag}"')
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return "".join(out), entities


def strip_markup(text: str, parse_mode: str) -> str:
    """Plain text of ``text`` (used to match button labels and for display); falls back to raw."""
    try:
        return _parse(text, parse_mode, None)[0]
    except MarkupError:
        return text


def _parse(text: str, parse_mode: str, entities: Any) -> tuple[str, list[dict[str, Any]]]:
    mode = parse_mode.lower()
    if isinstance(entities, list):  # explicit entities win over parse_mode, as in the server
        return text, [dict(e) for e in entities if isinstance(e, dict)]
    if mode == "":
        return text, []
    if mode == "html":
        return parse_html(text)
    if mode == "markdownv2":
        return parse_markdown_v2(text)
    if mode == "markdown":
        return parse_markdown(text)
    raise bad_request("unsupported parse_mode")


def _trim(text: str, entities: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """Drop leading/trailing whitespace like the server, keeping entity offsets in place."""
    stripped_left = text.lstrip()
    shift = utf16_len(text) - utf16_len(stripped_left)
    result = stripped_left.rstrip()
    limit = utf16_len(result)
    kept: list[dict[str, Any]] = []
    for entity in entities:
        start = max(0, int(entity.get("offset", 0)) - shift)
        end = min(limit, int(entity.get("offset", 0)) + int(entity.get("length", 0)) - shift)
        if end > start:
            kept.append({**entity, "offset": start, "length": end - start})
    return result, kept


def auto_entities(text: str, explicit: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Entities the server detects by itself (bot commands, URLs) that don't overlap explicit ones."""
    found: list[dict[str, Any]] = []
    taken = [(e["offset"], e["offset"] + e["length"]) for e in explicit or []]
    for kind, pattern in (("bot_command", _COMMAND), ("url", _URL)):
        for match in pattern.finditer(text):
            value = match.group(0).rstrip(".,;:!?)'") if kind == "url" else match.group(0)
            offset = utf16_len(text[: match.start()])
            length = utf16_len(value)
            if any(offset < end and start < offset + length for start, end in taken):
                continue
            found.append({"offset": offset, "length": length, "type": kind})
            taken.append((offset, offset + length))
    return found


def prepare_text(
    text: str, parse_mode: str, entities: Any, *, caption: bool = False
) -> tuple[str, list[dict[str, Any]]]:
    """Parse, trim and check the length of a message text or caption; raise the server's 400s."""
    try:
        plain, found = _parse(text, parse_mode, entities)
    except MarkupError as error:
        raise bad_request(f"can't parse entities: {error}") from None
    plain, found = _trim(plain, found)
    if caption:
        if len(plain) > MAX_CAPTION_LENGTH:
            raise bad_request("message caption is too long")
    else:
        if not plain:
            raise bad_request("message text is empty")
        if len(plain) > MAX_TEXT_LENGTH:
            raise bad_request("message is too long")
    merged = found + auto_entities(plain, found)
    merged.sort(key=lambda e: (e["offset"], -e["length"]))
    return plain, merged
