"""The one gentle reminder, as customers meet it: real bot process, stand-ins, a reminder due in seconds."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.standins.chat_driver import ChatDriver
from tests.e2e.harness import Stack, new_database_url, plain_text

pytestmark = pytest.mark.e2e

AFTER_S = 2.0
REMINDER = "You stopped at"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("reminders")
    started = Stack.start(folder, new_database_url("sqlite", folder), reminder_after_hours=AFTER_S / 3600,
                          reminder_check_interval_s=0.3)
    yield started
    started.close()


def _database(stack: Stack) -> Path:
    return Path(stack.bot.env["DATABASE_URL"].split("///", 1)[1])


def _reminders(user: ChatDriver) -> list[dict]:  # type: ignore[type-arg]
    return [m for m in user.bot_messages() if REMINDER in plain_text(m.get("text") or "")]


def _begin(user: ChatDriver) -> None:
    user.send("/start")
    user.wait_guide("Connect DoubleTick to OpenAI")
    user.press("start")
    user.wait_guide("Open the API keys page")
    user.press("Next")
    user.wait_guide("Start a new secret key")


def test_a_customer_who_stopped_mid_guide_gets_one_reminder_and_continue_brings_them_back(stack: Stack) -> None:
    user = stack.user()
    _begin(user)
    (reminder,) = user.wait_for(lambda: _reminders(user), timeout=AFTER_S + 15, what="the reminder")
    assert "Start a new secret key" in plain_text(reminder["text"]) and "only reminder" in plain_text(reminder["text"])
    assert ChatDriver.labels(reminder) == ["Continue where I left off ➡️", "🔕 No more reminders"]
    user.press("Continue", message_id=reminder["message_id"])
    guide = user.wait_guide("Welcome back")
    assert "Start a new secret key" in plain_text(guide["text"])
    time.sleep(AFTER_S + 1.5)  # idle again for longer than REMINDER_AFTER_HOURS: still only one
    assert len(_reminders(user)) == 1
    with sqlite3.connect(_database(stack)) as db:
        came_back = db.execute("select count(*) from audit_event where kind = 'came_back_after_reminder' "
                               "and chat_id = ?", (user.chat_id,)).fetchone()[0]
    assert came_back == 1


def test_no_reminder_after_stop_reminders_cancel_or_at_the_paste_step(stack: Stack) -> None:
    stopped, cancelled, pasting = stack.user(), stack.user(), stack.user()
    _begin(stopped)
    stopped.send("/stop_reminders")
    stopped.wait_for(lambda: any("no reminders from me" in plain_text(m.get("text") or "")
                                 for m in stopped.bot_messages()), what="the opt-out answer")
    _begin(cancelled)
    cancelled.send("/cancel")
    cancelled.wait_for(lambda: any("forgotten your progress" in plain_text(m.get("text") or "")
                                   for m in cancelled.bot_messages()), what="the cancel answer")
    pasting.send("/start")
    pasting.wait_guide("Connect DoubleTick to OpenAI")
    for label, title in [("start", "Open the API keys page"), ("Next", "Start a new secret key"),
                         ("Next", "Who owns the key?"), ("Service", "Name the key"), ("Next", "Choose the project"),
                         ("existing", "Create and copy the key"), ("I copied it", "Which DoubleTick workspace?")]:
        pasting.press(label)
        pasting.wait_guide(title)
    pasting.send("ws_demo")
    pasting.wait_guide("Paste your key here")
    time.sleep(AFTER_S + 2.5)
    for user in (stopped, cancelled, pasting):
        assert _reminders(user) == []


def test_the_reminder_can_turn_reminders_off_itself(stack: Stack) -> None:
    user = stack.user()
    _begin(user)
    (reminder,) = user.wait_for(lambda: _reminders(user), timeout=AFTER_S + 15, what="the reminder")
    user.press("No more reminders", message_id=reminder["message_id"])
    user.wait_for(lambda: any("no reminders from me" in plain_text(m.get("text") or "")
                              for m in user.bot_messages()), what="the opt-out answer")


def test_the_funnel_counts_the_reminder_and_the_customer_who_came_back(tmp_path: Path) -> None:
    """/metrics (webhook mode) counts reminder_sent and came_back_after_reminder: once each, however often
    the customer presses on afterwards."""
    from tests.e2e.test_webhook_e2e import WebhookStack

    stack = WebhookStack(tmp_path)
    stack.env.update(REMINDER_AFTER_HOURS=str(AFTER_S / 3600), REMINDER_CHECK_INTERVAL_S="0.3")  # the bot's env too
    try:
        stack.start_bot()

        def step(name: str) -> float:
            return stack.metric("onboarding_guide_step_entered_total", step=name)

        assert step("reminder_sent") == 0 and step("came_back_after_reminder") == 0
        user = stack.user()
        _begin(user)
        (reminder,) = user.wait_for(lambda: _reminders(user), timeout=AFTER_S + 15, what="the reminder")
        user.wait_for(lambda: step("reminder_sent") == 1, timeout=10, what="reminder_sent counted")
        assert step("came_back_after_reminder") == 0
        user.press("Continue", message_id=reminder["message_id"])
        user.wait_guide("Welcome back")
        user.wait_for(lambda: step("came_back_after_reminder") == 1, timeout=10, what="the return counted")
        user.press("Next")
        user.wait_guide("Who owns the key?")
        assert step("came_back_after_reminder") == 1 and step("reminder_sent") == 1
    finally:
        stack.close()
