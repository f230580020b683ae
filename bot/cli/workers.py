"""``onboarding-bot run --webhook --workers N``: N webhook processes on one port, one supervisor.

Why: one Python process spends ~11 ms of CPU per update (docs/benchmarks.md), so a webhook replica tops
out near one core. Workers are ordinary replicas (each the whole bot: its own event loop, database pool,
outbox worker and recovery), correct together by what makes replicas correct: the per-chat advisory
locks and ``update_id`` claims in PostgreSQL. So more than one worker needs PostgreSQL (SQLite has no
cross-process locks) and each takes ``1/(REPLICAS x N)`` of the Telegram send budget.

The supervisor binds the listening socket once and hands its descriptor to every worker (the kernel spreads
accepted connections over the processes waiting on it, as uvicorn's and gunicorn's own workers do). It runs
no bot code, so it stays small and cannot wedge: a worker that dies is started again (after a pause that
grows while workers keep dying young), and SIGTERM/SIGINT are passed on so each worker drains as a
replica does; the supervisor exits 0 when every worker stopped cleanly.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.config import Settings

__all__ = ["LISTEN_FD_FLAG", "WorkerPool", "run_webhook_workers", "workers_refusal"]

log = logging.getLogger("bot.workers")

LISTEN_FD_FLAG = "--listen-fd"  # hidden: a worker serves the supervisor's socket instead of binding its own
RESTART_PAUSES_S = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)  # a worker that keeps dying young waits longer each time
YOUNG_S = 30.0  # a worker that lived longer than this died of something new: its pause starts over
STOP_GRACE_S = 35.0  # a worker's own graceful shutdown takes at most 25 s (GRACEFUL_SHUTDOWN_S) plus draining


def workers_refusal(settings: Settings, count: int) -> str | None:
    """Why ``count`` workers cannot run with these settings, or None."""
    if count < 1:
        return "--workers must be at least 1"
    if count > 1 and not settings.database_url.startswith("postgresql"):
        return ("--workers above 1 needs PostgreSQL (DATABASE_URL=postgresql+asyncpg://...): the workers share "
                "conversations through its advisory locks, and SQLite has none")
    return None


def listening_socket(host: str, port: int) -> socket.socket:
    """The one socket every worker accepts on (inheritable, so a worker can serve its descriptor)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=2048)
    sock.set_inheritable(True)
    return sock


@dataclass
class _Worker:
    index: int
    process: subprocess.Popen[bytes]
    started_at: float
    deaths: int = 0  # young deaths in a row (how long the next restart waits)
    signals: set[int] = field(default_factory=set)  # what the supervisor has passed on to it already


@dataclass
class WorkerPool:
    """Starts, restarts and stops the worker processes (no bot code runs here)."""

    command: list[str]
    env: dict[str, str]
    fd: int
    count: int
    workers: dict[int, _Worker] = field(default_factory=dict)
    stopping: bool = False
    clean: bool = True  # every worker that stopped after SIGTERM exited 0

    def spawn(self, index: int, deaths: int = 0) -> None:
        process = subprocess.Popen([*self.command, LISTEN_FD_FLAG, str(self.fd)], env=self.env,  # noqa: S603
                                   pass_fds=(self.fd,), preexec_fn=_stop_with_supervisor)
        self.workers[index] = _Worker(index, process, time.monotonic(), deaths)
        log.info("webhook worker %s started (pid %s)", index, process.pid)

    def start(self) -> None:
        for index in range(self.count):
            self.spawn(index)

    def stop(self) -> None:
        """Stop restarting workers and let the supervising loop pass SIGTERM on to each.

        Only sets a flag, so it is safe in a signal handler: a signal that lands while a worker is being
        spawned (its process exists, the pool does not list it yet) still reaches that worker on the loop's
        next pass, instead of leaving it serving until the stop deadline kills it."""
        self.stopping = True

    def pass_on(self, sig: int) -> None:
        """Send ``sig`` to every running worker that has not had it yet (each drains and exits on its own)."""
        for worker in self.workers.values():
            if sig not in worker.signals and worker.process.poll() is None:
                worker.process.send_signal(sig)
                worker.signals.add(sig)

    def watch_once(self) -> None:
        """Notice workers that exited: restart them (unless stopping), after their pause."""
        for index, worker in list(self.workers.items()):
            code = worker.process.poll()
            if code is None:
                continue
            if self.stopping:  # a worker still starting has no handler yet: SIGTERM ends it, nothing in flight
                self.clean = self.clean and code in (0, -signal.SIGTERM)
                del self.workers[index]
                continue
            lived = time.monotonic() - worker.started_at
            deaths = worker.deaths + 1 if lived < YOUNG_S else 0
            pause = RESTART_PAUSES_S[min(deaths, len(RESTART_PAUSES_S) - 1)]
            log.error("webhook worker %s (pid %s) exited with %s after %.0f s; starting it again in %.1f s",
                      index, worker.process.pid, code, lived, pause)
            del self.workers[index]
            self._sleep_unless_stopping(pause)
            if not self.stopping:
                self.spawn(index, deaths)

    def _sleep_unless_stopping(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < deadline:
            time.sleep(0.05)

    def run(self) -> int:
        """Start the workers and supervise them until a stop signal and every worker has exited."""
        self.start()
        return self.run_until_stopped()

    def run_until_stopped(self) -> int:
        """Restart dead workers until stopped, then wait for all to exit; 0 if all stopped cleanly."""
        stop_deadline: float | None = None
        while self.workers:
            self.watch_once()
            if self.stopping:
                if stop_deadline is None:
                    log.info("stopping %s webhook workers", len(self.workers))
                    stop_deadline = time.monotonic() + STOP_GRACE_S
                self.pass_on(signal.SIGTERM)
                if time.monotonic() > stop_deadline:  # a worker ignored SIGTERM: end it
                    self.pass_on(signal.SIGKILL)
                    self.clean = False
            time.sleep(0.1)
        return 0 if self.clean else 1


def _stop_with_supervisor() -> None:
    """In the worker before it starts: SIGTERM (a graceful drain) when the supervisor dies, even by SIGKILL,
    so no orphaned worker keeps serving the socket (Linux ``PR_SET_PDEATHSIG``)."""
    if sys.platform == "linux":
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def run_webhook_workers(settings: Settings, count: int) -> int:
    """Bind WEBHOOK_LISTEN:WEBHOOK_PORT once and run ``count`` webhook workers on it until SIGTERM."""
    refusal = workers_refusal(settings, count)
    if refusal:
        log.error(refusal)
        return 2
    sock = listening_socket(settings.webhook_listen, settings.webhook_port)
    env = {**os.environ, "REPLICAS": str(settings.replicas * count)}  # each worker's share of the send budget
    pool = WorkerPool([sys.executable, "-m", "bot.cli", "run", "--webhook"], env, sock.fileno(), count)

    def on_signal(_sig: int, _frame: FrameType | None) -> None:
        pool.stop()  # the loop logs it and passes SIGTERM on: no logging or signalling inside the handler

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    log.info("serving the webhook on %s:%s with %s workers", settings.webhook_listen, settings.webhook_port,
             count)
    try:
        return pool.run()
    finally:
        sock.close()
