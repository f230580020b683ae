"""Issue 9 end to end: Telegram slow to delete a pasted key, through the real bot process and its guard lane.

The stand-in answers ``deleteMessage`` with 429 "retry after 2" twice, so the deletion outlasts a 2 s
TELEGRAM_DELETE_DEADLINE_S. The key must wait unused (never "exposed": Telegram never said it can't), then be
verified and connected once the message is gone; while it waits and after, no form of the key is in the
database, the DEBUG log or any Bot API call. When Telegram finally refuses (the message is older than 48 h
by then), the key is reported exposed and never used.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.standins.chat_driver import ChatDriver
from tests.e2e.conftest import BACKENDS, _backend_param
from tests.e2e.harness import Stack, new_database_url, plain_text
from tests.e2e.leaks import find_in_calls, find_in_tree
from tests.e2e.pasting import fresh_key, reach_paste_step

pytestmark = pytest.mark.e2e

SLOW = "Still deleting your message"
EXPOSED = "couldn't delete"
FLOOD = "Too Many Requests: retry after 2"


# The guard lane as a thread (each backend), and as a process: there the late outcome crosses a pipe.
LANES = [*BACKENDS, pytest.param("sqlite/process", id="sqlite-process")]


@pytest.fixture(scope="module", params=LANES)
def slow(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Path]]:
    backend, _, lane = _backend_param(request).partition("/")
    folder = tmp_path_factory.mktemp(f"still-deleting-{backend}-{lane or 'thread'}")
    started = Stack.start(folder, new_database_url(backend, folder), telegram={"flood_control": False},
                          telegram_delete_deadline_s=2, telegram_delete_background_s=30, log_level="DEBUG",
                          guard_lane=lane or "thread")
    yield started, folder
    started.close()


def _said(user: ChatDriver) -> list[str]:
    return [plain_text(str(c["params"].get("text") or "")) for c in user.calls()
            if c["method"] in ("sendMessage", "editMessageText") and str(c["params"].get("chat_id")) ==
            str(user.user_id)]


def _paste_under_a_flood_wait(stack: Stack, hint: str) -> tuple[ChatDriver, str, dict[str, Any]]:
    """A valid key pasted while Telegram answers its deletion twice with "retry after 2" (past the deadline)."""
    user = stack.user()
    reach_paste_step(user)
    key = fresh_key("project", hint)
    stack.sandbox.openai.register(key, "valid")
    for _ in range(2):
        stack.sandbox.telegram.fail_next("deleteMessage", 429, FLOOD, retry_after=2)
    return user, key, user.send(key)


def test_a_slow_deletion_waits_unused_then_the_key_is_connected(slow: tuple[Stack, Path]) -> None:
    stack, folder = slow
    user, key, sent = _paste_under_a_flood_wait(stack, "Slow")
    user.wait_for(lambda: any(SLOW in t for t in _said(user)) or None, 20, "the still-deleting notice")
    assert not stack.openai_requests_for(key), "the key is not checked while its message is visible"
    leaks = [*find_in_tree(folder, [key]), *find_in_calls(stack.drivers[0].calls(), [key])]
    assert not leaks, leaks
    user.wait_for(lambda: user.message(sent["message_id"])["deleted"] or None, 30, "the message to be deleted")
    user.wait_for(lambda: "You're done" in plain_text(user.guide().get("text") or "") or None, 30, "connected")
    assert stack.openai_requests_for(key)
    assert not any(EXPOSED in t for t in _said(user)), "never called exposed"
    leaks = [*find_in_tree(folder, [key]), *find_in_calls(stack.drivers[0].calls(), [key])]
    assert not leaks, leaks


def test_a_deletion_telegram_finally_refuses_is_reported_exposed(slow: tuple[Stack, Path]) -> None:
    stack, _folder = slow
    user, key, sent = _paste_under_a_flood_wait(stack, "Refused")
    stack.sandbox.telegram.age_message(user.user_id, sent["message_id"], 49 * 3600)  # too old by the retry
    user.wait_for(lambda: any(EXPOSED in t for t in _said(user)) or None, 40, "the exposed answer")
    assert any(SLOW in t for t in _said(user))
    assert not stack.openai_requests_for(key), "an exposed key is never checked"
    assert not user.message(sent["message_id"])["deleted"]
