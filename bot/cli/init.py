"""``onboarding-bot init``: write a ``.env`` with freshly generated secrets, never touching one that exists.

Why a command: a ``.env`` file runs no shell, so a README line such as ``FINGERPRINT_SECRET=$(python -c …)``
ends up as that literal, publicly known text. Generating the values here leaves nothing to copy by hand.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["GENERATED", "TO_FILL", "add_init_parser", "write_env"]


def _token(nbytes: int) -> Callable[[], str]:
    return lambda: secrets.token_urlsafe(nbytes)


def _key_spec() -> str:
    from storage.sealing import generate_key_spec

    return generate_key_spec()


# Secrets the bot can generate itself. Each is written once; a value already in the file is kept.
GENERATED: dict[str, Callable[[], str]] = {
    "FINGERPRINT_SECRET": _token(32),
    "KEY_ENCRYPTION_KEYS": _key_spec,
    "WEBHOOK_SECRET_TOKEN": _token(36),  # 48 URL-safe characters: Telegram allows A-Z a-z 0-9 _ -
    "HANDOFF_API_TOKEN": _token(32),
    "SELF_SERVE_LINK_SECRET": _token(32),
}

# What only the operator can supply, with where it comes from.
TO_FILL: dict[str, str] = {
    "TELEGRAM_BOT_TOKEN": "from @BotFather (/newbot); without it `scripts/start.sh` runs the offline try mode",
    "DOUBLETICK_API_KEY": "DoubleTick's API key, for connecting customers' workspaces automatically",
    "DOUBLETICK_CONNECT_PATH": "the DoubleTick endpoint that stores a workspace's OpenAI key",
    "AGENT_USER_IDS": "Telegram user ids of your support agents, comma-separated (they hand customers links)",
    "ADMIN_USER_IDS": "Telegram user ids of admins, comma-separated",
    "PRIVACY_CONTACT": "where customers send privacy questions and deletion requests (shown by /privacy)",
    "OPENAI_EGRESS_IPS": "the bot's public IP addresses, named to customers whose OpenAI key has an IP allowlist",
}

_ASSIGNMENT = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$")


def _present(text: str) -> dict[str, str]:
    """Names already assigned in the file, with their (possibly empty) values."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        match = _ASSIGNMENT.match(line)
        if match:
            found[match.group(1).upper()] = match.group(2).strip()
    return found


def write_env(path: Path) -> tuple[list[str], list[str]]:
    """Add every missing generated secret and a blank line for each value to fill; return (added, left to fill).

    Existing lines are never changed, so running it twice, or on an operator's file, is safe.
    """
    existing = path.read_text(encoding="utf-8") if path.exists() else ""
    present = _present(existing)
    added = [name for name in GENERATED if name not in present]
    blanks = [name for name in TO_FILL if name not in present]
    lines: list[str] = []
    if added or blanks:
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        lines.append(f"# Added by `onboarding-bot init` on {stamp}. Keep this file private; never commit it.")
        lines += [f"{name}={GENERATED[name]()}" for name in added]
        for name in blanks:
            lines += [f"# {TO_FILL[name]}", f"{name}="]
    if lines:
        separator = "" if not existing or existing.endswith("\n") else "\n"
        # The file holds secrets: create it readable by its owner only.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as handle:
            handle.write(separator + ("\n" if existing else "") + "\n".join(lines) + "\n")
    unfilled = [name for name in TO_FILL if not present.get(name)]
    # A generated secret assigned an empty value is the operator's line: reported, never rewritten.
    unfilled += [name for name in GENERATED if name in present and not present[name]]
    return added, unfilled


def cmd_init(args: argparse.Namespace) -> int:
    """Write .env with fresh secrets (never overwriting a value that exists) and say what is left to fill."""
    path = Path(args.path)
    added, unfilled = write_env(path)
    if added:
        print(f"{path}: generated {', '.join(added)}")
    else:
        print(f"{path}: every generated secret is already set; nothing changed")
    if unfilled:
        print("Left to fill in (see docs/deploying.md):")
        for name in unfilled:
            print(f"  {name:<24} {TO_FILL.get(name, 'was empty: delete the line and run init again')}")
    return 0


def add_init_parser(sub: Any) -> None:
    init = sub.add_parser("init", help=cmd_init.__doc__)
    init.add_argument("--path", default=".env", help="the file to write (default .env)")
    init.set_defaults(func=cmd_init)
