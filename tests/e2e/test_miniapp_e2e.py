"""The Mini App's HTTP contract against the real bot process (polling mode, PUBLIC_BASE_URL set).

Each initData here is computed by the test with Telegram's algorithm and the sandbox bot's token, as
Telegram would for an inline-button launch. Order of the answers: 401, 400, 422, 409, 202.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.standins.chat_driver import ChatDriver, plain_text
from bot.standins.sandbox import Sandbox
from tests.e2e.conftest import BACKENDS, _backend_param
from tests.e2e.harness import BotProcess, new_database_url
from tests.e2e.miniapp import PUBLIC_BASE_URL, MiniAppStack, init_data_for, start_miniapp_stack
from tests.e2e.pasting import fresh_key, fresh_secret, reach_paste_step

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", params=BACKENDS)
def mini(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MiniAppStack]:
    backend = _backend_param(request)
    folder = tmp_path_factory.mktemp(f"miniapp-{backend}")
    started = start_miniapp_stack(folder, new_database_url(backend, folder))
    yield started
    started.close()


def _at_paste_step(mini: MiniAppStack) -> ChatDriver:
    user = mini.stack.user()
    reach_paste_step(user)
    return user


def _web_app_buttons(message: dict[str, Any]) -> list[tuple[str, str]]:
    rows = (message.get("reply_markup") or {}).get("inline_keyboard", [])
    return [(b["text"], b["web_app"]["url"]) for row in rows for b in row if "web_app" in b]


def test_the_page_is_served_with_its_security_headers(mini: MiniAppStack) -> None:
    page = mini.http.get("/miniapp/key", params={"lang": "en"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    headers = page.headers
    assert "script-src 'self' https://telegram.org/js/telegram-web-app.js;" in headers["content-security-policy"]
    assert headers["cache-control"] == "no-store" and headers["referrer-policy"] == "no-referrer"
    assert headers["x-content-type-options"] == "nosniff"
    assert "strict-transport-security" not in headers  # plain http here
    behind_tls = mini.http.get("/miniapp/key", headers={"X-Forwarded-Proto": "https"})  # a proxy on loopback
    assert behind_tls.headers["strict-transport-security"].startswith("max-age=")
    assert 'type="password"' in page.text and 'autocomplete="off"' in page.text
    script = mini.http.get("/miniapp/static/key.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert "MainButton" in script.text and script.headers["x-content-type-options"] == "nosniff"
    assert mini.http.get("/miniapp/static/key.css").headers["content-type"].startswith("text/css")
    assert mini.http.get("/miniapp/static/../../config.py").status_code == 404


def test_the_paste_step_and_replace_offer_the_mini_app_button(mini: MiniAppStack) -> None:
    user = _at_paste_step(mini)
    assert _web_app_buttons(user.guide()) == [("🔐 Enter the key securely", f"{PUBLIC_BASE_URL}/miniapp/key?lang=en")]
    key = fresh_key("project", "MiniReplace")
    mini.stack.sandbox.openai.register(key, "valid")
    assert mini.submit(init_data_for(user), key).status_code == 202
    user.wait_guide("You're done")
    user.send("/replace")
    user.wait_guide("Let's replace key")
    assert _web_app_buttons(user.guide())


def test_answers_come_in_the_contracts_order(mini: MiniAppStack) -> None:
    user = _at_paste_step(mini)
    key = fresh_key("project", "MiniOrder")
    forged = init_data_for(user, token="999:NOT_THE_BOTS_TOKEN")
    bad = {"error": "bad_init_data"}
    # 401 first: whatever else is wrong with the request.
    for response in (mini.submit(forged, key), mini.submit(init_data_for(user, age_s=3601), key),
                     mini.submit(forged, "x" * 9000), mini.http.post("/miniapp/api/key", content=b"not json"),
                     mini.http.post("/miniapp/api/key", json={"key": key}),
                     mini.submit(init_data_for(user) + "0", key)):
        assert (response.status_code, response.json()) == (401, bad)
    # 400: authenticated, but not the JSON object of the contract, or over 8 KiB.
    for body in ({"init_data": init_data_for(user)}, {"init_data": init_data_for(user), "key": 42},
                 {"init_data": init_data_for(user), "key": key, "extra": 1},
                 {"init_data": init_data_for(user), "key": "sk-" + "a" * 9000}):
        response = mini.http.post("/miniapp/api/key", json=body)
        assert response.status_code == 400, body.keys()
    # 422: recognised offline as not an OpenAI key; the chat's help text; the chat is not touched.
    guide_before = user.guide()["message_id"]
    wrong = mini.submit(init_data_for(user), "org-" + "A1b2C3d4E5f6G7h8I9j0K1l2")
    assert wrong.status_code == 422 and wrong.json()["error"] == "not_a_key"
    assert wrong.json()["kind"] == "organization_id" and "organization" in wrong.json()["help"].lower()
    anthropic = mini.submit(init_data_for(user), fresh_secret("anthropic"))
    assert anthropic.json()["kind"] == "other_provider" and "Anthropic" in anthropic.json()["help"]
    assert user.guide()["message_id"] == guide_before
    # 409: a user without a conversation, and one whose conversation is not at the paste step.
    assert (mini.submit(init_data_for(987_654_321), key).json()) == {"error": "not_at_paste_step"}
    newcomer = mini.stack.user()
    newcomer.send("/start")
    newcomer.wait_guide("Connect DoubleTick to OpenAI")
    refused = mini.submit(init_data_for(newcomer), key)
    assert (refused.status_code, refused.json()) == (409, {"error": "not_at_paste_step"})
    # 202: the same pipeline as a paste; the verdict appears in the chat's guide message.
    mini.stack.sandbox.openai.register(key, "valid")
    accepted = mini.submit(init_data_for(user), key)
    assert (accepted.status_code, accepted.json()) == (202, {"status": "checking"})
    user.wait_guide("You're done", timeout=15)
    assert all(key not in (m.get("text") or "") for m in user.messages())
    told = [plain_text(c["params"].get("text") or "") for c in user.calls("sendMessage", since=0)
            if str(c["params"].get("chat_id")) == str(user.chat_id)]
    checking = [text for text in told if "Checking key" in text]
    assert checking and "never a message" in checking[-1] and "deleted" not in checking[-1]
    assert mini.stack.openai_requests_for(key)


def test_status_follows_the_chat_and_needs_valid_init_data(mini: MiniAppStack) -> None:
    user = _at_paste_step(mini)
    init_data = init_data_for(user)
    assert mini.status(init_data).json()["state"] == "waiting"
    assert mini.status(init_data_for(user, age_s=4000)).status_code == 401
    assert mini.http.get("/miniapp/api/status").status_code == 401
    key = fresh_key("project", "MiniStatus")
    mini.stack.sandbox.openai.register(key, "invalid")
    assert mini.submit(init_data, key).status_code == 202
    verdict = user.wait_for(lambda: (s := mini.status(init_data).json())["state"] != "checking" and s, 15,
                            "a verdict")
    assert verdict["state"] == "problem" and verdict["step"] == "key_problem"
    assert "recognise" in verdict["text"]
    user.wait_guide("recognise")


def test_one_init_data_submits_at_most_three_times(mini: MiniAppStack) -> None:
    user = _at_paste_step(mini)
    init_data = init_data_for(user)
    for _ in range(3):
        assert mini.submit(init_data, "not a key at all").status_code == 422
    replay = mini.submit(init_data, "not a key at all")
    assert (replay.status_code, replay.json()) == (401, {"error": "bad_init_data"})
    assert mini.submit(init_data_for(user), "not a key at all").status_code == 422  # reopening the page helps


def test_a_bot_that_cannot_serve_the_mini_app_does_not_start(tmp_path: Path) -> None:
    """Its paste step would offer a button that leads nowhere: the port is taken, so the bot exits, saying why."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        sandbox = Sandbox().start()
        try:
            env = sandbox.bot_environment(new_database_url("sqlite", tmp_path), public_base_url=PUBLIC_BASE_URL,
                                          webhook_listen="127.0.0.1", webhook_port=taken.getsockname()[1])
            bot = BotProcess(env, tmp_path / "bot.log")
            bot.start()
            assert bot.process is not None
            try:
                code = bot.process.wait(60)
            finally:
                bot.kill()
        finally:
            sandbox.stop()
    assert code != 0
    assert "the Mini App server could not listen on 127.0.0.1" in bot.log(), bot.log()[-2000:]
