"""What an operator meets first: `init`, configuration mistakes and start-up failures, each in one clear line."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from bot.cli.init import GENERATED, TO_FILL, write_env
from bot.config import Settings
from bot.standins.sandbox import SANDBOX_BOT_TOKEN, Sandbox
from storage.sealing import KeyRing

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.isupper() or k in ("PATH", "HOME", "LANG", "PYTHONPATH")}
    return subprocess.run([sys.executable, "-m", "bot.cli.main", *args], cwd=cwd, env={**clean, **env},
                          capture_output=True, text=True, timeout=120)


def test_init_writes_fresh_private_secrets_that_the_bot_accepts(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    added, unfilled = write_env(env_file)
    assert added == list(GENERATED) and unfilled == list(TO_FILL)
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    text = env_file.read_text()
    assert "$(" not in text
    settings = Settings(_env_file=env_file)  # type: ignore[call-arg]
    assert settings.fingerprint_secret is not None and len(settings.fingerprint_secret.get_secret_value()) >= 32
    assert settings.key_encryption_keys is not None
    KeyRing.from_spec(settings.key_encryption_keys.get_secret_value())
    assert settings.webhook_secret_token is not None and len(settings.webhook_secret_token.get_secret_value()) >= 32
    assert settings.telegram_bot_token is None  # left blank for the operator, and blank means unset
    # A second run on another machine's file generates different secrets; on the same file, changes nothing.
    other = tmp_path / "other.env"
    write_env(other)
    assert other.read_text().splitlines()[1] != text.splitlines()[1]
    assert write_env(env_file) == ([], list(TO_FILL))
    assert env_file.read_text() == text


def test_init_never_overwrites_a_value_that_exists(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("TELEGRAM_BOT_TOKEN=123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw1\n"
                        "FINGERPRINT_SECRET=operators-own-long-secret-value\n")
    done = _cli("init", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    text = env_file.read_text()
    assert text.startswith("TELEGRAM_BOT_TOKEN=123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw1\n"
                           "FINGERPRINT_SECRET=operators-own-long-secret-value\n")
    assert text.count("FINGERPRINT_SECRET=") == 1 and text.count("KEY_ENCRYPTION_KEYS=") == 1
    assert "FINGERPRINT_SECRET" not in done.stdout.split("generated", 1)[1].splitlines()[0]
    assert "TELEGRAM_BOT_TOKEN" not in done.stdout  # already filled: not listed as left to fill
    assert "DOUBLETICK_API_KEY" in done.stdout


@pytest.mark.parametrize("value", ['$(python -c "import secrets;print(secrets.token_urlsafe(32))")',
                                   "`openssl rand -hex 32`"])  # ${VAR} is expanded by python-dotenv itself
def test_a_value_that_is_unexpanded_shell_is_refused_at_start(tmp_path: Path, value: str) -> None:
    (tmp_path / ".env").write_text(f"FINGERPRINT_SECRET={value}\n")
    done = _cli("migrate", cwd=tmp_path, DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]  # one line
    assert "FINGERPRINT_SECRET" in done.stderr and "unexpanded shell" in done.stderr
    assert value not in done.stderr and "secrets.token_urlsafe" not in done.stderr
    assert not (tmp_path / "x.db").exists()


@pytest.mark.parametrize(("name", "value", "says"), [
    ("LOG_LEVEL", "LOUD", "LOG_LEVEL must be one of"),
    ("TELEGRAM_BOT_TOKEN", "98765", "does not look like a token"),
    ("TELEGRAM_BOT_TOKEN", "not a token at all", "does not look like a token"),
])
def test_malformed_settings_are_one_line(tmp_path: Path, name: str, value: str, says: str) -> None:
    done = _cli("run", cwd=tmp_path, **{name: value}, DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert says in done.stderr and "Traceback" not in done.stderr
    if name == "TELEGRAM_BOT_TOKEN":
        assert value not in done.stderr


def _run_env(tmp_path: Path) -> dict[str, str]:
    env_file = tmp_path / ".env"
    write_env(env_file)
    return {"TELEGRAM_BOT_TOKEN": SANDBOX_BOT_TOKEN, "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'b.db'}",
            "PRIVACY_CONTACT": "privacy@example.com"}


def test_unreachable_telegram_is_one_line_and_debug_gives_the_traceback(tmp_path: Path) -> None:
    env = {**_run_env(tmp_path), "TELEGRAM_API_BASE_URL": "http://127.0.0.1:9"}
    done = _cli("run", cwd=tmp_path, **env)
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if line.startswith("onboarding-bot run:")]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "cannot reach the Telegram Bot API at http://127.0.0.1:9" in lines[0]
    noise = [line for line in done.stderr.splitlines() if " INFO " not in line]  # migrations log at INFO
    assert noise == lines, done.stderr  # ours alone: no ERROR line from PTB before it
    assert SANDBOX_BOT_TOKEN.split(":")[1] not in done.stderr
    debug = _cli("--debug", "run", cwd=tmp_path, **env)
    assert debug.returncode != 0 and "Traceback" in debug.stderr


@pytest.mark.parametrize("command", ["migrate", "run"])
@pytest.mark.parametrize(("url", "says"), [
    ("postgresql+asyncpg://bob:hunter2secret@db.nowhere.invalid:5432/bot",
     "cannot reach the database at db.nowhere.invalid:5432: gaierror:"),
    ("postgresql://bob:hunter2secret@127.0.0.1:9/bot", "cannot reach the database at 127.0.0.1:9: "),
    ("not-a-database-url", "the database URL could not be parsed"),
    ("mysql://bob:hunter2secret@127.0.0.1/bot", "unsupported database URL scheme 'mysql'"),
])
def test_a_bad_database_url_is_one_line_without_its_password(tmp_path: Path, url: str, says: str,
                                                             command: str) -> None:
    env = {**_run_env(tmp_path), "DATABASE_URL": url} if command == "run" else {"DATABASE_URL": url}
    done = _cli(command, cwd=tmp_path, **env)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [done.stderr.strip()], done.stderr  # exactly one line
    assert done.stderr.startswith(f"onboarding-bot {command}: ") and says in done.stderr, done.stderr
    assert "hunter2secret" not in done.stderr


def test_a_sqlite_file_that_cannot_be_created_names_the_database(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    done = _cli("migrate", cwd=tmp_path, DATABASE_URL=f"sqlite+aiosqlite:///{blocker}/sub/bot.db")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [done.stderr.strip()], done.stderr
    assert f"cannot reach the database at {blocker}/sub/bot.db: " in done.stderr


def test_a_postgres_that_refuses_the_login_is_named_in_one_line(tmp_path: Path) -> None:
    from sqlalchemy.engine import make_url

    base = os.environ.get("TEST_POSTGRES_URL")
    if not base:
        pytest.skip("TEST_POSTGRES_URL is not set")
    url = make_url(base).set(username="no_such_role_here", password="hunter2secret")
    done = _cli("migrate", cwd=tmp_path, DATABASE_URL=url.render_as_string(hide_password=False))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [done.stderr.strip()], done.stderr
    assert f"cannot reach the database at {url.host}:{url.port or 5432}: " in done.stderr
    assert "no_such_role_here" in done.stderr and "hunter2secret" not in done.stderr


@pytest.mark.parametrize(("extra", "warned"), [
    ({}, True),
    ({"SUPPORT_URL": "https://web.doubletick.io/"}, True),  # DoubleTick's login page is nobody's inbox
    ({"SUPPORT_CONTACT": "@acme_help"}, False),
    ({"PRIVACY_CONTACT": "privacy@acme.example"}, False),
    ({"INSECURE_DEMO_OPEN_WORKSPACES": "true"}, False),  # try mode and the sandbox
])
def test_run_warns_at_start_when_privacy_questions_have_nowhere_to_go(tmp_path: Path, extra: dict[str, str],
                                                                        warned: bool) -> None:
    env = {**_run_env(tmp_path), "TELEGRAM_API_BASE_URL": "http://127.0.0.1:9", **extra}
    if "PRIVACY_CONTACT" not in extra:
        del env["PRIVACY_CONTACT"]
    done = _cli("run", cwd=tmp_path, **env)
    assert done.returncode == 1
    warnings = [line for line in done.stderr.splitlines() if " WARNING " in line]
    if warned:
        assert len(warnings) == 1 and "PRIVACY_CONTACT is not set" in warnings[0], done.stderr
    else:
        assert warnings == [], done.stderr


def test_settings_fall_back_to_a_contact_the_operator_set_never_to_the_defaults() -> None:
    def shown(**values: str) -> str | None:
        return Settings(_env_file=None, **values).view_settings().privacy_contact  # type: ignore[call-arg]

    assert shown() is None
    assert shown(support_url="https://web.doubletick.io") is None
    assert shown(support_url="https://help.acme.example/privacy") == "https://help.acme.example/privacy"
    assert shown(support_contact="@acme_help", support_url="https://help.acme.example") == "@acme_help"
    assert shown(privacy_contact="dpo@acme.example", support_contact="@acme_help") == "dpo@acme.example"


def test_handoff_create_without_a_username_leaves_no_database_behind(tmp_path: Path) -> None:
    done = _cli("handoff", "create", "--workspace", "ws_acme", cwd=tmp_path)
    assert done.returncode != 0 and "BOT_USERNAME" in done.stderr
    assert not (tmp_path / "var").exists()


def test_the_sandbox_control_url_answers_with_how_to_chat() -> None:
    with Sandbox() as sandbox:
        assert f"{sandbox.telegram_url}/_sandbox/" in sandbox.describe()
        answer = httpx.get(f"{sandbox.telegram_url}/_sandbox/")
        assert answer.status_code == 200
        body = answer.json()
        paths = {route["path"] for route in body["routes"]}
        assert {"/_sandbox/send", "/_sandbox/chats/{chat_id}/messages"} <= paths
        assert any("/_sandbox/send" in line for line in body["chat_as_a_user"])


def test_a_second_bootstrap_installs_nothing_and_needs_no_network() -> None:
    stamp = ROOT / ".venv" / ".bootstrapped"
    if not stamp.exists():
        pytest.skip("the venv was not made by scripts/bootstrap.sh")
    offline = {**os.environ, "PIP_NO_INDEX": "1", "PIP_INDEX_URL": "http://127.0.0.1:9/simple"}
    for mode in ("--dev", ""):
        done = subprocess.run(["bash", "scripts/bootstrap.sh", *([mode] if mode else [])], cwd=ROOT, env=offline,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert done.stdout == "" and done.stderr == ""
