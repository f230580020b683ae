"""The guard lane: a pasted key is deleted even while the bot's event loop is stuck, and nothing is lost.

The real ``build_bot`` and the real lane, against the Telegram stand-in over HTTP. The main loop is
blocked on purpose (a synchronous sleep, as a CPU-bound backlog would block it): a deletion that needed the
main loop could not happen until the sleep ends; the lane's does.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from bot.standins.telegram import FakeTelegram
from bot.telegram.application import ALLOWED_UPDATES, build_bot
from bot.telegram.guard_lane import Confirmations
from bot.telegram.lane_runner import serve_with_lane
from tests.bot.support import sandbox_settings

USER = 5151
MODES = pytest.mark.parametrize("mode", ["thread", "process"])
KEY = "sk-proj-" + "Q7vLm2Xc9RtB4nWz8KpHs3Jd6FgYa1Ue5Oi0TyVbNcMx" * 2


async def _until(predicate: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError("timed out")


def _deletions(fake: FakeTelegram, message_id: int) -> list[dict[str, Any]]:
    return [c for c in fake.calls(method="deleteMessage") if c["params"].get("message_id") in (message_id,
                                                                                             str(message_id))]


@asynccontextmanager
async def _serving(telegram: tuple[FakeTelegram, str], tmp_path: Path, handed: list[Any] | None = None,
                   mode: str = "thread") -> AsyncIterator[Any]:
    """The real bot served through the guard lane (``mode``: its thread or its process) until the block
    ends; ``handed`` collects every update the lane hands to the main loop."""
    fake, url = telegram
    bot_app = build_bot(sandbox_settings(url, tmp_path, database_url=f"sqlite+aiosqlite:///{tmp_path / 'b.db'}"))
    from storage.migrate import upgrade

    await upgrade(bot_app.settings.database_url)
    if handed is not None:
        original = bot_app.application.update_queue.put_nowait

        def record(update: Any) -> None:
            if getattr(update, "update_id", None) is not None:  # PTB puts a plain object() in on stop
                handed.append(update)
            original(update)

        bot_app.application.update_queue.put_nowait = record  # type: ignore[method-assign]
    stop = asyncio.Event()
    serving = asyncio.create_task(serve_with_lane(bot_app, ALLOWED_UPDATES, stop=stop, mode=mode))
    await _until(lambda: fake.calls(method="getUpdates"))
    try:
        yield bot_app
    finally:
        stop.set()
        await asyncio.wait_for(serving, 60)


@MODES
async def test_a_key_is_deleted_while_the_main_loop_is_blocked(telegram: tuple[FakeTelegram, str],
                                                                tmp_path: Path, mode: str) -> None:
    fake, _ = telegram
    async with _serving(telegram, tmp_path, mode=mode):
        fake.send(USER, "/start")
        await _until(lambda: [m for m in fake.messages(USER) if m.get("from_bot")])
        pasted = fake.send(USER, KEY)
        sent_at = time.monotonic()
        time.sleep(1.5)  # noqa: ASYNC251 - on purpose: the main loop can do nothing now (no handler, no DB, no PTB)
        deleted = _deletions(fake, pasted["message_id"])
        assert deleted, "the lane did not delete the key while the main loop was blocked"
        assert deleted[0]["received_monotonic"] - sent_at < 1.0
        # Then the main loop catches up: the update was handed over and processed as ever (the key
        # checked, the chat shows the verdict), and the main guard did not delete it a second time.
        await _until(lambda: any("sk-proj" not in (m.get("text") or "") and m.get("from_bot")
                                 for m in fake.messages(USER)))
        await asyncio.sleep(0.5)
        assert len(_deletions(fake, pasted["message_id"])) == 1
        assert all(KEY not in (m.get("text") or "") for m in fake.messages(USER) if m.get("from_bot"))


@MODES
async def test_updates_of_one_chat_are_handed_over_in_order(telegram: tuple[FakeTelegram, str],
                                                            tmp_path: Path, mode: str) -> None:
    """A slow deletion holds back that chat's later updates (so a /start never overtakes the paste),
    while other chats' updates go on."""
    fake, _ = telegram
    handed: list[Any] = []
    async with _serving(telegram, tmp_path, handed, mode):
        first = fake.send(USER, "/start")
        paste = fake.send(USER, KEY)
        last = fake.send(USER, "/help")
        def mine() -> list[int]:
            return [u.update_id for u in handed if u.effective_chat.id == USER]

        await _until(lambda: len(mine()) >= 3)
        assert mine()[:3] == [first["update_id"], paste["update_id"], last["update_id"]]


@MODES
async def test_an_update_stays_unconfirmed_until_its_key_is_deleted(telegram: tuple[FakeTelegram, str],
                                                                   tmp_path: Path, mode: str) -> None:
    """A deletion waiting out a 429 keeps its update unconfirmed at Telegram (a process killed meanwhile
    gets it again, and its guard deletes the key); other chats go on, and nothing is handed over twice."""
    fake, _ = telegram
    handed: list[Any] = []

    def confirmed(update_id: int) -> bool:
        return bool(next(u for u in fake.updates() if u["update_id"] == update_id)["confirmed"])

    async with _serving(telegram, tmp_path, handed, mode):
        fake.send(USER, "/start")
        await _until(lambda: [m for m in fake.messages(USER) if m.get("from_bot")])
        fake.fail_next("deleteMessage", 429, "Too Many Requests: retry after 3", retry_after=3)
        pasted = fake.send(USER, KEY)
        await _until(lambda: _deletions(fake, pasted["message_id"]))
        other = fake.send(USER + 1, "/start")
        await _until(lambda: [m for m in fake.messages(USER + 1) if m.get("from_bot")])
        assert not confirmed(pasted["update_id"]), "confirmed while its key was still in the chat"
        await _until(lambda: any(c["ok"] for c in _deletions(fake, pasted["message_id"])), timeout=10)
        await _until(lambda: confirmed(pasted["update_id"]), timeout=15)
        await _until(lambda: confirmed(other["update_id"]), timeout=15)
        ids = [u.update_id for u in handed]
        assert ids.count(pasted["update_id"]) == 1 and ids.count(other["update_id"]) == 1


def test_confirmations_hold_the_offset_at_the_oldest_unsettled_update() -> None:
    confirmations = Confirmations(window=10)
    assert [confirmations.take(u) for u in (10, 11, 12)] == [True, True, True]
    confirmations.settle(10)
    confirmations.settle(12)
    assert confirmations.holding and confirmations.offset() == 11  # 11's deletion is under way
    assert [confirmations.take(u) for u in (11, 12, 13)] == [False, False, True]  # only 13 is new
    confirmations.settle(13)
    confirmations.settle(11)
    assert not confirmations.holding and confirmations.offset() == 14


def test_a_burst_releases_the_hold_so_polls_stay_cheap() -> None:
    """Each poll fetches held updates again: past ``window`` newer updates the oldest hold is given up."""
    confirmations = Confirmations(window=3)
    confirmations.take(1)  # its deletion is stuck
    for update_id in (2, 3):
        confirmations.take(update_id)
        confirmations.settle(update_id)
    assert confirmations.offset() == 1  # 3 updates from the held one: still held
    confirmations.take(4)
    confirmations.settle(4)
    assert confirmations.offset() == 5 and confirmations.released == 1
    assert not confirmations.take(1)  # never handed over twice, even if it came again


def _lane(mode: str, url: str, token: str, handover: Any) -> Any:
    from bot.telegram.guard_lane import GuardLane
    from bot.telegram.guard_process import GuardProcess, LaneConfig

    options: dict[str, Any] = {"delete_deadline_s": 5.0, "delete_notice_after_s": 3.0}
    if mode == "process":
        return GuardProcess(LaneConfig(token, url, ALLOWED_UPDATES, **options), handover)
    return GuardLane(token, url, ALLOWED_UPDATES, handover, **options)


@MODES
async def test_a_rejected_token_stops_the_lane_with_invalid_token(telegram: tuple[FakeTelegram, str],
                                                                  mode: str) -> None:
    """The CLI turns InvalidToken into "Telegram rejected TELEGRAM_BOT_TOKEN"; the process says the same."""
    from telegram.error import InvalidToken

    _, url = telegram
    lane = _lane(mode, url, "123456789:AArevoked", lambda raw, verdict: None)
    await asyncio.to_thread(lane.start)
    assert await asyncio.to_thread(lane.stopped.wait, 30)
    assert isinstance(lane.failure, InvalidToken)
    await asyncio.to_thread(lane.stop)


async def test_a_guard_process_that_dies_stops_the_bot_with_the_reason(telegram: tuple[FakeTelegram, str],
                                                                        tmp_path: Path) -> None:
    import os
    import signal

    import pytest

    from bot.telegram import guard_process

    started: list[Any] = []
    original = guard_process.GuardProcess.start

    def start(self: Any) -> None:
        original(self)
        started.append(self)

    fake, _ = telegram
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(guard_process.GuardProcess, "start", start)
        with pytest.raises(RuntimeError, match=r"guard process died \(exit code -9\)"):
            async with _serving(telegram, tmp_path, mode="process"):
                os.kill(started[0].pid, signal.SIGKILL)
                await asyncio.sleep(5)  # the bot stops at once; this block is left by the exception
    assert fake.calls(method="getUpdates")


async def test_an_update_the_lane_could_not_check_is_checked_again_by_the_main_guard(bot_app: Any) -> None:
    """UNCHECKED (the lane's guard raised) is never settled in the main process, through the pipe too."""
    import json
    import queue

    from bot.core.ports import DeleteOutcome
    from bot.telegram import guard_process
    from bot.telegram.guard_lane import UNCHECKED
    from bot.telegram.lane_runner import handover_to

    outbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
    guard_process._handover_to(outbox)({"update_id": 7}, UNCHECKED)
    sent = outbox.get_nowait()
    assert sent is not None
    parent = guard_process.GuardProcess(guard_process.LaneConfig("1:AA", "http://127.0.0.1:9", [], 5.0, 3.0),
                                        lambda raw, verdict: None)
    assert parent._verdict(json.loads(sent)) is UNCHECKED

    guard = bot_app.application.update_processor.guard
    handover = handover_to(bot_app.application, asyncio.get_running_loop())
    text = {"message_id": 1, "date": 0, "chat": {"id": USER, "type": "private"}, "text": "hello"}
    handover({"update_id": 11, "message": text}, UNCHECKED)
    handover({"update_id": 12, "message": {**text, "message_id": 2}}, None)
    await asyncio.sleep(0.05)  # the hand-over runs on the loop
    assert 11 not in guard._settled and guard._settled.get(12) is True
    assert UNCHECKED.deletion is DeleteOutcome.FAILED
