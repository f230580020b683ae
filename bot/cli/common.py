"""What every subcommand shares: redacted logging and settings loaded with a one-line error.

Why its own module: the main CLI and its subcommand modules (handoff, webhook) all need these, and
importing them from the main CLI would make the subcommands and the CLI import each other.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.config import Settings

__all__ = ["configure_logging", "load_settings"]


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
