"""What every subcommand shares: redacted logging and settings loaded with a one-line error.

Why its own module: the main CLI and its subcommand modules (handoff, webhook) all need these, and
importing them from the main CLI would make the subcommands and the CLI import each other.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.config import Settings

__all__ = ["configure_logging", "load_settings", "one_line_failure"]

# user:password@ in a URL (a DATABASE_URL in an error message) is replaced before anything is printed.
_URL_CREDENTIALS = re.compile(r"(://[^/@\s:]*):[^/@\s]*@")


# Set by ``onboarding-bot --debug``: start-up failures keep their tracebacks.
debug = False


class _QuietBootstrap(logging.Filter):
    """PTB logs a failed start-up (getMe, deleteWebhook) with a full traceback before raising it; the CLI
    prints that failure as one line, so the traceback is dropped here unless ``--debug`` is given."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "Network Retry Loop (Bootstrap" in record.getMessage():
            record.exc_info = None
            record.exc_text = None
        return True


def configure_logging(level: str, secrets: Sequence[str] = ()) -> None:
    """Structured-enough, redacted logs; httpx would print the bot token in URLs at INFO."""
    from bot.redaction import install_redaction

    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    for noisy in ("httpx", "httpcore", "telegram.ext.Updater", "apscheduler"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # LOG_LEVEL=DEBUG includes PTB's debug output (raw updates and Bot API payloads, pasted keys
    # included) on purpose: the redaction below masks them, and tests/e2e/test_plaintext_canary.py runs
    # the bot at DEBUG to prove it.
    install_redaction(secrets)
    if not debug:
        logging.getLogger("telegram.ext").addFilter(_QuietBootstrap())


def load_settings() -> Settings:
    """Load and validate settings; a bad value stops the process with a message that echoes no secret."""
    from pydantic import ValidationError

    from bot.config import Settings

    try:
        return Settings()
    except ValidationError as exc:
        for error in exc.errors(include_input=False, include_url=False):
            field = ".".join(str(part) for part in error["loc"]).upper()
            print(f"configuration error: {field}: {error['msg']}", file=sys.stderr)
        raise SystemExit(2) from None


def one_line_failure(exc: BaseException) -> str:
    """What went wrong, in one line an operator can act on, with no secret and no traceback.

    The cause chain is followed to the innermost error that says something (httpx's ConnectError under
    PTB's NetworkError, the resolver's message under asyncpg's), and URL passwords and configured secrets
    are masked.
    """
    from bot.redaction import redact

    causes: list[BaseException] = [exc]
    while causes[-1].__cause__ is not None and len(causes) < 8:
        causes.append(causes[-1].__cause__)
    parts: list[str] = []
    for cause in causes:
        first = (str(cause).strip().splitlines() or [""])[0].strip()
        text = f"{type(cause).__name__}: {first}" if first else type(cause).__name__
        if not any((first or text) in part for part in parts):  # a wrapper that only repeats its cause
            parts.append(text)
    line = " <- ".join(parts)
    line = _URL_CREDENTIALS.sub(r"\1:***@", redact(line))
    return line if len(line) <= 400 else line[:399] + "…"
