"""All three stand-ins on loopback, plus the environment that points the real bot at them.

Used by ``onboarding-bot sandbox`` (manual runs), ``onboarding-bot try`` and the end-to-end tests.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from bot.standins.demo_keys import DEMO_KEYS, register_demo_keys
from bot.standins.doubletick import (
    DEFAULT_CONNECT_PATH,
    DEMO_OPERATOR_KEY,
    FakeDoubleTick,
    create_doubletick_app,
)
from bot.standins.openai import FakeOpenAI, create_openai_app
from bot.standins.server import BackgroundServer
from bot.standins.telegram import FakeTelegram, create_telegram_app

__all__ = ["SANDBOX_BOT_TOKEN", "Sandbox"]

# Shape of a real token (digits:35 characters); only the stand-in accepts it.
SANDBOX_BOT_TOKEN = "7000000001:AAStandInTokenForLocalSandboxOnly01"


class Sandbox:
    """Start the Telegram Bot API, OpenAI and DoubleTick stand-ins, each in its own thread."""

    def __init__(self, telegram_port: int = 0, openai_port: int = 0, doubletick_port: int = 0) -> None:
        self.telegram = FakeTelegram()
        self.openai = FakeOpenAI()
        register_demo_keys(self.openai)
        self.doubletick = FakeDoubleTick()
        self._servers = {
            "telegram": BackgroundServer(create_telegram_app(self.telegram), port=telegram_port),
            "openai": BackgroundServer(create_openai_app(self.openai), port=openai_port),
            "doubletick": BackgroundServer(create_doubletick_app(self.doubletick), port=doubletick_port),
        }

    @property
    def telegram_url(self) -> str:
        return self._servers["telegram"].url

    @property
    def openai_url(self) -> str:
        return self._servers["openai"].url + "/v1"

    @property
    def doubletick_url(self) -> str:
        return self._servers["doubletick"].url

    def start(self) -> Sandbox:
        for server in self._servers.values():
            server.start()
        return self

    def stop(self) -> None:
        for server in self._servers.values():
            server.stop()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def bot_environment(self, database_url: str, *, auto_connect: bool = True, demo_open_workspaces: bool = True,
                        **extra: Any) -> dict[str, str]:
        """Settings that point the real bot at these stand-ins (fresh secrets each time)."""
        from storage.sealing import generate_key_spec

        env = {
            "TELEGRAM_BOT_TOKEN": SANDBOX_BOT_TOKEN,
            "TELEGRAM_API_BASE_URL": self.telegram_url,
            "OPENAI_API_BASE_URL": self.openai_url,
            "DOUBLETICK_API_BASE_URL": self.doubletick_url,
            "DATABASE_URL": database_url,
            "FINGERPRINT_SECRET": secrets.token_urlsafe(32),
            "KEY_ENCRYPTION_KEYS": generate_key_spec(),
            # Try mode and the sandbox are local demos: anyone may type a workspace id (never in production).
            "INSECURE_DEMO_OPEN_WORKSPACES": "true" if demo_open_workspaces else "false",
        }
        if auto_connect:
            env["DOUBLETICK_API_KEY"] = DEMO_OPERATOR_KEY
            env["DOUBLETICK_CONNECT_PATH"] = DEFAULT_CONNECT_PATH
        env.update({k.upper(): str(v) for k, v in extra.items()})
        return env

    def describe(self) -> str:
        lines = [
            "Stand-ins running on loopback:",
            f"  Telegram Bot API  {self.telegram_url}   (control: {self.telegram_url}/_sandbox/)",
            f"  OpenAI            {self.openai_url}",
            f"  DoubleTick        {self.doubletick_url}",
            "",
            "Point the bot at them with:",
        ]
        env = self.bot_environment(f"sqlite+aiosqlite:///{Path('var/sandbox.db').resolve()}")
        lines += [f"  export {k}={v}" for k, v in env.items()]
        lines += [
            "",
            "Then run the bot in another terminal (`onboarding-bot run` with those variables) and chat as a user",
            "through the stand-in's control API (GET the control URL above for every route), e.g.:",
            f"  curl -s -XPOST {self.telegram_url}/_sandbox/send -H 'content-type: application/json' "
            "-d '{\"user_id\": 1001, \"text\": \"/start\"}'",
            f"  curl -s {self.telegram_url}/_sandbox/chats/1001/messages",
            "Or let `onboarding-bot try` do all of this and chat in the terminal.",
        ]
        lines += ["", "Demo keys (paste one at the paste step):"]
        lines += [f"  {name:<22} {demo.key}" for name, demo in DEMO_KEYS.items()]
        return "\n".join(lines)
