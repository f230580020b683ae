"""The shapes of secrets: which tokens in a text are (or might be) keys, and a fast guard for "delete it now".

Why one module for both: the runtime deletes a message on :func:`might_carry_secret` *before* anything
else is awaited, and the precise :func:`find_tokens` (used by paste inspection and log redaction) must
never recognise a secret the fast guard missed. Keeping the prefixes and the token grammar side by side
makes that over-approximation a property of the code, checked by a hypothesis test.

The grammar: a *token* is a maximal run of ``[A-Za-z0-9_-]`` (leading ``-``/``_`` ignored), so quotes,
backticks, ``=``, ``:``, ``${…}``, ``Bearer`` and trailing punctuation separate tokens without special
cases. Telegram bot tokens (``digits:chars``) and JWTs (``eyJ….….…``) span separators and are matched
first. Shapes follow ``shared/reference/openai-keys.md`` sections 1.1-1.3; formats are hints, not
verdicts, so plausible ``sk-`` strings of an unknown shape keep their closest family plus a warning.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "INVISIBLE_CHARS",
    "LONGER_THAN_USUAL",
    "MIN_KEY_BODY",
    "NO_OPENAI_MARKER",
    "SECRET_PREFIXES",
    "SHORTER_THAN_USUAL",
    "UNUSUAL_FORMAT",
    "TokenKind",
    "TokenMatch",
    "find_tokens",
    "is_complete_openai_key",
    "might_be_key_file",
    "might_carry_secret",
    "strip_invisible",
]

# Zero-width and invisible formatting characters that clients and copy-paste sneak into keys.
INVISIBLE_CHARS = "\u00ad\u200b\u200c\u200d\u200e\u200f\u2060\ufeff"
_INVISIBLE_RE = re.compile(f"[{INVISIBLE_CHARS}]")

# Every prefix that starts a secret token of a family we know. Shared by the fast guard and the scanner.
SECRET_PREFIXES: tuple[str, ...] = (
    "sk-", "sk_", "rk_", "sess-", "eyJ", "AIza", "gsk_", "ghp_", "gho_", "ghu_", "ghs_", "ghr_",
    "github_pat_", "AKIA", "ASIA", "hf_", "xoxa-", "xoxb-", "xoxp-", "xoxr-", "xoxs-", "xai-", "pplx-", "r8_",
)

MIN_KEY_BODY = 20  # fewer characters after an ``sk-`` family prefix: a fragment or a masked form

_MARKER = "T3Blbk" + "FJ"  # base64("OpenAI"); split so scanners don't flag this file
_MASK_CHARS = "*…•●"

# shape warnings, worded to fit the content file's "Note: {warning}."
SHORTER_THAN_USUAL = "this key is shorter than usual, so it may be cut off"
LONGER_THAN_USUAL = "this key is longer than usual, so it may have extra characters"
NO_OPENAI_MARKER = "this key lacks the part every OpenAI key has, so it may be from another provider"
UNUSUAL_FORMAT = "this key has an unusual format"


class TokenKind(StrEnum):
    """What one token is. Paste inspection maps these onto its own, message-level kinds."""

    PROJECT = "project"
    SERVICE_ACCOUNT = "service_account"
    LEGACY_USER = "legacy_user"
    UNSCOPED = "unscoped"
    ADMIN = "admin"
    OTHER_PROVIDER = "other_provider"
    TELEGRAM_BOT_TOKEN = "telegram_bot_token"
    SESSION_TOKEN = "session_token"
    MASKED = "masked"
    INCOMPLETE = "incomplete"  # an ``sk-`` start too short to be a key, with no dots or stars: cut off
    ORGANIZATION_ID = "organization_id"
    PROJECT_ID = "project_id"
    RANDOM_TOKEN = "random_token"  # long and random-looking: might be a secret of an unknown kind

    @property
    def is_secret(self) -> bool:
        """True for tokens that are, or might be, a live credential."""
        return self not in _NOT_SECRET_KINDS

    @property
    def is_key(self) -> bool:
        """True for tokens of a recognised secret family (what "several keys" counts)."""
        return self.is_secret and self is not TokenKind.RANDOM_TOKEN


_NOT_SECRET_KINDS = frozenset({TokenKind.MASKED, TokenKind.INCOMPLETE, TokenKind.ORGANIZATION_ID,
                               TokenKind.PROJECT_ID})


@dataclass(frozen=True, slots=True)
class TokenMatch:
    """Where a recognised token sits in the scanned text. Holds offsets, never the token itself."""

    start: int
    end: int
    kind: TokenKind
    provider: str | None = None
    shape_warning: str | None = None


# --- the fast guard ------------------------------------------------------------------------------------
# Works on UTF-8 bytes so the hot checks are C-speed substring searches: a key character is ASCII (one
# byte), and every byte of a non-ASCII character is >= 0x80, so token boundaries are the same as in str.

_KEY_CHARS = "A-Za-z0-9_-"
_KEY_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_AS_KEY_OR_NOT = bytes(ord("k") if b in _KEY_BYTES else ord(" ") for b in range(256))
_AS_DIGIT_KEY_COLON = bytes(
    ord("d") if b in b"0123456789" else ord("k") if b in _KEY_BYTES else ord(":") if b == ord(":") else 32
    for b in range(256)
)
_LONG_RUN = b"k" * 32


def _grouped_alternation(words: tuple[str, ...]) -> str:
    """``(?:s(?:k-|ess-)|e(?:yJ))``: one branch per first letter keeps the regex engine's work small."""
    firsts = sorted({w[0] for w in words})
    groups = ("|".join(re.escape(w[1:]) for w in words if w[0] == c) for c in firsts)
    return "(?:" + "|".join(f"{re.escape(c)}(?:{g})" for c, g in zip(firsts, groups, strict=True)) + ")"


_PREFIX_RE = re.compile(f"(?<![A-Za-z0-9]){_grouped_alternation(SECRET_PREFIXES)}[{_KEY_CHARS}]".encode())


def strip_invisible(text: str) -> str:
    """Drop zero-width characters anywhere (ASCII text, the common case, returns at once)."""
    return text if text.isascii() else _INVISIBLE_RE.sub("", text)


def might_carry_secret(text: str) -> bool:
    """True if ``text`` may hold a secret; errs towards True, never misses what :func:`find_tokens` finds.

    Linear and regex-light: any run of 32 key characters, ``5 digits:`` + a key character (a bot token), or
    a known secret prefix at the start of a token followed by a key character. Chat and plain URLs pass.
    """
    visible = strip_invisible(text)
    if _bytes_might_carry_secret(visible.encode("utf-8", "surrogatepass")):
        return True
    # zero-width characters also split tokens when a text is scanned as is (log redaction): check both ways
    return visible is not text and _bytes_might_carry_secret(text.encode("utf-8", "surrogatepass"))


def _bytes_might_carry_secret(data: bytes) -> bool:
    if _LONG_RUN in data.translate(_AS_KEY_OR_NOT):
        return True
    if b":" in data:
        classes = data.translate(_AS_DIGIT_KEY_COLON)
        if b"ddddd:d" in classes or b"ddddd:k" in classes:
            return True
    # every prefix holds "-" or "_" or is one of these four (a test keeps it so): most chat skips the regex
    if (b"-" in data or b"_" in data or b"eyJ" in data
            or b"AIza" in data or b"AKIA" in data or b"ASIA" in data):
        return _PREFIX_RE.search(data) is not None
    return False


_KEY_FILE_WORD_RE = re.compile(r"api[-_ ]?key|secret|credential|creds|token|passw|openai|private[-_ ]?key")
_KEY_FILE_EXTENSIONS = frozenset({
    "env", "key", "pem", "p12", "pfx", "jks", "keystore", "ppk", "tfvars", "tfstate", "kdbx", "ovpn", "asc", "gpg",
})
# files that hold credentials by convention: SSH private keys, package-registry and tool configs, cloud
# and app settings (config.yaml, appsettings.json), and shell histories. Public files (``id_rsa.pub``,
# ``known_hosts``) are not on the list
_KEY_FILE_NAMES = frozenset({
    "id_rsa", "id_dsa", "id_ecdsa", "id_ed25519", "id_ecdsa_sk", "id_ed25519_sk", ".npmrc", ".yarnrc",
    ".yarnrc.yml", ".pypirc", ".netrc", "_netrc", ".pgpass", ".my.cnf", ".htpasswd", ".git-credentials",
    ".dockercfg", "config.yaml", "config.yml", "config.json", "config.toml", "config.ini", "settings.json",
    "settings.yaml", "settings.yml", "settings.py", "appsettings.json", "local.settings.json",
    "application.properties", "application.yml", "application.yaml", "gradle.properties", "kubeconfig",
    "wp-config.php", "docker-compose.yml", "docker-compose.yaml", "compose.yaml", "compose.yml",
    ".bash_history", ".zsh_history", ".python_history", "shadow",
})


def might_be_key_file(file_name: str) -> bool:
    """True for document names like ``.env``, ``openai_key.txt``, ``secret2.txt``, ``id.key``, ``creds``."""
    name = file_name.replace("\\", "/").rsplit("/", 1)[-1].strip().lower()
    if not name:
        return False
    if name.startswith(".env") or ("." in name and name.rpartition(".")[2] in _KEY_FILE_EXTENSIONS):
        return True
    if name in _KEY_FILE_NAMES or name.removesuffix(".txt") in _KEY_FILE_NAMES:
        return True
    if _KEY_FILE_WORD_RE.search(name):
        return True
    words = re.split(r"[^a-z0-9]+", name)
    return "key" in words or "keys" in words


# --- the precise scanner -------------------------------------------------------------------------------

_BOT_TOKEN_RE = re.compile(r"(?<![0-9])[0-9]{5,}:[A-Za-z0-9_-]{30,}")
_JWT_RE = re.compile(r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}(?:\.[A-Za-z0-9_-]*)?")
_RUN_RE = re.compile(f"[{_KEY_CHARS}]+")

# (sub-prefix after "sk-", kind, provider)
_SK_FAMILIES: tuple[tuple[str, TokenKind, str], ...] = (
    ("proj-", TokenKind.PROJECT, "OpenAI"),
    ("svcacct-", TokenKind.SERVICE_ACCOUNT, "OpenAI"),
    ("service-", TokenKind.SERVICE_ACCOUNT, "OpenAI"),
    ("admin-", TokenKind.ADMIN, "OpenAI"),
    ("None-", TokenKind.UNSCOPED, "OpenAI"),
    ("ant-", TokenKind.OTHER_PROVIDER, "Anthropic"),
    ("or-", TokenKind.OTHER_PROVIDER, "OpenRouter"),
)
_NAMED_SERVICE_ACCOUNT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,39}-")  # older ``sk-<name>-…`` keys

# body length bounds and the canonical "half" lengths around the marker, per OpenAI family
_SHAPES: dict[TokenKind, tuple[int, int, tuple[int, ...]]] = {
    TokenKind.PROJECT: (48, 156, (20, 58, 74)),
    TokenKind.SERVICE_ACCOUNT: (48, 156, (20, 58, 74)),
    TokenKind.ADMIN: (124, 156, (58, 74)),
    TokenKind.UNSCOPED: (48, 156, (20,)),
    TokenKind.LEGACY_USER: (48, 48, (20,)),
}

_OTHER_PROVIDERS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern))
    for name, pattern in (
        ("Google", r"AIza[A-Za-z0-9_-]{30,}"),
        ("Groq", r"gsk_[A-Za-z0-9]{20,}"),
        ("GitHub", r"gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}"),
        ("AWS", r"(?:AKIA|ASIA)[A-Z0-9]{16}"),
        ("Hugging Face", r"hf_[A-Za-z0-9]{20,}"),
        ("Stripe", r"[sr]k_(?:live|test)_[A-Za-z0-9]{16,}"),
        ("Slack", r"xox[abprs]-[A-Za-z0-9-]{10,}"),
        ("xAI", r"xai-[A-Za-z0-9]{20,}"),
        ("Perplexity", r"pplx-[A-Za-z0-9]{20,}"),
        ("Replicate", r"r8_[A-Za-z0-9]{20,}"),
        ("Azure OpenAI", r"[0-9a-f]{32}|[0-9A-F]{32}"),  # no prefix at all: 32 hex
    )
)
_ORG_ID_RE = re.compile(r"org-[A-Za-z0-9]{16,40}")
_PROJECT_ID_RE = re.compile(r"proj_[A-Za-z0-9]{16,40}")
# OpenAI object ids: long but public, kept readable in logs (request ids are ``req_`` + 32 hex)
_PUBLIC_ID_PREFIXES = (
    "org-", "proj_", "req_", "user-", "chatcmpl-", "resp_", "file-", "asst_", "thread_", "run_", "msg_",
    "batch_", "ftjob-",
)
_RANDOM_MIN = 32
_FAR = 1 << 62


def _openai_shape_warning(kind: TokenKind, body: str) -> str | None:
    low, high, halves = _SHAPES[kind]
    for half in halves:
        # the 20 + marker + 20 formats of user and project keys are strictly alphanumeric
        strict = half == 20 and kind is not TokenKind.UNSCOPED
        if len(body) == 2 * half + 8 and body[half : half + 8] == _MARKER and (not strict or body.isalnum()):
            return None
    if kind is TokenKind.UNSCOPED and len(body) >= 100 and _MARKER in body:
        return None
    at = body.find(_MARKER)
    expected = 2 * at + 8 if at >= 0 else None  # the marker sits in the middle of the body
    if len(body) < (expected or low):
        return SHORTER_THAN_USUAL
    if len(body) > (expected or high):
        return LONGER_THAN_USUAL
    return UNUSUAL_FORMAT if expected else NO_OPENAI_MARKER


def _named_body_start(rest: str) -> int | None:
    """Where the body starts in ``<name>-<body>`` (older service-account keys), or None if not that shape.

    The name may hold dashes too, so the split is found from the marker: the body is half + marker + half.
    """
    if _NAMED_SERVICE_ACCOUNT_RE.match(rest) is None or (at := rest.find(_MARKER)) < 0:
        return None
    for half in _SHAPES[TokenKind.SERVICE_ACCOUNT][2]:
        start = at - half
        if start >= 2 and rest[start - 1] == "-" and len(rest) - start == 2 * half + 8:
            return start
    first_dash = rest.index("-") + 1
    return first_dash if _MARKER in rest[first_dash:] else None


def _classify_sk(token: str) -> tuple[TokenKind, str, str | None, bool]:
    """(kind, provider, shape warning, too short) for a token starting with ``sk-``."""
    rest = token[3:]
    family = next((f for f in _SK_FAMILIES if rest.startswith(f[0])), None)
    if family is not None:
        sub, kind, provider = family
        body = rest[len(sub) :]
    elif (body_at := _named_body_start(rest)) is not None:
        kind, provider, body = TokenKind.SERVICE_ACCOUNT, "OpenAI", rest[body_at:]
    else:  # the closest family for a plain sk- string: formats are hints, not verdicts
        kind, provider, body = TokenKind.LEGACY_USER, "OpenAI", rest
    if len(body) < MIN_KEY_BODY:
        return kind, provider, None, True
    warning = _openai_shape_warning(kind, body) if kind in _SHAPES else None
    return kind, provider, warning, False


def is_complete_openai_key(token: str) -> bool:
    """True if ``token`` has exactly a documented OpenAI secret-key shape (any ``sk-`` family)."""
    if not token.startswith("sk-") or _RUN_RE.fullmatch(token) is None:
        return False
    kind, _, warning, too_short = _classify_sk(token)
    return kind in _SHAPES and not too_short and warning is None


def _random_looking(token: str) -> bool:
    classes = (
        any(c.islower() for c in token),
        any(c.isupper() for c in token),
        any(c.isdigit() for c in token),
    )
    return len(token) >= _RANDOM_MIN and sum(classes) >= 2


def _mask_adjacent(text: str, start: int, end: int) -> bool:
    """A mask (``*``, ``…``, ``..``) right before or after the token: it is part of a masked form."""
    after, before = text[end : end + 2], text[max(0, start - 2) : start]
    return (after != "" and after[0] in _MASK_CHARS) or after == ".." or (
        before != "" and before[-1] in _MASK_CHARS) or before == ".."


def _classify(text: str, start: int, end: int) -> TokenMatch | None:
    token = text[start:end]
    masked_here = _mask_adjacent(text, start, end)
    if token.startswith("sk-"):
        kind, provider, warning, too_short = _classify_sk(token)
        if too_short and not masked_here:  # "sk-abc123": a fragment, not a masked form (issue 11 item 8)
            return TokenMatch(start, end, TokenKind.INCOMPLETE, provider)
        if too_short or (masked_here and (warning is not None or kind not in _SHAPES)):
            return TokenMatch(start, end, TokenKind.MASKED, provider)
        return TokenMatch(start, end, kind, provider, warning)
    if token.startswith("sess-") and len(token) >= 5 + MIN_KEY_BODY:
        return TokenMatch(start, end, TokenKind.SESSION_TOKEN, "ChatGPT")
    if token.startswith("eyJ") and len(token) >= 24:  # a JWT part without its dots
        return TokenMatch(start, end, TokenKind.SESSION_TOKEN)
    prefixed = token.startswith(SECRET_PREFIXES)
    if prefixed or len(token) == 32:
        for provider, pattern in _OTHER_PROVIDERS:
            if pattern.fullmatch(token):
                kind = TokenKind.MASKED if masked_here else TokenKind.OTHER_PROVIDER
                return TokenMatch(start, end, kind, provider)
        if masked_here and prefixed:
            return TokenMatch(start, end, TokenKind.MASKED)
    if _ORG_ID_RE.fullmatch(token):
        return TokenMatch(start, end, TokenKind.ORGANIZATION_ID, "OpenAI")
    if _PROJECT_ID_RE.fullmatch(token):
        return TokenMatch(start, end, TokenKind.PROJECT_ID, "OpenAI")
    if token.startswith(_PUBLIC_ID_PREFIXES):
        return None
    if _random_looking(token):
        return TokenMatch(start, end, TokenKind.RANDOM_TOKEN)
    return None


def _overlaps(spans: list[tuple[int, int]], start: int, end: int) -> bool:
    """Whether ``[start, end)`` overlaps one of the sorted, disjoint ``spans``."""
    i = bisect_right(spans, (start, _FAR))
    return (i > 0 and spans[i - 1][1] > start) or (i < len(spans) and spans[i][0] < end)


def find_tokens(text: str) -> list[TokenMatch]:
    """Every recognised token in ``text`` (as is: no normalisation), in order of position.

    Includes masked forms and public identifiers (``kind.is_secret`` is False for those) so callers can
    explain them; everything with ``kind.is_secret`` is also caught by :func:`might_carry_secret`.
    """
    bots = _BOT_TOKEN_RE.finditer(text)
    found = [TokenMatch(*bot.span(), TokenKind.TELEGRAM_BOT_TOKEN, "Telegram") for bot in bots]
    taken = [(m.start, m.end) for m in found]
    for jwt in _JWT_RE.finditer(text):
        if not _overlaps(taken, *jwt.span()):
            found.append(TokenMatch(*jwt.span(), TokenKind.SESSION_TOKEN))
    taken = sorted((m.start, m.end) for m in found)
    for run in _RUN_RE.finditer(text):
        start, end = run.span()
        if taken and _overlaps(taken, start, end):
            continue
        while start < end and text[start] in "-_":
            start += 1
        if start < end and (match := _classify(text, start, end)) is not None:
            found.append(match)
    found.sort(key=lambda m: m.start)
    return found
