"""The stand-ins on loopback, scratch databases, and bot processes (ours or the echo baseline).

Why the bot runs as a separate process: its resident memory must be measurable on its own, it must be
killable with SIGKILL like a crashed container, and it must not share a CPU-bound interpreter with the
simulated users and the stand-ins. The stand-ins run in threads of the benchmark process (as in the
end-to-end tests) so the driver can call ``FakeTelegram`` directly instead of over HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from bot.bench.tap import CallTap, TappedTelegram
from bot.standins.demo_keys import register_demo_keys
from bot.standins.doubletick import DEFAULT_CONNECT_PATH, DEMO_OPERATOR_KEY, FakeDoubleTick, create_doubletick_app
from bot.standins.faults import FaultConfig
from bot.standins.openai import FakeOpenAI, create_openai_app
from bot.standins.sandbox import SANDBOX_BOT_TOKEN
from bot.standins.server import BackgroundServer, free_port
from bot.standins.telegram import create_telegram_app

__all__ = ["BotProcess", "Database", "StandIns", "bot_command", "cpu_seconds", "find_postgres", "rss_mb"]

# Limits meant for production traffic would turn a load test into a test of the limiter.
BENCH_LIMITS = {"VERIFICATIONS_PER_MINUTE": "100000000", "KEY_SUBMISSIONS_PER_USER_PER_HOUR": "1000"}


def rss_mb(pid: int) -> float | None:
    """Resident memory of ``pid`` in MiB from /proc (no psutil needed); None where /proc is missing."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of ``pid`` (all its threads) from /proc; None where /proc is missing."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime (fields 14 and 15 of stat)


def children(pid: int) -> list[int]:
    """The live child processes of ``pid`` (from /proc; none where it is missing)."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    found: list[int] = []
    for task in tasks:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as listed:
            found += [int(child) for child in listed.read().split()]
    return found


def bot_command(*args: str) -> list[str]:
    """``onboarding-bot <args>`` from this interpreter's environment (the console script if installed)."""
    script = shutil.which("onboarding-bot", path=str(Path(sys.executable).parent))
    return [script, *args] if script else [sys.executable, "-m", "bot.cli.main", *args]


class StandIns:
    """Telegram (tapped), OpenAI and DoubleTick stand-ins, each served by uvicorn in its own thread."""

    def __init__(self, *, openai_latency_ms: float = 0.0, seed: int | None = None) -> None:
        self.telegram = TappedTelegram(tokens=[SANDBOX_BOT_TOKEN])
        # Benchmarks and drills drive chats at machine speed (a guide walked in milliseconds, 500 pastes a
        # second from one bot) to find the bot's own limits and faults; Telegram's flood control (30/s per
        # bot, ~1/s per chat) would cap the bot and the echo baseline alike and turn every figure into
        # Telegram's cap. The suite's other tests keep the stand-in's flood control on.
        self.telegram.configure(flood_control=False)
        self.openai = FakeOpenAI(latency_ms=openai_latency_ms, seed=seed)
        register_demo_keys(self.openai)
        self.doubletick = FakeDoubleTick(seed=seed)
        self.tap: CallTap | None = None
        self._servers = {
            "telegram": BackgroundServer(create_telegram_app(self.telegram)),
            "openai": BackgroundServer(create_openai_app(self.openai)),
            "doubletick": BackgroundServer(create_doubletick_app(self.doubletick)),
        }

    @property
    def telegram_url(self) -> str:
        return self._servers["telegram"].url

    def fresh_telegram(self) -> None:
        """A fresh Telegram world (the stand-in's scans do not grow with earlier phases), flood control off."""
        self.telegram.reset()
        self.telegram.configure(flood_control=False)

    def start(self) -> StandIns:
        """Start serving and attach a tap to the running event loop of the caller."""
        self.tap = CallTap(asyncio.get_running_loop())
        self.telegram.tap = self.tap
        for server in self._servers.values():
            server.start()
        return self

    def stop(self) -> None:
        self.telegram.tap = None
        for server in self._servers.values():
            server.stop()

    def set_faults(self, openai: FaultConfig | None = None, doubletick: FaultConfig | None = None) -> None:
        """Turn injected faults on (or off with ``FaultConfig()``) at the OpenAI / DoubleTick stand-ins."""
        if openai is not None:
            self.openai.configure(faults=openai.to_json())
        if doubletick is not None:
            self.doubletick.configure(faults=doubletick.to_json())

    def bot_environment(self, database_url: str, **extra: Any) -> dict[str, str]:
        """Settings that point the real bot at these stand-ins: open mode, automatic connection."""
        from storage.sealing import generate_key_spec

        env = {
            "TELEGRAM_BOT_TOKEN": SANDBOX_BOT_TOKEN,
            "TELEGRAM_API_BASE_URL": self.telegram_url,
            "OPENAI_API_BASE_URL": self._servers["openai"].url + "/v1",
            "DOUBLETICK_API_BASE_URL": self._servers["doubletick"].url,
            "DOUBLETICK_API_KEY": DEMO_OPERATOR_KEY,
            "DOUBLETICK_CONNECT_PATH": DEFAULT_CONNECT_PATH,
            "DATABASE_URL": database_url,
            "FINGERPRINT_SECRET": secrets.token_urlsafe(32),
            "KEY_ENCRYPTION_KEYS": generate_key_spec(),
            "INSECURE_DEMO_OPEN_WORKSPACES": "true",
            **BENCH_LIMITS,
        }
        env.update({key.upper(): str(value) for key, value in extra.items()})
        return env


LOCAL_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"


async def find_postgres(mode: str, url: str | None = None) -> str | None:
    """The PostgreSQL server to create scratch databases on, or None for SQLite files.

    ``mode``: "sqlite"; "postgres" (``url``, else TEST_POSTGRES_URL, else the local server; must answer);
    "auto" (the same, falling back to SQLite when nothing answers).
    """
    if mode == "sqlite":
        return None
    candidate = url or os.environ.get("TEST_POSTGRES_URL") or LOCAL_POSTGRES
    import asyncpg

    try:
        connection = await asyncpg.connect(candidate.replace("+asyncpg", ""), timeout=5)
        await connection.close()
    except (OSError, asyncpg.PostgresError, TimeoutError) as error:
        if mode == "postgres":
            raise SystemExit(f"PostgreSQL is not reachable ({type(error).__name__})") from None
        return None
    return candidate


@dataclass
class Database:
    """A scratch database: a SQLite file under ``folder``, or a fresh PostgreSQL database."""

    url: str
    admin_url: str | None = None
    name: str | None = None

    @classmethod
    async def create(cls, folder: Path, postgres_url: str | None = None, label: str = "bench") -> Database:
        if postgres_url is None:
            folder.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - once per database, microseconds
            path = folder / f"{label}-{uuid.uuid4().hex[:8]}.db"
            return cls(f"sqlite+aiosqlite:///{path}")
        import asyncpg

        admin = postgres_url.replace("+asyncpg", "")
        name = f"{label}_{uuid.uuid4().hex[:10]}"
        connection = await asyncpg.connect(admin)
        try:
            await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()
        return cls(admin.rsplit("/", 1)[0] + "/" + name, admin, name)

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")

    def files(self) -> list[Path]:
        """The SQLite file and its journal/WAL companions (empty for PostgreSQL)."""
        if not self.is_sqlite:
            return []
        base = Path(self.url.split("///", 1)[1])
        return [p for p in (base, Path(f"{base}-wal"), Path(f"{base}-journal"), Path(f"{base}-shm")) if p.exists()]

    async def drop(self) -> None:
        if self.admin_url is None or self.name is None:
            for path in self.files():
                path.unlink(missing_ok=True)
            return
        import asyncpg

        connection = await asyncpg.connect(self.admin_url)
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        finally:
            await connection.close()


@dataclass
class BotProcess:
    """A bot as a child process: started, killed with SIGKILL, stopped, measured."""

    command: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    _log: IO[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        if self._log is None:
            # A fresh log per BotProcess; restarts of the same process append to it.
            self._log = open(self.log_path, "ab" if self.starts else "wb")  # noqa: SIM115 - the child writes to it
        # The command is ours (the bot's console script or this interpreter), never user input.
        self.process = subprocess.Popen(self.command, env={**os.environ, **self.env},  # noqa: S603
                                        stdout=self._log, stderr=subprocess.STDOUT)
        self.starts += 1

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, like a crashed container."""
        if self.running and self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self, timeout: float = 30.0) -> None:
        if self.running and self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        if self._log is not None:
            self._log.close()
            self._log = None

    def rss_mb(self) -> float | None:
        return rss_mb(self.pid) if self.running else None

    def cpu_seconds(self) -> float | None:
        """The bot's CPU time, its child processes' included (the guard process of ``GUARD_LANE=process``)."""
        if not self.running:
            return None
        own = cpu_seconds(self.pid)
        return None if own is None else own + sum(filter(None, map(cpu_seconds, children(self.pid))))

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


async def wait_until(condition: Any, timeout: float, what: str, interval: float = 0.02) -> None:
    """Poll ``condition()`` on the event loop until it is truthy."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(interval)


def loopback_port() -> int:
    return free_port()


async def wait_for_listener(url: str, timeout: float = 60.0) -> None:
    """Wait until something accepts TCP connections at ``url``'s host and port (a server starting up)."""
    host, port = url.split("//", 1)[1].split("/", 1)[0].split(":")
    deadline = time.monotonic() + timeout
    while True:
        try:
            _reader, writer = await asyncio.open_connection(host, int(port))
            writer.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)
