"""Which URLs Telegram accepts on an inline keyboard button (pure: no I/O).

Why: one bad URL makes Telegram refuse the whole message ("Bad Request: inline keyboard button URL
... is invalid"), so the step carrying the button can never be shown (issue 9: a ``mailto:`` or bare
host in SUPPORT_URL left users stuck). The Bot API says the button's ``url`` is an "HTTP or tg:// URL
to be opened" (https://core.telegram.org/bots/api#inlinekeyboardbutton); Telegram also wants a host
with a dot for http(s) links. Checked once at start for every configured or content URL.
"""

from __future__ import annotations

from urllib.parse import urlsplit

__all__ = ["button_url_problem"]

SCHEMES = ("http", "https", "tg")


def button_url_problem(url: str) -> str | None:
    """None if Telegram accepts ``url`` on a button, else a short reason."""
    if not url or url != url.strip() or any(c.isspace() for c in url):
        return "must be a URL without spaces"
    try:
        parts = urlsplit(url)
    except ValueError:
        return "is not a valid URL"
    if parts.scheme.lower() not in SCHEMES:
        return "must start with https://, http:// or tg:// (Telegram buttons accept no other links)"
    if parts.scheme.lower() == "tg":
        return None if parts.netloc or parts.path else "needs a target after tg://"
    host = parts.hostname or ""
    if "." not in host.strip(".") or host.startswith(".") or host.endswith("."):
        return "needs a host name with a dot, e.g. https://example.com"
    return None
