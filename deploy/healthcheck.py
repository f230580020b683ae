"""Container health check for the onboarding bot image: GET /healthz when the bot serves webhooks.

Why a script and not ``curl``: the slim image has no curl, and one image runs in two modes. In webhook
mode (``onboarding-bot run --webhook``) the check asks the local HTTP server; in polling mode there is
no HTTP server, so the check passes while the container runs (the container stops when the bot does).
Standard library only, so it runs with the image's Python and nothing else.

Usage: ``python healthcheck.py [PATH]`` (PATH defaults to ``/healthz``; ``/readyz`` also checks the DB).
Exit status 0 = healthy, 1 = unhealthy, as Docker's HEALTHCHECK expects.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["main", "probe_url", "webhook_mode"]

_TIMEOUT_S = 4.0
_WILDCARDS = {"", "0.0.0.0", "::", "[::]"}  # noqa: S104 (matched, never bound)


def webhook_mode(proc_root: Path = Path("/proc")) -> bool:
    """True if some process in this container runs ``onboarding-bot ... --webhook``."""
    for cmdline in proc_root.glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:  # the process ended while we looked
            continue
        if b"--webhook" in args and any(arg.endswith((b"onboarding-bot", b"bot.cli.main")) for arg in args):
            return True
    return False


def probe_url(env: Mapping[str, str], path: str = "/healthz") -> str:
    """The local URL of ``path``, from the same WEBHOOK_LISTEN / WEBHOOK_PORT the server binds."""
    listen = env.get("WEBHOOK_LISTEN", "0.0.0.0").strip()  # noqa: S104 (the server's default)
    if listen in _WILDCARDS:
        host = "[::1]" if listen in {"::", "[::]"} else "127.0.0.1"
    else:
        host = f"[{listen}]" if ":" in listen and not listen.startswith("[") else listen
    port = int(env.get("WEBHOOK_PORT", "8080"))
    return f"http://{host}:{port}{path}"


def main(argv: Sequence[str] = (), env: Mapping[str, str] | None = None,
         proc_root: Path = Path("/proc")) -> int:
    path = argv[0] if argv else "/healthz"
    if not webhook_mode(proc_root):
        return 0
    url = probe_url(os.environ if env is None else env, path)
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response:  # noqa: S310 (fixed http URL)
            healthy = 200 <= response.status < 300
    except (urllib.error.URLError, OSError, ValueError) as exc:
        print(f"unhealthy: {url}: {type(exc).__name__}", file=sys.stderr)
        return 1
    if not healthy:
        print(f"unhealthy: {url}: HTTP {response.status}", file=sys.stderr)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
