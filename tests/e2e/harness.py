"""The end-to-end harness: stand-ins on loopback and the real bot started through its CLI.

The bot runs as a child process (``onboarding-bot run``), exactly as in production except for the base
URLs, so it can be killed with SIGKILL and restarted like a crashed container.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.standins.chat_driver import ChatDriver, plain_text
from bot.standins.sandbox import Sandbox

__all__ = ["BotProcess", "Stack", "new_database_url", "plain_text", "sha256"]

POSTGRES_URL_ENV = "TEST_POSTGRES_URL"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def new_database_url(backend: str, folder: Path) -> str:
    """A fresh empty database of ``backend`` ("sqlite" or "postgres") for one bot stack."""
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{folder / 'bot.db'}"
    name = f"e2e_{uuid.uuid4().hex[:12]}"
    postgres_admin(f'CREATE DATABASE "{name}"')
    return _postgres_url_of(name)


@contextmanager
def scratch_postgres_database(prefix: str) -> Iterator[str]:
    """A fresh PostgreSQL database for one stack, dropped afterwards even if bot processes still hold it."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    postgres_admin(f'CREATE DATABASE "{name}"')
    try:
        yield _postgres_url_of(name)
    finally:
        postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def postgres_admin(statement: str) -> None:
    """Run one statement (CREATE or DROP DATABASE) on the test server named by ``TEST_POSTGRES_URL``."""
    import asyncpg

    async def run() -> None:
        admin = await asyncpg.connect(os.environ[POSTGRES_URL_ENV].replace("+asyncpg", ""))
        try:
            await admin.execute(statement)
        finally:
            await admin.close()

    asyncio.run(run())


def _postgres_url_of(name: str) -> str:
    return os.environ[POSTGRES_URL_ENV].rsplit("/", 1)[0] + "/" + name


def _command(args: tuple[str, ...] = ("run",)) -> list[str]:
    script = shutil.which("onboarding-bot", path=str(Path(sys.executable).parent))
    return [script, *args] if script else [sys.executable, "-m", "bot.cli.main", *args]


@dataclass
class BotProcess:
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    args: tuple[str, ...] = ("run",)  # e.g. ("run", "--webhook")
    cwd: Path | None = None  # the bot's working directory (the canary test scans what it writes there)

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps it open
        self.process = subprocess.Popen(_command(self.args), env={**os.environ, **self.env}, stdout=log,
                                        stderr=subprocess.STDOUT, cwd=self.cwd)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, like a crashed container."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@dataclass
class Stack:
    """Stand-ins plus one bot process, and drivers for simulated users."""

    sandbox: Sandbox
    bot: BotProcess
    drivers: list[ChatDriver] = field(default_factory=list)
    next_user: int = 5000

    @classmethod
    def start(cls, folder: Path, database_url: str, telegram: dict[str, Any] | None = None,
              **env: Any) -> Stack:
        """Stand-ins plus the bot; ``telegram`` changes the Telegram stand-in's ``Settings`` first."""
        sandbox = Sandbox().start()
        if telegram:
            sandbox.telegram.configure(**telegram)
        bot = BotProcess(sandbox.bot_environment(database_url, **env), folder / "bot.log")
        bot.start()
        stack = cls(sandbox, bot)
        stack.user().wait_bot_polling()
        return stack

    def user(self, **kwargs: Any) -> ChatDriver:
        self.next_user += 1
        driver = ChatDriver(self.sandbox.telegram_url, self.next_user, **kwargs)
        self.drivers.append(driver)
        # Its own workspace (tests.e2e.pasting.own_workspace): another chat may not replace a connected key.
        self.sandbox.doubletick.configure(workspaces={f"ws_u{driver.user_id}": f"Workspace of {driver.user_id}"})
        return driver

    def restart_bot(self, while_down: Callable[[], object] | None = None) -> None:
        """Kill the bot, run ``while_down`` (e.g. change the stand-ins), start it, wait until it polls."""
        self.bot.kill()
        if while_down is not None:
            while_down()
        calls_before = len(self.drivers[0].calls("getUpdates"))
        self.bot.start()
        self.drivers[0].wait_for(lambda: len(self.drivers[0].calls("getUpdates")) > calls_before, 60,
                                 "the restarted bot to poll")

    def openai_requests_for(self, key: str) -> list[Any]:
        digest = sha256(key)
        return [r for r in self.sandbox.openai.requests if r.key_sha256 == digest]

    def close(self) -> None:
        self.bot.stop()
        for driver in self.drivers:
            driver.close()
        self.sandbox.stop()
