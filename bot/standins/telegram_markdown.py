"""MarkdownV2 and legacy Markdown parsing with the Bot API's error wording.

Why: an unescaped "." or "-" in MarkdownV2 is the most common formatting bug a bot ships; the real
server answers 400 "can't parse entities: Character '.' is reserved and must be escaped with the
preceding '\\'". Followed: https://core.telegram.org/bots/api#markdownv2-style and
#markdown-style; wording from TDLib ``parse_markdown_v2`` / ``parse_markdown``
(td/telegram/MessageEntity.cpp). Reduced on purpose: blockquotes (``>``) and custom emoji are
accepted without producing entities.
"""

from __future__ import annotations

from typing import Any

__all__ = ["MarkupError", "parse_markdown", "parse_markdown_v2"]

_RESERVED = frozenset("_*[]()~`>#+-=|{}.!")
_SIMPLE = {"*": "bold", "_": "italic", "__": "underline", "~": "strikethrough", "||": "spoiler"}
_TYPE_NAMES = {"bold": "Bold", "italic": "Italic", "underline": "Underline", "strikethrough": "Strikethrough",
               "spoiler": "Spoiler", "text_link": "TextUrl"}


class MarkupError(ValueError):
    """Raised with the text the server puts after "can't parse entities: "."""


def _u16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _byte(text: str, index: int) -> int:
    return len(text[:index].encode("utf-8"))


class _Builder:
    """Accumulates plain text and its UTF-16 length."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.utf16 = 0
        self.entities: list[dict[str, Any]] = []

    def emit(self, text: str) -> None:
        self.parts.append(text)
        self.utf16 += _u16(text)

    def add(self, kind: str, start: int, **extra: Any) -> None:
        if self.utf16 > start:
            self.entities.append({"offset": start, "length": self.utf16 - start, "type": kind, **extra})

    def result(self) -> tuple[str, list[dict[str, Any]]]:
        self.entities.sort(key=lambda e: (e["offset"], -e["length"]))
        return "".join(self.parts), self.entities


def _read_code(source: str, i: int, fence: str, what: str, begin: int, out: _Builder) -> int:
    """Copy code/pre content up to the closing fence (only ``\\`` escapes apply inside)."""
    n = len(source)
    while i < n and not source.startswith(fence, i):
        if source[i] == "\\" and i + 1 < n and source[i + 1] in "`\\":
            i += 1
        out.emit(source[i])
        i += 1
    if i >= n:
        raise MarkupError(f"Can't find end of {what} entity at byte offset {begin}")
    return i + len(fence)


def _read_url(source: str, i: int) -> tuple[str, int]:
    """Read ``(url)`` after a link's ``]``; ``)`` and ``\\`` may be escaped inside."""
    url: list[str] = []
    n = len(source)
    i += 1
    while i < n and source[i] != ")":
        if source[i] == "\\" and i + 1 < n and source[i + 1] in ")\\":
            i += 1
        url.append(source[i])
        i += 1
    if i >= n:
        raise MarkupError(f"Can't find end of a URL at byte offset {_byte(source, i)}")
    return "".join(url), i + 1


def parse_markdown_v2(source: str) -> tuple[str, list[dict[str, Any]]]:
    """Return (plain text, entities) for MarkdownV2 or raise ``MarkupError``."""
    out = _Builder()
    stack: list[tuple[str, int, int]] = []  # (marker, start utf16, byte offset)
    i, n = 0, len(source)
    while i < n:
        char = source[i]
        if char == "\\" and i + 1 < n and 0 < ord(source[i + 1]) <= 126:
            out.emit(source[i + 1])
            i += 2
            continue
        if char not in _RESERVED:
            out.emit(char)
            i += 1
            continue
        begin = _byte(source, i)
        marker = "__" if source.startswith("__", i) else "||" if source.startswith("||", i) else char
        if stack and stack[-1][0] == marker and marker in _SIMPLE:
            _, start, _ = stack.pop()
            out.add(_SIMPLE[marker], start)
            i += len(marker)
        elif stack and stack[-1][0] == "[" and char == "]":
            _, start, _ = stack.pop()
            i += 1
            if i < n and source[i] == "(":
                url, i = _read_url(source, i)
                out.add("text_link", start, url=url)
        elif marker in _SIMPLE:
            stack.append((marker, out.utf16, begin))
            i += len(marker)
        elif char == "[":
            stack.append(("[", out.utf16, begin))
            i += 1
        elif char == "`":
            start = out.utf16
            if source.startswith("```", i):
                i += 3
                language_end = source.find("\n", i)
                language = source[i:language_end].strip() if language_end != -1 else ""
                if language_end != -1 and " " not in language:
                    i = language_end + 1
                else:
                    language = ""
                i = _read_code(source, i, "```", "Pre", begin, out)
                out.add("pre", start, **({"language": language} if language else {}))
            else:
                i = _read_code(source, i + 1, "`", "Code", begin, out)
                out.add("code", start)
        elif char == ">" and (i == 0 or source[i - 1] == "\n"):
            i += 1  # blockquote marker: accepted, no entity (see module docstring)
        elif char == "!" and i + 1 < n and source[i + 1] == "[":
            i += 1  # custom emoji prefix
        else:
            raise MarkupError(f"Character '{char}' is reserved and must be escaped with the preceding '\\'")
    if stack:
        marker, _, begin = stack[-1]
        kind = "text_link" if marker == "[" else _SIMPLE[marker]
        raise MarkupError(f"Can't find end of {_TYPE_NAMES[kind]} entity at byte offset {begin}")
    return out.result()


def parse_markdown(source: str) -> tuple[str, list[dict[str, Any]]]:
    """Legacy Markdown: ``*bold*``, ``_italic_``, ``code``, ```pre```, ``[text](url)``; no nesting."""
    out = _Builder()
    ends = {"*": "*", "_": "_", "`": "`", "[": "]"}
    kinds = {"*": "bold", "_": "italic", "`": "code"}
    i, n = 0, len(source)
    while i < n:
        char = source[i]
        if char == "\\" and i + 1 < n and source[i + 1] in "_*`[":
            out.emit(source[i + 1])
            i += 2
            continue
        if char not in ends:
            out.emit(char)
            i += 1
            continue
        begin = _byte(source, i)
        start = out.utf16
        fence = "```" if source.startswith("```", i) else ends[char]
        i += len(fence) if fence == "```" else 1
        close = source.find(fence, i)
        if close == -1:
            raise MarkupError(f"Can't find end of the entity starting at byte offset {begin}")
        out.emit(source[i:close])
        i = close + len(fence)
        if fence == "```":
            out.add("pre", start)
        elif char == "[":
            if i < n and source[i] == "(":
                url, i = _read_url(source, i)
                out.add("text_link", start, url=url)
        else:
            out.add(kinds[char], start)
    return out.result()
