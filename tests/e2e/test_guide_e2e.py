"""The whole guide, end to end: real bot process, real HTTP, stand-ins for Telegram, OpenAI, DoubleTick."""

from __future__ import annotations

import pytest

from bot.standins.demo_keys import DEMO_KEYS
from tests.e2e.harness import Stack, plain_text

pytestmark = pytest.mark.e2e

VALID = DEMO_KEYS["valid"].key
SERVICE = DEMO_KEYS["service_account_valid"].key
PERSONAL_STEPS = [("start", "Open the API keys page"), ("Next", "Start a new secret key"),
                  ("Next", "Who owns the key?"), ("Personal", "Name the key"), ("Next", "Choose the project"),
                  ("Default", "Set the permissions"), ("All", "Create and copy the key")]
SERVICE_STEPS = [("start", "Open the API keys page"), ("Next", "Start a new secret key"),
                 ("Next", "Who owns the key?"), ("Service", "Name the key"), ("Next", "Choose the project"),
                 ("existing", "Create and copy the key")]


def walk(user, steps) -> None:  # type: ignore[no-untyped-def]
    user.send("/start")
    user.wait_guide("Connect DoubleTick to OpenAI")
    for label, title in steps:
        user.press(label)
        user.wait_guide(title)


def test_personal_owner_walks_the_whole_guide_to_connected(auto_stack: Stack) -> None:
    user = auto_stack.user()
    walk(user, PERSONAL_STEPS)
    user.press("I copied it")
    user.wait_guide("Which DoubleTick workspace?")
    user.send("ws_demo")
    user.wait_guide("Paste your key here")
    pasted = user.send(VALID)
    done = user.wait_guide("You're done")
    assert "…" + VALID[-4:] in plain_text(done["text"]) and "revoke it immediately" in plain_text(done["text"])
    assert user.message(pasted["message_id"])["deleted"]
    workspace = auto_stack.sandbox.doubletick.workspace("ws_demo")
    assert workspace is not None and workspace.connected and workspace.connect_count == 1
    # One guide message, edited in place on button presses; link previews off everywhere.
    visible = user.bot_messages()
    assert len([m for m in visible if (m.get("reply_markup") or {}).get("inline_keyboard")]) <= 1
    assert all(m["link_preview_disabled"] for m in visible)
    assert any(m["edits"] > 0 for m in user.messages() if m["from_bot"])


def test_service_account_takes_the_guided_step_two_without_auto_connect(manual_stack: Stack) -> None:
    user = manual_stack.user()
    walk(user, SERVICE_STEPS)
    user.press("I copied it")
    user.wait_guide("Paste your key here")
    pasted = user.send(SERVICE)
    user.wait_guide("Log in to DoubleTick")
    assert user.message(pasted["message_id"])["deleted"]
    for label, title in [("Next", "Settings → Integrations"), ("Next", "Select OpenAI"),
                         ("Next", "Paste the key and Connect"), ("Done", "You're done")]:
        user.press(label)
        user.wait_guide(title)


def test_back_returns_to_the_previous_step_and_choices_can_change(auto_stack: Stack) -> None:
    user = auto_stack.user()
    walk(user, PERSONAL_STEPS[:4])
    user.press("Back")
    user.wait_guide("Who owns the key?")
    user.press("Service")
    user.wait_guide("Name the key")
    user.press("Next")
    user.wait_guide("Choose the project")
    user.press("Default")
    user.wait_guide("Create and copy the key")  # service accounts skip the permissions step
    user.press("Back")
    user.wait_guide("Choose the project")


def test_a_stale_button_gets_a_friendly_answer_and_the_current_step(auto_stack: Stack) -> None:
    user = auto_stack.user()
    walk(user, PERSONAL_STEPS[:2])
    guide = user.guide()
    seq = user.calls()[-1]["seq"]
    user.press_data(guide["message_id"], "welcome|begin")  # drawn for the welcome step, long gone
    notice = user.wait_guide("earlier message")
    assert "Start a new secret key" in plain_text(notice["text"])
    # The previous press's (silent) answer may land after ``seq``: look for the stale press's own answer.
    user.wait_for(lambda: [c for c in user.calls("answerCallbackQuery", since=seq)
                           if "earlier step" in (c["params"].get("text") or "")], what="the friendly answer")


def test_forged_callback_data_is_answered_without_an_error(auto_stack: Stack) -> None:
    user = auto_stack.user()
    walk(user, PERSONAL_STEPS[:1])
    seq = user.calls()[-1]["seq"]
    user.press_data(user.guide()["message_id"], "connected|done'; DROP TABLE--")
    user.wait_guide("earlier message")
    assert user.wait_for(lambda: user.calls("answerCallbackQuery", since=seq), what="answer")[-1]["ok"]
    assert "error" not in auto_stack.bot.log().lower() or "Traceback" not in auto_stack.bot.log()


def test_the_pasted_key_is_deleted_before_openai_is_asked(auto_stack: Stack) -> None:
    user = auto_stack.user()
    walk(user, PERSONAL_STEPS)
    user.press("I copied it")
    user.wait_guide("workspace")
    user.send("ws_acme")
    user.wait_guide("Paste your key here")
    key = DEMO_KEYS["invalid"].key
    pasted = user.send(key)
    user.wait_guide("doesn't recognise this key")
    deleted_at = user.message(pasted["message_id"])["deleted_at_monotonic"]
    first_openai = min(r.received_monotonic for r in auto_stack.openai_requests_for(key))
    assert deleted_at is not None and deleted_at < first_openai


def test_commands_are_registered_for_private_chats(auto_stack: Stack) -> None:
    user = auto_stack.user()
    calls = user.calls("setMyCommands")
    names = {c["command"] for c in calls[-1]["params"]["commands"]}
    assert {"start", "restart", "cancel", "help", "privacy"} <= names


def test_help_privacy_restart_and_cancel(auto_stack: Stack) -> None:
    user = auto_stack.user()
    walk(user, PERSONAL_STEPS[:3])
    user.send("/privacy")
    user.wait_for(lambda: any("Never the key itself" in plain_text(m.get("text") or "")
                              for m in user.bot_messages()), what="privacy reply")
    user.wait_guide("Who owns the key?")  # the guide follows below the reply
    user.send("/restart")
    user.wait_guide("Starting over")
    user.send("/cancel")
    user.wait_for(lambda: any("forgotten your progress" in plain_text(m.get("text") or "")
                              for m in user.bot_messages()), what="cancel reply")
    user.send("/start")
    welcome = user.wait_guide("Connect DoubleTick to OpenAI")
    assert "Welcome back" not in plain_text(welcome["text"])


def test_the_bot_killed_mid_flow_resumes_where_the_user_left_off(tmp_path_factory: pytest.TempPathFactory) -> None:
    from tests.e2e.harness import new_database_url

    folder = tmp_path_factory.mktemp("restart")
    stack = Stack.start(folder, new_database_url("sqlite", folder))
    try:
        user = stack.user()
        walk(user, PERSONAL_STEPS[:4])  # at "Name the key"
        stack.restart_bot()
        user.send("/start")
        resumed = user.wait_guide("Welcome back")
        assert "Name the key" in plain_text(resumed["text"])
        user.press("Next")
        user.wait_guide("Choose the project")
    finally:
        stack.close()


def test_a_pipeline_killed_with_its_process_is_reported_without_the_user_asking(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    from tests.e2e.harness import new_database_url

    folder = tmp_path_factory.mktemp("interrupted")
    stack = Stack.start(folder, new_database_url("sqlite", folder), pipeline_timeout_s=2)
    try:
        user = stack.user()
        walk(user, PERSONAL_STEPS)
        user.press("I copied it")
        user.wait_guide("workspace")
        user.send("ws_demo")
        user.wait_guide("Paste your key here")
        stack.sandbox.openai.configure(latency_ms=30_000)  # OpenAI hangs: the key is in flight
        user.send(VALID)
        user.wait_guide("Checking your key")
        stack.restart_bot()  # SIGKILL: the key in memory is gone
        stack.sandbox.openai.configure(latency_ms=0)
        notice = user.wait_guide("interrupted", timeout=30)
        assert "Paste your key here" in plain_text(notice["text"])
    finally:
        stack.close()
