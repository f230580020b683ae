"""The offline try-it mode, as a new user would run it: the whole guide to "connected" with demo keys."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bot.standins.demo_keys import DEMO_KEYS

pytestmark = pytest.mark.e2e


def test_try_mode_walks_the_whole_guide_to_connected_with_a_demo_key(tmp_path: Path) -> None:
    lines = ["1", "3", "1", "1", "2", "1", "1", "1", "ws_demo", DEMO_KEYS["no_credit"].key, DEMO_KEYS["valid"].key]
    script = tmp_path / "lines.txt"
    script.write_text("\n".join(lines) + "\n", encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "bot.cli.main", "try", "--script", str(script)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=180)
    out = done.stdout
    assert done.returncode == 0, done.stderr[-2000:]
    for expected in ("Open the API keys page", "Who owns the key?", "Which DoubleTick workspace?",
                     "Paste your key here", "no usable credit", "You're done!", "(the bot deleted your message"):
        assert expected in out, expected
    # The demo keys are listed for the user, but the bot never repeats a pasted key.
    bot_said = out.split("(bot log:", 1)[1]
    transcript_without_input = "\n".join(line for line in bot_said.splitlines() if not line.startswith("you>"))
    assert DEMO_KEYS["valid"].key not in transcript_without_input
    log = (tmp_path / "var" / "try-bot.log").read_text()
    assert DEMO_KEYS["valid"].key not in log and "Traceback" not in log
