"""Self-serve links: the signing recipe, its known-answer vector in the README, the mint time, and every refusal."""

from __future__ import annotations

import base64
import hashlib
import hmac
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
    SignedLinkVerdict,
    looks_signed,
    proof_time,
    sign_payload,
    verify_payload,
)
from bot.cli.main import main

README = Path(__file__).resolve().parents[2] / "README.md"
SECRET = b"readme-test-vector-secret-0123456789"
EXPIRES = 1893456000  # 2030-01-01T00:00:00Z
ISSUED = 1796083200  # 2026-12-01T00:00:00Z
NOW = datetime(2026, 12, 1, 0, 10, tzinfo=UTC)
PAYLOAD_CHARS = set(string.ascii_letters + string.digits + "_-")


def _readme_vector() -> dict[str, str]:
    text = README.read_text(encoding="utf-8")
    block = text.split("<!-- signed-link-vector -->")[1].split("<!-- /signed-link-vector -->")[0]
    found = dict(re.findall(r"(bot|workspace|issued_at|expires_at|secret|link) `([^`]+)`", block))
    assert set(found) == {"bot", "workspace", "issued_at", "expires_at", "secret", "link"}, block
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
    issued = int(vector["issued_at"])
    payload = sign_payload(vector["workspace"], int(vector["expires_at"]), vector["secret"].encode(),
                           issued_at=issued)
    assert payload.startswith("s2")
    assert vector["link"] == f"https://t.me/{vector['bot']}?start={payload}"
    opened = datetime.fromtimestamp(issued, UTC) + timedelta(minutes=30)
    verdict = verify_payload(deep_link_payload(vector["link"]) or "", vector["secret"].encode(), opened)
    assert verdict.outcome == SignedLinkOutcome.VALID and verdict.workspace_id == vector["workspace"]
    assert verdict.issued_at == datetime(2029, 12, 31, 23, tzinfo=UTC)
    assert verdict.expires_at == datetime(2030, 1, 1, tzinfo=UTC)
    assert proof_time(verdict, opened) == issued  # bound as of the mint time, not of the opening


def test_the_readme_function_produces_the_readme_vector() -> None:
    vector = _readme_vector()
    sign = _readme_function()
    link = sign(vector["bot"], vector["workspace"], int(vector["issued_at"]), int(vector["expires_at"]),  # type: ignore[operator]
                vector["secret"])
    assert link == vector["link"]


def sign(workspace: str, expires: int = EXPIRES, issued: int = ISSUED) -> str:
    return sign_payload(workspace, expires, SECRET, issued_at=issued)


def sign_legacy(workspace: str, expires: int = EXPIRES, secret: bytes = SECRET) -> str:
    """The first format, ``s1`` (no mint time), as dashboards minted it before ``s2``."""
    body = f"s1{expires:08x}"
    tag = hmac.new(secret, (body + workspace).encode(), hashlib.sha256).digest()[:12]
    return body + base64.urlsafe_b64encode(tag).decode() + workspace


@pytest.mark.parametrize("workspace", ["ws", "ws_demo", "a" * MAX_SIGNED_WORKSPACE, "Acme-Retail_2"])
def test_payloads_fit_telegrams_start_parameter_and_verify(workspace: str) -> None:
    payload = sign(workspace)
    assert MAX_SIGNED_WORKSPACE == 30 and len(payload) <= MAX_PAYLOAD and set(payload) <= PAYLOAD_CHARS
    assert looks_signed(payload) and token_from(payload) == payload
    verdict = verify_payload(payload, SECRET, NOW)
    assert (verdict.outcome, verdict.workspace_id, verdict.version) == (SignedLinkOutcome.VALID, workspace, "s2")
    assert verdict.issued_at == datetime.fromtimestamp(ISSUED, UTC)


@pytest.mark.parametrize("workspace", ["", "w", "a" * (MAX_SIGNED_WORKSPACE + 1), "ws.demo", "ws:demo", "-ws"])
def test_workspaces_that_do_not_fit_are_refused_when_signing(workspace: str) -> None:
    with pytest.raises(SignedLinkError):
        sign(workspace)


@pytest.mark.parametrize(("issued", "expires"), [(EXPIRES, EXPIRES), (EXPIRES + 1, EXPIRES), (0, EXPIRES),
                                                 (ISSUED, 16**8)])
def test_impossible_times_are_refused_when_signing(issued: int, expires: int) -> None:
    with pytest.raises(SignedLinkError):
        sign("ws_demo", expires=expires, issued=issued)


def test_every_single_character_change_is_refused_as_forged() -> None:
    payload = sign("ws_demo")
    for index in range(2, len(payload)):
        for replacement in ("A", "0", "_"):
            if payload[index] == replacement:
                continue
            changed = payload[:index] + replacement + payload[index + 1:]
            verdict = verify_payload(changed, SECRET, NOW)
            assert verdict.outcome == SignedLinkOutcome.FORGED, changed
            assert verdict.workspace_id is None


def test_another_workspace_with_the_same_tag_is_forged() -> None:
    payload = sign("ws_victim")
    assert verify_payload(payload.replace("ws_victim", "ws_attack"), SECRET, NOW).outcome == SignedLinkOutcome.FORGED
    assert verify_payload(payload[:-1], SECRET, NOW).outcome == SignedLinkOutcome.FORGED  # truncated


def test_another_secret_is_forged_and_no_secret_is_not_enabled() -> None:
    payload = sign("ws_demo")
    assert verify_payload(payload, b"another-secret-of-at-least-32-characters", NOW).outcome == \
        SignedLinkOutcome.FORGED
    assert verify_payload(payload, None, NOW).outcome == SignedLinkOutcome.NOT_ENABLED


def test_an_expired_link_is_refused_only_once_its_tag_is_right() -> None:
    expires = int((NOW - timedelta(seconds=1)).timestamp())
    payload = sign("ws_demo", expires=expires)
    assert verify_payload(payload, SECRET, NOW).outcome == SignedLinkOutcome.EXPIRED
    assert verify_payload(payload, SECRET, NOW - timedelta(seconds=2)).outcome == SignedLinkOutcome.VALID
    forged_and_expired = payload[:-1] + ("x" if payload[-1] != "x" else "y")
    assert verify_payload(forged_and_expired, SECRET, NOW).outcome == SignedLinkOutcome.FORGED


def test_a_later_mint_time_cannot_be_claimed_by_editing_the_payload() -> None:
    """The mint time is signed: moving it past a connection (to make an old link "fresh") breaks the tag."""
    payload = sign("ws_demo")
    later = f"{ISSUED + 3600:08x}"
    assert verify_payload("s2" + later + payload[10:], SECRET, NOW + timedelta(hours=2)).outcome == \
        SignedLinkOutcome.FORGED
    # Nor can an s2 link be relabelled s1 (to drop the mint time): the s1 tag covers other bytes.
    assert verify_payload("s1" + payload[2:], SECRET, NOW).outcome == SignedLinkOutcome.FORGED


def test_a_link_minted_in_the_future_or_expiring_before_its_mint_is_refused() -> None:
    now = datetime.fromtimestamp(ISSUED, UTC)
    ahead = sign("ws_demo", issued=ISSUED + 301)
    assert verify_payload(ahead, SECRET, now).outcome == SignedLinkOutcome.FORGED
    skewed = verify_payload(sign("ws_demo", issued=ISSUED + 120), SECRET, now)  # a dashboard clock 2 min ahead
    assert skewed.outcome == SignedLinkOutcome.VALID
    assert proof_time(skewed, now) == ISSUED  # never later than the moment it was opened
    body = f"s2{ISSUED:08x}{ISSUED - 1:08x}"  # only a secret holder could write this: still refused
    tag = base64.urlsafe_b64encode(hmac.new(SECRET, (body + "ws_demo").encode(), hashlib.sha256).digest()[:12])
    assert verify_payload(body + tag.decode() + "ws_demo", SECRET, now).outcome == SignedLinkOutcome.FORGED


def test_the_proof_time_is_the_mint_time_however_late_the_link_is_opened() -> None:
    payload = sign("ws_demo")
    for opened in (NOW, NOW + timedelta(days=29)):
        verdict = verify_payload(payload, SECRET, opened)
        assert verdict.outcome == SignedLinkOutcome.VALID and proof_time(verdict, opened) == ISSUED
    assert proof_time(SignedLinkVerdict(SignedLinkOutcome.EXPIRED), NOW) is None
    assert proof_time(verify_payload(payload[:-1] + "x", SECRET, NOW), NOW) is None


@pytest.mark.parametrize("workspace", ["ws_demo", "a" * 38])
def test_legacy_s1_links_still_bind_but_prove_no_time(workspace: str) -> None:
    """Links dashboards handed out before s2 keep working, but can never count as fresh (documented)."""
    payload = sign_legacy(workspace)
    assert looks_signed(payload) and token_from(payload) == payload
    verdict = verify_payload(payload, SECRET, NOW)
    assert (verdict.outcome, verdict.workspace_id, verdict.version) == (SignedLinkOutcome.VALID, workspace, "s1")
    assert verdict.issued_at is None and proof_time(verdict, NOW) is None
    assert verify_payload(sign_legacy(workspace, secret=b"another-secret-of-at-least-32-chars"), SECRET,
                          NOW).outcome == SignedLinkOutcome.FORGED
    expired = sign_legacy(workspace, expires=int(NOW.timestamp()) - 1)
    assert verify_payload(expired, SECRET, NOW).outcome == SignedLinkOutcome.EXPIRED


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
    assert printed["link"] == f"https://t.me/MyBot?start={printed['payload']}" and printed["payload"][:2] == "s2"
    now = datetime.now(UTC)
    verdict = verify_payload(printed["payload"], SECRET, now)
    assert (verdict.outcome, verdict.workspace_id) == (SignedLinkOutcome.VALID, "ws_x")
    issued, expires = datetime.fromisoformat(printed["issued_at"]), datetime.fromisoformat(printed["expires_at"])
    assert verdict.issued_at == issued and verdict.expires_at == expires
    assert timedelta(0) <= now - issued < timedelta(seconds=5)  # minted now (floored to the second)
    assert expires - issued == timedelta(hours=1)


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
