"""``run --webhook --workers N``: N webhook processes on one port under a supervisor (issue 14).

The supervisor binds the port once and hands the socket to each worker; the workers are replicas on one
PostgreSQL. Proven here with real processes: a walk to "You're done" through the workers, a killed worker
is started again while the other keeps answering on the same port, SIGTERM drains every worker and exits 0,
a supervisor killed outright takes its workers with it, and SQLite (no cross-process locks) is refused.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bot.standins.chat_driver import ChatDriver, plain_text
from bot.standins.demo_keys import DEMO_KEYS
from bot.standins.sandbox import Sandbox
from bot.standins.server import free_port
from tests.e2e.harness import POSTGRES_URL_ENV, BotProcess, _command, scratch_postgres_database
from tests.e2e.test_webhook_e2e import walk_to_paste

pytestmark = pytest.mark.e2e

SECRET = "webhook_workers_secret_token_0123"
WORKERS = 2


def _children(pid: int) -> set[int]:
    """Live child processes of ``pid`` (from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return
        time.sleep(0.1)
    raise TimeoutError(what)



class WorkersStack:
    def __init__(self, folder: Path, database_url: str, **env: object) -> None:
        self.sandbox = Sandbox().start()
        self.sandbox.telegram.configure(webhook_max_attempts=60)  # keep redelivering while a worker restarts
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        webhook_url = f"{self.url}/telegram"
        if env.get("webhook_guard_port"):
            webhook_url = f"http://127.0.0.1:{env['webhook_guard_port']}/telegram"
        self.env = self.sandbox.bot_environment(database_url, webhook_url=webhook_url,
                                                webhook_secret_token=SECRET, webhook_listen="127.0.0.1",
                                                webhook_port=self.port, **env)
        done = subprocess.run(_command(("webhook", "set")), env={**os.environ, **self.env}, capture_output=True,
                              text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        self.bot = BotProcess(self.env, folder / "bot.log", args=("run", "--webhook", "--workers", str(WORKERS)))
        self.http = httpx.Client(timeout=5, trust_env=False)
        self.next_user = 9100
        self.drivers: list[ChatDriver] = []

    @property
    def pid(self) -> int:
        assert self.bot.process is not None
        return self.bot.process.pid

    def start(self) -> None:
        self.bot.start()
        _wait(self.ready, 90, "the workers did not become ready:\n" + self.bot.log())
        _wait(lambda: len(_children(self.pid)) == WORKERS, 30, "not every worker started")

    def ready(self) -> bool:
        assert self.bot.process is not None and self.bot.process.poll() is None, self.bot.log()
        try:
            return self.http.get(f"{self.url}/readyz").status_code == 200
        except httpx.HTTPError:
            return False

    def user(self) -> ChatDriver:
        self.next_user += 1
        driver = ChatDriver(self.sandbox.telegram_url, self.next_user)
        self.drivers.append(driver)
        return driver

    def close(self) -> None:
        self.bot.stop()
        for driver in self.drivers:
            driver.close()
        self.http.close()
        self.sandbox.stop()


@pytest.fixture
def workers_stack(tmp_path: Path) -> Iterator[WorkersStack]:
    if not os.environ.get(POSTGRES_URL_ENV):
        pytest.skip(f"{POSTGRES_URL_ENV} is not set: several workers need PostgreSQL (CI sets it)")
    with scratch_postgres_database("workers") as database_url:
        stack = WorkersStack(tmp_path, database_url)
        try:
            stack.start()
            yield stack
        finally:
            stack.close()


@pytest.mark.postgres
def test_workers_serve_one_port_restart_when_killed_and_drain_on_sigterm(workers_stack: WorkersStack) -> None:
    stack = workers_stack
    first, second = sorted(_children(stack.pid))
    stack.sandbox.doubletick.configure(workspaces={"ws_workers": "Workers Inc"})
    user = stack.user()
    walk_to_paste(user, "ws_workers")
    key = DEMO_KEYS["valid"].key
    pasted = user.send(key)
    done = user.wait_guide("You're done")
    assert "…" + key[-4:] in plain_text(done["text"]) and user.message(pasted["message_id"])["deleted"]
    workspace = stack.sandbox.doubletick.workspace("ws_workers")
    assert workspace is not None and workspace.connect_count == 1

    # One worker dies: the other keeps answering on the same port, and the supervisor starts a new one.
    os.kill(first, signal.SIGKILL)
    _wait(lambda: not _alive(first), 10, "the killed worker is still there")
    other = stack.user()
    other.send("/start")
    other.wait_guide("Connect DoubleTick to OpenAI", timeout=30)
    _wait(lambda: len(_children(stack.pid) - {second}) == 1, 30, "the dead worker was not started again")
    replacement = (_children(stack.pid) - {second}).pop()
    assert replacement != first and "exited with -9" in stack.bot.log()

    # SIGTERM: every worker drains and exits, then the supervisor exits 0.
    assert stack.bot.process is not None
    stack.bot.process.send_signal(signal.SIGTERM)
    assert stack.bot.process.wait(60) == 0, stack.bot.log()
    assert not _alive(second) and not _alive(replacement)
    assert key not in stack.bot.log()


@pytest.mark.postgres
def test_workers_stop_when_their_supervisor_is_killed(workers_stack: WorkersStack) -> None:
    workers = _children(workers_stack.pid)
    assert len(workers) == WORKERS
    workers_stack.bot.kill()  # SIGKILL: the supervisor runs no code
    _wait(lambda: not any(_alive(pid) for pid in workers), 60, "orphaned workers kept running")


@pytest.mark.postgres
def test_workers_share_the_guard_port_and_each_lane_takes_its_share(tmp_path: Path) -> None:
    """With WEBHOOK_GUARD_PORT every worker's guard process listens on that one port (SO_REUSEPORT)."""
    if not os.environ.get(POSTGRES_URL_ENV):
        pytest.skip(f"{POSTGRES_URL_ENV} is not set: several workers need PostgreSQL (CI sets it)")
    with scratch_postgres_database("workers_guard") as database_url:
        stack = WorkersStack(tmp_path, database_url, webhook_guard_port=free_port())
        try:
            stack.start()
            lanes = [pid for worker in _children(stack.pid) for pid in _children(worker)
                     if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]
            assert len(lanes) == WORKERS, "every worker has its own guard process"
            stack.sandbox.doubletick.configure(workspaces={"ws_guard_workers": "Guard Workers Inc"})
            user = stack.user()
            walk_to_paste(user, "ws_guard_workers")
            pasted = user.send(DEMO_KEYS["valid"].key)
            user.wait_guide("You're done")
            assert user.message(pasted["message_id"])["deleted"]
            others = [stack.user() for _ in range(8)]
            for other in others:
                other.send("/start")
            for other in others:
                other.wait_guide("Connect DoubleTick to OpenAI", timeout=30)
            assert stack.bot.process is not None
            stack.bot.process.send_signal(signal.SIGTERM)
            assert stack.bot.process.wait(60) == 0, stack.bot.log()
            assert not any(_alive(pid) for pid in lanes)
        finally:
            stack.close()


def test_several_workers_on_sqlite_are_refused_with_the_reason(tmp_path: Path) -> None:
    sandbox = Sandbox().start()
    try:
        port = free_port()
        env = sandbox.bot_environment(f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}", webhook_secret_token=SECRET,
                                      webhook_url=f"http://127.0.0.1:{port}/telegram", webhook_listen="127.0.0.1",
                                      webhook_port=port)
        done = subprocess.run(_command(("run", "--webhook", "--workers", "2")), env={**os.environ, **env},
                              capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 2 and "needs PostgreSQL" in done.stdout + done.stderr
        polling = subprocess.run(_command(("run", "--workers", "2")), env={**os.environ, **env},
                                 capture_output=True, text=True, timeout=60, check=False)
        assert polling.returncode == 2 and "--workers needs --webhook" in polling.stdout + polling.stderr
    finally:
        sandbox.stop()
