"""What every subcommand shares: redacted logging and settings loaded with a one-line error.

Why its own module: the main CLI and its subcommand modules (handoff, webhook) all need these, and
importing them from the main CLI would make the subcommands and the CLI import each other.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.config import Settings

__all__ = ["StartupFailure", "configure_logging", "load_settings", "migrate_database", "one_line_failure",
           "reach_database"]

# user:password@ in a URL (a DATABASE_URL in an error message) is replaced before anything is printed.
_URL_CREDENTIALS = re.compile(r"(://[^/@\s:]*):[^/@\s]*@")


class StartupFailure(RuntimeError):
    """A start-up failure whose message already says what failed and why, in one line.

    :func:`one_line_failure` prints it as it is: its causes (kept for ``--debug``) would only repeat it.
    """


# Set by ``onboarding-bot --debug``: start-up failures keep their tracebacks.
debug = False


def configure_logging(level: str, secrets: Sequence[str] = ()) -> None:
    """Structured-enough, redacted logs (:func:`bot.logs.configure_logging`), quieter unless ``--debug``."""
    from bot.logs import configure_logging as configure

    configure(level, secrets, debug=debug)


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


async def reach_database(url: str) -> None:
    """Connect once, so a database that cannot be reached is named as the database.

    Why a separate first connection: the resolver's or the driver's own error ("gaierror: Name or service
    not known", "Connect call failed") never says it was the database it tried, and wrapping the whole
    migration would mislabel a failing migration as an unreachable database. A bad URL raises its own
    ``ValueError`` before any connection.
    """
    from sqlalchemy import text

    from storage.db import create_engine, database_location

    where = database_location(url)  # a URL that does not parse raises here, as itself
    try:
        engine = create_engine(url)  # may create the SQLite file's directory
        try:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        finally:
            await engine.dispose()
    except Exception as exc:
        raise StartupFailure(f"cannot reach the database at {where}: {_innermost(exc)}") from exc


def _innermost(exc: BaseException) -> str:
    """The error at the bottom of a driver's wrappers (SQLAlchemy's ``.orig``, then ``__cause__``)."""
    seen: BaseException = exc
    for _ in range(8):
        deeper = getattr(seen, "orig", None) or seen.__cause__
        if not isinstance(deeper, BaseException) or not str(deeper).strip():
            break
        seen = deeper
    text = (str(seen).strip().splitlines() or [""])[0].strip()
    # The resolver's and the socket's errors need their type ("gaierror: [Errno -2] ..."); the drivers'
    # messages (asyncpg's 'role "bob" does not exist') say it all.
    return f"{type(seen).__name__}: {text}" if isinstance(seen, OSError) or not text else text


async def migrate_database(url: str) -> None:
    """Check the database answers (:func:`reach_database`), then bring its schema to the latest revision."""
    from storage.migrate import upgrade

    await reach_database(url)
    await upgrade(url)


def one_line_failure(exc: BaseException) -> str:
    """What went wrong, in one line an operator can act on, with no secret and no traceback.

    The cause chain is followed to the innermost error that says something (httpx's ConnectError under
    PTB's NetworkError, the resolver's message under asyncpg's), and URL passwords and configured secrets
    are masked.
    """
    from bot.redaction import redact

    if isinstance(exc, StartupFailure):
        return _URL_CREDENTIALS.sub(r"\1:***@", redact(str(exc)))
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
