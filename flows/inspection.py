"""What did the user paste? A key to verify, a masked key, an org id, someone else's secret ...

Why offline and first: most wrong pastes can be explained without a network call, and some must never
reach OpenAI at all (admin keys, other providers' keys, bot tokens). The result carries the key only as a
:class:`~flows.secret.SecretKey`, so printing it shows a mask. Follows
``shared/reference/openai-keys.md`` section 8: normalise, classify offline, and treat formats as hints
(a plausible ``sk-`` string of an unknown shape is still verified, with a warning).

Normalising is mostly free: tokens are runs of key characters (see :mod:`flows.secret_shapes`), so
quotes, backticks, code fences, ``${…}``, ``Bearer``, ``OPENAI_API_KEY=`` and trailing dots fall away.
Two steps remain: zero-width characters and combining marks on ASCII characters are removed, and a key
wrapped onto several lines is rejoined.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum

from flows.secret import SecretKey
from flows.secret_shapes import (
    MIN_KEY_BODY,
    SECRET_PREFIXES,
    TokenKind,
    TokenMatch,
    find_tokens,
    is_complete_openai_key,
    might_be_key_file,
)
from flows.secret_shapes import might_carry_secret as shapes_might_carry_secret

__all__ = [
    "VERIFIABLE_KINDS",
    "PastedKind",
    "PastedText",
    "inspect_pasted_text",
    "might_be_key_file",  # re-exported: the runtime's secret guard imports both checks from here
    "might_carry_secret",
    "normalise_pasted_text",
]


class PastedKind(StrEnum):
    """What a pasted message is, as a whole."""

    PROJECT = "project"
    SERVICE_ACCOUNT = "service_account"
    LEGACY_USER = "legacy_user"
    UNSCOPED = "unscoped"
    ADMIN = "admin"
    MASKED = "masked"
    INCOMPLETE = "incomplete"
    ORGANIZATION_ID = "organization_id"
    PROJECT_ID = "project_id"
    OTHER_PROVIDER = "other_provider"
    TELEGRAM_BOT_TOKEN = "telegram_bot_token"
    SESSION_TOKEN = "session_token"
    SEVERAL_KEYS = "several_keys"
    NOT_A_KEY = "not_a_key"


VERIFIABLE_KINDS = frozenset(
    {PastedKind.PROJECT, PastedKind.SERVICE_ACCOUNT, PastedKind.LEGACY_USER, PastedKind.UNSCOPED}
)


@dataclass(frozen=True, slots=True)
class PastedText:
    """The verdict on one pasted message. Never holds the raw text; the key prints as a mask."""

    kind: PastedKind
    key: SecretKey | None = None  # set exactly when should_verify
    provider: str | None = None  # "OpenAI", "Anthropic", "Telegram", "ChatGPT" ... when known
    looks_secret: bool = False  # something in the text is, or might be, a live secret
    should_verify: bool = False
    shape_warning: str | None = None  # e.g. "this key is shorter than usual, so it may be cut off"


# --- one normaliser: what recognition, the guard and log redaction all read -----------------------------

# Unicode format characters (category Cf: zero-width space/joiners, U+2063 invisible separator, bidi
# embeddings and isolates U+202A-202E/U+2066-2069, word joiner, BOM, soft hyphen, tags) plus other
# characters that render as nothing (combining grapheme joiner, variation selectors, Hangul fillers).
# A test checks that every Cf code point of this Python's Unicode database is in the class.
_FORMAT_CHARS = (
    "\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b-\u200f\u202a-\u202e"
    "\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd\U00013430-\U0001343f"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f"
)
_INVISIBLE = _FORMAT_CHARS + "\u034f\u115f\u1160\u17b4\u17b5\u3164\uffa0\ufe00-\ufe0f\U000e0100-\U000e01ef"
_INVISIBLE_CHAR_RE = re.compile(f"[{_INVISIBLE}]")


def _split_at_the_bmp(ranges: list[tuple[int, int]]) -> tuple[str, str]:
    """A character class as two (in the BMP, beyond it): re matches a BMP-only class with a bitmap, a class
    with astral ranges by walking its ranges one by one (ten times slower on every character of a text)."""

    def spell(wanted: list[tuple[int, int]]) -> str:
        return "".join(chr(a) if a == b else f"{chr(a)}-{chr(b)}" for a, b in wanted)

    return spell([r for r in ranges if r[1] < 0x10000]), spell([r for r in ranges if r[0] >= 0x10000])


def _class_ranges(spelled: str) -> list[tuple[int, int]]:
    """The (first, last) code points of a character class spelled as characters and ``a-b`` ranges."""
    found = re.findall("(.)-(.)|(.)", spelled, re.DOTALL)
    return [(ord(a), ord(b)) if a else (ord(c), ord(c)) for a, b, c in found]


def _combining_marks() -> list[tuple[int, int]]:
    """Every combining mark (categories Mn, Mc, Me) not already invisible above, as ranges.

    Built from this Python's Unicode database (marks live in planes 0, 1 and 14; a test checks them all).
    """
    invisible = re.compile(f"[{_INVISIBLE}]")
    ranges: list[tuple[int, int]] = []
    for code in (*range(0x0300, 0x20000), *range(0xE0100, 0xE01F0)):
        char = chr(code)
        if unicodedata.category(char)[0] == "M" and invisible.match(char) is None:
            if ranges and ranges[-1][1] == code - 1:
                ranges[-1] = (ranges[-1][0], code)
            else:
                ranges.append((code, code))
    return ranges


_BMP_MARKS, _ASTRAL_MARKS = _split_at_the_bmp(_combining_marks())
_BMP_INVISIBLE, _ASTRAL_INVISIBLE = _split_at_the_bmp(_class_ranges(_INVISIBLE))
_MARK_RE = re.compile(f"[{_BMP_MARKS}]|[{_ASTRAL_MARKS}]")
_BLANK_RE = re.compile("[\u2800\u3000\u00a0\u1680\u2000-\u200a\u202f\u205f]")  # NFKC leaves U+2800 alone
_DASHES = "\u2010\u2011\u2012\u2013\u2014\u2015\u2043\u2212\ufe58\ufe63\uff0d"
# a run that starts like an sk- key, with lookalike dashes in it: those become "-" (keys hold only "-")
_SK_RUN_WITH_DASHES_RE = re.compile(f"(?<![A-Za-z0-9])sk[{_DASHES}][A-Za-z0-9_{_DASHES}-]*|"
                                    f"(?<![A-Za-z0-9])sk-[A-Za-z0-9_-]*[{_DASHES}][A-Za-z0-9_{_DASHES}-]*")
_DASH_TABLE = str.maketrans(dict.fromkeys(_DASHES, "-"))
# escapes of invisible and blank characters and marks in logged reprs and JSON (``'sk-ab\\u2063cd'``)
_ESCAPE_RE = re.compile(  # only escapes of invisible and blank characters, breaks and marks: the rest stay
    r"\\(?:u(00a0|00ad|034f|061c|115f|1160|17b4|17b5|180e|200[0-9a-fA-F]|202[89a-fA-F]|205f|206[0-9a-fA-F]|2800"
    r"|3000|3164|fe0[0-9a-fA-F]|feff|ffa0|fff[9ab])|U(000e0[01][0-9a-fA-F]{2})|x(a0|ad)|([nrt])"
    r"|u([0-9a-fA-F]{4}))"  # any other: kept unless it is a combining mark (``\\u0336`` in JSON)
)
_ESCAPED_BREAKS = {"n": "\n", "r": "\r", "t": "\t"}


# Cyrillic and Greek letters that look like Latin ones. Folded only inside a run that mixes them with
# ASCII key characters ("ѕk-proj-Аb1…"): a word wholly in Cyrillic or Greek is left alone.
_CONFUSABLES = str.maketrans({
    "а": "a", "е": "e", "о": "o", "р": "p", "с": "c", "у": "y", "х": "x", "ѕ": "s", "і": "i", "ј": "j",
    "ԁ": "d", "һ": "h", "ӏ": "l", "к": "k", "А": "A", "В": "B", "Е": "E", "К": "K", "М": "M", "Н": "H",
    "О": "O", "Р": "P", "С": "C", "Т": "T", "Х": "X", "Ѕ": "S", "І": "I", "Ј": "J", "Ү": "Y",
    "ο": "o", "ν": "v", "ρ": "p", "υ": "u", "ι": "i", "κ": "k", "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z",
    "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M", "Ν": "N", "Ο": "O", "Ρ": "P", "Τ": "T", "Χ": "X", "Υ": "Y",
})
_CONFUSABLE_CHARS = "".join(chr(c) for c in _CONFUSABLES)
# Combining marks on an ASCII character, an invisible one or a lookalike: U+0336 struck through every
# character of a key, U+0332 underlining it, U+0301 accents, and the accents NFKD splits off "á". Marks on
# Devanagari, Arabic or any other letter (vowel signs, harakat) are that script's text and stay.
_MARK_BASES = f"\\x00-\\x7f{_BMP_INVISIBLE}{_CONFUSABLE_CHARS}"
_MARK_ON_ASCII_RE = re.compile(f"([{_MARK_BASES}])[{_BMP_MARKS}]+")
_ASTRAL_RE = re.compile("[\U00010000-\U0010ffff]")
_ANY_MARK_ON_ASCII_RE = re.compile(f"([{_MARK_BASES}]|[{_ASTRAL_INVISIBLE}])(?:[{_BMP_MARKS}]|[{_ASTRAL_MARKS}])+")
_CONFUSABLE_CHAR_RE = re.compile(f"[{_CONFUSABLE_CHARS}]")
_MIXED_RUN_RE = re.compile(f"[A-Za-z0-9_{_CONFUSABLE_CHARS}{_INVISIBLE}-]+")
SOFT_SEPARATOR = "\x1f"  # where invisible characters stood between key characters (whitespace to re)
_SOFT_SEPARATOR_RE = re.compile(f"(?<=[A-Za-z0-9_-])[{_INVISIBLE}]+(?=[A-Za-z0-9_-])")
_ASCII_KEY_CHAR_RE = re.compile("[A-Za-z0-9]")


def _fold_lookalikes(run: re.Match[str]) -> str:
    text = run.group()
    if text.isascii() or _ASCII_KEY_CHAR_RE.search(text) is None:
        return text
    return text.translate(_CONFUSABLES)


def _unescape_invisible(match: re.Match[str]) -> str:
    if match.group(4):
        return _ESCAPED_BREAKS[match.group(4)]
    if match.group(5):
        mark = chr(int(match.group(5), 16))
        return mark if _MARK_RE.match(mark) else match.group()
    char = chr(int(match.group(1) or match.group(2) or match.group(3), 16))
    if _INVISIBLE_CHAR_RE.match(char):
        return char  # read as the character itself: a soft separator (see _visible_ascii_forms)
    return " " if char.isspace() or _BLANK_RE.match(char) else match.group()


def _without_marks_on_ascii(text: str) -> str:
    """NFKC, less the combining marks on ASCII characters (and on invisible ones and lookalikes).

    NFKD splits accents off their letters ("á" is "a" + U+0301) so both spellings lose them; NFC then puts
    every other mark back on its letter (NFC of NFKD is NFKC). Text with no mark on an ASCII character
    (Hindi, Arabic, English) takes NFKC's own quick path instead: the guard reads every message.
    """
    decomposed = unicodedata.normalize("NFKD", text)
    pattern = _ANY_MARK_ON_ASCII_RE if _ASTRAL_RE.search(decomposed) is not None else _MARK_ON_ASCII_RE
    if pattern.search(decomposed) is None:
        return unicodedata.normalize("NFKC", text)
    return unicodedata.normalize("NFC", pattern.sub(r"\1", decomposed))


def _visible_ascii_forms(text: str) -> str:
    """Compatibility forms folded (NFKC: fullwidth ``ｓｋ－``, NBSP, math letters), blanks made spaces,
    Cyrillic/Greek lookalikes inside Latin runs made Latin, lookalike dashes inside ``sk-`` runs made ``-``,
    and invisible characters made a *soft separator* between key characters (dropped elsewhere).

    Why a separator and not nothing: U+2063 inside a key must go, but "mykey\u200bsk-proj-…" or
    "…key\u2063thanks" must not glue a word to the key. The rejoining step decides, as for spaces.
    """
    text = _without_marks_on_ascii(text)
    text = _BLANK_RE.sub(" ", text)
    if _CONFUSABLE_CHAR_RE.search(text) is not None:  # most text has none: skip the per-run pass
        text = _MIXED_RUN_RE.sub(_fold_lookalikes, text)
    if _INVISIBLE_CHAR_RE.search(text) is not None:
        text = _INVISIBLE_CHAR_RE.sub("", _SOFT_SEPARATOR_RE.sub(SOFT_SEPARATOR, text))
    if any(dash in text for dash in _DASHES):
        text = _SK_RUN_WITH_DASHES_RE.sub(lambda m: m.group().translate(_DASH_TABLE), text)
    return text


# --- rejoining a key split by spaces or line breaks ------------------------------------------------------

_KEY_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_LEADING_RUN_RE = re.compile(r"[A-Za-z0-9_-]+")
_WORDS_RE = re.compile(r"(\S+)(\s*)")
_LINE_BREAKS = frozenset("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029")
_MAX_WRAPPED_KEY = 400  # longer than any key: stop joining (and keep hostile input linear)
_NEW_TOKEN_PREFIXES = (*SECRET_PREFIXES, "org-", "proj_")  # a piece starting so is a new token, not a tail
_WORD_RE = re.compile(r"[A-Za-z][a-z]{0,14}")  # "thanks", "Ok": a word typed after the key, not its tail
_MARKER = "T3Blbk" + "FJ"  # base64("OpenAI"), in every OpenAI key; split so scanners leave this file alone
_HALVES = frozenset({20, 58, 74})
_SPLIT_PREFIX_MIN = 3 + MIN_KEY_BODY  # a prefix itself spaced out ("s k - p r o j"): only as long as a key
_PROPER_PREFIXES = sorted({p[:n] for p in SECRET_PREFIXES for n in range(1, len(p))}, key=len, reverse=True)
_PROPER_PREFIX_SET = frozenset(_PROPER_PREFIXES)
# where a split key could start: a secret prefix (or the start of one) right before a space or break
# A word that could start a split key: its run starts with a prefix's first letter and ends at a space;
# the regex only finds candidates (a character class is fast to scan for), _anchors keeps the real ones.
_PREFIX_INITIALS = "".join(sorted({p[0] for p in SECRET_PREFIXES}))
# starts only where a run of key characters starts, possessive: linear on any text ("xsk-" * 12500)
_ANCHOR_CANDIDATE_RE = re.compile(f"(?<![A-Za-z0-9_-])[-_]*+[{_PREFIX_INITIALS}][A-Za-z0-9_-]*+(?=\\s)")


def _anchors(text: str) -> Iterator[re.Match[str]]:
    """Where a split key could start: a secret prefix, or the start of one, right before a space."""
    for candidate in _ANCHOR_CANDIDATE_RE.finditer(text):
        run = candidate.group().lstrip("-_")
        if run.startswith(SECRET_PREFIXES) or run in _PROPER_PREFIX_SET:
            yield candidate


def _trailing_run(word: str) -> str | None:
    """The key characters ending ``word``; None when there are more than any key has."""
    start = len(word)
    while start > 0 and word[start - 1] in _KEY_CHARS:
        start -= 1
        if len(word) - start > _MAX_WRAPPED_KEY:
            return None
    return word[start:]


def _breaks_paragraph(separator: str) -> bool:
    """A blank line between two pieces: a new paragraph, never the inside of a key."""
    return sum(char in _LINE_BREAKS for char in separator.replace("\r\n", "\n")) > 1


def _looks_random(run: str) -> bool:
    """A piece a key could be cut into (digits, inner capitals, longer than a word), not a typed word."""
    return any(c.isdigit() for c in run) or any(c.isupper() for c in run[1:]) or len(run) > 15


class _Words:
    """The words (and the whitespace after each) of a text from an offset on, split only as far as read:
    an anchor looks at a few words after it, never at the whole text."""

    def __init__(self, text: str, start: int) -> None:
        self._found = _WORDS_RE.finditer(text, start)
        self._words: list[tuple[str, str, int]] = []

    def get(self, index: int) -> tuple[str, str, int] | None:
        """(word, whitespace after it, end offset of the word), or None past the last word."""
        while len(self._words) <= index:
            match = next(self._found, None)
            if match is None:
                return None
            self._words.append((match.group(1), match.group(2), match.end(1)))
        return self._words[index]


def _following_runs(words: _Words, i: int, anchor_length: int) -> list[tuple[str, bool, str]]:
    """(run, whole word, separator before it) for the words after ``i`` that could continue a key."""
    runs: list[tuple[str, bool, str]] = []
    total = anchor_length
    j = i
    while (current := words.get(j + 1)) is not None:
        j += 1
        separator = words.get(j - 1)[1]  # type: ignore[index]  # read already
        head = _LEADING_RUN_RE.match(current[0])
        if head is None or _breaks_paragraph(separator) or total > _MAX_WRAPPED_KEY:
            break
        run = head.group()
        if run.lstrip("-_").startswith(_NEW_TOKEN_PREFIXES):
            break
        runs.append((run, run == current[0], separator))
        total += len(run)
        if run != current[0]:  # trailing punctuation (a quote, a dot) ends the key
            break
    return runs


def _complete_count(piece: str, runs: list[tuple[str, bool, str]]) -> int:
    """How many pieces make a documented OpenAI key shape (the most that do), or 0."""
    best, joined = 0, piece
    for n, (run, _, _) in enumerate(runs, 1):
        joined += run
        # every documented shape is half + marker + half with half 20, 58 or 74: test only those ends
        at = joined.find(_MARKER)
        if at >= 0 and len(joined) - at - len(_MARKER) in _HALVES and is_complete_openai_key(joined):
            best = n
    return best


def _uniform_count(anchor: str, runs: list[tuple[str, bool, str]]) -> int:
    """Pieces of one size (a space or break every N characters), the last one shorter or equal."""
    if not runs or len(anchor) > (size := len(runs[0][0])):
        return 0
    n = 0
    for run, whole, _ in runs:
        if len(run) == size:
            n += 1
            if whole:
                continue
        elif not _WORD_RE.fullmatch(run):
            n += 1
        break
    return n


def _heuristic_count(runs: list[tuple[str, bool, str]]) -> int:
    """Pieces that are not typed words: after a line break any non-word, after a space a random piece."""
    n = 0
    for run, whole, separator in runs:
        if separator == SOFT_SEPARATOR:  # an invisible character: inside a key unless a word follows
            if _WORD_RE.fullmatch(run) and len(run) >= 4:
                break
        elif _WORD_RE.fullmatch(run) or not (any(c in _LINE_BREAKS for c in separator) or _looks_random(run)):
            break
        n += 1
        if not whole:
            break
    return n


def _spells_a_prefix(piece: str, words: _Words, i: int) -> bool:
    """Whether ``piece`` and the next few words spell out a secret prefix ("s k - p r o j")."""
    joined = piece
    for j in range(i + 1, i + 12):
        if (entry := words.get(j)) is None:
            break
        head = _LEADING_RUN_RE.match(entry[0])
        if head is None:
            break
        joined += head.group()
        if joined.startswith(SECRET_PREFIXES):
            return True
        if joined not in _PROPER_PREFIX_SET:
            return False  # no prefix starts so: stop reading at once
    return False


def _glue_count(words: _Words, i: int) -> int:
    """How many of the following words are the rest of a key that starts at the end of word ``i``."""
    current, after = words.get(i), words.get(i + 1)
    if current is None or after is None:
        return 0
    word, following = current[0], after[0]
    if word[-1] not in _KEY_CHARS or following[0] not in _KEY_CHARS \
            or following.lstrip("-_").startswith(_NEW_TOKEN_PREFIXES):
        return 0  # cheap checks first: most words end a sentence or start a new token
    tail = _trailing_run(word)
    if not tail:
        return 0
    piece = tail.lstrip("-_")
    spaced_prefix = not piece.startswith(SECRET_PREFIXES)
    if spaced_prefix and piece not in _PROPER_PREFIX_SET:
        return 0
    if not spaced_prefix and len(piece) >= 51 and is_complete_openai_key(piece):
        return 0
    if spaced_prefix and not _spells_a_prefix(piece, words, i):
        return 0
    runs = _following_runs(words, i, len(tail))
    if not runs:
        return 0
    if complete := _complete_count(piece, runs):
        return complete
    n = max(_uniform_count(tail, runs), 0 if spaced_prefix else _heuristic_count(runs))
    if spaced_prefix:
        joined = piece + "".join(run for run, _, _ in runs[:n])
        if n < 2 or len(joined) < _SPLIT_PREFIX_MIN or not joined.startswith(SECRET_PREFIXES):
            return 0
    return n


def _rejoin_split_keys(text: str) -> str:
    """Undo spaces and line breaks inside a key (mobile clients and PDFs wrap long keys, some people space
    them out every few characters); every other separator stays.

    Only words the anchor pattern finds (a secret prefix, or the start of one, before a space) are looked
    at, with the words in a bounded window after them: linear in the text, whatever it holds.
    """
    out: list[str] = []
    done = 0  # text before this offset is already in ``out``
    for anchor in _anchors(text):
        if anchor.start() < done:
            continue  # inside a key already rejoined
        word_start = anchor.start()
        while word_start > done and not text[word_start - 1].isspace():  # the whole word the key ends
            word_start -= 1
        words = _Words(text, word_start)
        glued = _glue_count(words, 0)
        if glued == 0:
            continue
        pieces = [words.get(n) for n in range(glued + 1)]
        out.append(text[done:word_start])
        out.extend(piece[0] for piece in pieces if piece is not None)
        done = pieces[-1][2]  # type: ignore[index]  # read already
    if not out:
        return text
    out.append(text[done:])
    return "".join(out)


def normalise_pasted_text(text: str, *, escaped: bool = False) -> str:
    """The text secrets are recognised in, for the paste step, the guard and log redaction alike.

    Invisible and format characters (category Cf) are removed, and so are combining marks (categories Mn,
    Mc, Me) on ASCII characters (U+0336 struck through a key, accents); compatibility forms are folded
    (NFKC), and a key split by spaces or line breaks is rejoined. ``escaped``: the text is a log line, so ``\\u2063``,
    ``\\xa0``, ``\\n`` and combining-mark escapes (reprs, JSON) count as the characters they stand for.
    """
    if escaped and "\\" in text:
        text = _ESCAPE_RE.sub(_unescape_invisible, text)
    if not text.isascii():
        text = _visible_ascii_forms(text)
    if next(_anchors(text), None) is not None:  # most text: no key could start before a space
        text = _rejoin_split_keys(text)
    return text.replace(SOFT_SEPARATOR, " ") if SOFT_SEPARATOR in text else text


def might_carry_secret(text: str) -> bool:
    """The guard's check: True if ``text`` may hold a secret, as is or once normalised.

    Over-approximates :func:`inspect_pasted_text` (which reads the normalised text) and log redaction.
    """
    if shapes_might_carry_secret(text):
        return True
    clean = normalise_pasted_text(text)
    return clean != text and shapes_might_carry_secret(clean)


def _verdict(text: str, token: TokenMatch) -> PastedText:
    kind = PastedKind(token.kind.value)
    if kind in VERIFIABLE_KINDS:
        key = SecretKey(text[token.start : token.end])
        return PastedText(kind, key, token.provider, True, True, token.shape_warning)
    return PastedText(kind, None, token.provider, token.kind.is_secret)


def inspect_pasted_text(text: str) -> PastedText:
    """Classify a pasted message offline. Never raises; never keeps the text."""
    clean = normalise_pasted_text(text)
    tokens = find_tokens(clean)
    keys: dict[str, TokenMatch] = {}
    for token in tokens:
        if token.kind.is_key:
            keys.setdefault(clean[token.start : token.end], token)  # the same key twice is one key
    looks_secret = any(token.kind.is_secret for token in tokens)
    if len(keys) > 1:
        return PastedText(PastedKind.SEVERAL_KEYS, looks_secret=True)
    if keys:
        return _verdict(clean, next(iter(keys.values())))
    for kind in (TokenKind.MASKED, TokenKind.INCOMPLETE, TokenKind.ORGANIZATION_ID, TokenKind.PROJECT_ID):
        found = next((t for t in tokens if t.kind is kind), None)
        if found is not None:
            return PastedText(PastedKind(kind.value), None, found.provider, looks_secret)
    return PastedText(PastedKind.NOT_A_KEY, looks_secret=looks_secret)
