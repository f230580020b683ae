"""Logging for every process of the bot (the CLI's, and the guard process it starts): redacted, one format.

Why its own module: the guard process (``bot/telegram/guard_process.py``) must log exactly as the main
process does, redaction included, and the Telegram wing may not import the CLI.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from bot.redaction import install_redaction

__all__ = ["configure_logging"]


class _QuietBootstrap(logging.Filter):
    """PTB logs a failed start-up (getMe, deleteWebhook) with a full traceback before raising it; the CLI
    prints that failure as one line, so the traceback is dropped here unless ``--debug`` is given."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "Network Retry Loop (Bootstrap" in record.getMessage():
            record.exc_info = None
            record.exc_text = None
        return True


def configure_logging(level: str, secrets: Sequence[str] = (), *, debug: bool = False) -> None:
    """Structured-enough, redacted logs; httpx would print the bot token in URLs at INFO. ``debug``
    keeps the tracebacks PTB logs for a failed start-up (the CLI prints that failure as one line)."""
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
