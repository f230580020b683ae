"""Which URLs a button may carry, checked the way the Bot API server's TDLib checks them.

Why a port and not a regex: a support link that Telegram refuses makes every message carrying that
button impossible to send, so the stand-in must refuse exactly what Telegram refuses (and the bot
must validate its URLs at start). Followed: tdlib/td ``LinkManager::check_link`` /
``check_link_impl`` (td/telegram/LinkManager.cpp) and ``parse_url`` (tdutils/td/utils/HttpUrl.cpp):
only ``http``/``https`` (or ``tg:``) schemes, a host needs a dot ("Wrong HTTP URL"), ports 1-65535,
RFC 3986 host characters. ``ReplyMarkup.cpp`` ``get_inline_keyboard_button`` prefixes the failure
with "Inline keyboard button " and the Bot API server (``Client::fail_query_with_error``) lower-cases
the first letter, giving e.g. ``Bad Request: inline keyboard button URL 'http://localhost/' is
invalid: Wrong HTTP URL`` (the wording bots report, e.g. "... 'tel:+371...' is invalid: Wrong port
number specified in the URL"). Bot API docs: https://core.telegram.org/bots/api#inlinekeyboardbutton
("url: HTTP or tg:// URL to be opened when the button is pressed"; ``web_app`` and ``login_url``
must be HTTPS).

One deliberate extra: TDLib reads ``mailto:a@b.example`` as user info ``mailto:a`` on host
``b.example`` and lets it through to Telegram's servers, which are documented to accept only HTTP and
tg:// URLs. The stand-in refuses any other ``scheme:`` with "Unsupported URL protocol" (stricter, as a
stand-in must be).
"""

from __future__ import annotations

import ipaddress
import re

__all__ = ["check_link", "normalized_link"]

_HOST_OK = frozenset("abcdefghijklmnopqrstuvwxyz.0123456789-_!$,~*'();&+=")
_HEX = frozenset("0123456789abcdef")
_OTHER_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+-]*:(?![0-9/])")


class LinkError(ValueError):
    """TDLib's reason, e.g. "Wrong HTTP URL"."""


def _parse_url(url: str) -> tuple[str, str, str, bool, int, str]:
    """``parse_url``: (protocol, userinfo, host, is_ipv6, specified_port, query) or LinkError."""
    cut = next((i for i, c in enumerate(url) if c in ":/?#@[]"), len(url))
    protocol_str = url[:cut].lower()
    if url.startswith("://", cut):
        if protocol_str not in ("http", "https"):
            raise LinkError("Unsupported URL protocol")
        protocol, rest = protocol_str, url[cut + 3:]
    else:
        protocol, rest = "http", url
    end = next((i for i, c in enumerate(rest) if c in "/?#"), len(rest))
    userinfo_host_port, query = rest[:end], rest[end:]
    colon = len(userinfo_host_port) - 1
    while colon > 0 and userinfo_host_port[colon] not in ":]@":
        colon -= 1
    port = 0
    userinfo_host = userinfo_host_port
    if colon > 0 and userinfo_host_port[colon] == ":":
        port_text = userinfo_host_port[colon + 1:]
        while len(port_text) > 1 and port_text[0] == "0":
            port_text = port_text[1:]
        port = int(port_text) if port_text.isascii() and port_text.isdigit() and len(port_text) < 10 else -1
        port = -1 if port == 0 else port
        userinfo_host = userinfo_host_port[:colon]
    if port < 0 or port > 65535:
        raise LinkError("Wrong port number specified in the URL")
    userinfo, _, host = userinfo_host.rpartition("@")
    is_ipv6 = host.startswith("[") and host.endswith("]") and len(host) >= 2
    if is_ipv6:
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise LinkError("Wrong IPv6 address specified in the URL") from None
    if not host:
        raise LinkError("URL host is empty")
    if host == ".":
        raise LinkError("Host is invalid")
    host = host.lower()
    if not is_ipv6:
        i = 0
        while i < len(host):
            char = host[i]
            if char in _HOST_OK or ord(char) >= 128:
                i += 1
                continue
            if char == "%":
                if host[i + 1:i + 2] in _HEX and host[i + 2:i + 3] in _HEX and len(host) >= i + 3:
                    i += 3
                    continue
                raise LinkError("Wrong percent-encoded symbol in URL host")
            raise LinkError("Wrong URL host")
    query = query.rstrip() or "/"
    if not query.startswith("/"):
        query = "/" + query
    query = "".join(f"%{ord(c):02X}" if ord(c) <= 0x20 else c for c in query)
    return protocol, userinfo, host, is_ipv6, port, query


def normalized_link(link: str, *, http_only: bool = False, https_only: bool = False) -> str:
    """``check_link_impl``: the URL Telegram stores (``grammy.dev`` -> ``http://grammy.dev/``) or LinkError."""
    lowered = link.lower()
    scheme = next((s for s in ("tg:", "ton:", "tonsite:") if lowered.startswith(s)), None)
    body = link[len(scheme):] if scheme else link
    if scheme and body.startswith("//"):
        body = body[2:]
    protocol, userinfo, host, is_ipv6, port, query = _parse_url(body)
    if https_only and (protocol != "https" or scheme):
        raise LinkError("Only HTTPS links are allowed")
    if scheme:
        if http_only:
            raise LinkError("Only HTTP links are allowed")
        if body.lower().startswith("http://") or protocol == "https" or userinfo or port or is_ipv6:
            raise LinkError("Wrong tg URL" if scheme == "tg:" else "Wrong ton URL")
        if any(not (c.isascii() and c.isalnum()) and c not in "-_" and not (scheme == "tonsite:" and c == ".")
               for c in host):
            raise LinkError("Unallowed characters in URL host")
        if scheme != "tg:":
            raise LinkError("Unsupported URL protocol")  # Bot API: "HTTP or tg:// URL"
        tail = query[1:] if query.startswith("/?") else query
        return f"tg://{host}{tail}"
    if "." not in host and not is_ipv6:
        raise LinkError("Wrong HTTP URL")
    if _OTHER_SCHEME.match(link) and not lowered.startswith(("http://", "https://")):
        raise LinkError("Unsupported URL protocol")  # the stand-in's stricter extra (see module doc)
    port_part = f":{port}" if port else ""
    user_part = f"{userinfo}@" if userinfo else ""
    return f"{protocol}://{user_part}{host}{port_part}{query}"


def check_link(link: str, what: str, *, http_only: bool = False, https_only: bool = False) -> str:
    """The normalised URL, or ValueError carrying the Bot API description (without "Bad Request: ")."""
    try:
        return normalized_link(link, http_only=http_only, https_only=https_only)
    except LinkError as error:
        raise ValueError(f"{what} URL '{link}' is invalid: {error}") from None
