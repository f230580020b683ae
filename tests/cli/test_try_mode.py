"""The offline try-it mode, as a new user would run it: the whole guide to "connected" with demo keys."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.standins.demo_keys import DEMO_KEYS

pytestmark = pytest.mark.e2e


def test_try_mode_walks_the_whole_guide_to_connected_with_a_demo_key(tmp_path: Path) -> None:
    # More pastes than a customer's hourly allowance (5): try mode lifts the limits for its own run.
    wrong = [DEMO_KEYS[name].key for name in ("invalid", "missing_scope", "account_deactivated", "no_organization",
                                              "billing_inactive")]
    lines = ["1", "3", "1", "1", "2", "1", "1", "1", "ws_demo", DEMO_KEYS["no_credit"].key, *wrong,
             DEMO_KEYS["valid"].key]
    other_run = tmp_path / "var" / "try-1.db"  # another try run's database, running beside this one
    other_run.parent.mkdir()
    other_run.write_bytes(b"not ours")
    script = tmp_path / "lines.txt"
    script.write_text("\n".join(lines) + "\n", encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "bot.cli.main", "try", "--script", str(script)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=180)
    out = done.stdout
    assert done.returncode == 0, done.stderr[-2000:]
    assert "pausing checks" not in out
    assert other_run.read_bytes() == b"not ours"
    assert not list((tmp_path / "var").glob("try-[!1]*.db*"))  # its own database is gone with the run
    for expected in ("Open the API keys page", "Who owns the key?", "Which DoubleTick workspace?",
                     "Paste your key here", "no usable credit", "You're done!", "(the bot deleted your message"):
        assert expected in out, expected
    # The demo keys are listed for the user, but the bot never repeats a pasted key.
    bot_said = out.split("(bot log:", 1)[1]
    transcript_without_input = "\n".join(line for line in bot_said.splitlines() if not line.startswith("you>"))
    assert DEMO_KEYS["valid"].key not in transcript_without_input
    log_name = out.split("(bot log: ", 1)[1].split(")", 1)[0]
    log = (tmp_path / log_name).read_text()
    assert DEMO_KEYS["valid"].key not in log and "Traceback" not in log


def test_lines_that_arrive_together_are_one_message() -> None:
    """A key that wrapped over two lines in a terminal paste is sent as one message, not two."""
    from bot.cli.try_mode import _keyboard_lines

    read_end, write_end = os.pipe()
    with os.fdopen(write_end, "w") as writer:
        writer.write("sk-proj-first-half\nsecond-half\n")
    with os.fdopen(read_end) as reader:
        assert list(_keyboard_lines(reader)) == ["sk-proj-first-half\nsecond-half"]


def test_typed_lines_apart_are_separate_messages() -> None:
    from bot.cli.try_mode import _keyboard_lines

    read_end, write_end = os.pipe()
    reader = os.fdopen(read_end)
    writer = os.fdopen(write_end, "w")
    lines = _keyboard_lines(reader)
    writer.write("/start\n")
    writer.flush()
    assert next(lines) == "/start"
    writer.write("1\n")
    writer.close()
    assert list(lines) == ["1"]
    reader.close()


def _try(tmp_path: Path, lines: list[str], **env: str) -> str:
    script = tmp_path / "lines.txt"
    script.write_text("\n".join(lines) + "\n", encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "bot.cli.main", "try", "--script", str(script)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=240, env={**os.environ, **env})
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.split("(bot log:", 1)[1]


def test_a_refused_replacement_never_hides_the_live_key(tmp_path: Path) -> None:
    """Issue 11 item 1, as a newcomer walks it: the live key …CLhr is the one named throughout."""
    live, refused, new = DEMO_KEYS["service_account_valid"].key, DEMO_KEYS["invalid"].key, DEMO_KEYS["valid"].key
    out = _try(tmp_path, ["1", "3", "1", "1", "2", "1", "1", "1", "ws_demo", live, "/replace", refused,
                          "/replace", "/disconnect", "/replace", new, "/cancel", "/disconnect"])
    after_refusal = out.split("doesn't recognise this key", 1)[1]
    assert "Let's replace key …CLhr" in after_refusal
    assert "(key …CLhr)" in after_refusal
    assert "Now revoke the old key …CLhr" in after_refusal
    for wrong in ("Let's replace key …lSGA", "(key …lSGA)", "old key …lSGA"):
        assert wrong not in out, wrong
    # Item 6: /cancel while connected says the workspace stays connected, and /disconnect still works.
    after_cancel = out.split("you> /cancel", 1)[1]
    assert "stays connected to OpenAI with key …Fvyf" in after_cancel
    assert "Disconnect OpenAI?" in after_cancel.split("you> /disconnect", 1)[1]
    assert "Nothing is connected yet" not in after_cancel


def test_required_capabilities_are_listed_at_step_1_6_and_proven_without_the_billed_probe(tmp_path: Path) -> None:
    """Issue 11 item 5: the setting drives step 1.6, and a key lacking a permission is never "done"."""
    out = _try(tmp_path, ["1", "3", "1", "1", "2", "1", "2", "1", "1", "ws_demo",
                          DEMO_KEYS["missing_request_scope"].key, DEMO_KEYS["missing_responses_scope"].key],
               OPENAI_BILLED_PROBE="false", OPENAI_REQUIRED_CAPABILITIES="models.read,chat.completions,responses")
    assert "Read only" in out and "Don't pick it" in out
    restricted = out.split("Restricted: the permissions DoubleTick needs", 1)[1].split("you>", 1)[0]
    for permission in ("Models (List models): Read", "Model capabilities: Request",
                       "Model capabilities → Responses (/v1/responses): Write"):
        assert permission in restricted, permission
    assert "Assistants" not in restricted
    assert "free requests only" in out
    assert "You're done!" not in out
    assert "Missing scopes: model.request" in out and "Missing scopes: api.responses.write" in out


def test_wrong_pastes_failures_privacy_and_a_held_key_as_a_newcomer_meets_them(tmp_path: Path) -> None:
    """Issue 11 items 8, 9 and 10, walked through try --script."""
    admin = "sk-admin-" + "Ab3dEf5hIj7lMn9pQr1tUv2xYz4bCd6fGh8jKl0nAb3dEf5hIj7lMn9pQr" + "T3BlbkFJ" + \
        "Uv2xYz4bCd6fGh8jKl0nAb3dEf5hIj7lMn9pQr1tUv2xYz4bCd6fGh8jKl"
    out = _try(tmp_path, ["1", "3", "1", "1", "2", "1", "1", "1", "ws_demo", "sk-abc123", admin,
                          "org-AbCdEfGhIjKlMnOpQrStUvWx", DEMO_KEYS["account_deactivated"].key,
                          DEMO_KEYS["ip_not_allowed"].key, "/privacy", DEMO_KEYS["openai_down"].key,
                          DEMO_KEYS["valid"].key, "1", DEMO_KEYS["valid"].key],
               PRIVACY_CONTACT="privacy@example.com", OPENAI_EGRESS_IPS="203.0.113.7", OUTBOX_FIRST_RETRY_S="30")
    incomplete = out.split("you> sk-abc123", 1)[1].split("you>", 1)[0]
    assert "beginning of a key" in incomplete and "masked" not in incomplete
    admin_answer = out.split(f"you> {admin}", 1)[1].split("you>", 1)[0]
    assert "→ https://platform.openai.com/settings/organization/admin-keys" in admin_answer
    assert "I deleted your message anyway" in out.split("you> org-", 1)[1].split("you>", 1)[0]
    deactivated = out.split(f"you> {DEMO_KEYS['account_deactivated'].key}", 1)[1].split("you>", 1)[0]
    assert "→ https://help.openai.com" in deactivated and "Contact DoubleTick support" not in deactivated
    assert "The address to add: 203.0.113.7." in out
    privacy = out.split("you> /privacy", 1)[1].split("you>", 1)[0]
    assert "Questions or deletion requests: privacy@example.com" in privacy
    held = out.split(f"you> {DEMO_KEYS['openai_down'].key}", 1)[1]
    assert "Stop retrying" in held and "tap “Stop retrying” below" in held
    assert "Stopped. I deleted the encrypted key" in held.split("you> 1", 1)[1]
    assert "You're done!" in held.split("you> 1", 1)[1]


class _Screen(io.TextIOBase):
    """Try mode's stdout, written by its threads (the loop and the watcher) and read by the test."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._parts: list[str] = []

    def write(self, text: str) -> int:
        with self._lock:
            self._parts.append(text)
        return len(text)

    def flush(self) -> None:
        pass

    def text(self) -> str:
        with self._lock:
            return "".join(self._parts)

    def wait_for(self, found: Callable[[str], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if found(self.text()):
                return True
            time.sleep(0.05)
        return found(self.text())


def test_a_verdict_that_arrives_later_is_printed_before_the_next_line_is_typed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 11 item 12: try mode at a terminal (stdin a pipe, not --script) prints a slow verdict as it
    arrives, while the user sits at the prompt, not only after they press Enter again."""
    from bot.cli import try_mode
    from bot.standins.sandbox import Sandbox

    class SlowOpenAISandbox(Sandbox):
        def start(self) -> Sandbox:
            self.openai.configure(latency_ms=1500)  # each OpenAI call: the verdict comes seconds after the paste
            return super().start()

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(try_mode, "Sandbox", SlowOpenAISandbox)
    screen = _Screen()
    read_end, write_end = os.pipe()
    keyboard = os.fdopen(write_end, "w")
    monkeypatch.setattr(sys, "stdin", os.fdopen(read_end))
    monkeypatch.setattr(sys, "stdout", screen)
    finished: list[int] = []
    runner = threading.Thread(target=lambda: finished.append(try_mode.run_try()), daemon=True, name="try-run")
    runner.start()
    try:
        assert screen.wait_for(lambda text: "you> " in text, timeout=90), screen.text()[-2000:]

        def type_line(line: str) -> None:
            prompts = screen.text().count("you> ")
            keyboard.write(line + "\n")
            keyboard.flush()
            assert screen.wait_for(lambda text: text.count("you> ") > prompts, timeout=30), screen.text()[-2000:]
            time.sleep(0.2)  # apart from the next line: lines arriving together are one paste

        for line in ["1", "3", "1", "1", "2", "1", "1", "1", "ws_demo"]:
            type_line(line)
        before = len(screen.text())
        type_line(DEMO_KEYS["valid"].key)
        after_paste = screen.text()[before:]
        assert "You're done!" not in after_paste, "the verdict came before the prompt: the watcher was not needed"
        # Nothing more is typed: the watcher alone must print the verdict, then a fresh prompt.
        assert screen.wait_for(lambda text: "You're done!" in text[before:], timeout=60), screen.text()[before:]
        assert screen.wait_for(lambda text: text[before:].split("You're done!", 1)[1].count("you> ") >= 1,
                               timeout=5)
    finally:
        keyboard.write("/quit\n")
        keyboard.close()
        runner.join(timeout=60)
    assert finished == [0]


def test_a_key_pasted_at_the_workspace_step_uses_none_of_the_hourly_allowance(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 11 item 2: a key pasted where the workspace id goes is deleted unchecked and not counted, so a
    customer's full allowance (here a per-user limit of 5, as in production) is left for the paste step."""
    from bot.cli import try_mode

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(try_mode, "TRY_LIMITS", {"KEY_SUBMISSIONS_PER_USER_PER_HOUR": "5",
                                                 "VERIFICATIONS_PER_MINUTE": "1000"})
    checked = [DEMO_KEYS[name].key for name in ("invalid", "missing_scope", "account_deactivated", "no_organization",
                                                "valid")]
    early = DEMO_KEYS["no_credit"].key
    script = tmp_path / "lines.txt"
    script.write_text("\n".join(["1", "3", "1", "1", "2", "1", "1", "1", early, "ws_demo", *checked]) + "\n",
                      encoding="utf-8")
    assert try_mode.run_try(script=str(script)) == 0
    out = capsys.readouterr().out.split("(bot log:", 1)[1]
    at_workspace = out.split(f"you> {early}", 1)[1].split("you>", 1)[0]
    assert "(the bot deleted your message" in at_workspace
    assert "no usable credit" not in out  # that key was never checked
    assert "try again in" not in out and "pausing checks" not in out
    for key in checked[:-1]:
        answer = out.split(f"you> {key}", 1)[1].split("you>", 1)[0]
        assert "(the bot deleted your message" in answer and "🤖 bot" in answer, answer
    assert "You're done!" in out.split(f"you> {checked[-1]}", 1)[1]
