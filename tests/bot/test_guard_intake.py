"""The guard lane's webhook intake (``WEBHOOK_GUARD_PORT``): checked, deleted, handed over, then answered.

The real lane (on its thread, and in the guard process) against the Telegram stand-in over HTTP. The POSTs
are made synchronously from the test's own event loop, so that loop is blocked while the intake works: a
deletion that needed it could not happen before the answer; the lane's does.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.core.ports import DeleteOutcome, GuardVerdict
from bot.standins.sandbox import SANDBOX_BOT_TOKEN
from bot.standins.server import free_port
from bot.standins.telegram import FakeTelegram
from bot.telegram.lane_runner import Lane, make_lane
from bot.web.guard_intake import IntakeConfig
from bot.web.webhook_request import SECRET_HEADER
from tests.bot.support import sandbox_settings
from tests.bot.test_guard_lane import _until

USER = 6262
SECRET = "intake_Secret-token_0123456789abcdef"
KEY = "sk-proj-" + "Zr4Tq8Wm2Nc6Xv1Bk9Ls3Pd7Hf5Gj0Ya" * 2
MODES = pytest.mark.parametrize("mode", ["thread", "process"])
Handed = list[tuple[dict[str, Any], GuardVerdict | None]]


@contextmanager
def _intake(url: str, tmp_path: Path, mode: str, *, queue_max: int = 100) -> Iterator[tuple[Lane, str, Handed,
                                                                                           list[str]]]:
    """A started intake lane, its URL, what it handed over and what it refused (for /metrics)."""
    handed: Handed = []
    refused: list[str] = []
    port = free_port()
    lane = make_lane(mode, sandbox_settings(url, tmp_path, telegram_delete_deadline_s=5.0), [],
                     lambda raw, verdict: handed.append((raw, verdict)),
                     intake=IntakeConfig("127.0.0.1", port, "/telegram", SECRET, queue_max), outcome=refused.append)
    lane.start()
    try:
        assert lane.failure is None, lane.failure
        yield lane, f"http://127.0.0.1:{port}/telegram", handed, refused
    finally:
        lane.stop()


def _pending_update(url: str) -> dict[str, Any]:
    """The raw update Telegram would push for the user's last message (read as getUpdates hands it out)."""
    answer = httpx.post(f"{url}/bot{SANDBOX_BOT_TOKEN}/getUpdates", json={"timeout": 0}, timeout=10).json()
    return dict(answer["result"][-1])


def _post(url: str, body: bytes, *, secret: str | None = SECRET, content_type: str = "application/json",
          ) -> httpx.Response:
    headers = {"Content-Type": content_type}
    if secret is not None:
        headers[SECRET_HEADER] = secret
    return httpx.post(url, content=body, headers=headers, timeout=30)


def _get(url: str) -> httpx.Response:
    return httpx.get(url, timeout=10)


def _deleted(fake: FakeTelegram, message_id: int) -> bool:
    return any(str(call["params"].get("message_id")) == str(message_id) for call in fake.calls(method="deleteMessage"))


@MODES
async def test_a_pasted_key_is_deleted_before_the_answer_and_the_update_handed_over(
        telegram: tuple[FakeTelegram, str], tmp_path: Path, mode: str) -> None:
    fake, url = telegram
    with _intake(url, tmp_path, mode) as (_, intake_url, handed, refused):
        sent = fake.send(USER, KEY)
        raw = _pending_update(url)
        answer = _post(intake_url, json.dumps(raw).encode())  # blocks this test's loop: the lane needs none of it
        assert answer.status_code == 200
        assert _deleted(fake, sent["message_id"]), "answered before the key was deleted"
        await _until(lambda: handed)
        assert [update["update_id"] for update, _ in handed] == [raw["update_id"]]
        verdict = handed[0][1]
        assert verdict is not None and verdict.deletion is DeleteOutcome.DELETED
        assert refused == []


@MODES
async def test_forged_and_malformed_posts_are_refused_before_anything_is_parsed(
        telegram: tuple[FakeTelegram, str], tmp_path: Path, mode: str) -> None:
    fake, url = telegram
    with _intake(url, tmp_path, mode) as (_, intake_url, handed, refused):
        sent = fake.send(USER, KEY)
        body = json.dumps(_pending_update(url)).encode()
        assert _post(intake_url, body, secret=None).status_code == 403
        assert _post(intake_url, body, secret=SECRET + "x").status_code == 403
        assert _post(intake_url, body, content_type="text/plain").status_code == 415
        assert _post(intake_url, b"{not json").status_code == 400
        assert _post(intake_url, b'{"message": {}}').status_code == 400
        assert _post(intake_url, b"x" * ((1 << 20) + 1)).status_code == 413
        assert _get(intake_url).status_code == 405
        assert not _deleted(fake, sent["message_id"]), "a refused POST was acted on"
        await _until(lambda: len(refused) >= 6, 5)
        assert refused == ["forbidden", "forbidden", "bad_request", "bad_request", "bad_request", "bad_request"]
        assert handed == []


@MODES
async def test_a_full_queue_still_deletes_the_key_then_asks_telegram_to_send_it_again(
        telegram: tuple[FakeTelegram, str], tmp_path: Path, mode: str) -> None:
    fake, url = telegram
    with _intake(url, tmp_path, mode, queue_max=3) as (lane, intake_url, handed, refused):
        lane.report_waiting(3, 0)  # the main process says three updates wait there
        await asyncio.sleep(0.3)  # the report crosses the pipe (process mode)
        sent = fake.send(USER, KEY)
        raw = _pending_update(url)
        busy = _post(intake_url, json.dumps(raw).encode())
        assert busy.status_code == 503 and busy.headers["Retry-After"] == "2"
        assert _deleted(fake, sent["message_id"]), "the key must not wait for the queue"
        lane.report_waiting(0, 0)
        await asyncio.sleep(0.3)
        assert _post(intake_url, json.dumps(raw).encode()).status_code == 200  # Telegram's redelivery
        await _until(lambda: handed)
        assert [update["update_id"] for update, _ in handed] == [raw["update_id"]]
        assert refused[:1] == ["unavailable"]


@MODES
async def test_a_port_already_taken_stops_the_lane_with_the_reason(telegram: tuple[FakeTelegram, str],
                                                                   tmp_path: Path, mode: str) -> None:
    import socket

    _, url = telegram
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        lane = make_lane(mode, sandbox_settings(url, tmp_path), [], lambda raw, verdict: None,
                         intake=IntakeConfig("127.0.0.1", port, "/telegram", SECRET, 10))
        await asyncio.to_thread(lane.start)
        assert await asyncio.to_thread(lane.stopped.wait, 30)
        assert lane.failure is not None
        await asyncio.to_thread(lane.stop)


@MODES
async def test_the_bound_counts_what_waits_not_every_update_ever_handed_over(
        telegram: tuple[FakeTelegram, str], tmp_path: Path, mode: str) -> None:
    """A main process that keeps up reports "nothing waits" again and again; the lane must go on taking
    updates long past ``queue_max`` of them (it once counted every hand-over since the last *changed* report)."""
    fake, url = telegram
    with _intake(url, tmp_path, mode, queue_max=3) as (lane, intake_url, handed, _):
        for number in range(8):
            fake.send(USER, f"hello {number}")
            assert _post(intake_url, json.dumps(_pending_update(url)).encode()).status_code == 200, number
            await _until(lambda count=number: len(handed) > count)
            lane.report_waiting(0, len(handed))  # processed at once: nothing waits
            await asyncio.sleep(0.1 if mode == "process" else 0)  # the report crosses the pipe
        # in transit counts too: with no report at all, the fourth unreported hand-over is refused
        lane.report_waiting(0, len(handed))
        await asyncio.sleep(0.2)
        answers = []
        for number in range(4):
            fake.send(USER, f"burst {number}")
            answers.append(_post(intake_url, json.dumps(_pending_update(url)).encode()).status_code)
        assert answers == [200, 200, 200, 503]


async def test_a_guard_that_fails_asks_telegram_again_and_the_retry_deletes_the_key(
        telegram: tuple[FakeTelegram, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not "nothing to delete": an update whose check raised is answered 503 (Telegram sends it again),
    never handed over as checked (the thread lane, so the failure can be planted in this process)."""
    from bot.telegram.messenger import Messenger

    original = Messenger.delete
    failures = [RuntimeError("unexpected")]

    async def flaky(self: Messenger, *args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop()
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(Messenger, "delete", flaky)
    fake, url = telegram
    with _intake(url, tmp_path, "thread") as (_, intake_url, handed, refused):
        sent = fake.send(USER, KEY)
        body = json.dumps(_pending_update(url)).encode()
        first = _post(intake_url, body)
        assert first.status_code == 503 and first.headers["Retry-After"] == "2"
        assert handed == [] and not _deleted(fake, sent["message_id"])
        assert _post(intake_url, body).status_code == 200  # Telegram's redelivery
        assert _deleted(fake, sent["message_id"])
        await _until(lambda: handed)
        verdict = handed[0][1]
        assert verdict is not None and verdict.deletion is DeleteOutcome.DELETED
        assert refused == ["unavailable"]
