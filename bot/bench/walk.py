"""Users walking the guide: step latency and Telegram calls per step (light load), throughput (saturation).

Why two regimes: a latency figure taken at saturation only measures the queue (closed-loop latency is
users / throughput), and a throughput figure taken at light load only measures idle time. So step
latency and calls per step come from a few users walking at a human-like concurrency, and throughput
from many users all walking at once, each sending its next update as soon as the last was answered.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

from bot.bench.tap import CallTap
from bot.bench.users import GUIDE_WALK, Action, SimUser

__all__ = ["Scripts", "WalkResult", "action_label", "walk_light", "walk_saturated"]

MAX_ERRORS_KEPT = 5
Scripts = Mapping[int, tuple[Action, ...]]  # per user id; users without one walk GUIDE_WALK


@dataclass
class WalkResult:
    users: int
    completed: int = 0
    updates: int = 0
    elapsed_s: float = 0.0
    press_latencies_s: list[float] = field(default_factory=list)  # button press -> next step shown
    text_latencies_s: list[float] = field(default_factory=list)  # guide texts (/start, workspace)
    calls_per_action: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    errors: list[str] = field(default_factory=list)
    failed: int = 0
    cpu_s: float | None = None  # CPU seconds the bot process used during the walk
    harness_cpu_s: float | None = None  # CPU seconds this process (stand-ins, users) used meanwhile

    @property
    def updates_per_s(self) -> float:
        return self.updates / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def latencies_s(self) -> list[float]:
        return self.press_latencies_s + self.text_latencies_s

    def fail(self, error: BaseException) -> None:
        self.failed += 1
        if len(self.errors) < MAX_ERRORS_KEPT:
            self.errors.append(f"{type(error).__name__}: {error}"[:300])

    def note(self, action: Action, latency_s: float | None) -> None:
        self.updates += 1
        if latency_s is None or action.shows.value == "connected":
            return
        (self.press_latencies_s if action.kind == "press" else self.text_latencies_s).append(latency_s)

    def merge(self, other: WalkResult) -> None:
        self.users += other.users
        self.completed += other.completed
        self.updates += other.updates
        self.failed += other.failed
        self.elapsed_s = max(self.elapsed_s, other.elapsed_s)
        self.press_latencies_s += other.press_latencies_s
        self.text_latencies_s += other.text_latencies_s
        self.errors += other.errors[: max(0, MAX_ERRORS_KEPT - len(self.errors))]
        for label, counts in other.calls_per_action.items():
            self.calls_per_action[label] += counts


def action_label(action: Action) -> str:
    """``step|action`` for presses, "text -> <step shown>" for texts (/start, workspace, paste)."""
    return action.payload if action.kind == "press" else f"text -> {action.shows.value}"


async def walk_light(tap: CallTap, users: list[SimUser], scripts: Scripts | None = None, *,
                     concurrency: int = 5, settle_s: float = 0.05) -> WalkResult:
    """Few users at a time; after each action, wait until the bot is quiet and count its calls."""
    result = WalkResult(len(users))
    gate = asyncio.Semaphore(concurrency)

    async def one(user: SimUser) -> None:
        async with gate:
            try:
                for action in (scripts or {}).get(user.user_id, GUIDE_WALK):
                    before = tap.calls_per_chat[user.chat_id]
                    sent = await user.do(action)
                    await tap.quiet(user.chat_id, settle_s)
                    result.calls_per_action[action_label(action)].append(tap.calls_per_chat[user.chat_id] - before)
                    result.note(action, None if sent.answered_at is None else sent.answered_at - sent.at)
                result.completed += 1
            except Exception as error:  # one user's failure is a figure, not a crash
                result.fail(error)

    started = time.monotonic()
    await asyncio.gather(*(one(user) for user in users))
    result.elapsed_s = time.monotonic() - started
    return result


async def walk_saturated(users: list[SimUser], scripts: Scripts | None = None, *,
                         concurrency: int | None = None) -> WalkResult:
    """``concurrency`` users (default: all) walk at once, each sending its next update as soon as the
    previous one was answered; when one finishes the next user starts.

    Why a bound: the same number of chats in flight for our bot and the echo baseline, enough to keep
    both CPU-bound (the figure is a rate at saturation), for as long as there are users left.
    """
    result = WalkResult(len(users))
    gate = asyncio.Semaphore(concurrency or max(1, len(users)))

    async def one(user: SimUser) -> None:
        async with gate:
            await walk_one(user)

    async def walk_one(user: SimUser) -> None:
        try:
            for action in (scripts or {}).get(user.user_id, GUIDE_WALK):
                sent = await user.do(action)
                result.note(action, None if sent.answered_at is None else sent.answered_at - sent.at)
            result.completed += 1
        except Exception as error:
            result.fail(error)

    started = time.monotonic()
    await asyncio.gather(*(one(user) for user in users))
    result.elapsed_s = time.monotonic() - started
    return result
