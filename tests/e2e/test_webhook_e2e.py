"""The webhook path end to end: `webhook set` once, `run --webhook` serving the stand-in's pushes.

The bot runs as a child process exactly as a replica would in production, on a loopback port; the Telegram
stand-in pushes updates to it with the secret header, one per chat at a time, retrying non-2xx answers.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.standins.chat_driver import ChatDriver
from bot.standins.demo_keys import DEMO_KEYS
from bot.standins.sandbox import SANDBOX_BOT_TOKEN, Sandbox
from bot.standins.server import free_port
from tests.e2e.harness import BotProcess, _command, plain_text

pytestmark = pytest.mark.e2e

SECRET = "e2e_webhook_Secret-token_0123456789"
BOT_ID = int(SANDBOX_BOT_TOKEN.split(":")[0])
PERSONAL_STEPS = [("Next", "Start a new secret key"), ("Next", "Who owns the key?"), ("Personal", "Name the key"),
                  ("Next", "Choose the project"), ("Default", "Set the permissions"),
                  ("All", "Create and copy the key")]


class WebhookStack:
    """Stand-ins, one `run --webhook` bot process, and its HTTP address."""

    def __init__(self, folder: Path, *, guard_port: bool = False, **env: Any) -> None:
        """``guard_port``: Telegram posts to the guard lane's own port (WEBHOOK_GUARD_PORT), not the server's."""
        self.folder = folder
        self.sandbox = Sandbox().start()
        self.sandbox.telegram.configure(webhook_max_attempts=60)  # survive a restart of the bot
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.webhook_url = f"{self.url}/telegram"
        if guard_port:
            env["webhook_guard_port"] = free_port()
            self.webhook_url = f"http://127.0.0.1:{env['webhook_guard_port']}/telegram"
        self.database = folder / "bot.db"
        self.env = self.sandbox.bot_environment(
            f"sqlite+aiosqlite:///{self.database}", webhook_url=self.webhook_url,
            webhook_secret_token=SECRET, webhook_listen="127.0.0.1", webhook_port=self.port, **env)
        self.cli_output = self.cli("webhook", "set")
        self.bot = BotProcess(self.env, folder / "bot.log", args=("run", "--webhook"))
        self.http = httpx.Client(timeout=10, trust_env=False)
        self.next_user = 8000
        self.drivers: list[ChatDriver] = []

    def cli(self, *args: str) -> str:
        done = subprocess.run(_command(args), env={**self.env}, capture_output=True, text=True, timeout=60,
                              check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def start_bot(self) -> None:
        self.bot.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if self.http.get(f"{self.url}/readyz").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert self.bot.process is not None and self.bot.process.poll() is None, self.bot.log()
            time.sleep(0.05)
        raise TimeoutError("the webhook bot did not become ready:\n" + self.bot.log())

    def user(self) -> ChatDriver:
        self.next_user += 1
        driver = ChatDriver(self.sandbox.telegram_url, self.next_user)
        self.drivers.append(driver)
        return driver

    def post(self, payload: dict[str, Any], secret: str | None = SECRET) -> httpx.Response:
        headers = {"Content-Type": "application/json"}
        if secret is not None:
            headers["X-Telegram-Bot-Api-Secret-Token"] = secret
        return self.http.post(self.webhook_url, content=json.dumps(payload), headers=headers)

    def metric(self, name: str, **labels: str) -> float:
        """One sample from /metrics (0 if the series does not exist yet)."""
        wanted = name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else "")
        for line in self.http.get(f"{self.url}/metrics").text.splitlines():
            if line.startswith(wanted + " "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.database) as connection:
            return list(connection.execute(sql, params))

    def close(self) -> None:
        self.bot.stop()
        for driver in self.drivers:
            driver.close()
        self.http.close()
        self.sandbox.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebhookStack]:
    created = WebhookStack(tmp_path_factory.mktemp("webhook"))
    try:
        created.start_bot()
        yield created
    finally:
        created.close()


def walk_to_paste(user: ChatDriver, workspace: str) -> None:
    user.send("/start")
    user.wait_guide("Connect DoubleTick to OpenAI")
    user.press("start")
    user.wait_guide("Open the API keys page")
    for label, title in PERSONAL_STEPS:
        user.press(label)
        user.wait_guide(title)
    user.press("I copied it")
    user.wait_guide("Which DoubleTick workspace?")
    user.send(workspace)
    user.wait_guide("Paste your key here")


def forged_start(update_id: int, user_id: int) -> dict[str, Any]:
    person = {"id": user_id, "is_bot": False, "first_name": "Eve"}
    return {"update_id": update_id, "message": {
        "message_id": 1, "date": int(time.time()), "chat": {"id": user_id, "type": "private", "first_name": "Eve"},
        "from": person, "text": "/start", "entities": [{"type": "bot_command", "offset": 0, "length": 6}]}}


def test_webhook_set_is_a_separate_command_and_replicas_never_set_it(stack: WebhookStack) -> None:
    assert "webhook set: " + stack.url + "/telegram" in stack.cli_output
    info = stack.sandbox.telegram.bot_info(bot_id=BOT_ID)
    assert info["webhook"]["url"] == f"{stack.url}/telegram" and info["webhook"]["has_secret_token"]
    assert {"message", "callback_query"} <= set(info["allowed_updates"])
    calls = stack.sandbox.telegram.calls()
    assert len([c for c in calls if c["method"].lower() == "setwebhook"]) == 1  # the CLI's, not the bot's
    assert not [c for c in calls if c["method"].lower() == "getupdates"]
    assert "url: " + stack.url + "/telegram" in stack.cli("webhook", "info")


def test_a_forged_or_missing_secret_token_is_refused_and_nothing_is_processed(stack: WebhookStack) -> None:
    forbidden_before = stack.metric("onboarding_webhook_requests_total", result="forbidden")
    seq = stack.sandbox.telegram.calls()[-1]["seq"]
    victim = 770001
    wrong_same_length = "x" * len(SECRET)
    for secret in (None, "", "wrong", wrong_same_length, SECRET + "x", SECRET[:-1]):
        response = stack.post(forged_start(990_000_001, victim), secret=secret)
        assert response.status_code == 403, secret
    assert stack.metric("onboarding_webhook_requests_total", result="forbidden") == forbidden_before + 6
    time.sleep(0.3)  # give a (wrongly) accepted update time to show up before asserting it did not
    assert [c for c in stack.sandbox.telegram.calls(seq) if c["chat_id"] == victim] == []
    assert stack.rows("SELECT count(*) FROM conversation WHERE chat_id = ?", victim) == [(0,)]
    assert stack.rows("SELECT count(*) FROM processed_update WHERE update_id = ?", 990_000_001) == [(0,)]
    assert "990000001" not in stack.bot.log()


def test_malformed_requests_with_the_right_secret_are_rejected(stack: WebhookStack) -> None:
    headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
    url = f"{stack.url}/telegram"
    assert stack.http.post(url, content=b"{not json", headers={**headers, "Content-Type": "application/json"}
                           ).status_code == 400
    assert stack.http.post(url, content=b"[]", headers={**headers, "Content-Type": "application/json"}
                           ).status_code == 400
    assert stack.http.post(url, content=b"{}", headers={**headers, "Content-Type": "text/plain"}).status_code == 415
    assert stack.http.get(url).status_code == 405


def test_probes_answer(stack: WebhookStack) -> None:
    health = stack.http.get(f"{stack.url}/healthz")
    ready = stack.http.get(f"{stack.url}/readyz")
    assert (health.status_code, health.text) == (200, "ok")
    assert (ready.status_code, ready.text) == (200, "ready")


def walk_to_connected(stack: WebhookStack, workspace_id: str) -> ChatDriver:
    """A new user walks the guide and pastes the valid demo key: deleted, connected once, every update
    delivered once and confirmed."""
    stack.sandbox.doubletick.configure(workspaces={workspace_id: "Hook Inc"})
    user = stack.user()
    walk_to_paste(user, workspace_id)
    key = DEMO_KEYS["valid"].key
    pasted = user.send(key)
    done = user.wait_guide("You're done")
    assert "…" + key[-4:] in plain_text(done["text"])
    assert user.message(pasted["message_id"])["deleted"]
    workspace = stack.sandbox.doubletick.workspace(workspace_id)
    assert workspace is not None and workspace.connected and workspace.connect_count == 1
    updates = [u for u in stack.sandbox.telegram.updates(bot_id=BOT_ID) if u["chat_id"] == user.chat_id]
    assert updates and all(u["confirmed"] and not u["dropped"] and u["attempts"] == 1 for u in updates)
    assert key not in stack.bot.log()
    return user


def test_a_whole_walk_to_connected_over_the_webhook(stack: WebhookStack) -> None:
    user = walk_to_connected(stack, "ws_hook")
    assert stack.rows("SELECT step FROM conversation WHERE chat_id = ?", user.chat_id) == [("connected",)]


def test_metrics_show_updates_funnel_verifications_exposure_outbox_and_429s(stack: WebhookStack) -> None:
    # After the walk above: a funnel, a verification, a deleted key; now provoke one 429 from Telegram.
    stack.sandbox.telegram.fail_next("sendMessage", 429, "Too Many Requests: retry after 1", retry_after=1)
    user = stack.user()
    user.send("/start")
    user.wait_guide("Connect DoubleTick to OpenAI", timeout=15)  # the rate limiter waited and retried
    assert stack.metric("onboarding_telegram_rate_limited_total", method="sendMessage") >= 1
    assert stack.metric("onboarding_updates_total", type="message") >= 4
    assert stack.metric("onboarding_updates_total", type="callback_query") >= 7
    assert stack.metric("onboarding_guide_step_entered_total", step="paste_key") >= 1
    assert stack.metric("onboarding_guide_step_entered_total", step="connected") >= 1
    assert stack.metric("onboarding_verifications_total", outcome="valid") >= 1
    assert stack.metric("onboarding_connections_total", outcome="connected") >= 1
    assert stack.metric("onboarding_key_exposure_seconds_count", deletion="deleted") >= 1
    assert stack.metric("onboarding_conversations", step="connected") >= 1
    assert stack.metric("onboarding_webhook_requests_total", result="accepted") >= 11
    text = stack.http.get(f"{stack.url}/metrics").text
    assert "onboarding_outbox_depth 0.0" in text
    assert DEMO_KEYS["valid"].key[-12:] not in text and SECRET not in text


def test_a_duplicate_delivery_is_acknowledged_and_not_processed_again(stack: WebhookStack) -> None:
    user = stack.user()
    user.send("/start")
    user.wait_guide("Connect DoubleTick to OpenAI")
    world = stack.sandbox.telegram.world_if_exists(BOT_ID)
    assert world is not None
    record = next(u for u in world.updates if u.chat_id == user.chat_id)
    sends_before = len([c for c in user.calls("sendMessage") if c["chat_id"] == user.chat_id])
    for _ in range(3):  # Telegram's retry after a timeout, or a load balancer retrying elsewhere
        assert stack.post(record.to_api()).status_code == 200
    user.wait_idle()
    assert len([c for c in user.calls("sendMessage") if c["chat_id"] == user.chat_id]) == sends_before
    assert stack.rows("SELECT count(*) FROM processed_update WHERE update_id = ?", record.update_id) == [(1,)]


def test_sigterm_finishes_the_running_key_pipeline_and_a_restart_loses_nothing(stack: WebhookStack) -> None:
    stack.sandbox.doubletick.configure(workspaces={"ws_term": "Term Ltd"})
    user = stack.user()
    walk_to_paste(user, "ws_term")
    stack.sandbox.openai.configure(latency_ms=1500)
    try:
        user.send(DEMO_KEYS["service_account_valid"].key)
        user.wait_guide("Checking")  # the pipeline is now waiting for OpenAI
        assert stack.bot.process is not None
        stack.bot.process.send_signal(signal.SIGTERM)
        assert stack.bot.process.wait(30) == 0, stack.bot.log()
    finally:
        stack.sandbox.openai.configure(latency_ms=0)
    # The pipeline was drained before exit: the verdict and the connection were delivered.
    user.wait_guide("You're done")
    assert stack.sandbox.doubletick.workspace("ws_term").connect_count == 1  # type: ignore[union-attr]
    # While no replica runs, Telegram keeps the update and retries; the restarted bot gets it.
    later = user.send("/privacy")
    time.sleep(0.5)
    assert not any("Never the key itself" in plain_text(m.get("text") or "") for m in user.bot_messages())
    stack.start_bot()
    user.wait_for(lambda: any("Never the key itself" in plain_text(m.get("text") or "")
                              for m in user.bot_messages()), timeout=20, what="privacy reply after restart")

    def acknowledged() -> dict[str, Any] | None:  # the 200 follows the reply it caused
        update = next(u for u in stack.sandbox.telegram.updates(bot_id=BOT_ID) if u["update_id"] == later["update_id"])
        return update if update["confirmed"] else None

    assert user.wait_for(acknowledged, what="the update acknowledged")["attempts"] > 1
    assert "Traceback" not in stack.bot.log()
