"""The fault drill, shortened: injected OpenAI/DoubleTick failures, a SIGKILL, and every count is 0.

What it proves: with 5xx, 429 + Retry-After, timeouts and connection resets at both services and the bot
killed mid-run, no conversation is lost, no checked key is left unconnected and unreported, nothing is
connected or said twice (a re-paste after a SIGKILL between DoubleTick's 2xx and our
record replays the first connection), and no key plaintext (or encoding of it) is in anything the bot wrote. The
PostgreSQL restart part runs where it cannot disturb other work (CI, or DRILL_RESTART_POSTGRES=1): on a
developer machine the local server is shared with other test runs.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest

from bot.bench.drill import COUNTS, DrillOptions, run_drill

pytestmark = pytest.mark.e2e


def _restart_postgres() -> bool:
    return os.environ.get("DRILL_RESTART_POSTGRES") == "1" or os.environ.get("CI") == "true"


def test_the_short_drill_loses_nothing(tmp_path: Path) -> None:
    options = DrillOptions(quick=True, database="postgres" if os.environ.get("TEST_POSTGRES_URL") else "sqlite",
                           restart_postgres=_restart_postgres(), workdir=tmp_path / "drill")
    _loses_nothing(asyncio.run(run_drill(options)))


def test_the_short_drill_with_telegrams_flood_control_loses_nothing(tmp_path: Path) -> None:
    """The same, with the stand-in's flood limits on: users act faster than people, so guide edits,
    sends and key deletions meet 429s the bot did not schedule (no PostgreSQL restart: the plain drill
    has one)."""
    options = DrillOptions(quick=True, database="postgres" if os.environ.get("TEST_POSTGRES_URL") else "sqlite",
                           restart_postgres=False, workdir=tmp_path / "drill", flood_control=True)
    report = asyncio.run(run_drill(options))
    _loses_nothing(report)
    log = (tmp_path / "drill" / "bot.log").read_text()
    assert "RetryAfter" in log or "flood wait" in log, "no 429 was met: the flood limits were not on"


def _loses_nothing(report: dict[str, Any]) -> None:
    counts, details = report["counts"], report["details"]
    assert set(counts) == set(COUNTS)
    assert details["bot_starts"] >= 2 and details["kills_at_s"], "the bot was killed and restarted"
    assert details["openai_requests"] > 0 and details["doubletick_requests"] > 0
    # Every count is 0, duplicate connections included: a key killed between DoubleTick's 2xx and our record
    # left a "connecting" record, so its re-paste sent the same Idempotency-Key and DoubleTick replayed.
    failed = {name: details[name] for name in ("lost", "unreported", "connected_but_not_told", "duplicate_connections",
                                                "log_of_failed_chats", "unfinished", "kills_at_s", "postgres")}
    assert all(n == 0 for n in counts.values()), json.dumps({"counts": counts, **failed}, indent=1, default=str)
    assert details["users_finished"] == details["users"], details["unfinished"]
