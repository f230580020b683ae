"""The guard process (``GUARD_LANE=process``) through the real bot process: keys deleted, no orphans.

SIGKILL of the bot runs none of its shutdown code; the guard process must still go (its end of the pipe
reaches EOF), or it would go on polling ``getUpdates`` beside the bot's next start.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.e2e.harness import Stack, new_database_url
from tests.e2e.pasting import fresh_key, reach_paste_step

pytestmark = pytest.mark.e2e


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has exited (only nobody reaped it yet)


def test_sigkill_of_the_bot_leaves_no_guard_process_behind(tmp_path: Path) -> None:
    stack = Stack.start(tmp_path, new_database_url("sqlite", tmp_path), guard_lane="process")
    try:
        process = stack.bot.process
        assert process is not None
        # The guard process, and multiprocessing's resource tracker beside it: none may stay.
        guards = _children(process.pid)
        assert any(b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes() for pid in guards), guards
        user = stack.user()
        reach_paste_step(user)
        key = fresh_key()
        pasted = user.send(key)
        user.wait_for(lambda: any(c["method"] == "deleteMessage" and str(c["params"].get("message_id"))
                                  == str(pasted["message_id"]) for c in user.calls()), 20, "the key deleted")
        stack.bot.kill()
        deadline = time.monotonic() + 15
        while any(map(_running, guards)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(map(_running, guards)), "the guard process outlived the bot"
    finally:
        stack.close()
