"""The plaintext canary (shared/DESIGN.md, testing layer 5): no pasted key survives anywhere we write.

A real bot process (its CLI, SQLite in a scratch working directory, LOG_LEVEL=DEBUG so PTB logs every raw
update and Bot API payload) is taken through every outcome class with keys made for this run only: connected,
each verification failure, held-and-retried, queued while checks are busy (issue 14), each DoubleTick failure,
secrets that are not OpenAI keys, captions, forwards, edits, groups, undeletable messages, /replace and
/disconnect, and a SIGKILL while one key waits sealed in the outbox and another is being verified, and keys
typed in the Mini App (PUBLIC_BASE_URL set: every answer of POST /miniapp/api/key). Then every byte the system
wrote is searched for each key, for long pieces of it and for its base64, base64url, hex and URL-encoded
forms: the database and its -wal/-shm/-journal (also as the crash left them), the log, every other file in the
working directory, every outbound Bot API request, and /metrics of a webhook-mode run over the same database,
every Mini App answer. A self-check plants a canary and proves the scan would have found it.
"""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import math
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.standins.chat_driver import ChatDriver
from bot.standins.doubletick import DEMO_OPERATOR_KEY
from bot.standins.sandbox import Sandbox
from flows.capabilities import CAPABILITIES
from tests.e2e.harness import BotProcess, Stack, _command, sha256
from tests.e2e.leaks import (
    CompanionWatcher,
    Leak,
    encoded_forms,
    find_in_bytes,
    find_in_calls,
    find_in_tree,
    sqlite_files,
)
from tests.e2e.pasting import (
    OWN,
    bot_texts,
    fresh_key,
    fresh_secret,
    own_workspace,
    reach_paste_step,
    send_and_wait,
    wait_reply,
)

pytestmark = pytest.mark.e2e

WEBHOOK_SECRET = "canary_webhook_Secret-token_0123456789"

# Verification failures: stand-in behaviour -> a phrase of the bot's answer.
FAILURES = {
    None: "doesn't recognise this key",  # unknown to OpenAI: invalid
    "missing_scope_models": "api.model.read",
    "missing_scope_request": "model.request",
    "account_deactivated": "account is deactivated",
    "no_organization": "no longer a member",
    "insufficient_quota": "no usable credit",
    "billing_not_active": "billing is not active",
    "model_not_available": "can't use the model",
    "region_blocked": "where our server is located",
    "ip_not_allowed": "IP allowlist",
    "read_only": "model.request",  # through the free permission probes (OPENAI_REQUIRED_CAPABILITIES)
    "missing_scope_responses": "api.responses.write",
}
# Secrets that are not OpenAI keys (and an admin key): recognised, deleted, never sent anywhere.
OTHERS = {
    "admin": "admin key",
    "anthropic": "key from Anthropic",
    "google": "key from Google",
    "github": "key from GitHub",
    "telegram_bot_token": "Telegram bot token",
    "chatgpt_session": "login session token",
    "jwt": "login session token",
}


@dataclass
class CanaryRun:
    """One bot, its scratch working directory, and every secret this run pasted."""

    workdir: Path
    stack: Stack
    watcher: CompanionWatcher
    secrets: dict[str, str] = field(default_factory=dict)  # label -> plaintext
    crash_snapshots: dict[str, bytes] = field(default_factory=dict)
    web_answers: list[bytes] = field(default_factory=list)  # every Mini App response body

    @property
    def miniapp_url(self) -> str:
        return f"http://127.0.0.1:{self.stack.bot.env['WEBHOOK_PORT']}"

    @property
    def database(self) -> Path:
        return self.workdir / "bot.db"

    def canary(self, label: str, behaviour: str | None = "valid", family: str = "project", times: int = 1) -> str:
        key = fresh_key(family, "Canary")
        if behaviour is not None:
            self.stack.sandbox.openai.register(key, behaviour, times=times)
        self.secrets[label] = key
        return key

    def secret(self, label: str, name: str) -> str:
        value = fresh_secret(name)
        self.secrets[label] = value
        return value

    def user(self, **kwargs: Any) -> ChatDriver:
        return self.stack.user(**kwargs)

    def at_paste_step(self, workspace: str = OWN) -> ChatDriver:
        user = self.user()
        reach_paste_step(user, workspace)
        return user

    def configured_secrets(self) -> dict[str, str]:
        env = self.stack.bot.env
        secrets = {name: env[name] for name in ("FINGERPRINT_SECRET", "DOUBLETICK_API_KEY", "TELEGRAM_BOT_TOKEN")}
        # a key-encryption key's id ("k20261202-ab12cd") is public, stored beside every sealed blob: the
        # secret is the material after the colon (the 12-character fragment scan would flag the id)
        for number, entry in enumerate(env["KEY_ENCRYPTION_KEYS"].split(",")):
            secrets[f"KEY_ENCRYPTION_KEYS[{number}]"] = entry.partition(":")[2]
        return secrets


def _start(workdir: Path) -> CanaryRun:
    workdir.mkdir(parents=True, exist_ok=True)
    sandbox = Sandbox().start()
    from bot.standins.server import free_port

    # PUBLIC_BASE_URL: the polling bot also serves the Mini App, whose submissions are scanned too.
    env = sandbox.bot_environment(f"sqlite+aiosqlite:///{workdir / 'bot.db'}", log_level="DEBUG",
                                  key_submissions_per_user_per_hour=1000, verifications_per_minute=10_000,
                                  openai_timeout_s=1, outbox_first_retry_s=0.2, outbox_poll_s=0.1,
                                  public_base_url="https://miniapp.canary.test", webhook_listen="127.0.0.1",
                                  webhook_port=free_port(), miniapp_submissions_per_user_per_hour=1000,
                                  openai_required_capabilities=",".join(CAPABILITIES))
    bot = BotProcess(env, workdir / "bot.log", cwd=workdir)
    bot.start()
    stack = Stack(sandbox, bot)
    watcher = CompanionWatcher(workdir / "bot.db").__enter__()
    stack.user().wait_bot_polling()
    return CanaryRun(workdir, stack, watcher)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CanaryRun]:
    started = _start(tmp_path_factory.mktemp("canary") / "work")
    try:
        yield started
    finally:
        started.watcher.__exit__()
        started.stack.close()


# --- the flows ---------------------------------------------------------------------------------------------

def _verification_failures(run: CanaryRun) -> None:
    user = run.at_paste_step()
    for behaviour, phrase in FAILURES.items():
        send_and_wait(user, run.canary(f"failure:{behaviour}", behaviour), phrase)


def _connected_replaced_disconnected(run: CanaryRun) -> None:
    user = run.at_paste_step()
    send_and_wait(user, run.canary("connected"), "You're done")
    user.send("/replace")
    user.wait_guide("Let's replace key")
    send_and_wait(user, run.canary("replacement"), "revoke the old key")
    user.send("/disconnect")
    user.wait_guide("Disconnect OpenAI?")
    user.press("Yes, disconnect")
    wait_reply(user, "Disconnected")
    other = run.at_paste_step("ws_acme")
    service = run.canary("service account", family="service_account")
    send_and_wait(other, service, "You're done")
    send_and_wait(other, service, "already connected")


def _held_and_retried(run: CanaryRun) -> None:
    """Rate limited, 5xx, not JSON, timed out: each held sealed, retried, and connected once OpenAI recovers."""
    held = [(run.at_paste_step(), run.canary(f"held:{behaviour}", behaviour))
            for behaviour in ("rate_limited", "server_error", "non_json", "timeout")]
    for user, key in held:  # all at once: their retries overlap
        send_and_wait(user, key, "I'll retry for you")
    for _, key in held:
        run.stack.sandbox.openai.register(key, "valid")
    for user, _ in held:
        wait_reply(user, "You're done", timeout=15)
    given_up = run.at_paste_step()  # a held key the user stops waiting for is shredded at once
    send_and_wait(given_up, run.canary("held:given up", "server_error"), "I'll retry for you")
    given_up.press("Stop retrying")
    given_up.wait_guide("Stopped. I deleted the encrypted key")


def _doubletick_failures(run: CanaryRun) -> None:
    doubletick = run.stack.sandbox.doubletick
    send_and_wait(run.at_paste_step("ws_nowhere"), run.canary("dt validation"), "DoubleTick refused")
    user = run.at_paste_step()
    doubletick.fail_next(3, 503)  # every in-line attempt fails, then the outbox connects it
    send_and_wait(user, run.canary("dt held"), "I'll retry for you")
    wait_reply(user, "You're done", timeout=15)
    doubletick.configure(api_keys=["key_NotTheBotsCredential01"])
    try:
        send_and_wait(run.at_paste_step(), run.canary("dt credential rejected"), "our connection to DoubleTick")
    finally:
        doubletick.configure(api_keys=[DEMO_OPERATOR_KEY])


def _not_openai_keys(run: CanaryRun) -> None:
    user = run.at_paste_step()
    for name, phrase in OTHERS.items():
        send_and_wait(user, run.secret(f"other:{name}", name), phrase)
    first, second = run.canary("several:1", None), run.canary("several:2", None, "service_account")
    send_and_wait(user, f"OPENAI_API_KEY={first}\nOTHER_KEY={second}", "more than one key")


def _delete_first_variants(run: CanaryRun) -> None:
    user = run.at_paste_step()
    user.send(photo=True, caption=f"my key: {run.canary('caption')}")
    user.wait_guide("You're done")
    user = run.at_paste_step()
    user.send(run.canary("forwarded"), forward=True)
    wait_reply(user, "original message still exists")
    user = run.at_paste_step()
    wrapped = run.canary("wrapped")  # a phone wrapped it onto two lines
    send_and_wait(user, f"{wrapped[:70]}\n{wrapped[70:]}", "You're done")

    user = run.user()
    user.send("/start")
    user.wait_guide("Connect DoubleTick to OpenAI")
    edited = user.send("hello")
    user.wait_guide("Use the buttons")
    user.edit(edited["message_id"], f"oops {run.canary('edited')}")
    user.wait_guide("I deleted your key")
    aged = user.send("good morning")
    user.wait_idle()
    user._post("age", chat_id=user.chat_id, message_id=aged["message_id"], seconds=49 * 3600)
    user.edit(aged["message_id"], run.canary("undeletable"))
    user.wait_guide("couldn't delete")

    for can_delete in (True, False):
        group = run.user(chat_id=-100_000_000_000 - run.stack.next_user, chat_type="supergroup")
        group.send("hello group")
        group._post("chat_config", chat_id=group.chat_id, bot_can_delete=can_delete)
        group.send(run.canary(f"group:{can_delete}"))
        wait_reply(group, "I deleted a message" if can_delete else "can't delete it")


def _commands_carrying_keys(run: CanaryRun) -> None:
    """Key text as a command's argument (issue 10): deleted, refused, never stored, never echoed."""
    user = run.user()
    user.send("/start")
    user.wait_guide("Connect DoubleTick to OpenAI")
    for count, command in enumerate(("/restart", "/status", "/handoff ws_demo", "/start"), start=1):
        user.send(f"{command} {run.canary(f'command:{command}', None)}")
        user.wait_for(lambda n=count: sum("held a secret key" in t for t in bot_texts(user)) >= n or None,
                      what=f"the refusal of {command}")


# One retry from the outbox, once due: claim, OpenAI, DoubleTick, the "You're done" message, on a busy machine.
ONE_ATTEMPT_S = 20.0


def _outbox_due(database: Path) -> datetime | None:
    """When the bot will next try its held key: the row's next attempt, or later if a lease holds it.

    A row leased by a process that was then SIGKILLed stays leased until ``locked_until`` (the pipeline
    timeout); one whose attempts failed waits ``next_attempt_at`` (exponential backoff). None: no row.
    """
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30)) as db:
        row = db.execute("SELECT next_attempt_at, locked_until FROM outbox_item ORDER BY id LIMIT 1").fetchone()
    if row is None:
        return None
    times = [datetime.fromisoformat(value).replace(tzinfo=UTC) for value in row if value]
    return max(times)


def _wait_for_the_outbox(run: CanaryRun, user: ChatDriver, contains: str) -> str:
    """Wait for a verdict the outbox will deliver, as long as the bot's own schedule says, not a guess.

    Why: the held key's retries back off exponentially (0.2 s, 0.4 s, ... 25.6 s) while the run goes on,
    and a SIGKILL during an attempt leaves the row leased for the pipeline timeout; a fixed 20 s wait
    lost that race once. The schedule is re-read while waiting: an attempt that was already under way
    when OpenAI recovered may still fail and reschedule the row.
    """
    wanted = contains.lower()
    for _ in range(5):  # each round: the row was rescheduled by an attempt that started before the recovery
        due = _outbox_due(run.database)
        limit = (due - datetime.now(UTC)).total_seconds() if due else 0.0
        try:
            return str(user.wait_for(lambda: next((t for t in bot_texts(user) if wanted in t.lower()), None),
                                     max(0.0, limit) + ONE_ATTEMPT_S, f"a bot message with {contains!r}"))
        except TimeoutError:
            if _outbox_due(run.database) in (None, due):
                raise  # the schedule did not move and the attempt it promised did not come: a real failure
    raise AssertionError("the outbox kept rescheduling a key OpenAI accepts")


def _crash_with_a_sealed_key_and_one_in_flight(run: CanaryRun) -> None:
    """SIGKILL while one key waits sealed in the outbox and another is with OpenAI; the sealed one survives."""
    openai = run.stack.sandbox.openai
    held_user = run.at_paste_step()
    held = run.canary("sealed across a crash", "server_error")
    send_and_wait(held_user, held, "I'll retry for you")  # the sealed row is written before this shows
    in_flight_user = run.at_paste_step()
    in_flight = run.canary("in flight at the crash")
    openai.configure(latency_ms=3000)
    try:
        in_flight_user.send(in_flight)
        in_flight_user.wait_for(lambda: run.stack.openai_requests_for(in_flight), what="OpenAI to be asked")
        run.stack.bot.kill()
    finally:
        openai.configure(latency_ms=0)
    for path in sqlite_files(run.database):  # exactly what the crash left, WAL included
        run.crash_snapshots[path.name] = path.read_bytes()
    assert "bot.db" in run.crash_snapshots
    calls_before = len(run.stack.drivers[0].calls("getUpdates"))
    run.stack.bot.start()
    run.stack.drivers[0].wait_for(lambda: len(run.stack.drivers[0].calls("getUpdates")) > calls_before, 60,
                                  "the restarted bot to poll")
    openai.register(held, "valid")
    _wait_for_the_outbox(run, held_user, "You're done")
    state = run.stack.sandbox.doubletick.workspace(own_workspace(held_user))
    assert state is not None and state.key_sha256 == sha256(held)  # opened by the new process


def _checks_busy(run: CanaryRun) -> None:
    """Issue 14: over the bot-wide limit the key waits (sealed here) for its slot, then is checked."""
    user = run.at_paste_step()
    # The run allows 10,000 checks a minute: fill that window, just before the paste, with hits from 56 s
    # ago, so the slot frees in about 4 s. (The in-memory wait is scanned by test_checks_busy_e2e.py.)
    since = math.ceil((datetime.now(UTC) - timedelta(seconds=56)).timestamp())  # a whole second (limit_count)
    for attempt in range(20):
        # SQLite answers SQLITE_PROTOCOL ("locking protocol") when opening a WAL database races the bot's own
        # connections; the documented remedy is to try again.
        try:
            with contextlib.closing(sqlite3.connect(run.database, timeout=30)) as db, db:
                db.execute("INSERT OR IGNORE INTO limit_bucket (name) VALUES ('keys:all')")
                db.execute("INSERT INTO limit_count (bucket, second, hits) VALUES ('keys:all', ?, 10000) "
                           "ON CONFLICT (bucket, second) DO UPDATE SET hits = hits + 10000", (since,))
            break
        except sqlite3.OperationalError as error:
            if "locking protocol" not in str(error) or attempt == 19:
                raise
            time.sleep(0.1)
    send_and_wait(user, run.canary("checks busy"), "Checks are busy right now")
    wait_reply(user, "You're done", timeout=20)


def _metrics_of_a_webhook_run(run: CanaryRun) -> bytes:
    """The same database served by `run --webhook`: a few more pastes, then /metrics (b"" if absent)."""
    if importlib.util.find_spec("bot.web.server") is None:
        return b""
    from bot.standins.server import free_port

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**run.stack.bot.env, "WEBHOOK_URL": f"{url}/telegram", "WEBHOOK_SECRET_TOKEN": WEBHOOK_SECRET,
           "WEBHOOK_LISTEN": "127.0.0.1", "WEBHOOK_PORT": str(port)}
    done = subprocess.run(_command(("webhook", "set")), env=env, capture_output=True, text=True, timeout=60,
                          check=False, cwd=run.workdir)
    assert done.returncode == 0, done.stdout + done.stderr
    bot = BotProcess(env, run.workdir / "bot-webhook.log", args=("run", "--webhook"), cwd=run.workdir)
    bot.start()
    try:
        with httpx.Client(timeout=10, trust_env=False) as http:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if http.get(f"{url}/readyz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline and bot.process is not None and bot.process.poll() is None
                time.sleep(0.05)
            user = run.at_paste_step()
            send_and_wait(user, run.canary("webhook connected"), "You're done")
            send_and_wait(user, run.canary("webhook invalid", None), "doesn't recognise")
            send_and_wait(user, run.canary("webhook admin", None, "admin"), "admin key")
            response = http.get(f"{url}/metrics")
            assert response.status_code == 200
            return response.content
    finally:
        bot.stop()


def _mini_app(run: CanaryRun) -> None:
    """Keys typed in the Mini App: every answer class (202, 422, 409, 400, 401, replays) and the verdicts."""
    from tests.e2e.miniapp import init_data_for

    with httpx.Client(base_url=run.miniapp_url, timeout=15, trust_env=False) as http:
        run.stack.user().wait_for(lambda: http.get("/healthz").status_code == 200, 30, "the Mini App server")

        def submit(init_data: str, key: str, **extra: Any) -> httpx.Response:
            answer = http.post("/miniapp/api/key", json={"init_data": init_data, "key": key, **extra})
            run.web_answers.append(answer.content)
            return answer

        user = run.at_paste_step()
        guide = user.guide()["message_id"]
        assert submit(init_data_for(user), run.canary("miniapp connected")).status_code == 202
        user.wait_for(lambda: user.guide()["message_id"] != guide and "You're done" in user.guide()["text"], 15,
                      "the Mini App key to connect")
        user = run.at_paste_step()
        for label, behaviour, verdict in (("miniapp invalid", None, "doesn't recognise"),
                                          ("miniapp held", "server_error", "I'll retry for you")):
            guide = user.guide()["message_id"]
            key = run.canary(label, behaviour)
            assert submit(init_data_for(user), key).status_code == 202
            user.wait_for(lambda g=guide, v=verdict: user.guide()["message_id"] != g and v in user.guide()["text"],
                          15, verdict)
            status = http.get("/miniapp/api/status", headers={"Authorization": f"tma {init_data_for(user)}"})
            run.web_answers.append(status.content)
        run.stack.sandbox.openai.register(key, "valid")  # the held one: the outbox connects it
        wait_reply(user, "You're done", timeout=15)
        user = run.at_paste_step()
        assert submit(init_data_for(user), run.secret("miniapp admin", "admin")).status_code == 422
        assert submit(init_data_for(user), run.secret("miniapp anthropic", "anthropic")).status_code == 422
        several = f"{run.canary('miniapp several:1', None)} {run.canary('miniapp several:2', None)}"
        assert submit(init_data_for(user), several).status_code == 422
        assert submit(init_data_for(user, token="1:FORGED"), run.canary("miniapp forged", None)).status_code == 401
        assert submit(init_data_for(user, age_s=7200), run.canary("miniapp expired", None)).status_code == 401
        big = run.canary("miniapp oversized", None)
        assert submit(init_data_for(user), big, pad="x" * 9000).status_code == 400
        replayed = init_data_for(user)
        assert [submit(replayed, "not a key").status_code for _ in range(3)] == [422] * 3
        assert submit(replayed, run.canary("miniapp replayed", None)).status_code == 401
        stranger = run.user()
        stranger.send("/start")
        stranger.wait_guide("Connect DoubleTick to OpenAI")
        assert submit(init_data_for(stranger), run.canary("miniapp not at paste step")).status_code == 409


# --- the scan -----------------------------------------------------------------------------------------------

def _scan(run: CanaryRun, calls: list[dict[str, Any]], metrics: bytes, values: list[str]) -> list[Leak]:
    leaks = find_in_tree(run.workdir, values)
    for name, data in run.crash_snapshots.items():
        leaks += find_in_bytes(data, values, f"{name} as the SIGKILL left it")
    leaks += run.watcher.find(values)
    leaks += find_in_calls(calls, values)
    leaks += find_in_bytes(metrics, values, "/metrics")
    for number, answer in enumerate(run.web_answers):
        leaks += find_in_bytes(answer, values, f"Mini App answer {number}")
    return leaks


def test_no_key_plaintext_is_written_anywhere(run: CanaryRun) -> None:
    _verification_failures(run)
    _connected_replaced_disconnected(run)
    _held_and_retried(run)
    _doubletick_failures(run)
    _not_openai_keys(run)
    _mini_app(run)
    _delete_first_variants(run)
    _commands_carrying_keys(run)
    _checks_busy(run)
    _crash_with_a_sealed_key_and_one_in_flight(run)
    run.stack.drivers[0].wait_idle()
    run.stack.bot.stop()  # graceful: drains pipelines, closes the database
    metrics = _metrics_of_a_webhook_run(run)
    run.watcher.__exit__()
    calls = run.stack.drivers[0].calls()

    log = (run.workdir / "bot.log").read_text(errors="replace")
    assert "Traceback" not in log, "the bot failed somewhere (see bot.log)"
    assert "Calling Bot API endpoint `deleteMessage`" in log, "PTB's debug logging did not run"
    assert log.count("Call to Bot API endpoint `getUpdates` finished with return value") > 10
    assert sqlite_files(run.database) and len(run.secrets) >= 40
    assert not metrics or b"onboarding_" in metrics

    leaks = _scan(run, calls, metrics, [*run.secrets.values(), *run.configured_secrets().values()])
    assert not leaks, "key material written by the system:\n" + "\n".join(map(str, leaks))

    # Self-check: the same scan finds a canary planted where the bot writes, in any form.
    canary = run.secrets["connected"]
    scratch = run.workdir / "scratch.bin"
    for form, needle in [("plaintext", canary.encode()), ("base64url", base64.urlsafe_b64encode(canary.encode())),
                         ("hex", canary.encode().hex().encode())]:
        scratch.write_bytes(b"...noise..." + needle + b"...noise...")
        found = _scan(run, calls, metrics, [canary])
        assert found and {leak.where for leak in found} == {"scratch.bin"}, form
    scratch.unlink()
    planted_call = [{"seq": 0, "method": "sendMessage", "params": {"text": f"your key {canary} works"}}]
    assert find_in_calls(planted_call, [canary])


@pytest.mark.parametrize("shift", [0, 1, 2])
def test_the_scanner_finds_each_encoding_at_every_alignment(tmp_path: Path, shift: int) -> None:
    canary = fresh_key("project", "Canary")
    prefix = b"x" * shift
    for form, needle in encoded_forms(canary).items():
        (tmp_path / "planted").write_bytes(b"header " + needle + b" trailer")
        assert any(leak.form == form for leak in find_in_tree(tmp_path, [canary])), form
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        blob = encode(prefix + b'{"key": "' + canary.encode() + b'"}')
        assert find_in_bytes(blob, [canary], "blob"), (encode.__name__, shift)
    assert not find_in_bytes(b"sk-proj-\xe2\x80\xa6" + canary[-4:].encode(), [canary], "mask")
