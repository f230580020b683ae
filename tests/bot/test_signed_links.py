"""Self-serve links: the signing recipe, its known-answer vector in the README, and every refusal."""

from __future__ import annotations

import re
import string
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.agents.links import deep_link_payload, token_from
from bot.agents.signed_links import (
    MAX_PAYLOAD,
    MAX_SIGNED_WORKSPACE,
    SignedLinkError,
    SignedLinkOutcome,
    looks_signed,
    sign_payload,
    verify_payload,
)
from bot.cli.main import main

README = Path(__file__).resolve().parents[2] / "README.md"
SECRET = b"readme-test-vector-secret-0123456789"
EXPIRES = 1893456000  # 2030-01-01T00:00:00Z
NOW = datetime(2026, 12, 1, tzinfo=UTC)
PAYLOAD_CHARS = set(string.ascii_letters + string.digits + "_-")


def _readme_vector() -> dict[str, str]:
    text = README.read_text(encoding="utf-8")
    block = text.split("<!-- signed-link-vector -->")[1].split("<!-- /signed-link-vector -->")[0]
    found = dict(re.findall(r"(bot|workspace|expires_at|secret|link) `([^`]+)`", block))
    assert set(found) == {"bot", "workspace", "expires_at", "secret", "link"}, block
    return found


def _readme_function() -> object:
    text = README.read_text(encoding="utf-8")
    code = re.search(r"```python\n(import base64, hashlib, hmac\n\ndef sign_self_serve_link.*?)```", text, re.S)
    assert code, "the README's signing recipe is missing"
    assert len(code.group(1).strip().splitlines()) <= 10
    namespace: dict[str, object] = {}
    exec(compile(code.group(1), "README.md", "exec"), namespace)  # our own README
    return namespace["sign_self_serve_link"]


def test_the_readme_vector_is_what_the_bot_signs_and_accepts() -> None:
    vector = _readme_vector()
    payload = sign_payload(vector["workspace"], int(vector["expires_at"]), vector["secret"].encode())
    assert vector["link"] == f"https://t.me/{vector['bot']}?start={payload}"
    verdict = verify_payload(deep_link_payload(vector["link"]) or "", vector["secret"].encode(), NOW)
    assert verdict.outcome == SignedLinkOutcome.VALID and verdict.workspace_id == vector["workspace"]
    assert verdict.expires_at == datetime(2030, 1, 1, tzinfo=UTC)


def test_the_readme_function_produces_the_readme_vector() -> None:
    vector = _readme_vector()
    sign = _readme_function()
    assert sign(vector["bot"], vector["workspace"], int(vector["expires_at"]), vector["secret"]) == vector["link"]  # type: ignore[operator]


@pytest.mark.parametrize("workspace", ["ws", "ws_demo", "a" * MAX_SIGNED_WORKSPACE, "Acme-Retail_2"])
def test_payloads_fit_telegrams_start_parameter_and_verify(workspace: str) -> None:
    payload = sign_payload(workspace, EXPIRES, SECRET)
    assert len(payload) <= MAX_PAYLOAD and set(payload) <= PAYLOAD_CHARS
    assert looks_signed(payload) and token_from(payload) == payload
    verdict = verify_payload(payload, SECRET, NOW)
    assert (verdict.outcome, verdict.workspace_id) == (SignedLinkOutcome.VALID, workspace)


@pytest.mark.parametrize("workspace", ["", "w", "a" * (MAX_SIGNED_WORKSPACE + 1), "ws.demo", "ws:demo", "-ws"])
def test_workspaces_that_do_not_fit_are_refused_when_signing(workspace: str) -> None:
    with pytest.raises(SignedLinkError):
        sign_payload(workspace, EXPIRES, SECRET)


def test_every_single_character_change_is_refused_as_forged() -> None:
    payload = sign_payload("ws_demo", EXPIRES, SECRET)
    for index in range(2, len(payload)):
        for replacement in ("A", "0", "_"):
            if payload[index] == replacement:
                continue
            changed = payload[:index] + replacement + payload[index + 1:]
            verdict = verify_payload(changed, SECRET, NOW)
            assert verdict.outcome == SignedLinkOutcome.FORGED, changed
            assert verdict.workspace_id is None


def test_another_workspace_with_the_same_tag_is_forged() -> None:
    payload = sign_payload("ws_victim", EXPIRES, SECRET)
    assert verify_payload(payload.replace("ws_victim", "ws_attack"), SECRET, NOW).outcome == SignedLinkOutcome.FORGED
    assert verify_payload(payload[:-1], SECRET, NOW).outcome == SignedLinkOutcome.FORGED  # truncated


def test_another_secret_is_forged_and_no_secret_is_not_enabled() -> None:
    payload = sign_payload("ws_demo", EXPIRES, SECRET)
    assert verify_payload(payload, b"another-secret-of-at-least-32-characters", NOW).outcome == \
        SignedLinkOutcome.FORGED
    assert verify_payload(payload, None, NOW).outcome == SignedLinkOutcome.NOT_ENABLED


def test_an_expired_link_is_refused_only_once_its_tag_is_right() -> None:
    expires = int((NOW - timedelta(seconds=1)).timestamp())
    payload = sign_payload("ws_demo", expires, SECRET)
    assert verify_payload(payload, SECRET, NOW).outcome == SignedLinkOutcome.EXPIRED
    assert verify_payload(payload, SECRET, NOW - timedelta(seconds=2)).outcome == SignedLinkOutcome.VALID
    forged_and_expired = payload[:-1] + ("x" if payload[-1] != "x" else "y")
    assert verify_payload(forged_and_expired, SECRET, NOW).outcome == SignedLinkOutcome.FORGED


def test_random_handoff_tokens_are_never_taken_for_signed_links() -> None:
    from bot.agents.links import new_token

    assert not any(looks_signed(new_token()) for _ in range(5000))


@pytest.mark.parametrize("text", [
    "https://t.me/DoubleTickOnboardingBot?start=AbCdEfGhIjKlMnOpQrStUvWx",
    "t.me/DoubleTickOnboardingBot?start=AbCdEfGhIjKlMnOpQrStUvWx",
    "  <https://telegram.me/DoubleTickOnboardingBot?start=AbCdEfGhIjKlMnOpQrStUvWx>\n",
])
def test_a_pasted_deep_link_is_recognised(text: str) -> None:
    assert deep_link_payload(text) == "AbCdEfGhIjKlMnOpQrStUvWx"


@pytest.mark.parametrize("text", ["hello", "see https://t.me/bot?start=abc please", "https://example.com/?start=abc",
                                  "t.me/bot"])
def test_other_text_is_not_a_deep_link(text: str) -> None:
    assert deep_link_payload(text) is None


def test_the_cli_signs_a_link_the_bot_accepts(monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SELF_SERVE_LINK_SECRET", SECRET.decode())
    assert main(["link", "sign", "--workspace", "ws_x", "--expires", "1h", "--bot", "MyBot", "--json"]) == 0
    import json

    printed = json.loads(capsys.readouterr().out)
    assert printed["link"] == f"https://t.me/MyBot?start={printed['payload']}"
    verdict = verify_payload(printed["payload"], SECRET, datetime.now(UTC))
    assert (verdict.outcome, verdict.workspace_id) == (SignedLinkOutcome.VALID, "ws_x")
    expires = datetime.fromisoformat(printed["expires_at"])
    assert timedelta(minutes=59) < expires - datetime.now(UTC) <= timedelta(hours=1)


def test_the_cli_refuses_without_a_secret_and_with_a_bad_workspace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SELF_SERVE_LINK_SECRET", raising=False)
    monkeypatch.chdir(Path(__file__).parent)  # no .env here
    with pytest.raises(SystemExit, match="SELF_SERVE_LINK_SECRET"):
        main(["link", "sign", "--workspace", "ws_x", "--bot", "MyBot"])
    monkeypatch.setenv("SELF_SERVE_LINK_SECRET", SECRET.decode())
    with pytest.raises(SystemExit, match="workspace"):
        main(["link", "sign", "--workspace", "ws.x", "--bot", "MyBot"])


def test_open_mode_is_refused_at_start_and_the_demo_setting_is_named_insecure(monkeypatch: pytest.MonkeyPatch,
                                                                               tmp_path: Path) -> None:
    from pydantic import ValidationError

    from bot.config import Settings

    monkeypatch.chdir(tmp_path)  # no .env
    monkeypatch.setenv("OPEN_MODE", "true")
    with pytest.raises(ValidationError, match="INSECURE_DEMO_OPEN_WORKSPACES"):
        Settings()
    monkeypatch.delenv("OPEN_MODE")
    assert Settings().policy.requires_invitation and not Settings().policy.asks_workspace
    monkeypatch.setenv("INSECURE_DEMO_OPEN_WORKSPACES", "true")
    monkeypatch.setenv("DOUBLETICK_API_KEY", "dt-key")
    monkeypatch.setenv("DOUBLETICK_CONNECT_PATH", "/v1/integrations/openai")
    demo = Settings().policy
    assert demo.asks_workspace and not demo.requires_invitation


def test_a_short_link_secret_is_refused_and_the_secret_is_redacted(monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    from pydantic import ValidationError

    from bot.config import Settings

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SELF_SERVE_LINK_SECRET", "too-short")
    with pytest.raises(ValidationError, match="at least 32") as refused:
        Settings()
    assert "too-short" not in str(refused.value)
    monkeypatch.setenv("SELF_SERVE_LINK_SECRET", SECRET.decode())
    settings = Settings()
    assert settings.link_secret == SECRET and SECRET.decode() in settings.secrets_to_redact()
