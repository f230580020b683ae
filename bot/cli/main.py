"""The ``onboarding-bot`` command: run the bot, migrate, sandboxes, benchmarks and operator tools.

Why argparse: a handful of subcommands with few options; the standard library does it without another
dependency.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import Sequence

from bot.cli import common
from bot.cli.common import configure_logging, load_settings, migrate_database, one_line_failure

__all__ = ["main"]

log = logging.getLogger("bot")


def cmd_run(args: argparse.Namespace) -> int:
    """Run the bot (polling, or with --webhook a webhook server) against the configured Telegram Bot API."""
    from bot.telegram.application import ALLOWED_UPDATES, build_bot

    settings = load_settings()
    configure_logging(settings.log_level, settings.secrets_to_redact())
    if settings.telegram_bot_token is None:
        log.error("TELEGRAM_BOT_TOKEN is not set. Without a token, try `onboarding-bot try` (offline mode).")
        return 2
    listen_fd = getattr(args, "listen_fd", None)
    if getattr(args, "workers", 1) != 1 and not getattr(args, "webhook", False):
        log.error("--workers needs --webhook: polling has exactly one consumer (Telegram's getUpdates)")
        return 2
    if listen_fd is None:  # a worker's supervisor already warned and migrated the database
        for warning in settings.startup_warnings():
            log.warning(warning)
        asyncio.run(migrate_database(settings.database_url))
    if getattr(args, "webhook", False):
        from bot.cli.webhook import run_webhook
        from bot.cli.workers import run_webhook_workers

        workers = getattr(args, "workers", 1)
        if workers != 1 and listen_fd is None:
            return run_webhook_workers(settings, workers)
        return run_webhook(settings, listen_fd=listen_fd)
    from telegram.error import InvalidToken, NetworkError

    bot_app = build_bot(settings, sole_consumer=True)  # polling: Telegram has one consumer
    bot_app.application.post_stop = lambda app: bot_app.close()
    if settings.public_base_url:  # the Mini App needs an HTTP server even when polling
        from bot.web.beside_polling import serve_beside_polling

        serve_beside_polling(bot_app)
    try:
        if settings.guard_lane != "off":  # getUpdates and deletions apart (bot/telegram/guard_lane.py)
            from bot.telegram.lane_runner import serve_with_lane

            asyncio.run(serve_with_lane(bot_app, ALLOWED_UPDATES))
        else:
            bot_app.application.run_polling(allowed_updates=ALLOWED_UPDATES, drop_pending_updates=False,
                                            close_loop=True)
    except InvalidToken:  # PTB's message repeats the token
        raise RuntimeError("Telegram rejected TELEGRAM_BOT_TOKEN: revoked or mistyped? "
                           "@BotFather's /token shows the current one") from None
    except NetworkError as exc:
        raise RuntimeError(f"cannot reach the Telegram Bot API at {settings.telegram_api_base_url}") from exc
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    """Bring the database schema to the latest revision (safe to run from several replicas at once)."""
    from storage.migrate import current_revision

    settings = load_settings()
    configure_logging(settings.log_level, settings.secrets_to_redact())
    asyncio.run(migrate_database(settings.database_url))
    print(f"database at revision {asyncio.run(current_revision(settings.database_url))}")
    return 0


def cmd_sandbox(args: argparse.Namespace) -> int:
    """Start the Telegram, OpenAI and DoubleTick stand-ins on loopback and print their URLs."""
    from bot.standins.sandbox import Sandbox

    with Sandbox(telegram_port=args.telegram_port, openai_port=args.openai_port,
                 doubletick_port=args.doubletick_port) as sandbox:
        print(sandbox.describe(), flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_forever())
    return 0


async def _forever() -> None:
    await asyncio.Event().wait()


def cmd_try(args: argparse.Namespace) -> int:
    """Chat with the real bot in this terminal, everything offline."""
    from bot.cli.try_mode import run_try

    return run_try(script=args.script)


def cmd_diagram(args: argparse.Namespace) -> int:
    """Print the state machine as a Mermaid diagram."""
    from flows.diagram import mermaid

    print(mermaid())
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    """Generate a key-encryption key, or re-seal pending outbox rows under the newest one."""
    if args.action == "generate":
        from storage.sealing import generate_key_spec

        print(generate_key_spec())
        return 0
    from bot.core.outbox import rotate_pending

    settings = load_settings()
    configure_logging(settings.log_level, settings.secrets_to_redact())
    count = asyncio.run(rotate_pending(settings))
    print(f"re-sealed {count} pending outbox rows under the newest key")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="onboarding-bot", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help=cmd_run.__doc__)
    run.add_argument("--webhook", action="store_true",
                     help="serve Telegram's webhook, /healthz, /readyz and /metrics on WEBHOOK_LISTEN:WEBHOOK_PORT")
    run.add_argument("--workers", type=int, default=1,
                     help="with --webhook: this many worker processes on one port (above 1 needs PostgreSQL)")
    run.add_argument("--listen-fd", type=int, default=None, help=argparse.SUPPRESS)  # a worker of --workers
    run.set_defaults(func=cmd_run)
    sub.add_parser("migrate", help=cmd_migrate.__doc__).set_defaults(func=cmd_migrate)
    sandbox = sub.add_parser("sandbox", help=cmd_sandbox.__doc__)
    sandbox.add_argument("--telegram-port", type=int, default=0)
    sandbox.add_argument("--openai-port", type=int, default=0)
    sandbox.add_argument("--doubletick-port", type=int, default=0)
    sandbox.set_defaults(func=cmd_sandbox)
    try_parser = sub.add_parser("try", help=cmd_try.__doc__)
    try_parser.add_argument("--script", help="read the user's lines from this file instead of the keyboard")
    try_parser.set_defaults(func=cmd_try)
    sub.add_parser("diagram", help=cmd_diagram.__doc__).set_defaults(func=cmd_diagram)
    keys = sub.add_parser("keys", help=cmd_keys.__doc__)
    keys.add_argument("action", choices=["generate", "rotate"])
    keys.set_defaults(func=cmd_keys)
    from bot.cli.webhook import add_webhook_parser

    add_webhook_parser(sub)
    from bot.bench.cli import add_bench_parsers

    add_bench_parsers(sub)  # bench, drill
    from bot.cli.handoff import add_handoff_parser

    add_handoff_parser(sub)  # handoff create, handoff revoke
    from bot.cli.init import add_init_parser

    add_init_parser(sub)
    from bot.cli.link import add_link_parser

    add_link_parser(sub)  # link sign, link secret
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; a failure is one line on stderr (``--debug``, anywhere, shows the traceback)."""
    words = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in words
    common.debug = debug
    args = build_parser().parse_args([word for word in words if word != "--debug"])
    try:
        return int(args.func(args) or 0)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:
        if debug:
            raise
        print(f"onboarding-bot {args.command}: {one_line_failure(exc)} (--debug shows the traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
