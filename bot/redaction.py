"""Redacted logs: secrets are masked in every log record before any handler can format it.

Why three layers:

- A log-record factory renders each record's message (and exception text, and stack) and redacts it at
  creation, whatever logger made it: ``httpx`` (bot token in request URLs at INFO), ``telegram.ext``
  (whole updates, pasted keys included, at DEBUG), ``uvicorn``, our own code. Filters on a logger do not
  see records propagated from child loggers, so a filter on the root logger alone is not enough.
- A :class:`RedactingFilter` on the root logger and on every handler catches what the factory cannot:
  ``extra=`` attributes (set after the factory runs) and records built elsewhere (``makeLogRecord``).
- :class:`RedactingFormatter` wraps a formatter for handlers whose output includes more than the record's
  message (a JSON formatter dumping attributes), as a last line.

Masks: Telegram bot tokens become ``<bot-token>``; every key-shaped token known to
:mod:`flows.secret_shapes` (OpenAI keys of all families, other providers' keys, JWTs, ``sess-`` tokens,
long random-looking tokens) becomes its mask (``sk-proj-…abcd``); configured secrets (the bot token, the
DoubleTick credential, the encryption keys) become ``<redacted>``.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from flows.inspection import normalise_pasted_text
from flows.secret import mask_key
from flows.secret_shapes import SECRET_PREFIXES, TokenKind, find_tokens, is_complete_openai_key, might_carry_secret

__all__ = [
    "BOT_TOKEN_MASK",
    "REDACTED",
    "RedactingFilter",
    "RedactingFormatter",
    "install_redaction",
    "redact",
    "uninstall_redaction",
]

BOT_TOKEN_MASK = "<bot-token>"
REDACTED = "<redacted>"
MIN_EXTRA_SECRET = 4  # shorter "secrets" would garble every log line and protect nothing
_LONG_MASKED = 16  # OpenAI's own masked echo shows 8 characters before its stars

_lock = threading.Lock()
_extra_secrets: set[str] = set()
_extra_re: re.Pattern[str] | None = None


def redact(text: str) -> str:
    """``text`` with configured secrets, bot tokens and key-shaped tokens masked. Idempotent.

    The text is read as is and, through the paste step's normaliser, as recognition reads it: a key split
    by format characters (U+2063, U+2066 ...), by spaces every few characters or by line breaks, written
    raw or as ``\\u2063``/``\\n`` escapes in a repr (PTB's DEBUG ``getUpdates`` lines), is masked as a whole.
    When the normalised form holds a secret the raw form hid, the normalised form is what gets logged.
    """
    pattern = _extra_re
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
    clean = normalise_pasted_text(text, escaped=True)  # normalised once: the checks below read both forms
    if clean != text and might_carry_secret(clean):
        swept = _mask_split_keys(clean)
        if swept != clean or _has_secret(clean):
            text = _mask_tokens(swept)  # read before the raw pass: masking a piece would hide the whole
    return _mask_tokens(_mask_split_keys(text)) if might_carry_secret(text) else text


def _has_secret(text: str) -> bool:
    return any(token.kind.is_secret for token in find_tokens(text))


# --- keys split by punctuation or emoji ----------------------------------------------------------------
# The guard deletes a message on a secret prefix followed by a key character ("sk-p…") or on a bot
# token's "12345:A…", whatever comes after. Redaction must hide at least that much: a key cut into pieces
# by ".", "|", ", " or an emoji has a first piece too short to classify and later pieces that look like
# nothing, so the pieces that follow such a start are masked too, as long as short separators join them.

_PREFIX_START_RE = re.compile(
    "(?<![A-Za-z0-9])(?:" + "|".join(map(re.escape, sorted(SECRET_PREFIXES, key=len, reverse=True)))
    + ")[A-Za-z0-9_-]|(?<![0-9])[0-9]{5,}:[A-Za-z0-9_-]"
)
_PIECE_RE = re.compile(r"[A-Za-z0-9_-]+")
_JOINER_RE = re.compile(r"[^A-Za-z0-9_\-\n\r\v\f\x85\u2028\u2029]{1,12}")  # no line break, no key char
_SHOWN_MASKS = "*…•●"
_PROSE_WORD_RE = re.compile("[A-Za-z][a-z]{1,14}")
_PIECE_MASK = "…"
# tokens that span separators by shape (a JWT's dots, a bot token's colon): whole, like a documented key
_WHOLE_KINDS = frozenset({TokenKind.TELEGRAM_BOT_TOKEN, TokenKind.SESSION_TOKEN})
_MIN_SHOWN = 12  # a lone start this long is a piece of a key (the tests' leak scanner counts 12)


def _ends_the_chain(text: str, joiner: str, piece: re.Match[str]) -> bool:
    """A word after a separator holding a space, not followed by that separator again: prose, not a piece
    ("…abcd, retrying"). Inside a key split by ", " every piece but the last is followed by ", "."""
    if not any(c.isspace() for c in joiner) or _PROSE_WORD_RE.fullmatch(piece.group()) is None:
        return False
    return not text.startswith(joiner, piece.end())


def _chain(text: str, end: int) -> list[re.Match[str]]:
    """The pieces after ``end`` that short separators join to what ends there."""
    pieces: list[re.Match[str]] = []
    while (joiner := _JOINER_RE.match(text, end)) is not None:
        piece = _PIECE_RE.match(text, joiner.end())
        if piece is None or joiner.group().isspace() or _ends_the_chain(text, joiner.group(), piece):
            break  # spaces alone: the normaliser's rejoining decides (a key split by spaces is whole there)
        pieces.append(piece)
        end = piece.end()
    return pieces


def _is_a_mask(text: str, start: int, end: int, pieces: list[re.Match[str]]) -> bool:
    """``sk-proj-…abcd``, ``sk-proj-****abcd``, ``sk-...abcd`` (NFKC spells "…" as "..."): a start, a mask,
    at most a four-character tail. Masked already, by OpenAI or by this module; what follows it (``&limit=1``)
    was not part of it, as after a whole key."""
    if start > 0 and text[start - 1] in _SHOWN_MASKS:
        return True
    joiner = text[end : pieces[0].start() if pieces else end + 2]
    masked = any(c in _SHOWN_MASKS for c in joiner) or ".." in joiner
    return masked and (not pieces or len(pieces[0].group()) <= 4)


def _mask_split_keys(text: str) -> str:
    """Every start the guard deletes for, masked with the pieces joined to it. A whole key (an OpenAI key
    of a documented shape, a JWT, a bot token) is left to :func:`_mask_tokens`, which shows its family;
    so is the first piece when it is a secret itself."""
    secrets = {token.start: token for token in find_tokens(text) if token.kind.is_secret}
    parts: list[str] = []
    last = seen = 0
    for start in _PREFIX_START_RE.finditer(text):
        if start.start() < max(last, seen):
            continue  # inside a chain masked already, or inside a whole key (a JWT's second part)
        token = secrets.get(start.start())
        if token is not None and (token.kind in _WHOLE_KINDS or is_complete_openai_key(text[token.start : token.end])):
            seen = token.end
            continue
        first_end = token.end if token is not None else _PIECE_RE.match(text, start.start()).end()  # type: ignore[union-attr]
        pieces = _chain(text, first_end)
        if _is_a_mask(text, start.start(), first_end, pieces):
            continue
        if not pieces and (token is not None or first_end - start.start() < _MIN_SHOWN):
            continue
        first = text[start.start() : first_end]
        parts.append(text[last : start.start()])
        parts.append(first if token is not None else mask_key(first))  # a secret: masked by _mask_tokens
        at = first_end
        for piece in pieces:
            parts.append(text[at : piece.start()])
            parts.append(_PIECE_MASK)
            at = piece.end()
        last = at
    if not parts:
        return text
    parts.append(text[last:])
    return "".join(parts)


def _mask_tokens(text: str) -> str:
    parts: list[str] = []
    last = 0
    for token in find_tokens(text):
        # a long "masked" token is a real key followed by dots or stars (f"{key}..."): mask it too
        long_masked = token.kind is TokenKind.MASKED and token.end - token.start >= _LONG_MASKED
        if not (token.kind.is_secret or long_masked):
            continue
        parts.append(text[last : token.start])
        value = text[token.start : token.end]
        parts.append(BOT_TOKEN_MASK if token.kind is TokenKind.TELEGRAM_BOT_TOKEN else mask_key(value))
        last = token.end
    if not parts:
        return text
    parts.append(text[last:])
    return "".join(parts)


def _set_extra_secrets(secrets: Iterable[str]) -> None:
    global _extra_re
    _extra_secrets.update(s for s in secrets if isinstance(s, str) and len(s) >= MIN_EXTRA_SECRET)
    ordered = sorted(_extra_secrets, key=len, reverse=True)  # longest first: a secret containing another
    _extra_re = re.compile("|".join(map(re.escape, ordered))) if ordered else None


# --- scrubbing one record ------------------------------------------------------------------------------

_STANDARD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message", "asctime", "taskName"}
_SCALARS = (int, float, bool, type(None))
_exception_formatter = logging.Formatter()


def _simple(value: object) -> bool:
    return isinstance(value, (str, *_SCALARS))


def _scrub_message(record: logging.LogRecord) -> None:
    """Redact msg and args; keep simple args as a tuple (uvicorn's access formatter unpacks them)."""
    msg, args = record.msg, record.args
    try:
        text = record.getMessage()
    except Exception:  # a bad format string: keep the evidence, never the secret (nor a handler error)
        record.msg = redact(f"{_safe_str(msg)} (unformattable arguments: {_safe_str(args)})")
        record.args = ()
        return
    redacted = redact(text)
    kept = _redacted_args(msg, args)
    if kept is not None and isinstance(msg, str):
        template = redact(msg)
        try:
            same = template % kept == redacted  # nothing straddled the template/argument boundary
        except Exception:
            same = False
        if same:
            record.msg, record.args = template, kept
            return
    record.msg, record.args = redacted, ()


def _redacted_args(msg: object, args: object) -> tuple[object, ...] | Mapping[str, object] | None:
    """Simple arguments redacted one by one, or None. Kept as arguments because some formatters read
    them (uvicorn's access formatter unpacks ``record.args``)."""
    if not isinstance(msg, str) or not args:
        return None
    if isinstance(args, tuple) and all(_simple(a) for a in args):
        return tuple(redact(a) if isinstance(a, str) else a for a in args)
    if isinstance(args, Mapping) and all(_simple(v) for v in args.values()):
        return {k: redact(v) if isinstance(v, str) else v for k, v in args.items()}
    return None


def _safe_str(value: object) -> str:
    try:
        return str(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"


def _scrub_exception(record: logging.LogRecord) -> None:
    if record.exc_info:
        try:
            record.exc_text = _exception_formatter.formatException(record.exc_info)
        except Exception:
            record.exc_text = "<unformattable exception>"
        record.exc_info = None  # handlers now print exc_text, which is redacted below
    if record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)


def _scrub_extras(record: logging.LogRecord) -> None:
    for name, value in list(record.__dict__.items()):
        if name in _STANDARD_ATTRIBUTES or isinstance(value, _SCALARS):
            continue
        record.__dict__[name] = redact(value if isinstance(value, str) else _safe_str(value))


def _scrub(record: logging.LogRecord, *, extras: bool) -> None:
    _scrub_message(record)
    _scrub_exception(record)
    if extras:
        _scrub_extras(record)


# --- the three layers ----------------------------------------------------------------------------------


class RedactingFilter(logging.Filter):
    """Redacts each record in place (message, exception, stack, ``extra=`` attributes); drops nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        _scrub(record, extras=True)
        return True


class RedactingFormatter(logging.Formatter):
    """Wraps another formatter and redacts its whole output (for formatters that print extra fields)."""

    def __init__(self, inner: logging.Formatter | None = None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        return redact(self.inner.format(record))


_RecordFactory = Callable[..., logging.LogRecord]


class _RedactingFactory:
    """Wraps the previous log-record factory; marks itself so installing twice does not wrap twice."""

    def __init__(self, wrapped: _RecordFactory) -> None:
        self.wrapped = wrapped

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.wrapped(*args, **kwargs)
        _scrub(record, extras=False)  # extra= attributes are set after the factory: the filter gets them
        return record


def _all_handlers() -> list[logging.Handler]:
    loggers: list[logging.Logger] = [logging.getLogger()]
    known = list(logging.Logger.manager.loggerDict.values())  # a copy: other threads may add loggers
    loggers += [lg for lg in known if isinstance(lg, logging.Logger)]
    handlers = [h for lg in loggers for h in lg.handlers]
    if logging.lastResort is not None:
        handlers.append(logging.lastResort)
    return handlers


def _attach(filterer: logging.Filterer, redacting: RedactingFilter) -> None:
    if not any(isinstance(f, RedactingFilter) for f in filterer.filters):
        filterer.addFilter(redacting)


def install_redaction(extra_secrets: Iterable[str] = ()) -> RedactingFilter:
    """Redact every log record from now on; safe to call again (adds secrets, attaches to new handlers).

    Call after handlers are configured (``logging.basicConfig``, uvicorn's config) so they get the filter
    too; the record factory protects records reaching handlers added later.
    """
    with _lock:
        _set_extra_secrets(extra_secrets)
        factory = logging.getLogRecordFactory()
        if not isinstance(factory, _RedactingFactory):
            logging.setLogRecordFactory(_RedactingFactory(factory))
        redacting = RedactingFilter()
        _attach(logging.getLogger(), redacting)
        for handler in _all_handlers():
            _attach(handler, redacting)
        return redacting


def uninstall_redaction() -> None:
    """Undo :func:`install_redaction` (tests): restore the record factory, drop filters and secrets."""
    global _extra_re
    with _lock:
        factory = logging.getLogRecordFactory()
        if isinstance(factory, _RedactingFactory):
            logging.setLogRecordFactory(factory.wrapped)
        for filterer in [logging.getLogger(), *_all_handlers()]:
            for f in [f for f in filterer.filters if isinstance(f, RedactingFilter)]:
                filterer.removeFilter(f)
        _extra_secrets.clear()
        _extra_re = None
