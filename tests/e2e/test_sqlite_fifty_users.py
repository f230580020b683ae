"""The embedded SQLite default holds 50 simultaneous users: no "database is locked", nobody lost.

The real bot (``onboarding-bot run``: PTB Application, long polling) on a SQLite file, against the
Telegram, OpenAI and DoubleTick stand-ins. Fifty users start at the same instant and each walks the whole
guide, names their own workspace and pastes a valid key, so every write path runs concurrently:
conversation saves, update claims, audit rows, key records, abuse-limit hits, guide-message ids.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from bot.standins.chat_driver import ChatDriver
from tests.e2e.harness import Stack, new_database_url, sha256
from tests.e2e.pasting import GUIDE, fresh_key

pytestmark = pytest.mark.e2e

USERS = 50
STEP_TIMEOUT_S = 90.0  # generous: this machine's two cores are shared; the point is that nothing fails


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("fifty")
    url = new_database_url("sqlite", folder)
    assert url.startswith("sqlite"), url
    started = Stack.start(folder, url, telegram_max_rate_per_s=100_000, verifications_per_minute=1000)
    yield started
    started.close()


def _walk(user: ChatDriver, workspace: str, key: str, go: threading.Barrier) -> None:
    go.wait()
    user.send("/start")
    user.wait_guide("Connect DoubleTick to OpenAI", STEP_TIMEOUT_S)
    for label, title in GUIDE:
        user.press(label)
        user.wait_guide(title, STEP_TIMEOUT_S)
    user.press("I copied it")
    user.wait_guide("Which DoubleTick workspace?", STEP_TIMEOUT_S)
    user.send(workspace)
    user.wait_guide("Paste your key here", STEP_TIMEOUT_S)
    user.send(key)
    user.wait_guide("You're done", STEP_TIMEOUT_S)


def _where(log: str, needle: str) -> str:
    """The project's own frames of the tracebacks that mention ``needle`` (for the failure message)."""
    frames = [line.strip() for block in log.split("Traceback")[1:] if needle in block
              for line in block.splitlines() if 'File "' in line and "site-packages" not in line]
    return "\n".join(sorted(set(frames)))


def test_fifty_simultaneous_users_on_sqlite(stack: Stack) -> None:
    workspaces = {f"ws_fifty_{n}": f"Fifty {n}" for n in range(USERS)}
    stack.sandbox.doubletick.configure(workspaces=workspaces)
    users = [stack.user() for _ in range(USERS)]
    keys = [fresh_key() for _ in range(USERS)]
    for key in keys:
        stack.sandbox.openai.register(key, "valid")
    go = threading.Barrier(USERS)
    with ThreadPoolExecutor(USERS) as pool:
        walks = [pool.submit(_walk, user, ws, key, go) for user, ws, key in zip(users, workspaces, keys, strict=True)]
        failures = [repr(walk.exception()) for walk in walks if walk.exception() is not None]
    log = stack.bot.log()
    assert "database is locked" not in log, _where(log, "database is locked")
    assert "OperationalError" not in log, _where(log, "OperationalError")  # no database error of any kind
    assert not failures, failures[:5]
    for ws, key in zip(workspaces, keys, strict=True):
        state = stack.sandbox.doubletick.workspace(ws)
        assert state is not None and state.connected and state.key_sha256 == sha256(key)
        assert state.connect_count == 1
