"""The exposure window as the customer sees it: from their send until Telegram receives ``deleteMessage``.

How: users standing at the paste step paste fresh keys open-loop at a fixed rate (the schedule does not
wait for the bot, as real users would not), while the OpenAI stand-in answers every verification with
the configured latency, so earlier pastes are still being verified and connected while new ones arrive.
Both ends of the window are the Bot API stand-in's own ``time.monotonic()`` stamps: when it held the
user's message (the moment it exists in the chat) and when the ``deleteMessage`` request reached it.
Everything before the bot sees the update (a webhook server's accept queue, a getUpdates round, a busy
event loop) is exposure too. ``bot_receipt_to_delete_ms`` is the bot's own share beside it: from the
update being handed over (getUpdates answer or webhook POST) to the deletion.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bot.bench.stack import StandIns
from bot.bench.stats import summary_ms
from bot.bench.tap import TapTimeout
from bot.bench.users import SimUser, bench_key, shows_step
from bot.standins.openai import Behaviour
from bot.standins.telegram_world import CallRecord
from flows.steps import Step

__all__ = ["PasteWave", "paste_wave"]


@dataclass
class PasteWave:
    rate_per_s: float
    pastes: int = 0
    deleted: int = 0
    connected: int = 0
    exposure_s: list[float] = field(default_factory=list)  # sent by the user -> deleteMessage received
    bot_side_s: list[float] = field(default_factory=list)  # update handed to the bot -> deleteMessage received
    schedule_lag_s: list[float] = field(default_factory=list)  # how late the driver sent each paste
    sent_over_s: float = 0.0
    settled_s: float = 0.0
    cpu_busy_while_pasting: float | None = None  # bot CPU seconds per wall second while pasting
    cpu_ms_per_paste: float | None = None  # bot CPU for the whole wave (pipelines included) per paste
    harness_cpu_busy_while_pasting: float | None = None  # this process: stand-ins and simulated users
    errors: list[str] = field(default_factory=list)

    def bot_side_json(self) -> dict[str, Any]:
        bot_side = summary_ms(self.bot_side_s)
        return {p: bot_side[p] for p in ("p50", "p95", "p99", "max")}

    def to_json(self) -> dict[str, Any]:
        achieved = (self.pastes - 1) / self.sent_over_s if self.sent_over_s > 0 and self.pastes > 1 else None
        return {**summary_ms(self.exposure_s), "pastes": self.pastes, "deleted": self.deleted,
                "connected": self.connected, "achieved_rate_per_s": round(achieved, 1) if achieved else None,
                "driver_lag_ms_max": round(max(self.schedule_lag_s, default=0.0) * 1000, 2),
                "all_connected_after_s": round(self.settled_s, 2),
                "bot_cpu_busy_while_pasting": _round(self.cpu_busy_while_pasting, 2),
                "bot_cpu_ms_per_paste": _round(self.cpu_ms_per_paste, 2),
                "harness_cpu_busy_while_pasting": _round(self.harness_cpu_busy_while_pasting, 2),
                "errors": self.errors[:5]}


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


async def _settle(futures: list[asyncio.Future[CallRecord]], timeout_s: float,
                  stall_s: float) -> tuple[set[asyncio.Future[CallRecord]], set[asyncio.Future[CallRecord]]]:
    """Wait for every pipeline, but give up after ``timeout_s``, or ``stall_s`` without one finishing."""
    pending: set[asyncio.Future[CallRecord]] = set(futures)
    finished: set[asyncio.Future[CallRecord]] = set()
    deadline = time.monotonic() + timeout_s
    while pending:
        wait = min(stall_s, deadline - time.monotonic())
        if wait <= 0:
            break
        done, pending = await asyncio.wait(pending, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
        if not done:
            break  # stalled: what is left will not finish (the bot gave up on those pastes)
        finished |= done
    return finished, pending


async def paste_wave(standins: StandIns, users: list[SimUser], rate_per_s: float, *,
                     settle_timeout_s: float = 120.0, stall_s: float = 30.0,
                     cpu: Callable[[], float | None] | None = None) -> PasteWave:
    """Each user pastes one new valid key; pastes start ``1/rate`` apart; wait for every pipeline to end.

    ``cpu`` reads the bot process's CPU seconds, to tell a saturated bot from a slow path.
    """
    assert standins.tap is not None
    tap = standins.tap
    wave = PasteWave(rate_per_s)
    keys = [bench_key() for _ in users]
    for key in keys:
        standins.openai.register(key, Behaviour.VALID)
    deletions: dict[tuple[int, int], float] = {}

    def on_call(record: CallRecord) -> None:
        if record.method.lower() == "deletemessage" and record.ok:
            where = (record.chat_id or 0, int(record.params.get("message_id") or 0))
            deletions.setdefault(where, record.received_monotonic)

    tap.listeners.append(on_call)
    done: list[asyncio.Future[CallRecord]] = []
    sent: list[tuple[SimUser, int | None, int | None]] = []
    cpu_at = [cpu() if cpu else None]
    harness_at = time.process_time()
    try:
        started = time.monotonic()
        for index, (user, key) in enumerate(zip(users, keys, strict=True)):
            due = started + index / rate_per_s
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            wave.schedule_lag_s.append(max(0.0, time.monotonic() - due))
            done.append(tap.expect(user.chat_id, shows_step(Step.CONNECTED)))
            paste = user.send_now(key)
            sent.append((user, paste.update_id, paste.message_id))
        wave.sent_over_s = time.monotonic() - started
        cpu_at.append(cpu() if cpu else None)
        wave.harness_cpu_busy_while_pasting = (time.process_time() - harness_at) / max(wave.sent_over_s, 1e-3)
        wave.pastes = len(sent)
        finished, pending = await _settle(done, settle_timeout_s, stall_s)
        for future in pending:
            future.cancel()
        wave.connected = sum(1 for f in finished if not f.cancelled() and f.exception() is None)
        if pending:
            wave.errors.append(str(TapTimeout(f"{len(pending)} pastes got no verdict within {settle_timeout_s:g} s "
                                              f"(or {stall_s:g} s without any verdict)")))
        wave.settled_s = time.monotonic() - started
        cpu_at.append(cpu() if cpu else None)
        first, sending, settled = cpu_at
        if first is not None and sending is not None and settled is not None and wave.pastes:
            wave.cpu_busy_while_pasting = (sending - first) / max(wave.sent_over_s, 1e-3)
            wave.cpu_ms_per_paste = (settled - first) * 1000 / wave.pastes
    finally:
        tap.listeners.remove(on_call)
    updates = {u["update_id"]: u for u in standins.telegram.updates()}
    for user, update_id, message_id in sent:
        deleted_at = deletions.get((user.chat_id, message_id or 0))
        update = updates.get(update_id)
        if deleted_at is None or update is None or update["first_handed_over_monotonic"] is None:
            continue
        wave.deleted += 1
        wave.exposure_s.append(deleted_at - update["created_monotonic"])
        wave.bot_side_s.append(deleted_at - update["first_handed_over_monotonic"])
    return wave
