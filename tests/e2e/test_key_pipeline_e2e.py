"""The key pipeline end to end: delete first, recognise, verify, connect, remember only metadata.

Real bot process (started by its CLI), real HTTP, stand-ins for Telegram, OpenAI and DoubleTick. Every
recognition kind, every OpenAI outcome class and every DoubleTick outcome class is driven from a
simulated user's chat and judged by what the user sees, what was deleted, and what reached OpenAI and
DoubleTick (the stand-ins' request logs).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from bot.standins.chat_driver import ChatDriver
from bot.standins.demo_keys import DEMO_KEYS
from tests.e2e.harness import POSTGRES_URL_ENV, Stack, new_database_url, plain_text, sha256
from tests.e2e.pasting import (
    RECOGNITION,
    bot_texts,
    deleted_first,
    fresh_key,
    labels,
    last_call,
    own_workspace,
    reach_paste_step,
    recognition_paste,
    send_and_wait,
    wait_reply,
)

pytestmark = pytest.mark.e2e

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
FAST_OUTBOX = {"outbox_first_retry_s": 0.2, "outbox_poll_s": 0.1}
WRONG_OPERATOR_KEY = "key_WrongOperatorCredential01"


def _start(tmp: pytest.TempPathFactory, name: str, backend: str = "sqlite", **env: Any) -> Stack:
    if backend == "postgres" and not os.environ.get(POSTGRES_URL_ENV):
        pytest.skip(f"{POSTGRES_URL_ENV} is not set")
    folder = tmp.mktemp(f"{name}-{backend}")
    # Flood control off for this module, until issue 9's bot side lands: these tests walk a chat to the
    # paste step far faster than a person, so the stand-in's per-chat limit (1/s after a burst of 10)
    # answers the key's deleteMessage and the step edits with 429s; the bot then gives up deleting
    # after three tries (issue 9 item 3) or drops a verified key when an edit's retries run out (item 1).
    # The delete retry and independent effects have since landed on main: remove this once a run of this
    # module with the limiter on is green (tests/e2e/test_guide_e2e.py already runs with it on).
    return Stack.start(folder, new_database_url(backend, folder), telegram={"flood_control": False}, **env)


@pytest.fixture(scope="module")
def _pipeline_stacks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Stack]]:
    """One pipeline bot per backend, started on first use and shared by ``stack`` and ``db_stack``."""
    started: dict[str, Stack] = {}
    yield started
    for running in started.values():
        running.close()


def _pipeline(stacks: dict[str, Stack], tmp: pytest.TempPathFactory, backend: str) -> Stack:
    if backend not in stacks:
        stacks[backend] = _start(tmp, "pipeline", backend, **FAST_OUTBOX)
    return stacks[backend]


@pytest.fixture
def stack(_pipeline_stacks: dict[str, Stack], tmp_path_factory: pytest.TempPathFactory) -> Stack:
    """Open mode with DoubleTick configured; held keys are retried within a fraction of a second (SQLite)."""
    return _pipeline(_pipeline_stacks, tmp_path_factory, "sqlite")


@pytest.fixture(params=BACKENDS)
def db_stack(request: pytest.FixtureRequest, _pipeline_stacks: dict[str, Stack],
             tmp_path_factory: pytest.TempPathFactory) -> Stack:
    """The same bot on every database backend, for what the database decides: dedupe, fingerprints, outbox."""
    return _pipeline(_pipeline_stacks, tmp_path_factory, request.param)


@pytest.fixture(scope="module")
def troubled_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """An operator's bad day: a wrong DoubleTick credential, and no time to hold keys for a retry."""
    started = _start(tmp_path_factory, "troubled", doubletick_api_key=WRONG_OPERATOR_KEY,
                     outbox_hold_minutes=0, openai_timeout_s=1, **FAST_OUTBOX)
    yield started
    started.close()


@pytest.fixture(scope="module")
def limited_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    started = _start(tmp_path_factory, "limited", key_submissions_per_user_per_hour=2,
                     verifications_per_minute=3)
    yield started
    started.close()


@pytest.fixture(scope="module")
def unconfigured_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """No DoubleTick connection configured: verified keys lead to the guided Step 2."""
    started = _start(tmp_path_factory, "unconfigured", auto_connect=False, demo_open_workspaces=True)
    yield started
    started.close()


def openai_saw(stack: Stack, *texts: str) -> bool:
    """Whether any request reached OpenAI carrying one of ``texts`` (or one of their words) as its key."""
    digests = {sha256(piece) for text in texts for piece in [text, *text.split()]}
    return any(r.key_sha256 in digests for r in stack.sandbox.openai.requests)


def valid_key(stack: Stack, hint: str = "") -> str:
    key = fresh_key("project", hint)
    stack.sandbox.openai.register(key, "valid")
    return key


def connect_count(stack: Stack, workspace: str | None = None) -> int:
    """Connections DoubleTick made in ``workspace``, or in all workspaces (each user has their own)."""
    if workspace is None:
        return sum(int(state["connect_count"]) for state in stack.sandbox.doubletick.workspaces_json().values())
    state = stack.sandbox.doubletick.workspace(workspace)
    assert state is not None
    return state.connect_count


def has_button(message: dict[str, Any], wanted: str) -> bool:
    return any(wanted.lower() in label.lower() for label in labels(message))


def deleted(user: ChatDriver, sent: dict[str, Any]) -> bool:
    return bool(user.message(sent["message_id"])["deleted"])


def send_watched(user: ChatDriver, *args: Any, **kwargs: Any) -> tuple[dict[str, Any], int]:
    """Send, returning the message and the last Bot API call before it (for :func:`deleted_first`)."""
    since = last_call(user)
    return user.send(*args, **kwargs), since


# --- recognition: every kind pasted at the paste step gets its own answer ------------------------------

@pytest.mark.parametrize("kind", RECOGNITION)
def test_each_recognised_kind_gets_its_own_answer(stack: Stack, kind: str) -> None:
    paste = recognition_paste(kind)
    if paste.verifiable:
        stack.sandbox.openai.register(paste.text, "valid")
    user = stack.user()
    reach_paste_step(user)
    sent, since = send_watched(user, paste.text)
    answer = plain_text(user.wait_guide(paste.answer)["text"])
    assert deleted_first(user, since, sent["message_id"])
    other_answers = {recognition_paste(k).answer for k in RECOGNITION} - {paste.answer}
    assert not [phrase for phrase in other_answers if phrase.lower() in answer.lower()]
    if paste.verifiable:
        assert stack.openai_requests_for(paste.text)
    else:
        assert not openai_saw(stack, paste.text, *paste.secrets)
    for secret in paste.secrets:
        assert all(secret not in text for text in bot_texts(user))


# --- verification: every demo key, its answer and its buttons ------------------------------------------

DEMO_ANSWERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "valid": ("You're done", ()),
    "invalid": ("doesn't recognise this key", ("Open the OpenAI API keys page", "Paste a key again",
                                               "Create a new key")),
    "missing_scope": ("lacks a permission DoubleTick needs: Models (List models): Read (OpenAI says Missing "
                      "scopes: api.model.read)", ("Fix the permissions (step 1.6)", "Paste a key again")),
    "missing_request_scope": ("lacks a permission DoubleTick needs: Model capabilities: Request (OpenAI says "
                              "Missing scopes: model.request)", ("Fix the permissions (step 1.6)",)),
    "read_only": ("Missing scopes: model.request", ("Fix the permissions (step 1.6)",)),
    "missing_responses_scope": ("You're done", ()),  # Responses is not required by default
    "account_deactivated": ("OpenAI account is deactivated", ("Open the OpenAI help center", "Paste a key again")),
    "no_organization": ("no longer a member of an OpenAI organization", ("Create a new key", "Paste a key again")),
    "no_credit": ("no usable credit (insufficient_quota)", ("Open OpenAI billing", "Paste a key again")),
    "billing_inactive": ("billing is not active", ("Open OpenAI billing", "Paste a key again")),
    "model_not_available": ("can't use the model DoubleTick needs (gpt-4o-mini)", ("Create a new key",)),
    "region_blocked": ("where our server is located", ("Connect it myself in DoubleTick",
                                                       "Contact DoubleTick support")),
    "ip_not_allowed": ("IP allowlist", ("Create a new key", "Paste a key again")),
    "service_account_valid": ("You're done", ()),
}


def test_every_demo_key_has_an_end_to_end_test() -> None:
    held = {"rate_limited", "openai_down"}  # their own tests below: held, retried, then connected
    assert set(DEMO_ANSWERS) | held == set(DEMO_KEYS)


@pytest.mark.parametrize("name", list(DEMO_ANSWERS))
def test_each_demo_key_gets_its_outcome_and_next_actions(stack: Stack, name: str) -> None:
    key = DEMO_KEYS[name].key
    phrase, buttons = DEMO_ANSWERS[name]
    user = stack.user()
    reach_paste_step(user)
    sent = user.send(key)
    guide = user.wait_guide(phrase)
    assert deleted(user, sent)
    missing = [b for b in buttons if not has_button(guide, b)]
    assert not missing, f"{missing} not among {labels(guide)}"
    text = plain_text(guide["text"])
    assert key not in text and key[8:-4] not in text
    if name == "invalid":  # what OpenAI saw: its own echo, first 8 and last 4 characters
        assert f"It saw: {key[:8]}*" in text and text.split("It saw: ")[1].split()[0].rstrip(".").endswith(key[-4:])
    if name == "region_blocked":  # an operator problem: the log says so
        assert "ERROR bot.core.keyflow: OpenAI refused this server's country or region" in stack.bot.log()


def test_a_rate_limited_key_is_held_and_retried_after_retry_after(db_stack: Stack) -> None:
    key = DEMO_KEYS["rate_limited"].key  # the first request gets 429 with Retry-After: 1, then all pass
    user = db_stack.user()
    reach_paste_step(user)
    user.send(key)
    wait_reply(user, "I'll retry for you")
    wait_reply(user, "You're done")
    times = sorted(r.received_monotonic for r in db_stack.openai_requests_for(key))
    first_retry = next(t for t in times if t > times[0] + 0.1)
    assert first_retry - times[0] >= 0.95  # OUTBOX_FIRST_RETRY_S is 0.2 here: Retry-After won
    assert not any("doesn't recognise" in t for t in bot_texts(user))


def test_openai_down_is_held_never_called_invalid_and_connects_once_openai_recovers(db_stack: Stack) -> None:
    key = DEMO_KEYS["openai_down"].key  # OpenAI answers 500 until the test lets it recover
    user = db_stack.user()
    reach_paste_step(user)
    user.send(key)
    wait_reply(user, "I'll retry for you")
    user.wait_for(lambda: len(db_stack.openai_requests_for(key)) >= 6, what="a retry by the outbox")
    db_stack.sandbox.openai.register(key, "valid")
    wait_reply(user, "You're done", timeout=15)
    assert not any("doesn't recognise" in t for t in bot_texts(user))


@pytest.mark.parametrize("behaviour", ["server_error", "non_json", "timeout"])
def test_indeterminate_verification_is_reported_as_such_when_it_cannot_be_held(troubled_stack: Stack,
                                                                               behaviour: str) -> None:
    key = fresh_key("project", "Unsure")
    troubled_stack.sandbox.openai.register(key, behaviour)
    user = troubled_stack.user()
    reach_paste_step(user)
    user.send(key)
    answer = user.wait_guide("couldn't reach OpenAI", timeout=15)
    assert "says nothing bad about the key" in plain_text(answer["text"])
    assert has_button(answer, "Connect it myself in DoubleTick")
    assert not any("doesn't recognise" in t for t in bot_texts(user))


# --- DoubleTick: every connection outcome ---------------------------------------------------------------

def test_a_rejected_operator_credential_tells_the_user_support_knows_and_logs_an_error(
        troubled_stack: Stack) -> None:
    key = valid_key(troubled_stack)
    user = troubled_stack.user()
    reach_paste_step(user)
    user.send(key)
    answer = user.wait_guide("our connection to DoubleTick failed")
    assert "support team has been alerted" in plain_text(answer["text"])
    assert has_button(answer, "Connect it myself in DoubleTick")
    log = troubled_stack.bot.log()
    assert "ERROR bot.core.keyflow: DoubleTick rejected our credential" in log
    assert WRONG_OPERATOR_KEY not in log


def test_a_doubletick_validation_error_is_explained(stack: Stack) -> None:
    user = stack.user()
    reach_paste_step(user, workspace="ws_nowhere")
    user.send(valid_key(stack))
    answer = user.wait_guide("DoubleTick refused the connection")
    assert "Workspace ws_nowhere not found" in plain_text(answer["text"])
    assert has_button(answer, "Connect it myself in DoubleTick")


def test_a_transient_doubletick_failure_is_retried_with_the_same_idempotency_key(stack: Stack) -> None:
    key = valid_key(stack)
    before = connect_count(stack)
    user = stack.user()
    reach_paste_step(user)
    stack.sandbox.doubletick.fail_next(2, 503)
    user.send(key)
    user.wait_guide("You're done")
    calls = [r for r in stack.sandbox.doubletick.requests if r.key_sha256 == sha256(key)]
    assert [r.status for r in calls] == [503, 503, 201]
    assert len({r.idempotency_key for r in calls}) == 1
    assert connect_count(stack) == before + 1


def test_a_doubletick_outage_holds_the_key_and_connects_it_later(db_stack: Stack) -> None:
    key = valid_key(db_stack)
    before = connect_count(db_stack)
    user = db_stack.user()
    reach_paste_step(user)
    db_stack.sandbox.doubletick.fail_next(3, 503)  # every attempt of the first connect fails
    user.send(key)
    wait_reply(user, "I'll retry for you")
    wait_reply(user, "You're done", timeout=15)
    state = db_stack.sandbox.doubletick.workspace(own_workspace(user))
    assert state is not None and state.key_sha256 == sha256(key)
    assert connect_count(db_stack) == before + 1


def test_a_double_paste_connects_once(db_stack: Stack) -> None:
    key = valid_key(db_stack)
    before = connect_count(db_stack)
    user = db_stack.user()
    reach_paste_step(user)
    first, second = user.send(key), user.send(key)
    user.wait_guide("You're done")
    user.wait_idle()
    assert deleted(user, first) and deleted(user, second)
    assert connect_count(db_stack) == before + 1


def test_a_redelivered_update_connects_once(db_stack: Stack) -> None:
    key = valid_key(db_stack)
    before = connect_count(db_stack)
    user = db_stack.user()
    reach_paste_step(user)
    # The update below must be handled but never confirmed, so that killing the bot makes Telegram hand it
    # over again, as after a crash. A 429 on deleting the key holds the guard lane's offset for 2 s (an
    # update is confirmed only once its key is deleted); meanwhile getUpdates starts failing until the test
    # says so. (Timing the failures against an in-flight long poll raced, and lost once in CI.)
    flood = {"method": "deleteMessage", "error_code": 429, "description": "Too Many Requests: retry after 2",
             "retry_after": 2}
    user.wait_idle()  # the old guide's deletion must not take the 429 meant for the key's
    user._post("config", fail_next=[flood])
    sent = user.send(key)

    def update() -> dict[str, Any]:
        found = [u for u in user.http.get(f"{user.base}/updates").json() if u["update_id"] == sent["update_id"]]
        return dict(found[0])

    user.wait_for(lambda: any(c["params"].get("message_id") == sent["message_id"] and not c["ok"]
                              for c in user.calls("deleteMessage")), what="the first deletion meeting its 429")
    bad_gateway = {"method": "getUpdates", "error_code": 502, "description": "Bad Gateway"}
    user._post("config", fail_next=[bad_gateway] * 1000)
    assert not update()["confirmed"]
    user.wait_guide("You're done", 30)
    assert not update()["confirmed"]
    handed_before_the_crash = update()["attempts"]  # 1, or more: the held offset fetched it again
    db_stack.restart_bot(while_down=lambda: user._post("config", clear_fail_next=True))
    user.wait_for(lambda: update()["confirmed"], 30, "the redelivered update to be confirmed")
    user.wait_idle()
    assert update()["attempts"] == handed_before_the_crash + 1
    assert f"update {sent['update_id']} was already processed; skipped" in db_stack.bot.log()
    assert connect_count(db_stack) == before + 1
    assert sum("You're done" in t for t in bot_texts(user)) == 1


def test_without_doubletick_configured_a_verified_key_leads_to_the_guided_step_two(
        unconfigured_stack: Stack) -> None:
    key = valid_key(unconfigured_stack)
    user = unconfigured_stack.user()
    reach_paste_step(user, workspace=None)
    user.send(key)
    guide = user.wait_guide("Log in to DoubleTick")
    assert f"OpenAI accepted key …{key[-4:]}" in plain_text(guide["text"])
    assert not unconfigured_stack.sandbox.doubletick.requests


# --- delete first: captions, edits, forwards, files, media, groups, old messages -----------------------

def test_a_key_in_a_caption_is_deleted_and_verified(stack: Stack) -> None:
    key = valid_key(stack)
    user = stack.user()
    reach_paste_step(user)
    sent, since = send_watched(user, photo=True, caption=f"here it is {key}")
    user.wait_guide("You're done")
    assert deleted_first(user, since, sent["message_id"])


def test_a_key_in_a_caption_outside_the_paste_step_is_deleted_first(stack: Stack) -> None:
    user = stack.user()
    user.send("/start")
    user.wait_guide("Connect DoubleTick to OpenAI")
    sent, since = send_watched(user, photo=True, caption=valid_key(stack))
    user.wait_guide("I deleted your key")
    assert deleted_first(user, since, sent["message_id"])


def test_an_earlier_message_edited_into_a_key_is_deleted(stack: Stack) -> None:
    key = valid_key(stack)
    user = stack.user()
    user.send("/start")
    user.wait_guide("Connect DoubleTick to OpenAI")
    sent = user.send("hello")
    user.wait_guide("Use the buttons below")
    assert not deleted(user, sent)
    since = last_call(user)
    user.edit(sent["message_id"], f"oops: {key}")
    user.wait_guide("I deleted your key")
    assert deleted_first(user, since, sent["message_id"])
    assert not openai_saw(stack, key)  # the workspace comes first in open mode


def test_a_forwarded_key_is_deleted_and_the_original_is_pointed_out(stack: Stack) -> None:
    key = valid_key(stack)
    user = stack.user()
    reach_paste_step(user)
    sent, since = send_watched(user, key, forward=True)
    user.wait_guide("You're done")
    assert deleted_first(user, since, sent["message_id"])
    notice = wait_reply(user, "the original message still exists")
    assert "Delete it there too" in notice


@pytest.mark.parametrize("file_name", ["openai_api_key.txt", ".env", "secret.pem"])
def test_a_document_named_like_a_key_file_is_deleted(stack: Stack, file_name: str) -> None:
    user = stack.user()
    user.send("/start")
    user.wait_guide("Connect DoubleTick to OpenAI")
    sent, since = send_watched(user, document={"file_name": file_name})
    user.wait_for(lambda: deleted(user, sent), what="the document to be deleted")
    assert deleted_first(user, since, sent["message_id"])
    harmless = user.send(document={"file_name": "holiday.pdf"})
    user.wait_idle()
    assert not deleted(user, harmless)


@pytest.mark.parametrize("media", ["photo", "sticker"])
def test_media_at_the_paste_step_is_deleted(stack: Stack, media: str) -> None:
    user = stack.user()
    reach_paste_step(user)
    sent, since = send_watched(user, **{media: True})
    user.wait_guide(f"I deleted that {media} just in case")
    assert deleted_first(user, since, sent["message_id"])


def test_a_key_in_a_group_is_deleted_never_verified_and_the_user_sent_to_a_private_chat(stack: Stack) -> None:
    group = stack.user(chat_id=-100_000_000_000 - stack.next_user, chat_type="supergroup")
    group.send("hi all")
    group._post("chat_config", chat_id=group.chat_id, bot_can_delete=True)
    key = valid_key(stack)
    sent, since = send_watched(group, key)
    group.wait_for(lambda: deleted(group, sent), what="the key to be deleted in the group")
    assert deleted_first(group, since, sent["message_id"])
    answer = group.wait_for(lambda: next((m for m in group.bot_messages() if "I deleted a message" in
                                          plain_text(m.get("text") or "")), None), what="the group notice")
    button = answer["reply_markup"]["inline_keyboard"][0][0]
    assert button["url"].startswith("https://t.me/") and "private chat" in button["text"]
    group.wait_idle()
    assert not openai_saw(stack, key)


def test_a_key_the_bot_may_not_delete_in_a_group_is_flagged_for_revocation(stack: Stack) -> None:
    group = stack.user(chat_id=-100_000_000_000 - stack.next_user, chat_type="supergroup")
    key = valid_key(stack)
    sent = group.send(key)
    notice = wait_reply(group, "can't delete it")
    assert "revoke the key" in notice
    assert not deleted(group, sent)
    assert not openai_saw(stack, key)


def test_an_old_message_edited_into_a_key_cannot_be_deleted_so_the_user_is_told_to_revoke(stack: Stack) -> None:
    key = valid_key(stack)
    user = stack.user()
    user.send("/start")
    user.wait_guide("Connect DoubleTick to OpenAI")
    sent = user.send("hello")
    user.wait_guide("Use the buttons below")
    user._post("age", chat_id=user.chat_id, message_id=sent["message_id"], seconds=49 * 3600)
    user.edit(sent["message_id"], key)
    answer = user.wait_guide("couldn't delete")
    assert "revoke the key" in plain_text(answer["text"])
    assert has_button(answer, "Open the OpenAI API keys page") and has_button(answer, "Create a new key")
    assert not deleted(user, sent)
    assert not openai_saw(stack, key)


# --- what is kept: "already connected", replace, disconnect ----------------------------------------------

def test_a_connected_key_pasted_again_is_recognised_by_its_fingerprint(db_stack: Stack) -> None:
    key = valid_key(db_stack)
    user = db_stack.user()
    reach_paste_step(user)
    user.send(key)
    user.wait_guide("You're done")
    before = connect_count(db_stack)
    user.send(key)
    user.wait_guide("This key is already connected")
    assert connect_count(db_stack) == before
    # ... in this workspace only: a colleague's workspace still gets it connected
    other = db_stack.user()
    reach_paste_step(other, workspace="ws_acme")
    other.send(key)
    done = other.wait_guide("You're done")
    assert "already connected" not in plain_text(done["text"])
    state = db_stack.sandbox.doubletick.workspace("ws_acme")
    assert state is not None and state.key_sha256 == sha256(key)


def test_replace_connects_the_new_key_then_asks_to_revoke_the_old_one(db_stack: Stack) -> None:
    old, new = valid_key(db_stack), valid_key(db_stack)
    user = db_stack.user()
    reach_paste_step(user)
    user.send(old)
    user.wait_guide("You're done")
    user.send("/replace")
    user.wait_guide(f"Let's replace key …{old[-4:]}")
    user.send(new)
    done = plain_text(user.wait_guide("You're done")["text"])
    assert f"revoke the old key …{old[-4:]}" in done and f"…{new[-4:]}" in done
    state = db_stack.sandbox.doubletick.workspace(own_workspace(user))
    assert state is not None and state.key_sha256 == sha256(new)


def test_disconnect_asks_first_then_removes_the_integration_and_the_metadata(db_stack: Stack) -> None:
    key = valid_key(db_stack)
    user = db_stack.user()
    user.send("/start")
    user.wait_guide("Connect DoubleTick to OpenAI")
    user.send("/disconnect")
    user.wait_guide("Nothing is connected yet")
    reach_paste_step(user)
    user.send(key)
    user.wait_guide("You're done")
    user.send("/disconnect")
    user.wait_guide("Disconnect OpenAI?")
    user.press("No, keep it")
    user.wait_guide("You're done")
    assert db_stack.sandbox.doubletick.workspace(own_workspace(user)).connected  # type: ignore[union-attr]
    user.send("/disconnect")
    user.wait_guide("Disconnect OpenAI?")
    user.press("Yes, disconnect")
    wait_reply(user, "Disconnected. I deleted what I stored about the key")
    state = db_stack.sandbox.doubletick.workspace(own_workspace(user))
    assert state is not None and not state.connected
    # The fingerprint went with the metadata: the same key is connected afresh, not "already connected".
    reach_paste_step(user)
    user.send(key)
    done = plain_text(user.wait_guide("You're done")["text"])
    assert "already connected" not in done


# --- abuse limits ------------------------------------------------------------------------------------------

def test_over_the_user_limit_the_user_hears_when_to_retry_and_over_the_bot_limit_the_key_queues(
        limited_stack: Stack) -> None:
    # At most 2 keys per user per hour (refused beyond) and 3 verifications per minute for the whole bot.
    user = limited_stack.user()
    reach_paste_step(user)
    for _ in range(2):
        send_and_wait(user, fresh_key(), "doesn't recognise this key")
    third = fresh_key()
    answer = send_and_wait(user, third, "pausing checks")
    assert "Nothing was sent to OpenAI" in plain_text(answer["text"])
    assert "try again in about 60 min" in plain_text(answer["text"])
    assert has_button(answer, "Paste a key again")
    assert not openai_saw(limited_stack, third)

    other = limited_stack.user()
    reach_paste_step(other)
    send_and_wait(other, fresh_key(), "doesn't recognise this key")  # the bot's third this minute
    fourth = fresh_key()
    # Over the bot-wide limit the key is not refused but queued (issue 14; tests/e2e/test_checks_busy_e2e.py)
    answer = send_and_wait(other, fourth, "Checks are busy right now")
    assert "answer in about" in plain_text(answer["text"]) and "pausing checks" not in plain_text(answer["text"])
    assert not openai_saw(limited_stack, fourth)  # not yet: its slot is about a minute away
