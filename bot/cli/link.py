"""``onboarding-bot link sign|secret``: self-serve links signed with SELF_SERVE_LINK_SECRET, from a shell.

    onboarding-bot link secret                                   # a fresh SELF_SERVE_LINK_SECRET value
    onboarding-bot link sign --workspace ws_demo --expires 1h [--bot MyBot] [--json]

Nothing is stored: the bot verifies the link by its tag alone. Anyone holding the link can bind their chat to
the workspace until it expires, so send it only to the workspace's own people and keep expiries short. The
link carries its mint time (now): it can replace or disconnect a key another chat connected only if that key
was connected before the link was signed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
from typing import Any

__all__ = ["add_link_parser", "cmd_link"]


def cmd_link(args: argparse.Namespace) -> int:
    """Sign a self-serve link into the bot for one workspace (or print a new signing secret)."""
    if args.action == "secret":
        print(secrets.token_urlsafe(32))
        return 0
    from bot.agents.links import HandoffError, link_for, parse_duration
    from bot.agents.signed_links import SignedLinkError, sign_payload
    from bot.cli.common import configure_logging, load_settings
    from bot.cli.handoff import bot_username
    from storage.timestamps import utcnow

    settings = load_settings()
    configure_logging(settings.log_level, settings.secrets_to_redact())
    secret = settings.link_secret
    if secret is None:
        raise SystemExit("SELF_SERVE_LINK_SECRET is not set: generate one with `onboarding-bot link secret`")
    try:
        issued_at = utcnow().replace(microsecond=0)  # floored: never later than the real mint time
        expires_at = issued_at + parse_duration(args.expires)
        payload = sign_payload(args.workspace, int(expires_at.timestamp()), secret,
                               issued_at=int(issued_at.timestamp()))
    except (HandoffError, SignedLinkError) as exc:
        raise SystemExit(f"cannot sign the link: {exc}") from None
    username = args.bot.lstrip("@") if args.bot else asyncio.run(bot_username(settings))
    result: dict[str, Any] = {"link": link_for(username, payload), "payload": payload,
                              "workspace_id": args.workspace, "issued_at": issued_at.isoformat(),
                              "expires_at": expires_at.replace(microsecond=0).isoformat()}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"Self-serve link for {args.workspace}, usable by anyone who has it until {result['expires_at']}:")
        print(result["link"])
    return 0


def add_link_parser(sub: Any) -> None:
    """Register ``link sign`` and ``link secret`` on the CLI's subparsers."""
    link = sub.add_parser("link", help=cmd_link.__doc__)
    actions = link.add_subparsers(dest="action", required=True)
    sign = actions.add_parser("sign", help="sign a self-serve link for a workspace (SELF_SERVE_LINK_SECRET)")
    sign.add_argument("--workspace", required=True, help="the DoubleTick workspace id (2-30 of A-Z a-z 0-9 _ -)")
    sign.add_argument("--expires", default="1h", help="lifetime such as 1h, 30m or 3d (1 minute to 30 days)")
    sign.add_argument("--bot", help="the bot's username (default BOT_USERNAME, else asked with getMe)")
    sign.add_argument("--json", action="store_true", help="print the result as JSON")
    sign.set_defaults(func=cmd_link)
    secret = actions.add_parser("secret", help="print a fresh random value for SELF_SERVE_LINK_SECRET")
    secret.set_defaults(func=cmd_link)
