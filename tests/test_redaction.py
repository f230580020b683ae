"""Log redaction, Vault-style: for every kind of secret and every way it can reach a log line, the output
holds the mask and never the secret.

Records go through the real logging machinery into a real ``StreamHandler`` on the root logger, from the
loggers that actually print secrets in production (``httpx``, ``telegram.ext``, ``uvicorn``) as well as
our own.
"""

from __future__ import annotations

import io
import json
import logging
import random
import string
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.redaction import (
    BOT_TOKEN_MASK,
    REDACTED,
    RedactingFilter,
    RedactingFormatter,
    install_redaction,
    redact,
    uninstall_redaction,
)
from flows.secret import mask_key

MARK = "T3Blbk" + "FJ"
ALNUM = string.ascii_letters + string.digits
URLSAFE = ALNUM + "_-"
RNG = random.Random("redaction")


def chars(n: int, alphabet: str = ALNUM) -> str:
    return "".join(RNG.choice(alphabet) for _ in range(n))


BOT_TOKEN = f"{RNG.randrange(10**8, 10**10)}:AA{chars(33, URLSAFE)}"
DOUBLETICK_CREDENTIAL = "dt_live_" + chars(12)
FERNET_KEY = chars(43, URLSAFE) + "="

# secret kind -> (secret, the mask the log must show instead)
KEYS = {
    "project": f"sk-proj-{chars(74, URLSAFE)}{MARK}{chars(74, URLSAFE)}",
    "project_2024": f"sk-proj-{chars(20)}{MARK}{chars(20)}",
    "service_account": f"sk-svcacct-{chars(74, URLSAFE)}{MARK}{chars(74, URLSAFE)}",
    "legacy_user": f"sk-{chars(20)}{MARK}{chars(20)}",
    "unscoped": f"sk-None-{chars(20, URLSAFE)}{MARK}{chars(20, URLSAFE)}",
    "admin": f"sk-admin-{chars(58, URLSAFE)}{MARK}{chars(58, URLSAFE)}",
    "unknown_sk_shape": f"sk-{chars(32, '0123456789abcdef')}",
    "anthropic": f"sk-ant-api03-{chars(93, URLSAFE)}AA",
    "openrouter": f"sk-or-v1-{chars(64, '0123456789abcdef')}",
    "google": f"AIza{chars(35, URLSAFE)}",
    "github": f"ghp_{chars(36)}",
    "aws": f"AKIA{chars(16, string.ascii_uppercase + string.digits)}",
    "huggingface": f"hf_{chars(34, string.ascii_letters)}",
    "azure": chars(32, "0123456789abcdef"),
    "jwt": f"eyJhbGciOiJSUzI1NiJ9.eyJ{chars(40, URLSAFE)}.{chars(43, URLSAFE)}",
    "chatgpt_session": f"sess-{chars(40)}",
    "random_token": chars(48, URLSAFE) + "Zz9",
}
CASES: dict[str, tuple[str, str]] = {name: (key, mask_key(key)) for name, key in KEYS.items()}
CASES["telegram_bot_token"] = (BOT_TOKEN, BOT_TOKEN_MASK)
CASES["doubletick_credential"] = (DOUBLETICK_CREDENTIAL, REDACTED)
CASES["fernet_key"] = (FERNET_KEY, REDACTED)


LOGGERS = ["bot", "bot.core.runtime", "bot.core.intake", "httpx", "httpcore", "telegram", "telegram.ext",
           "telegram.ext.Application", "telegram.ext.ExtBot", "telegram.ext.Updater", "uvicorn", "uvicorn.error",
           "apscheduler"]


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """A real StreamHandler on the root logger, redaction installed with our configured secrets.

    Other tests (uvicorn's dictConfig, the CLI's quiet levels) may have changed library loggers; they
    are made to propagate at every level for the test and restored afterwards.
    """
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s %(user_text)s",
                                           defaults={"user_text": "-"}))
    root = logging.getLogger()
    saved = [(lg, lg.propagate, lg.level, lg.disabled) for lg in map(logging.getLogger, LOGGERS)]
    for lg, *_ in saved:
        lg.propagate, lg.disabled = True, False
        lg.setLevel(logging.NOTSET)
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    install_redaction([DOUBLETICK_CREDENTIAL, FERNET_KEY])
    try:
        yield stream
    finally:
        uninstall_redaction()
        root.removeHandler(handler)
        root.setLevel(level)
        for lg, propagate, lg_level, disabled in saved:
            lg.propagate, lg.disabled = propagate, disabled
            lg.setLevel(lg_level)


def log_percent_s(secret: str) -> None:
    logging.getLogger("bot").info("%s", secret)


def log_f_string(secret: str) -> None:
    logging.getLogger("bot.core.runtime").warning(f"verification failed for {secret}, retrying")


def log_exception(secret: str) -> None:
    try:
        raise RuntimeError(f"upstream said: bad credential {secret}")
    except RuntimeError:
        logging.getLogger("telegram.ext.Application").exception("No error handlers are registered")


def log_httpx_url(secret: str) -> None:
    """httpx logs every request URL at INFO: the bot token sits in the path, other secrets in a query."""
    url = f"https://api.telegram.org/bot{BOT_TOKEN}/getMe" if secret == BOT_TOKEN else \
        f"https://api.example.com/v1/models?key={secret}&limit=1"
    logging.getLogger("httpx").info('HTTP Request: %s %s "%s %d %s"', "POST", url, "HTTP/1.1", 200, "OK")


def log_update_dump(secret: str) -> None:
    update = {"update_id": 1, "message": {"chat": {"id": 42}, "text": f"here: `{secret}`"}}
    logging.getLogger("telegram.ext.Application").debug("Processing update %s", update)


def log_api_parameters(secret: str) -> None:
    logging.getLogger("telegram.ext.ExtBot").debug("Calling Bot API endpoint `%s` with parameters `%s`",
                                                   "sendMessage", {"chat_id": 42, "text": secret})


def log_extra_field(secret: str) -> None:
    logging.getLogger("bot.core.intake").info("paste received", extra={"user_text": secret})


def log_uvicorn_access(secret: str) -> None:
    logging.getLogger("uvicorn.error").error("Invalid HTTP request: %r", f"/hook?secret={secret}".encode())


def log_stack(secret: str) -> None:
    def deep(value: str) -> None:
        logging.getLogger("httpcore").debug("state for %s", value, stack_info=True)

    deep(secret)


STYLES: dict[str, Callable[[str], None]] = {
    "percent_s": log_percent_s,
    "f_string": log_f_string,
    "exception": log_exception,
    "httpx_url": log_httpx_url,
    "update_dump": log_update_dump,
    "api_parameters": log_api_parameters,
    "extra_field": log_extra_field,
    "uvicorn_bytes": log_uvicorn_access,
    "stack_info": log_stack,
}


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("kind", CASES)
def test_every_secret_is_masked_in_every_log_style(captured: io.StringIO, kind: str, style: str) -> None:
    secret, mask = CASES[kind]
    STYLES[style](secret)
    output = captured.getvalue()
    assert secret not in output
    assert mask in output


@pytest.mark.parametrize("name", LOGGERS)
def test_library_loggers_are_redacted_through_propagation(captured: io.StringIO, name: str) -> None:
    logging.getLogger(name).warning("token %s and key %s", BOT_TOKEN, KEYS["project"])
    output = captured.getvalue()
    assert BOT_TOKEN not in output and KEYS["project"] not in output
    assert BOT_TOKEN_MASK in output and mask_key(KEYS["project"]) in output


def test_configured_bot_token_is_redacted_even_in_a_url(captured: io.StringIO) -> None:
    install_redaction([BOT_TOKEN])  # as the CLI does: the bot token is one of the configured secrets
    logging.getLogger("httpx").warning("HTTP Request: GET https://api.telegram.org/bot%s/getMe", BOT_TOKEN)
    assert BOT_TOKEN not in captured.getvalue() and f"bot{REDACTED}/getMe" in captured.getvalue()


def test_handler_on_a_non_propagating_logger_gets_the_filter_and_args_stay_a_tuple() -> None:
    """uvicorn.access has its own handler, does not propagate, and its formatter unpacks record.args."""
    from uvicorn.logging import AccessFormatter

    stream = io.StringIO()
    access = logging.getLogger("uvicorn.access")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s', use_colors=False))
    access.addHandler(handler)
    access.propagate, access.level = False, logging.INFO
    install_redaction()
    try:
        assert any(isinstance(f, RedactingFilter) for f in handler.filters)
        access.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "POST", f"/telegram/{BOT_TOKEN}", "1.1", 200)
    finally:
        uninstall_redaction()
        access.removeHandler(handler)
        access.propagate, access.level = True, logging.NOTSET
    assert BOT_TOKEN not in stream.getvalue()
    assert f"POST /telegram/{BOT_TOKEN_MASK} HTTP/1.1" in stream.getvalue()


def test_bad_format_arguments_do_not_leak_through_the_error_report(
        captured: io.StringIO, capsys: pytest.CaptureFixture[str]) -> None:
    logging.getLogger("bot").info("%s and %s", KEYS["project"])  # one argument missing
    assert KEYS["project"] not in captured.getvalue()
    assert KEYS["project"] not in capsys.readouterr().err


def test_secret_split_across_arguments_is_masked_whole(captured: io.StringIO) -> None:
    key = KEYS["project"]
    logging.getLogger("bot").info("%s%s", key[:20], key[20:])
    logging.getLogger("bot").info("key=sk-proj-%s", key[8:])
    output = captured.getvalue()
    assert key[:20] not in output and key[20:] not in output
    assert output.count(mask_key(key)) == 2


def test_install_is_idempotent(captured: io.StringIO) -> None:
    install_redaction()
    install_redaction(["another-secret-value"])
    factory = logging.getLogRecordFactory()
    assert not isinstance(getattr(factory, "wrapped", None), type(factory))
    for handler in logging.getLogger().handlers:
        assert sum(isinstance(f, RedactingFilter) for f in handler.filters) == 1
    logging.getLogger("bot").info("%s %s", "another-secret-value", DOUBLETICK_CREDENTIAL)
    assert captured.getvalue().count(REDACTED) == 2


def test_uninstall_restores_the_factory() -> None:
    before = logging.getLogRecordFactory()
    install_redaction()
    uninstall_redaction()
    assert logging.getLogRecordFactory() is before


def test_redacting_formatter_covers_fields_a_json_formatter_would_print() -> None:
    class Everything(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            return repr(sorted(record.__dict__.items(), key=lambda kv: kv[0]))

    record = logging.LogRecord("bot", logging.INFO, __file__, 1, "paste", (), None)
    record.custom = {"nested": [KEYS["jwt"]]}
    assert KEYS["jwt"] not in RedactingFormatter(Everything()).format(record)


@pytest.mark.parametrize("text", [
    "hello", "/start", "https://platform.openai.com/settings/organization/api-keys",
    "OpenAI-Organization: org-" + chars(24), "request req_" + chars(32, "0123456789abcdef"),
    "Incorrect API key provided: sk-proj-****abcd.", "12:30:45 INFO something",
])
def test_harmless_text_is_left_alone(text: str) -> None:
    assert redact(text) == text


@pytest.mark.parametrize("kind", CASES)
def test_redact_is_idempotent(kind: str) -> None:
    install_redaction([DOUBLETICK_CREDENTIAL, FERNET_KEY])
    try:
        once = redact(f"x {CASES[kind][0]} y")
        assert redact(once) == once
    finally:
        uninstall_redaction()


def test_key_followed_by_dots_is_still_masked() -> None:
    short = "sk-" + chars(30)
    assert short not in redact(f"tried {short}... no luck")


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(KEYS)), st.lists(st.sampled_from([" ", "\n", '"', "'", "`", "=", ":", ", ", "(",
                                                                 ")", "{", "}", "<", ">", "/", "?key=", "; "]),
                                                min_size=2, max_size=2),
       st.text(max_size=30), st.text(max_size=30))
def test_embedded_key_never_survives_redaction(kind: str, seps: list[str], left: str, right: str) -> None:
    secret = KEYS[kind]
    text = f"{left}{seps[0]}{secret}{seps[1]}{right}"
    assert secret not in redact(text)


# --- issue 10: keys split by format characters, spaces or line breaks --------------------------------

SPLIT_KEY = KEYS["project"]


def _every(text: str, n: int, sep: str) -> str:
    return sep.join(text[i : i + n] for i in range(0, len(text), n))


SPLIT_FORMS = {
    "U+2063 every 5": _every(SPLIT_KEY, 5, "\u2063"),
    "U+2066 every 1": "\u2066".join(SPLIT_KEY),
    "U+200B every 3": _every(SPLIT_KEY, 3, "\u200b"),
    "space every 25": _every(SPLIT_KEY, 25, " "),
    "space every 4": _every(SPLIT_KEY, 4, " "),
    "line break every 40": _every(SPLIT_KEY, 40, "\n"),
    "NBSP every 10": _every(SPLIT_KEY, 10, "\u00a0"),
}


@pytest.mark.parametrize("form", list(SPLIT_FORMS))
@pytest.mark.parametrize("as_repr", [False, True], ids=["raw", "repr"])
def test_split_key_in_a_ptb_debug_line_is_masked(captured: io.StringIO, form: str, as_repr: bool) -> None:
    """PTB logs whole updates at DEBUG (``Getting updates: [Update(... text='…')]``): Python's repr writes
    U+2063 as ``\\u2063`` and a line break as ``\\n``. Before issue 10 both passed redaction recoverably."""
    text = SPLIT_FORMS[form]
    shown = repr(text) if as_repr else text
    logging.getLogger("telegram.ext.Updater").debug("Getting updates: [Update(message=Message(text=%s))]", shown)
    output = captured.getvalue()
    visible = "".join(c for c in output if c.isalnum() or c in "-_")
    for start in range(0, len(SPLIT_KEY) - 12):
        assert SPLIT_KEY[start : start + 12] not in visible.replace("u2063", "").replace("u2066", "")
    assert "Getting updates" in output


# --- keys split by punctuation, emoji or combining marks: redaction hides what the guard deletes ---------

SPLIT_FORMS.update({
    "dot every 6": _every(SPLIT_KEY, 6, "."),
    "pipe every 12": _every(SPLIT_KEY, 12, "|"),
    "comma and space every 8": _every(SPLIT_KEY, 8, ", "),
    "spaced pipe every 20": _every(SPLIT_KEY, 20, " | "),
    "emoji every 10": _every(SPLIT_KEY, 10, "\U0001f511"),
    "family emoji every 16": _every(SPLIT_KEY, 16, "\U0001f468\u200d\U0001f469\u200d\U0001f467"),
    "dots every 30": _every(SPLIT_KEY, 30, ".."),
    "U+0336 on every character": "".join(c + "\u0336" for c in SPLIT_KEY),
    "U+0332 on every character": "".join(c + "\u0332" for c in SPLIT_KEY),
    "U+0301 on the first 30": "".join(c + "\u0301" for c in SPLIT_KEY[:30]) + SPLIT_KEY[30:],
})


def _key_windows_left(output: str, key: str) -> list[str]:
    """The 12-character pieces of ``key`` still readable in ``output`` once everything but key characters
    (separators, marks, escapes' backslashes) is dropped."""
    visible = "".join(c for c in output if c.isascii() and (c.isalnum() or c in "-_"))
    return [key[i : i + 12] for i in range(len(key) - 11) if key[i : i + 12] in visible]


@pytest.mark.parametrize("escape", ["raw", "repr", "json"])
@pytest.mark.parametrize("form", [f for f in SPLIT_FORMS if not f.startswith(("U+2063", "U+2066", "U+200B"))])
def test_split_key_is_masked_however_it_is_written(form: str, escape: str) -> None:
    """JSON writes U+0336 as ``\\u0336`` and an emoji as surrogate escapes: those count as what they stand
    for (a mark on the key character before it) or as separators."""
    text = SPLIT_FORMS[form]
    shown = {"raw": text, "repr": repr(text), "json": json.dumps({"text": text})}[escape]
    output = redact(f"Getting updates: [Update(message=Message(text={shown}))]")
    assert not _key_windows_left(output.replace("u0336", "").replace("u0332", "").replace("u0301", ""),
                                 SPLIT_KEY), form
    assert output.startswith("Getting updates")
    assert redact(output) == output


_SEPARATORS = st.sampled_from([".", "|", ", ", " | ", "/", ":", ";", "..", "-", "_", "+", "~", "'", "\"",
                               "\U0001f511", "\u2764\ufe0f", "\U0001f468\u200d\U0001f469\u200d\U0001f467", "\u2022",
                               "\u0336", "\u0332", "\u0301", "\u20dd", "\u2063", "\u200b", "\u2066", " ", "\n",
                               "\u00a0", " . ", "] [", "), ("])


# derandomize: the same 400 examples on every run, so CI is repeatable; the random search found the case
# below, which stays as an expected failure until redaction tells a ".."-split prefix from a mask.
@settings(max_examples=400, deadline=None, derandomize=True)
@given(st.sampled_from(["project", "project_2024", "legacy_user", "service_account", "unscoped", "admin",
                        "anthropic", "github", "huggingface"]),
       st.integers(1, 60), _SEPARATORS, st.booleans(), st.sampled_from(["", "my key: ", "text='", "key="]),
       st.sampled_from(["", " thanks", "'", ", retrying", "\nnext line"]))
def test_redaction_over_approximates_the_guard_on_split_keys(kind: str, size: int, sep: str, as_mark: bool,
                                                            before: str, after: str) -> None:
    """Whatever the guard deletes as a key split into pieces, redaction leaves no 12 characters of it."""
    from flows.inspection import might_carry_secret

    if sep == ".." and size <= 8:
        return  # the known gap (test_a_key_split_by_double_dots_through_its_prefix_is_masked, xfail)
    key = KEYS[kind]
    split = "".join(c + sep for c in key) if as_mark and not sep.isascii() else _every(key, size, sep)
    text = f"{before}{split}{after}"
    if not might_carry_secret(text):
        return  # the guard keeps it (a separator every character or two hides every prefix): not a key
    output = redact(text)
    assert not _key_windows_left(output, key), (kind, size, sep)
    assert redact(output) == output


@pytest.mark.xfail(strict=True, reason="known gap: a key split every 4 characters by '..' starts like a mask "
                                       "('sk-p..'), so redaction leaves it; the guard deletes the message")
def test_a_key_split_by_double_dots_through_its_prefix_is_masked() -> None:
    key = KEYS["project"]
    text = _every(key, 4, "..")
    from flows.inspection import might_carry_secret

    assert might_carry_secret(text)
    assert not _key_windows_left(redact(text), key)
