"""The offline try-it mode, as a new user would run it: the whole guide to "connected" with demo keys."""

from __future__ import annotations

import os
import subprocess
import sys
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
