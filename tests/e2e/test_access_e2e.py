"""Who gets in and who may change a workspace, end to end: the real bot process, two or more users.

1. The open-mode takeover from issue 10, replayed: a victim connects ``ws_demo``, an attacker types
   ``ws_demo`` and pastes their own valid key, then sends /disconnect. Only the insecure demo setting
   still lets anyone type a workspace id, and even there the victim's key stays and the victim is told.
2. The default (closed) bot: signed self-serve links (tapped or pasted as text, expired, forged), a fresh
   link that may replace another chat's key, an old link (minted before the connection) reopened later
   that may not, key text in commands refused, agents seeing only their own.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from bot.agents.signed_links import sign_payload
from bot.standins.chat_driver import ChatDriver
from bot.standins.demo_keys import DEMO_KEYS
from storage.db import create_engine, session_factory
from storage.models import Agent, AuditEvent, HandoffLink
from tests.e2e.conftest import BACKENDS, _backend_param
from tests.e2e.harness import Stack, new_database_url, plain_text
from tests.e2e.pasting import reach_paste_step

pytestmark = pytest.mark.e2e

BOT = "DoubleTickOnboardingBot"
SECRET = "self-serve-secret-for-the-e2e-tests-0123456789"
AGENT, OTHER_AGENT, ADMIN = 4242, 4244, 4343
VICTIM_KEY = DEMO_KEYS["valid"].key
ATTACKER_KEY = DEMO_KEYS["service_account_valid"].key
GUIDE = [("start", "Open the API keys page"), ("Next", "Start a new secret key"), ("Next", "Who owns the key?"),
         ("Personal", "Name the key"), ("Next", "Choose the project"), ("Default", "Set the permissions"),
         ("All", "Create and copy the key")]


def texts(driver: ChatDriver) -> list[str]:
    return [plain_text(m.get("text") or m.get("caption") or "") for m in driver.bot_messages()]


def everything_the_bot_sent(driver: ChatDriver) -> str:
    return json.dumps(driver.calls())


def key_parts(key: str) -> list[str]:
    """Fragments of the key's secret part (what must never be stored or sent back)."""
    body = key.split("-", 2)[-1]
    return [body[i:i + 12] for i in range(0, len(body) - 12, 6)]


def signed(workspace: str, seconds: float = 3600) -> str:
    """An s2 link minted now (an already expired one: minted an hour before its expiry)."""
    now, expires = int(time.time()), int(time.time() + seconds)
    return sign_payload(workspace, expires, SECRET.encode(), issued_at=min(now, expires - 3600))


def paste_after_walk(user: ChatDriver, key: str, expect: str = "Paste your key here") -> dict[str, Any]:
    for label, title in GUIDE:
        user.press(label)
        user.wait_guide(title)
    user.press("I copied it")
    user.wait_guide(expect)
    return user.send(key)


def rows(database_url: str, model: Any) -> list[Any]:
    async def run() -> list[Any]:
        engine = create_engine(database_url)
        try:
            async with session_factory(engine)() as session:
                return list((await session.scalars(select(model))).all())
        finally:
            await engine.dispose()
    return asyncio.run(run())


# -- 1. the takeover, replayed in the only mode that still takes typed workspace ids ---------------------

@pytest.fixture(scope="module", params=BACKENDS)
def demo(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    backend = _backend_param(request)
    folder = tmp_path_factory.mktemp(f"access-demo-{backend}")
    stack = Stack.start(folder, new_database_url(backend, folder), demo_open_workspaces=True)
    yield stack
    stack.close()


def test_the_open_mode_takeover_is_refused_and_the_victim_is_told(demo: Stack) -> None:
    doubletick = demo.sandbox.doubletick
    victim, attacker = demo.user(username="victim"), demo.user(username="attacker")
    reach_paste_step(victim, "ws_demo")
    victim.send(VICTIM_KEY)
    victim.wait_guide("You're done")
    before = doubletick.workspace("ws_demo")
    assert before is not None and before.connected and before.key_last_four == VICTIM_KEY[-4:]
    connects = before.connect_count

    reach_paste_step(attacker, "ws_demo")  # the attacker types the victim's workspace id
    attacker.send(ATTACKER_KEY)
    refused = plain_text(attacker.wait_guide("That didn't work")["text"])
    assert "did not connect" in refused and "new link" in refused
    after = doubletick.workspace("ws_demo")
    assert after is not None and after.connected and after.key_last_four == VICTIM_KEY[-4:]
    assert after.connect_count == connects  # DoubleTick never received the attacker's request
    assert "tried to replace" in victim.wait_text("tried to replace")

    seen = attacker.last_id()
    attacker.send("/disconnect")  # the attacker never connected anything: nothing to disconnect
    assert "Nothing is connected" in attacker.wait_text("Nothing is connected", after=seen)
    final = doubletick.workspace("ws_demo")
    assert final is not None and final.connected and final.key_last_four == VICTIM_KEY[-4:]
    assert all(r.method == "POST" for r in doubletick.requests if r.workspace_id == "ws_demo")
    victim_view = plain_text(victim.guide()["text"])
    assert "…" + VICTIM_KEY[-4:] in "\n".join(texts(victim)) and "nothing changed" in victim_view


# -- 2. the default bot: links only -------------------------------------------------------------------

@pytest.fixture(scope="module", params=BACKENDS)
def closed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, str]]:
    backend = _backend_param(request)
    folder = tmp_path_factory.mktemp(f"access-closed-{backend}")
    database_url = new_database_url(backend, folder)
    stack = Stack.start(folder, database_url, demo_open_workspaces=False, self_serve_link_secret=SECRET,
                        agent_user_ids=f"{AGENT},{OTHER_AGENT}", admin_user_ids=str(ADMIN), bot_username=BOT)
    stack.sandbox.doubletick.configure(workspaces={f"ws_acc_{i}": f"Access {i}" for i in range(1, 9)})
    yield stack, database_url
    stack.close()


def test_without_a_link_the_welcome_says_so_and_typing_a_workspace_gets_nowhere(closed: tuple[Stack, str]) -> None:
    stack, _ = closed
    user = stack.user()
    user.send("/start")
    welcome = plain_text(user.wait_guide("Connect DoubleTick to OpenAI")["text"])
    assert "You need a link" in welcome
    seen = user.last_id()
    user.send("/help")
    assert "t.me/" in user.wait_text("Getting in", after=seen)
    user.press("Let's start")
    first = plain_text(user.wait_guide("Open the API keys page")["text"])
    assert "Before you create a key" in first
    user.send("ws_demo")  # the attacker's move from the issue: nothing binds a typed id any more
    answer = plain_text(user.wait_guide("can't read free text")["text"])
    assert "ws_demo" not in answer


def test_a_signed_link_binds_the_workspace_and_the_key_gets_connected(closed: tuple[Stack, str]) -> None:
    stack, _ = closed
    customer = stack.user()
    customer.send(f"/start {signed('ws_acc_1')}")
    welcome = plain_text(customer.wait_guide("Connect DoubleTick to OpenAI")["text"])
    assert "dashboard" in welcome and "You need a link" not in welcome
    paste_after_walk(customer, VICTIM_KEY)
    customer.wait_guide("You're done")
    state = stack.sandbox.doubletick.workspace("ws_acc_1")
    assert state is not None and state.connected and state.key_last_four == VICTIM_KEY[-4:]


def test_a_link_pasted_as_text_is_redeemed_like_a_tap(closed: tuple[Stack, str]) -> None:
    stack, _ = closed
    customer = stack.user()
    customer.send("/start")
    customer.wait_guide("Connect DoubleTick to OpenAI")
    paste_after_walk(customer, "hello", expect="your invitation link")  # no link yet: asked for one
    customer.send(f"https://t.me/{BOT}?start={signed('ws_acc_2')}")
    accepted = plain_text(customer.wait_guide("Paste your key here")["text"])
    assert "You can paste your key now" in accepted


@pytest.mark.parametrize(("payload", "expect"), [
    ("expired", "has expired"),
    ("forged", "isn't valid"),
])
def test_expired_and_forged_links_are_refused_with_a_clear_message(closed: tuple[Stack, str], payload: str,
                                                                  expect: str) -> None:
    stack, _ = closed
    good = signed("ws_acc_3", seconds=-60 if payload == "expired" else 3600)
    tag = 20  # a character of the tag (s2 + two 8-hex times come first)
    link = good if payload == "expired" else good[:tag] + ("A" if good[tag] != "A" else "B") + good[tag + 1:]
    customer = stack.user()
    customer.send(f"/start {link}")
    message = customer.wait_text(expect)
    assert "ws_acc_3" not in message
    paste_after_walk(customer, VICTIM_KEY, expect="your invitation link")  # still unbound: key refused
    customer.wait_guide("without checking it")


def test_a_fresh_link_may_replace_another_chats_key_and_the_first_chat_is_told(closed: tuple[Stack, str]) -> None:
    stack, _ = closed
    first, second = stack.user(), stack.user()
    first.send(f"/start {signed('ws_acc_4')}")
    first.wait_guide("Connect DoubleTick to OpenAI")
    paste_after_walk(first, VICTIM_KEY)
    first.wait_guide("You're done")
    time.sleep(1.1)  # the link second opens is younger than the connection, to the second
    second.send(f"/start {signed('ws_acc_4')}")
    second.wait_guide("already connected")
    second.send("/replace")
    second.wait_guide("Paste your key here")
    second.send(ATTACKER_KEY)
    second.wait_guide("You're done")
    state = stack.sandbox.doubletick.workspace("ws_acc_4")
    assert state is not None and state.key_last_four == ATTACKER_KEY[-4:]
    assert "was replaced from another chat" in first.wait_text("was replaced from another chat")


def test_a_link_minted_before_the_connection_cannot_take_it_over_when_reopened_later(
        closed: tuple[Stack, str]) -> None:
    """The victim's own reusable link (30 days, as the CLI allows), reopened by someone else after the victim
    connected: bound as of its mint time, so it is not fresh. A link minted after the connection still is."""
    stack, _ = closed
    doubletick = stack.sandbox.doubletick
    old_link = signed("ws_acc_7", seconds=30 * 86400)  # minted now, before anything is connected
    victim, holder, colleague = stack.user(username="victim7"), stack.user(username="holder7"), stack.user()
    victim.send(f"/start {old_link}")
    victim.wait_guide("Connect DoubleTick to OpenAI")
    paste_after_walk(victim, VICTIM_KEY)
    victim.wait_guide("You're done")
    before = doubletick.workspace("ws_acc_7")
    assert before is not None and before.connected and before.key_last_four == VICTIM_KEY[-4:]
    connects = before.connect_count
    time.sleep(1.1)  # the old link is reopened well after the connection (the old rule bound "now")

    holder.send(f"https://t.me/{BOT}?start={old_link}")  # the same old link, opened by someone else
    holder.wait_guide("already connected")
    seen = victim.last_id()
    holder.send("/disconnect")
    holder.wait_guide("Disconnect OpenAI?")
    holder.press("Yes, disconnect")
    assert "didn't disconnect anything" in plain_text(holder.wait_guide("didn't disconnect anything")["text"])
    assert "tried to disconnect" in victim.wait_text("tried to disconnect", after=seen)
    seen = victim.last_id()
    holder.send("/replace")
    holder.wait_guide("Paste your key here")
    holder.send(ATTACKER_KEY)
    refused = plain_text(holder.wait_guide("That didn't work")["text"])
    assert "did not connect" in refused and "new link" in refused
    assert "tried to replace" in victim.wait_text("tried to replace", after=seen)
    after = doubletick.workspace("ws_acc_7")
    assert after is not None and after.connected and after.key_last_four == VICTIM_KEY[-4:]
    assert after.connect_count == connects  # DoubleTick never heard of either attempt
    assert all(r.method == "POST" for r in doubletick.requests if r.workspace_id == "ws_acc_7")  # no DELETE

    seen = victim.last_id()
    colleague.send(f"/start {signed('ws_acc_7')}")  # minted after the connection: fresh
    colleague.wait_guide("already connected")
    colleague.send("/disconnect")
    colleague.wait_guide("Disconnect OpenAI?")
    colleague.press("Yes, disconnect")
    colleague.wait_text("Disconnected. I deleted what I stored about the key")
    gone = doubletick.workspace("ws_acc_7")
    assert gone is not None and not gone.connected
    assert "was disconnected from another chat" in victim.wait_text("was disconnected from another chat", after=seen)


def _agent(stack: Stack, user_id: int, username: str) -> ChatDriver:
    driver = ChatDriver(stack.sandbox.telegram_url, user_id, first_name=username, username=username)
    stack.drivers.append(driver)
    return driver


def _says(driver: ChatDriver, command: str, expect: str) -> str:
    seen = driver.last_id()
    driver.send(command)
    return driver.wait_text(expect, after=seen)


def test_status_and_links_show_an_agent_only_their_own(closed: tuple[Stack, str]) -> None:
    stack, _ = closed
    sam, kim, ada = _agent(stack, AGENT, "sam_agent"), _agent(stack, OTHER_AGENT, "kim_agent"), \
        _agent(stack, ADMIN, "ada_admin")
    seen = sam.last_id()
    sam.send("/handoff ws_acc_5 Ana")
    photo = sam.wait_for(lambda: next((m for m in sam.bot_messages_after(seen) if m["photo"]), None), what="link")
    link = plain_text(photo["caption"]).split("https://t.me/")[1].split()[0]
    customer = stack.user(username="ana_customer")
    customer.send("/start " + link.split("start=")[1])
    customer.wait_guide("Connect DoubleTick to OpenAI")

    assert "ana_customer" in _says(sam, "/status ws_acc_5", "Workspace ws_acc_5")
    assert "I found nothing" in _says(kim, "/status ws_acc_5", "I found nothing")
    assert "I found nothing" in _says(kim, "/status @ana_customer", "I found nothing")
    assert "ana_customer" in _says(ada, "/status ws_acc_5", "Workspace ws_acc_5")
    sam.send("/start")  # the agent has a chat with the bot too, so their username is known
    sam.wait_for(lambda: sam.bot_messages() or None, what="a greeting")
    time.sleep(0.5)
    assert "Only admins" in _says(kim, "/status @sam_agent", "Only admins")
    assert "ws_acc_5" not in _says(kim, "/links", "handoff links")
    assert "ws_acc_5" in _says(ada, "/links", "Open handoff links")


def test_key_text_in_any_command_is_refused_never_stored_never_echoed(closed: tuple[Stack, str]) -> None:
    stack, database_url = closed
    sam, ada, customer = _agent(stack, AGENT, "sam_agent"), _agent(stack, ADMIN, "ada_admin"), stack.user()
    for driver, command in ((sam, f"/status {VICTIM_KEY}"), (sam, f"/handoff ws_acc_6 {VICTIM_KEY}"),
                            (ada, f"/add_agent 5555 {VICTIM_KEY}"), (customer, f"/restart {VICTIM_KEY}"),
                            (customer, f"/start {VICTIM_KEY}"), (customer, f"/language {VICTIM_KEY}")):
        before = driver.last_id()
        sent = driver.send(command)
        refusal = driver.wait_text("looked like it held a secret key", after=before)  # this command's own
        assert "revoke" in refusal
        driver.wait_for(lambda d=driver, s=sent: d.message(s["message_id"])["deleted"] or None,  # type: ignore[misc]
                        what="the command to be deleted")
    for driver in (sam, ada, customer):
        sent_back = everything_the_bot_sent(driver)
        assert not any(part in sent_back for part in key_parts(VICTIM_KEY))
    stored = json.dumps([[e.kind, e.detail] for e in rows(database_url, AuditEvent)])
    stored += json.dumps([link.label for link in rows(database_url, HandoffLink)])
    stored += json.dumps([agent.note for agent in rows(database_url, Agent)])
    assert not any(part in stored for part in key_parts(VICTIM_KEY))
    assert "command.refused_secret" in stored
    assert 5555 not in [agent.user_id for agent in rows(database_url, Agent)]
    assert not any(link.workspace_id == "ws_acc_6" for link in rows(database_url, HandoffLink))
