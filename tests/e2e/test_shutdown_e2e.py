"""Graceful shutdown in polling mode (the webhook mode has its own test in test_webhook_e2e.py).

SIGTERM, as a container runtime sends it: the bot stops fetching, finishes the update in hand and the key
pipeline that is waiting for OpenAI, closes its clients and exits 0; a restart picks up what arrived
meanwhile.
"""

from __future__ import annotations

import signal
import time

import pytest

from bot.standins.demo_keys import DEMO_KEYS
from tests.e2e.harness import Stack, new_database_url, plain_text

pytestmark = pytest.mark.e2e

STEPS = [("start", "Open the API keys page"), ("Next", "Start a new secret key"), ("Next", "Who owns the key?"),
         ("Personal", "Name the key"), ("Next", "Choose the project"), ("Default", "Set the permissions"),
         ("All", "Create and copy the key"), ("I copied it", "Which DoubleTick workspace?")]


def test_sigterm_while_polling_drains_the_key_pipeline_and_a_restart_loses_nothing(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    folder = tmp_path_factory.mktemp("polling-shutdown")
    stack = Stack.start(folder, new_database_url("sqlite", folder))
    try:
        stack.sandbox.doubletick.configure(workspaces={"ws_polling": "Polling Ltd"})
        user = stack.user()
        user.send("/start")
        user.wait_guide("Connect DoubleTick to OpenAI")
        for label, title in STEPS:
            user.press(label)
            user.wait_guide(title)
        user.send("ws_polling")
        user.wait_guide("Paste your key here")
        stack.sandbox.openai.configure(latency_ms=1500)
        user.send(DEMO_KEYS["valid"].key)
        user.wait_guide("Checking")
        process = stack.bot.process
        assert process is not None
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0, stack.bot.log()
        stack.sandbox.openai.configure(latency_ms=0)
        user.wait_guide("You're done")  # delivered before the process exited
        workspace = stack.sandbox.doubletick.workspace("ws_polling")
        assert workspace is not None and workspace.connect_count == 1
        later = user.send("/privacy")  # nobody is polling now: Telegram keeps it
        time.sleep(0.3)
        assert not any("Never the key itself" in plain_text(m.get("text") or "") for m in user.bot_messages())
        stack.bot.start()
        user.wait_for(lambda: any("Never the key itself" in plain_text(m.get("text") or "")
                                  for m in user.bot_messages()), 30, "the privacy reply after the restart")
        user.wait_for(lambda: next(u for u in stack.sandbox.telegram.updates()
                                   if u["update_id"] == later["update_id"])["confirmed"], what="the update confirmed")
        assert "Traceback" not in stack.bot.log()
    finally:
        stack.close()
