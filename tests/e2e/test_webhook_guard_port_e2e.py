"""``run --webhook`` with ``WEBHOOK_GUARD_PORT``: Telegram posts to the guard process, the server keeps the rest.

The real bot process and its guard process, the stand-in pushing updates to the guard port as Telegram
would. What must hold: the whole walk works through the lane; the key is deleted before Telegram hears 200;
no key material lands in the log, the database or any outbound request; /metrics on the server's port
counts the lane's answers; the guard process dying stops the bot (exit 1); SIGTERM stops both (exit 0).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.standins.demo_keys import DEMO_KEYS
from tests.e2e.leaks import find_in_calls, find_in_tree
from tests.e2e.test_guard_process_e2e import _children, _running
from tests.e2e.test_webhook_e2e import WebhookStack, forged_start, walk_to_connected

pytestmark = pytest.mark.e2e


@pytest.fixture
def guard_stack(tmp_path: Path) -> Iterator[WebhookStack]:
    # A small queue bound: a walk of a dozen updates must pass it, so the lane has to learn from the main
    # process that each update left the queue (it once counted every update handed over since the last
    # *changed* report, and refused everything after the fourth of a steady walk).
    created = WebhookStack(tmp_path, guard_port=True, webhook_queue_max=4)
    try:
        created.start_bot()
        yield created
    finally:
        created.close()


def _guard_process(stack: WebhookStack) -> int:
    assert stack.bot.process is not None
    for pid in _children(stack.bot.process.pid):
        if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
            return pid
    raise AssertionError("no guard process")


def test_a_walk_through_the_guard_port_connects_and_leaves_no_key_anywhere(guard_stack: WebhookStack) -> None:
    stack = guard_stack
    assert stack.webhook_url != f"{stack.url}/telegram"
    # deleted, connected once, every update delivered once (the deletion before the 200: test_guard_intake.py)
    user = walk_to_connected(stack, "ws_guardport")
    assert not [c for c in stack.sandbox.telegram.calls() if c["method"].lower() == "getupdates"]
    assert stack.metric("onboarding_webhook_requests_total", result="accepted") >= 11
    refused = stack.post(forged_start(990_000_002, 770_002), secret="wrong")
    assert refused.status_code == 403
    deadline = time.monotonic() + 5
    while stack.metric("onboarding_webhook_requests_total", result="forbidden") < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stack.metric("onboarding_webhook_requests_total", result="forbidden") == 1
    keys = [DEMO_KEYS["valid"].key]
    leaks = [*find_in_tree(stack.folder, keys), *find_in_calls(user.calls(), keys)]
    assert not leaks, "key material written by the system:\n" + "\n".join(map(str, leaks))
    assert stack.bot.process is not None
    guard = _guard_process(stack)
    stack.bot.process.send_signal(signal.SIGTERM)
    assert stack.bot.process.wait(40) == 0, stack.bot.log()
    assert not _running(guard)


def test_a_guard_process_that_dies_stops_the_bot_with_an_error(guard_stack: WebhookStack) -> None:
    stack = guard_stack
    user = stack.user()
    user.send("/start")
    user.wait_guide("Connect DoubleTick to OpenAI")
    os.kill(_guard_process(stack), signal.SIGKILL)
    assert stack.bot.process is not None
    assert stack.bot.process.wait(40) == 1, stack.bot.log()
    assert "the webhook intake stopped" in stack.bot.log()


def test_a_guard_process_told_to_stop_stops_the_bot_cleanly(guard_stack: WebhookStack) -> None:
    """SIGTERM to the whole process group reaches the guard process too: a stop, not a failure (exit 0)."""
    stack = guard_stack
    os.kill(_guard_process(stack), signal.SIGTERM)
    assert stack.bot.process is not None
    assert stack.bot.process.wait(40) == 0, stack.bot.log()
