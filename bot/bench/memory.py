"""Resident memory of the bot process with 1k, 10k and 100k stored conversations.

How: one bot process runs on a database that is filled (``seed``) to each size in turn; at each size it
serves the same traffic (a few users walk the guide and paste a key, some stored users come back with
/start) and then its VmRSS is read from /proc. The first size is served twice so that one-off start-up
allocations are not counted as growth. The bot keeps conversations in the database, not in memory, so
the figure should barely move with the row count; this measures that it does not.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.bench.stack import BotProcess, Database, StandIns
from bot.bench.tap import method_is
from bot.bench.walk import WalkResult

__all__ = ["MemoryPoint", "measure_memory", "peak_rss_mb", "resume"]

SEED_BASE = 60_000_000  # chat ids of stored conversations (never used by simulated users)


@dataclass
class MemoryPoint:
    conversations: int
    rss_mb: float | None
    peak_rss_mb: float | None
    seed_s: float
    resumed: int
    walked: int

    def to_json(self) -> dict[str, Any]:
        return {"rss_mb": _round(self.rss_mb), "peak_rss_mb": _round(self.peak_rss_mb),
                "seed_s": round(self.seed_s, 2), "resumed_users": self.resumed, "walking_users": self.walked}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def peak_rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


async def resume(standins: StandIns, chat_ids: Sequence[int], timeout: float = 60.0) -> int:
    """Stored users send /start; count those the bot answered."""
    assert standins.tap is not None
    tap = standins.tap
    futures = []
    for chat_id in chat_ids:
        futures.append(tap.expect(chat_id, method_is("sendMessage")))
        standins.telegram.send(chat_id, "/start", first_name=f"Stored{chat_id}")
    done, pending = await asyncio.wait(futures, timeout=timeout)
    for future in pending:
        future.cancel()
    return sum(1 for f in done if f.exception() is None)


async def measure_memory(standins: StandIns, *, folder: Path, postgres_url: str | None, sizes: Sequence[int],
                         start_bot: Callable[[Database, str], Awaitable[BotProcess]],
                         walk: Callable[[int], Awaitable[WalkResult]], resumed_users: int = 200,
                         settle_s: float = 1.0) -> dict[str, Any]:
    """RSS of one bot process as its database grows to each size, after the same traffic at each size.

    One process for all sizes, so the growth is the growth of that process and nothing else; rows are
    added while it runs (for chats it has never seen, as when users arrive over weeks).
    """
    from bot.bench.seed import migrate, seed_conversations

    points: dict[str, Any] = {}
    database = await Database.create(folder, postgres_url, label="rss")
    bot: BotProcess | None = None
    try:
        await migrate(database.url)
        stored: list[int] = []
        for size in sorted(sizes):
            new = [SEED_BASE + i for i in range(len(stored), size)]
            seed_s = await seed_conversations(database.url, new)
            stored += new
            if bot is None:
                bot = await start_bot(database, "rss")
                await walk(size)  # warm-up: first-use allocations are not growth
                await resume(standins, stored[:resumed_users])
            walked = await walk(size)
            step = max(1, len(stored) // resumed_users)
            answered = await resume(standins, stored[::step][:resumed_users])
            await asyncio.sleep(settle_s)  # let the last pipelines finish and the allocator settle
            point = MemoryPoint(size, bot.rss_mb(), peak_rss_mb(bot.pid), seed_s, answered, walked.completed)
            points[str(size)] = point.to_json()
    finally:
        if bot is not None:
            bot.stop()
        await database.drop()
    return points
