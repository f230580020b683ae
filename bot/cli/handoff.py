"""``onboarding-bot handoff create|revoke``: handoff links from a shell, for operators and scripts.

    onboarding-bot handoff create --workspace ws_demo --name "Demo Workspace" --label "Ana" --expires 72h \
        --agent 4242 [--qr link.png | --no-qr] [--json]
    onboarding-bot handoff revoke 17

The link is printed once (only its digest is stored); the QR code is written as a PNG file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.config import Settings

__all__ = ["add_handoff_parser", "bot_username"]


async def bot_username(settings: Settings) -> str:
    """BOT_USERNAME, else asked from Telegram with getMe."""
    if settings.bot_username:
        return settings.bot_username
    if settings.telegram_bot_token is None:
        raise SystemExit("set BOT_USERNAME (or TELEGRAM_BOT_TOKEN, to ask Telegram for it)")
    from telegram import Bot

    base = settings.telegram_api_base_url
    async with Bot(settings.telegram_bot_token.get_secret_value(), base_url=f"{base}/bot") as bot:
        return str(bot.username)


async def _create(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    from bot.agents.links import HandoffError, HandoffService, parse_duration
    from bot.agents.roles import AgentDirectory, Role
    from bot.cli.common import migrate_database
    from storage.db import create_engine, session_factory
    from storage.repositories import AgentRepository, AuditLog, HandoffRepository

    username = await bot_username(settings)  # first: a missing BOT_USERNAME must not leave a database behind
    await migrate_database(settings.database_url)
    engine = create_engine(settings.database_url)
    try:
        sessions = session_factory(engine)
        if args.agent is not None:
            directory = AgentDirectory(AgentRepository(sessions), agents=settings.agent_user_ids,
                                       admins=settings.admin_user_ids)
            if await directory.role_of(args.agent) < Role.AGENT:
                raise SystemExit(f"--agent {args.agent} is not a support agent (AGENT_USER_IDS or /add_agent)")
        service = HandoffService(HandoffRepository(sessions), AuditLog(sessions), bot_username=username,
                                 default_ttl=timedelta(hours=settings.handoff_link_ttl_hours))
        try:
            ttl = parse_duration(args.expires) if args.expires else None
            link = await service.create(args.workspace, via="cli", workspace_name=args.name, label=args.label,
                                        ttl=ttl, created_by=args.agent)
        except HandoffError as exc:
            raise SystemExit(f"cannot create the link: {exc}") from None
    finally:
        await engine.dispose()
    qr_path = None
    if not args.no_qr:
        qr_path = Path(args.qr or f"handoff-{link.id}.png")
        qr_path.write_bytes(link.qr_png())
    return {"id": link.id, "link": link.url, "workspace_id": link.workspace_id,
            "workspace_name": link.workspace_name, "label": link.label, "expires_at": link.expires_at.isoformat(),
            "agent_user_id": link.created_by, "qr_png": str(qr_path) if qr_path else None}


async def _revoke(settings: Settings, link_id: int) -> bool:
    from bot.agents.links import HandoffService
    from storage.db import create_engine, session_factory
    from storage.repositories import AuditLog, HandoffRepository

    engine = create_engine(settings.database_url)
    try:
        sessions = session_factory(engine)
        service = HandoffService(HandoffRepository(sessions), AuditLog(sessions), bot_username="-")
        return await service.revoke(link_id, by=None, any_link=True) is not None
    finally:
        await engine.dispose()


def cmd_handoff(args: argparse.Namespace) -> int:
    """Create or revoke a support handoff link."""
    from bot.cli.common import configure_logging, load_settings

    settings = load_settings()
    configure_logging(settings.log_level, settings.secrets_to_redact())
    if args.action == "revoke":
        revoked = asyncio.run(_revoke(settings, args.link_id))
        print(f"link #{args.link_id} revoked" if revoked else f"no open link #{args.link_id}")
        return 0 if revoked else 1
    created = asyncio.run(_create(settings, args))
    if args.json:
        print(json.dumps(created))
        return 0
    name = created["workspace_name"] or created["workspace_id"]
    label = f" · {created['label']}" if created["label"] else ""
    print(f"Link #{created['id']} for {name}{label}, single use, valid until {created['expires_at']}:")
    print(created["link"])
    if created["qr_png"]:
        print(f"QR code (PNG): {created['qr_png']}", file=sys.stderr)
    return 0


def add_handoff_parser(sub: Any) -> None:
    """Register ``handoff create`` and ``handoff revoke`` on the CLI's subparsers."""
    handoff = sub.add_parser("handoff", help=cmd_handoff.__doc__)
    actions = handoff.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="create a single-use link into the bot for one customer")
    create.add_argument("--workspace", required=True, help="the customer's DoubleTick workspace id")
    create.add_argument("--name", help="the workspace's name, shown to the customer")
    create.add_argument("--label", help="your note about the customer (shown to agents only)")
    create.add_argument("--expires", help="lifetime such as 72h, 30m or 3d (default HANDOFF_LINK_TTL_HOURS)")
    create.add_argument("--agent", type=int, help="Telegram user id of the agent to notify")
    create.add_argument("--qr", help="where to write the QR code PNG (default handoff-<id>.png)")
    create.add_argument("--no-qr", action="store_true", help="do not write a QR code")
    create.add_argument("--json", action="store_true", help="print the result as JSON")
    create.set_defaults(func=cmd_handoff)
    revoke = actions.add_parser("revoke", help="revoke a link so it can no longer be opened")
    revoke.add_argument("link_id", type=int)
    revoke.set_defaults(func=cmd_handoff)
