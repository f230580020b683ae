"""The ``--workers`` supervisor's own rules, with real (tiny) child processes instead of bot workers."""

from __future__ import annotations

import sys
import time

import pytest

from bot.cli import workers
from bot.cli.workers import WorkerPool, listening_socket, workers_refusal
from bot.config import Settings


def _pool(code: str, count: int = 1) -> tuple[WorkerPool, object]:
    sock = listening_socket("127.0.0.1", 0)
    return WorkerPool([sys.executable, "-c", code], {}, sock.fileno(), count), sock


def test_a_worker_that_keeps_dying_young_waits_longer_each_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workers, "RESTART_PAUSES_S", (0.0, 0.01, 0.02))
    pool, _sock = _pool("raise SystemExit(3)")
    pool.start()
    deaths = []
    for _ in range(4):
        pool.workers[0].process.wait(10)
        pool.watch_once()
        deaths.append(pool.workers[0].deaths)
    assert deaths == [1, 2, 3, 4]  # each restart after a longer pause, capped at the last one
    pool.stop()
    pool.workers[0].process.wait(10)
    pool.watch_once()
    assert pool.workers == {}  # stopping: not started again


def test_sigterm_drains_every_worker_and_reports_a_clean_stop() -> None:
    pool, _sock = _pool("import signal, sys, time\n"
                       "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n"
                       "time.sleep(60)", count=2)
    pool.start()
    time.sleep(0.5)  # the children installed their handlers
    pool.stop()
    assert pool.run_until_stopped() == 0


def test_a_worker_that_fails_its_shutdown_makes_the_stop_unclean() -> None:
    pool, _sock = _pool("import signal, sys, time\n"
                       "signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))\n"
                       "time.sleep(60)")
    pool.start()
    time.sleep(0.5)
    pool.stop()
    assert pool.run_until_stopped() == 1


def test_a_stop_signal_that_lands_while_a_worker_is_spawned_still_reaches_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # CI saw it: SIGTERM arrived between a restarted worker's fork and the pool listing it, so the worker
    # was never told to stop, served on until the stop deadline killed it, and the supervisor exited 1.
    pool, _sock = _pool("import signal, sys, time\n"
                       "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n"
                       "time.sleep(60)", count=2)
    real_popen = workers.subprocess.Popen

    def popen_then_signal(*args: object, **kwargs: object) -> object:
        process = real_popen(*args, **kwargs)  # type: ignore[call-overload]
        pool.stop()  # what the SIGTERM handler does, before spawn() has recorded the worker
        return process

    monkeypatch.setattr(workers.subprocess, "Popen", popen_then_signal)
    monkeypatch.setattr(workers, "STOP_GRACE_S", 20.0)
    pool.start()
    children = [worker.process for worker in pool.workers.values()]
    started = time.monotonic()
    assert pool.run_until_stopped() == 0
    assert time.monotonic() - started < 10  # drained on SIGTERM, not killed at the deadline
    assert all(child.poll() is not None for child in children)


def test_more_than_one_worker_needs_postgresql() -> None:
    sqlite = Settings(database_url="sqlite+aiosqlite:///bot.db")
    postgres = Settings(database_url="postgresql+asyncpg://postgres@127.0.0.1/bot")
    assert workers_refusal(sqlite, 1) is None and workers_refusal(postgres, 4) is None
    assert "PostgreSQL" in (workers_refusal(sqlite, 2) or "")
    assert "at least 1" in (workers_refusal(postgres, 0) or "")
