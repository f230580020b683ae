"""``onboarding-bot run --webhook`` and ``onboarding-bot webhook set|delete|info``.

Why setting the webhook is its own command: PTB's built-in ``start_webhook`` calls ``setWebhook`` on
every start, so each replica (and each deploy, with ``drop_pending_updates``) would re-register it and
could throw the backlog away. Here replicas only serve; a deploy job (or an operator) runs
``webhook set`` once, with the secret token every replica checks.

Shutdown: SIGTERM (or Ctrl-C) makes /readyz answer 503, uvicorn stops accepting connections and lets
in-flight webhook requests finish (each is an update being processed), then the lifespan drains the
key pipelines, stops the outbox worker and closes every client. Updates Telegram could not deliver in
the meantime stay queued at Telegram and go to another replica or to this one after the restart.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import socket
import threading
from collections.abc import Generator, Iterable
from types import FrameType
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import uvicorn
from starlette.routing import BaseRoute

from bot.web.limits import server_config
from bot.web.server import DEFAULT_WEBHOOK_PATH, WebState, create_web_app

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.telegram.application import BotApp

__all__ = ["GRACEFUL_SHUTDOWN_S", "add_webhook_parser", "cmd_webhook", "mounted_routes", "run_webhook",
           "webhook_path"]

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
GRACEFUL_SHUTDOWN_S = 25  # in-flight requests; Kubernetes' default grace period is 30 s
DEFAULT_MAX_CONNECTIONS = 40  # Telegram's default (1-100)


def webhook_path(settings: Settings) -> str:
    """The path Telegram posts to: the path of WEBHOOK_URL, else /telegram."""
    path = urlsplit(settings.webhook_url).path if settings.webhook_url else ""
    return path if path not in ("", "/") else DEFAULT_WEBHOOK_PATH


def mounted_routes(bot_app: BotApp) -> list[BaseRoute]:
    """Extra HTTP routes served beside the webhook: the support-agent handoff API, the Mini App."""
    from bot.agents.api import handoff_routes
    from bot.web.miniapp import miniapp_routes

    routes = miniapp_routes(bot_app)
    if bot_app.support is None:
        return routes
    return [*handoff_routes(bot_app.support.api), *routes]


class _GracefulServer(uvicorn.Server):
    """uvicorn, but the first signal also flips readiness, and a graceful stop exits with status 0."""

    def __init__(self, config: uvicorn.Config, state: WebState, *, handled: tuple[int, ...] = STOP_SIGNALS) -> None:
        super().__init__(config)
        self._web = state
        self._handled = handled

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._web.stopping = True
        super().handle_exit(sig, frame)

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # uvicorn re-raises the captured signal after shutting down, which would end the process
        # "killed by SIGTERM" even though everything was drained; we simply return instead.
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        originals = {sig: signal.signal(sig, self.handle_exit) for sig in self._handled}
        if signal.SIGINT not in self._handled:  # a worker: Ctrl-C reaches the supervisor, which sends SIGTERM
            originals[signal.SIGINT] = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            yield
        finally:
            for sig, handler in originals.items():
                signal.signal(sig, handler)


def run_webhook(settings: Settings, *, extra_routes: Iterable[BaseRoute] = (), listen_fd: int | None = None) -> int:
    """Serve the webhook, probes and metrics on WEBHOOK_LISTEN:WEBHOOK_PORT until SIGTERM; with ``listen_fd``,
    on the socket a ``--workers`` supervisor bound (bot/cli/workers.py)."""
    from bot.telegram.application import build_bot

    bot_app = build_bot(settings)
    state = WebState(shared_port=listen_fd is not None)
    app = create_web_app(bot_app, webhook_path=webhook_path(settings), state=state,
                         extra_routes=[*extra_routes, *mounted_routes(bot_app)])
    # log_config=None: uvicorn's records go through the root logger and its redaction filter.
    # server_config: header/body deadlines, limit_concurrency, short keep-alive, a cap on the request head
    config = server_config(app, settings.webhook_listen, settings.webhook_port, lifespan="on",
                           log_config=None, access_log=False, server_header=False,
                           timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S)
    handled = STOP_SIGNALS if listen_fd is None else (signal.SIGTERM,)  # a worker's Ctrl-C is its supervisor's
    server = _GracefulServer(config, state, handled=handled)
    state.request_stop = lambda: server.handle_exit(signal.SIGTERM, None)
    server.run(sockets=None if listen_fd is None else [socket.socket(fileno=listen_fd)])
    if state.failure is not None:
        log.error("the webhook server stopped: %s", type(state.failure).__name__)
        return 1
    return 0 if server.started else 1


def add_webhook_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``webhook set|delete|info`` on the CLI's subcommands."""
    parser = sub.add_parser("webhook", help=cmd_webhook.__doc__)
    parser.add_argument("action", choices=["set", "delete", "info"])
    parser.add_argument("--url", help="public HTTPS URL Telegram posts to (default: WEBHOOK_URL)")
    parser.add_argument("--max-connections", type=int, default=DEFAULT_MAX_CONNECTIONS,
                        help="parallel connections Telegram may open, 1-100 (default 40)")
    parser.add_argument("--drop-pending-updates", action="store_true",
                        help="discard updates Telegram is still holding (normally you don't want this)")
    parser.set_defaults(func=cmd_webhook)


def cmd_webhook(args: argparse.Namespace) -> int:
    """Register, remove or inspect the Telegram webhook (run once per deploy, not per replica)."""
    from bot.cli.common import configure_logging, load_settings

    settings = load_settings()
    configure_logging(settings.log_level, settings.secrets_to_redact())
    if settings.telegram_bot_token is None:
        print("TELEGRAM_BOT_TOKEN is not set", flush=True)
        return 2
    return asyncio.run(_webhook_action(settings, args))


async def _webhook_action(settings: Settings, args: argparse.Namespace) -> int:
    from telegram import Bot

    from bot.telegram.application import ALLOWED_UPDATES

    assert settings.telegram_bot_token is not None
    base = settings.telegram_api_base_url
    bot = Bot(settings.telegram_bot_token.get_secret_value(), base_url=f"{base}/bot",
              base_file_url=f"{base}/file/bot")
    async with bot:
        if args.action == "set":
            url = args.url or settings.webhook_url
            if not url:
                print("no webhook URL: set WEBHOOK_URL or pass --url", flush=True)
                return 2
            if settings.webhook_secret_token is None:
                print("WEBHOOK_SECRET_TOKEN is not set: replicas would have no way to reject forged updates",
                      flush=True)
                return 2
            if urlsplit(url).scheme != "https":
                print("warning: Telegram's cloud Bot API accepts only https webhook URLs", flush=True)
            await bot.set_webhook(url, max_connections=args.max_connections, allowed_updates=ALLOWED_UPDATES,
                                  drop_pending_updates=args.drop_pending_updates,
                                  secret_token=settings.webhook_secret_token.get_secret_value())
            print(f"webhook set: {url} (max_connections {args.max_connections}, "
                  f"allowed updates {', '.join(ALLOWED_UPDATES)})", flush=True)
        elif args.action == "delete":
            await bot.delete_webhook(drop_pending_updates=args.drop_pending_updates)
            print("webhook deleted", flush=True)
        else:
            info = await bot.get_webhook_info()
            print(f"url: {info.url or '(none)'}", flush=True)
            print(f"pending updates: {info.pending_update_count}", flush=True)
            print(f"max connections: {info.max_connections}", flush=True)
            print(f"allowed updates: {', '.join(info.allowed_updates or []) or '(default)'}", flush=True)
            if info.last_error_date is not None:
                print(f"last error: {info.last_error_date.isoformat()} {info.last_error_message}", flush=True)
    return 0
