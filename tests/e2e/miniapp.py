"""A bot stack that serves the Mini App (polling mode, PUBLIC_BASE_URL set), and initData made like Telegram's."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from bot.standins.chat_driver import ChatDriver
from bot.standins.sandbox import SANDBOX_BOT_TOKEN
from bot.standins.server import free_port
from bot.standins.telegram_webapp import launch_init_data
from tests.e2e.harness import Stack

__all__ = ["PUBLIC_BASE_URL", "MiniAppStack", "init_data_for", "start_miniapp_stack"]

PUBLIC_BASE_URL = "https://miniapp.example.test"  # what the button shows; the test talks to the port directly


def init_data_for(user: ChatDriver | int, *, token: str = SANDBOX_BOT_TOKEN, age_s: float = 5.0,
                  language: str = "en", **extra: str) -> str:
    """The initData Telegram would give a Mini App opened by ``user`` from an inline button ``age_s`` ago."""
    user_id = user if isinstance(user, int) else user.user_id
    return launch_init_data(user_id, token=token, age_s=age_s, language=language, **extra)


class MiniAppStack:
    """A :class:`Stack` whose bot also serves the Mini App on ``url``."""

    def __init__(self, stack: Stack, url: str) -> None:
        self.stack = stack
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=15, trust_env=False)

    def submit(self, init_data: str, key: str, **extra: Any) -> httpx.Response:
        return self.http.post("/miniapp/api/key", json={"init_data": init_data, "key": key, **extra})

    def status(self, init_data: str) -> httpx.Response:
        return self.http.get("/miniapp/api/status", headers={"Authorization": f"tma {init_data}"})

    def close(self) -> None:
        self.http.close()
        self.stack.close()


def start_miniapp_stack(folder: Path, database_url: str, **env: Any) -> MiniAppStack:
    port = free_port()
    stack = Stack.start(folder, database_url, public_base_url=PUBLIC_BASE_URL, webhook_listen="127.0.0.1",
                        webhook_port=port, **env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=2, trust_env=False).status_code == 200:
                return MiniAppStack(stack, url)
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            stack.close()
            raise TimeoutError(f"the Mini App server did not come up on {url}:\n{stack.bot.log()[-3000:]}")
        time.sleep(0.05)
