"""Issue 14 end to end: over the bot-wide verification limit every paste is still checked and answered.

A real bot process with VERIFICATIONS_PER_MINUTE=2; five users paste valid keys at the same moment. Two
are checked at once, the other three are told "checks are busy, I'll have an answer in about N seconds"
and are checked when their slot comes (about 60 and 120 s later): all five end connected, nobody is
refused. Once with the keys waiting in memory (OUTBOX_HOLD_MINUTES=0: nothing can be held) and once
sealed in the outbox. While they wait and after, no key's plaintext (or any encoding of it) is in the
database, the log (DEBUG) or any Bot API call. The per-user limit still refuses. Slow (about 2 minutes
per variant: the window is a real minute).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.standins.chat_driver import ChatDriver
from tests.e2e.harness import Stack, new_database_url, plain_text
from tests.e2e.leaks import find_in_calls, find_in_tree
from tests.e2e.pasting import fresh_key, reach_paste_step, send_and_wait

pytestmark = pytest.mark.e2e

USERS = 5
BUSY = "Checks are busy right now"
ETA = re.compile(r"answer in about (\d+) seconds?")
VARIANTS = {"memory": {"outbox_hold_minutes": 0}, "sealed": {}}


@pytest.fixture(params=list(VARIANTS), scope="module")
def busy_stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[
        tuple[Stack, Path]]:
    folder = tmp_path_factory.mktemp(f"busy-{request.param}")
    # PIPELINE_TIMEOUT_S=20: the recovery job runs every 5 s while keys wait far longer than that, so a
    # queued key that recovery took for an interrupted one would show here as "paste it again".
    started = Stack.start(folder, new_database_url("sqlite", folder), telegram={"flood_control": False},
                          verifications_per_minute=2, key_submissions_per_user_per_hour=1,
                          pipeline_timeout_s=20, log_level="DEBUG", **VARIANTS[request.param])
    yield started, folder
    started.close()


def guide_text(user: ChatDriver) -> str:
    return plain_text(user.guide().get("text") or "")


def shown(user: ChatDriver) -> list[str]:
    """Every text the bot sent or edited into this chat, oldest first (notices vanish from edited guides)."""
    return [plain_text(str(c["params"].get("text") or "")) for c in user.calls()
            if c["method"] in ("sendMessage", "editMessageText") and str(c["params"].get("chat_id")) ==
            str(user.user_id)]


def no_leaks(stack: Stack, folder: Path, keys: list[str]) -> None:
    leaks = [*find_in_tree(folder, keys), *find_in_calls(stack.drivers[0].calls(), keys)]
    assert not leaks, "key material written by the system:\n" + "\n".join(map(str, leaks))


def test_every_paste_over_the_bot_wide_limit_is_checked_and_answered(busy_stack: tuple[Stack, Path]) -> None:
    stack, folder = busy_stack
    users = [stack.user() for _ in range(USERS)]
    for user in users:
        reach_paste_step(user)
    keys = [fresh_key("project", "Busy") for _ in users]
    for key in keys:
        stack.sandbox.openai.register(key, "valid")
    for user, key in zip(users, keys, strict=True):  # all at once: nobody waits for an answer first
        user.send(key)

    def told_busy(user: ChatDriver) -> list[int]:
        return [int(m.group(1)) for text in shown(user) if (m := ETA.search(text))]

    users[0].wait_for(lambda: sum(1 for u in users if told_busy(u)) == USERS - 2, 20, "three busy notices")
    no_leaks(stack, folder, keys)  # while three keys wait for their slot

    users[0].wait_for(lambda: all("You're done" in guide_text(u) for u in users), 200, "every user connected")
    etas = [told_busy(user) for user in users]
    waited = [eta[0] for eta in etas if eta]
    assert len(waited) == USERS - 2, etas
    assert all(1 <= n <= 125 for n in waited) and max(waited) > 60, waited  # the third waits a second window
    for user, eta in zip(users, etas, strict=True):
        texts = shown(user)
        assert not any("pausing checks" in text for text in texts), texts  # nobody was refused
        assert not any("interrupted" in text for text in texts), texts  # nor taken for a lost check
        if eta:
            busy = next(text for text in texts if BUSY in text)
            assert "Your message with the key is deleted" in busy
    no_leaks(stack, folder, keys)

    # The per-user limit (1 an hour here) still refuses, with its own answer.
    again = users[0]
    again.send("/replace")
    again.wait_guide("Let's replace key")
    extra = fresh_key("project", "Busy")
    stack.sandbox.openai.register(extra, "valid")
    refused: dict[str, Any] = send_and_wait(again, extra, "pausing checks")
    assert re.search(r"try again in about \d+ min", plain_text(refused["text"]))
    assert BUSY not in plain_text(refused["text"])
    no_leaks(stack, folder, [*keys, extra])
