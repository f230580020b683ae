"""Support-agent handoff, end to end: the real bot process in closed mode, the real CLI, the real HTTP API.

An agent (a simulated Telegram user whose id is in AGENT_USER_IDS) makes links in the bot, the CLI
makes them as an operator would, DoubleTick's tooling calls POST /api/handoffs (served here by
``create_handoff_app`` on the bot's database); customers open them as ``/start <token>``, exactly what
Telegram sends when a t.me link is tapped or its QR code scanned.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from sqlmodel import col

from bot.agents.api import create_handoff_app
from bot.standins.chat_driver import ChatDriver
from bot.standins.demo_keys import DEMO_KEYS
from bot.standins.server import BackgroundServer
from storage.db import create_engine, session_factory
from storage.models import HandoffLink
from tests.e2e.conftest import BACKENDS, _backend_param
from tests.e2e.harness import Stack, _command, new_database_url, plain_text

pytestmark = pytest.mark.e2e

AGENT, ADMIN = 4242, 4343
API_TOKEN = "handoff-api-token-for-tests-0123456789"
BOT = "DoubleTickOnboardingBot"
LINK = re.compile(rf"https://t\.me/{BOT}\?start=([A-Za-z0-9_-]+)")
VALID = DEMO_KEYS["valid"].key
PERSONAL = [("start", "Open the API keys page"), ("Next", "Start a new secret key"), ("Next", "Who owns the key?"),
            ("Personal", "Name the key"), ("Next", "Choose the project"), ("Default", "Set the permissions"),
            ("All", "Create and copy the key")]


@dataclass
class Desk:
    """The closed-mode bot, its API, the agent's and the admin's chats."""

    stack: Stack
    database_url: str
    api_url: str
    agent: ChatDriver
    admin: ChatDriver
    workspaces: int = 0

    def workspace(self, name: str) -> str:
        """A fresh DoubleTick workspace known to the stand-in, so tests never share a connection."""
        self.workspaces += 1
        workspace_id = f"ws_e2e_{self.workspaces}"
        self.stack.sandbox.doubletick.configure(workspaces={workspace_id: name})
        return workspace_id


@pytest.fixture(scope="module", params=BACKENDS)
def desk(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desk]:
    backend = _backend_param(request)
    folder = tmp_path_factory.mktemp(f"handoff-{backend}")
    database_url = new_database_url(backend, folder)
    stack = Stack.start(folder, database_url, demo_open_workspaces=False, agent_user_ids=str(AGENT),
                        admin_user_ids=str(ADMIN), handoff_api_token=API_TOKEN)
    api = BackgroundServer(create_handoff_app(database_url=database_url, token=API_TOKEN, bot_username=BOT,
                                              agents=(AGENT,), admins=(ADMIN,)))
    api.start()
    agent = ChatDriver(stack.sandbox.telegram_url, AGENT, first_name="Sam", username="sam_support")
    admin = ChatDriver(stack.sandbox.telegram_url, ADMIN, first_name="Ada", username="ada_admin")
    stack.drivers += [agent, admin]
    for person in (agent, admin):
        person.send("/start")
        person.wait_for(lambda p=person: p.bot_messages(), what="the bot to greet")  # type: ignore[misc]
    try:
        yield Desk(stack, database_url, api.url, agent, admin)
    finally:
        api.stop()
        stack.close()


# -- helpers -------------------------------------------------------------------------------------------

def texts(driver: ChatDriver) -> list[str]:
    return [plain_text(m.get("text") or m.get("caption") or "") for m in driver.bot_messages()]


def agent_says(desk: Desk, command: str, expect: str) -> str:
    seen = desk.agent.last_id()
    desk.agent.send(command)
    return desk.agent.wait_text(expect, after=seen)


def handoff_in_bot(desk: Desk, args: str) -> tuple[str, dict[str, Any]]:
    """/handoff as the agent: the link from the caption of the QR-code photo."""
    seen = desk.agent.last_id()
    desk.agent.send(f"/handoff {args}")
    photo = desk.agent.wait_for(lambda: next((m for m in desk.agent.bot_messages_after(seen) if m["photo"]), None),
                                what="the QR code photo")
    match = LINK.search(plain_text(photo["caption"]))
    assert match, photo["caption"]
    return match.group(0), photo


def api(desk: Desk, method: str, path: str, token: str | None = API_TOKEN, **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.request(method, desk.api_url + path, headers=headers, timeout=10, **kwargs)


def open_link(desk: Desk, link: str, **who: Any) -> ChatDriver:
    customer = desk.stack.user(**who)
    customer.send("/start " + LINK.fullmatch(link).group(1))  # type: ignore[union-attr]
    return customer


def walk_and_paste(customer: ChatDriver, key: str = VALID, *, steps: list[tuple[str, str]] = PERSONAL,
                   expect: str = "Paste your key here") -> dict[str, Any]:
    """Walk the guide from the welcome (or along ``steps``), then paste ``key`` where ``expect`` is shown."""
    for label, title in steps:
        customer.press(label)
        customer.wait_guide(title)
    customer.press("I copied it")
    customer.wait_guide(expect)
    return customer.send(key)


def set_expiry(desk: Desk, link_id: int, when: datetime) -> None:
    """The bot runs in another process: move the link's expiry instead of its clock."""
    async def run() -> None:
        engine = create_engine(desk.database_url)
        try:
            async with session_factory(engine).begin() as session:
                await session.execute(update(HandoffLink).where(col(HandoffLink.id) == link_id)
                                      .values(expires_at=when))
        finally:
            await engine.dispose()
    asyncio.run(run())


# -- the three ways in --------------------------------------------------------------------------------

def test_an_agent_makes_a_link_in_the_bot_and_the_customer_gets_to_connected(desk: Desk) -> None:
    workspace = desk.workspace("Bot Made Co")
    link, photo = handoff_in_bot(desk, f"{workspace} Ana from Acme")
    assert photo["upload_is_image"] and photo["upload_length"] > 500
    caption = plain_text(photo["caption"])
    assert workspace in caption and "Ana from Acme" in caption and "one person" in caption
    agent_seen = desk.agent.last_id()

    customer = open_link(desk, link, username="ana_acme")
    welcome = customer.wait_guide("Connect DoubleTick to OpenAI")
    assert "invited you to connect the workspace " + workspace in plain_text(welcome["text"])
    assert "@ana_acme" in desk.agent.wait_text("opened your link", after=agent_seen)

    pasted = walk_and_paste(customer)  # no workspace question: the link named it
    done = plain_text(customer.wait_guide("You're done")["text"])
    assert "…" + VALID[-4:] in done and workspace in done
    assert customer.message(pasted["message_id"])["deleted"]
    state = desk.stack.sandbox.doubletick.workspace(workspace)
    assert state is not None and state.connected and state.key_last_four == VALID[-4:]
    finished = desk.agent.wait_text("connected " + workspace, after=agent_seen)
    assert "…" + VALID[-4:] in finished and "project" in finished
    assert VALID[:-4] not in "\n".join(texts(desk.agent))


def test_an_operator_makes_a_link_with_the_cli(desk: Desk, tmp_path: Path) -> None:
    workspace = desk.workspace("CLI Made Co")
    env = {**os.environ, **desk.stack.bot.env}
    qr = tmp_path / "link.png"
    done = subprocess.run([*_command(("handoff", "create")), "--workspace", workspace, "--name", "CLI Made Co",
                           "--label", "Bo", "--expires", "2h", "--agent", str(AGENT), "--qr", str(qr), "--json"],
                          env=env, capture_output=True, text=True, timeout=60, check=True)
    created = json.loads(done.stdout)
    assert LINK.fullmatch(created["link"]) and created["workspace_name"] == "CLI Made Co"
    expires = datetime.fromisoformat(created["expires_at"])
    assert timedelta(hours=1, minutes=59) < expires - datetime.now(UTC) <= timedelta(hours=2)
    assert qr.read_bytes().startswith(b"\x89PNG")
    agent_seen = desk.agent.last_id()

    customer = open_link(desk, created["link"])
    welcome = plain_text(customer.wait_guide("Connect DoubleTick to OpenAI")["text"])
    assert "CLI Made Co" in welcome  # the workspace's name, where known
    desk.agent.wait_text("opened your link #" + str(created["id"]), after=agent_seen)
    walk_and_paste(customer)
    customer.wait_guide("You're done")
    desk.agent.wait_text("connected CLI Made Co", after=agent_seen)


def test_support_tooling_makes_a_link_with_the_http_api(desk: Desk) -> None:
    workspace = desk.workspace("API Made Co")
    response = api(desk, "POST", "/api/handoffs", json={
        "workspace_id": workspace, "workspace_name": "API Made Co", "label": "Cy", "expires_in": "3d",
        "agent_user_id": AGENT})
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    created = response.json()
    assert base64.b64decode(created["qr_png_base64"]).startswith(b"\x89PNG")
    agent_seen = desk.agent.last_id()

    customer = open_link(desk, created["link"], username="cy_api")
    customer.wait_guide("Connect DoubleTick to OpenAI")
    desk.agent.wait_text("opened your link", after=agent_seen)
    assert api(desk, "GET", f"/api/handoffs/{created['id']}").json()["state"] == "opened"
    walk_and_paste(customer)
    customer.wait_guide("You're done")

    status = api(desk, "GET", f"/api/handoffs/{created['id']}").json()
    assert status["customer"]["step"] == "connected" and status["customer"]["username"] == "cy_api"
    key = status["customer"]["key"]
    assert key["last_four"] == VALID[-4:] and len(key["fingerprint_prefix"]) == 12 and key["connected"]
    assert VALID[:-4] not in json.dumps(status)


# -- misuse -------------------------------------------------------------------------------------------

def test_a_second_user_cannot_use_a_link_and_the_agent_is_told(desk: Desk) -> None:
    workspace = desk.workspace("Reuse Co")
    link, _ = handoff_in_bot(desk, workspace)
    agent_seen = desk.agent.last_id()
    first = open_link(desk, link, username="first_one")
    first.wait_guide("Connect DoubleTick to OpenAI")
    second = open_link(desk, link, username="second_one")
    refused = plain_text(second.wait_guide("already been used")["text"])
    assert "ask your DoubleTick agent for a new link" in refused and workspace not in refused
    told = desk.agent.wait_text("Someone else", after=agent_seen)
    assert "@second_one" in told and "@first_one" in told
    walk_and_paste(second, expect="your invitation link")  # bound to nothing: no paste step
    second.wait_guide("without checking it")  # and a pasted key is not taken
    first.send("/start " + LINK.fullmatch(link).group(1))  # the bound customer may open it again
    first.wait_for(lambda: len([m for m in first.messages() if m["from_bot"]]) >= 2, what="a second welcome")
    assert "invited you to connect the workspace " + workspace in plain_text(first.guide()["text"])


def test_expired_revoked_forged_and_tampered_links_are_refused_kindly(desk: Desk) -> None:
    workspace = desk.workspace("Refused Co")
    created = api(desk, "POST", "/api/handoffs", json={"workspace_id": workspace, "agent_user_id": AGENT}).json()
    set_expiry(desk, created["id"], datetime.now(UTC) - timedelta(minutes=1))
    assert "expired" in plain_text(open_link(desk, created["link"]).wait_guide("expired")["text"])

    link, _ = handoff_in_bot(desk, workspace)
    listed = agent_says(desk, "/links", "Open handoff links")
    link_id = re.findall(r"#(\d+) · " + workspace + " ·", listed)[0]
    count = int(re.search(r"Open handoff links \((\d+) links?\)", listed).group(1))  # type: ignore[union-attr]
    assert f"({count} link{'' if count == 1 else 's'})" in listed and count == listed.count(" · until ")
    agent_says(desk, f"/revoke_link {link_id}", "is revoked")
    open_link(desk, link).wait_guide("cancelled by your agent")
    assert f"#{link_id} " not in agent_says(desk, "/links", "handoff link")

    token = LINK.fullmatch(handoff_in_bot(desk, workspace)[0]).group(1)  # type: ignore[union-attr]
    for forged in (token[:-1] + ("A" if token[-1] != "A" else "B"), token[:12], token + "Z",
                   "AAAAAAAAAAAAAAAAAAAAAAAA"):
        stranger = desk.stack.user()
        stranger.send("/start " + forged)
        assert "new link" in plain_text(stranger.wait_guide("don't recognise this link")["text"])
    open_link(desk, f"https://t.me/{BOT}?start={token}").wait_guide("invited you")  # the real one still works


def test_revoking_an_opened_link_unbinds_its_customer(desk: Desk) -> None:
    workspace = desk.workspace("Wrong Person Co")
    link, photo = handoff_in_bot(desk, workspace)
    link_id = re.search(r"Link #(\d+)", plain_text(photo["caption"])).group(1)  # type: ignore[union-attr]
    wrong = open_link(desk, link)
    wrong.wait_guide("Connect DoubleTick to OpenAI")
    walk_and_paste(wrong, "hello")  # at the paste step (and a non-key paste): still bound
    wrong.wait_guide("doesn't look like an OpenAI secret key")
    agent_says(desk, f"/revoke_link {link_id}", "is revoked")
    told = plain_text(wrong.wait_guide("cancelled by your agent")["text"])
    assert "your invitation link" in told  # back to "ask your agent", no paste step
    key = DEMO_KEYS["service_account_valid"].key
    before = len(desk.stack.openai_requests_for(key))
    wrong.send(key)
    wrong.wait_guide("without checking it")
    assert len(desk.stack.openai_requests_for(key)) == before
    assert LINK.fullmatch(link).group(1) not in desk.stack.bot.log()  # type: ignore[union-attr]


def test_without_a_link_nobody_gets_a_key_verified(desk: Desk) -> None:
    key = DEMO_KEYS["service_account_valid"].key
    before = len(desk.stack.openai_requests_for(key))
    stranger = desk.stack.user()
    stranger.send("/start")
    stranger.wait_guide("Connect DoubleTick to OpenAI")
    pasted = walk_and_paste(stranger, key, expect="your invitation link")
    guide = plain_text(stranger.wait_guide("without checking it")["text"])
    assert "invited by their DoubleTick agent" in guide
    assert stranger.message(pasted["message_id"])["deleted"]
    stranger.wait_idle()
    assert len(desk.stack.openai_requests_for(key)) == before  # OpenAI never saw it

    workspace = desk.workspace("Late Invite Co")
    link, _ = handoff_in_bot(desk, workspace)
    stranger.send("/start " + LINK.fullmatch(link).group(1))  # type: ignore[union-attr]
    stranger.wait_guide("You can paste your key now")  # straight back to where they were
    stranger.send(key)
    stranger.wait_guide("You're done")


def test_agent_commands_are_refused_neutrally_to_everyone_else(desk: Desk) -> None:
    customer = desk.stack.user(username="curious")
    customer.send("/start")
    customer.wait_guide("Connect DoubleTick to OpenAI")
    for command in ("/handoff ws_demo", "/links", "/status ws_demo", "/revoke_link 1", "/add_agent 1", "/agents"):
        seen = customer.last_id()
        customer.send(command)
        assert customer.wait_text("don't know that command", after=seen)
    assert not any("t.me/" in t for t in texts(customer))
    assert "don't know that command" in agent_says(desk, "/add_agent 999", "don't know that command")
    menus_for = {_scope(c)[1] for c in customer.calls("setMyCommands") if _scope(c)[0] == "chat"}
    assert customer.user_id not in menus_for and AGENT in menus_for


def test_agents_see_their_commands_in_the_menu(desk: Desk) -> None:
    calls = desk.agent.calls("setMyCommands")
    scopes = [(_scope(c), {x["command"] for x in _commands(c)}) for c in calls]
    agent_menu = [names for scope, names in scopes if scope == ("chat", AGENT)]
    admin_menu = [names for scope, names in scopes if scope == ("chat", ADMIN)]
    everyone = [names for scope, names in scopes if scope == ("all_private_chats", None)]
    assert agent_menu and {"handoff", "links", "revoke_link", "status", "start"} <= agent_menu[-1]
    assert "add_agent" not in agent_menu[-1]
    assert admin_menu and {"add_agent", "remove_agent", "agents", "handoff"} <= admin_menu[-1]
    assert everyone and not everyone[-1] & {"handoff", "status", "add_agent"}


def test_an_admin_adds_and_removes_an_agent(desk: Desk) -> None:
    newcomer = ChatDriver(desk.stack.sandbox.telegram_url, 7777, first_name="Nia", username="nia_support")
    desk.stack.drivers.append(newcomer)
    newcomer.send("/start")
    newcomer.wait_guide("Connect DoubleTick to OpenAI")
    agent_says(desk, "/add_agent 7777", "don't know that command")  # agents are not admins
    seen = desk.admin.last_id()
    desk.admin.send("/add_agent 7777 night shift")
    desk.admin.wait_text("is now a support agent", after=seen)
    newcomer.send(f"/handoff {desk.workspace('Newcomer Co')}")
    newcomer.wait_for(lambda: any(m["photo"] for m in newcomer.bot_messages()), what="a link from the new agent")
    desk.admin.send("/agents")
    listing = desk.admin.wait_text("Support agents", after=seen)
    assert "7777" in listing and str(AGENT) in listing and "admin" in listing
    desk.admin.send("/remove_agent 7777")
    desk.admin.wait_text("no longer a support agent", after=seen)
    desk.admin.send(f"/remove_agent {AGENT}")
    desk.admin.wait_text("AGENT_USER_IDS", after=seen)  # configured agents are removed by configuration
    seen_newcomer = newcomer.last_id()
    newcomer.send("/links")
    newcomer.wait_text("don't know that command", after=seen_newcomer)
    assert any(c["method"] == "deleteMyCommands" and _scope(c) == ("chat", 7777) for c in newcomer.calls())


def test_status_shows_progress_but_never_the_key(desk: Desk) -> None:
    workspace = desk.workspace("Status Co")
    link, _ = handoff_in_bot(desk, f"{workspace} Dee")
    customer = open_link(desk, link, username="dee_status")
    customer.wait_guide("Connect DoubleTick to OpenAI")
    customer.press("start")
    customer.wait_guide("Open the API keys page")
    by_link = agent_says(desk, f"/status {link}", "Step:")
    assert "Open the API keys page" in by_link and "@dee_status" in by_link and "Last outcome: none" in by_link
    walk_and_paste(customer, DEMO_KEYS["invalid"].key, steps=PERSONAL[1:])
    customer.wait_guide("doesn't recognise this key")
    failed = desk.agent.wait_text("could not connect")
    assert "invalid" in failed and "@dee_status" in failed
    customer.press("Paste a key again")
    customer.wait_guide("Paste your key here")
    customer.send(VALID)
    customer.wait_guide("You're done")
    for query in (workspace, "@dee_status", link):
        shown = agent_says(desk, f"/status {query}", "Step:")
        assert "You're done" in shown and "…" + VALID[-4:] in shown and "fingerprint" in shown
        assert VALID[:-4] not in shown and DEMO_KEYS["invalid"].key[:-4] not in shown
    assert "connected with a project key" in agent_says(desk, f"/status {workspace}", "Workspace")
    assert "found nothing" in agent_says(desk, "/status @nobody_here", "nothing")


def _page(driver: ChatDriver, message_id: int, number: int) -> str:
    """The plain text of ``message_id`` once it shows page ``number``."""
    return str(driver.wait_for(lambda: (text := plain_text(driver.message(message_id)["text"] or ""))
                               and f"Page {number} of" in text and text, timeout=20, what=f"page {number}"))


def _ids(text: str) -> list[int]:
    return [int(n) for n in re.findall(r"^#(\d+) · ", text, re.MULTILINE)]


def test_links_come_in_pages_with_previous_and_next_and_a_former_agent_gets_nothing(desk: Desk) -> None:
    pager_id = 7979
    seen = desk.admin.last_id()
    desk.admin.send(f"/add_agent {pager_id} pages")
    desk.admin.wait_text("is now a support agent", after=seen)
    pager = ChatDriver(desk.stack.sandbox.telegram_url, pager_id, first_name="Pia", username="pia_pages")
    desk.stack.drivers.append(pager)
    workspace = desk.workspace("Paging Co")
    made = []
    for n in range(60):  # the longest name and label, in words (one long run of letters would look like a key)
        body = {"workspace_id": workspace, "workspace_name": ("Acme Retail Group " * 8)[:128],
                "label": (f"{n:02d} " + "follow up on the pilot " * 3)[:64], "agent_user_id": pager_id}
        created = api(desk, "POST", "/api/handoffs", json=body)
        assert created.status_code == 201, created.text
        made.append(created.json()["id"])

    mark = pager.last_id()
    pager.send("/links")
    pager.wait_text("Page 1 of", after=mark)
    message = next(m for m in pager.bot_messages_after(mark) if "Page 1 of" in plain_text(m["text"] or ""))
    first = plain_text(message["text"])
    total = int(re.search(r"Page 1 of (\d+)", first).group(1))  # type: ignore[union-attr]
    assert total >= 3 and "(60 links)" in first and pager.labels(message) == ["Next ▶️"]
    pages = [first]
    calls = pager.calls()[-1]["seq"]
    for number in range(2, total + 1):  # Next to the end ...
        pager.press("Next", message["message_id"])
        pages.append(_page(pager, message["message_id"], number))
    assert pager.labels(pager.message(message["message_id"])) == ["◀️ Previous"]
    for number in range(total - 1, 0, -1):  # ... and back: the same pages again
        pager.press("Previous", message["message_id"])
        assert _page(pager, message["message_id"], number) == pages[number - 1]
    ids = [n for text in pages for n in _ids(text)]
    assert sorted(ids) == sorted(made) and len(ids) == len(set(ids)) == 60  # each link exactly once
    assert all(len(text.encode("utf-16-le")) // 2 <= 4096 for text in pages)
    done = [c for c in pager.calls(since=calls) if c["ok"] and c["chat_id"] in (pager_id, None)]
    answers = [c for c in done if c["method"] == "answerCallbackQuery"]
    edits = [c for c in done if c["method"] == "editMessageText"]
    assert len(answers) == len(edits) == 2 * (total - 1)
    assert all(answer["seq"] < edit["seq"] for answer, edit in zip(answers, edits, strict=True))  # answer first

    mark = pager.last_id()
    pager.send("/links 3")  # a page by number
    assert _ids(pager.wait_text("Page 3 of", after=mark)) == _ids(pages[2])

    for link_id in _ids(pages[0]):  # the list shrinks: an old Next shows what page 2 holds now
        agent_mark = pager.last_id()
        pager.send(f"/revoke_link {link_id}")
        pager.wait_text("is revoked", after=agent_mark)
    pager.press("Next", message["message_id"])
    now = _page(pager, message["message_id"], 2)
    assert f"of {total - 1}" in now and _ids(now) == _ids(pages[2])

    seen = desk.admin.last_id()
    desk.admin.send(f"/remove_agent {pager_id}")
    desk.admin.wait_text("no longer a support agent", after=seen)
    before = pager.message(message["message_id"])
    pressed = pager.press("Next", message["message_id"])
    pager.wait_for(lambda: any(c["params"].get("callback_query_id") == pressed["callback_query_id"] and c["ok"]
                               for c in pager.calls("answerCallbackQuery")), what="the press to be answered")
    pager.wait_idle()
    assert pager.message(message["message_id"]) == before  # not an agent any more: nothing changes


def test_a_link_to_a_connected_workspace_says_so_and_offers_replace(desk: Desk) -> None:
    workspace = desk.workspace("Connected Co")
    first = open_link(desk, handoff_in_bot(desk, workspace)[0])
    first.wait_guide("Connect DoubleTick to OpenAI")
    walk_and_paste(first)
    first.wait_guide("You're done")
    colleague = open_link(desk, handoff_in_bot(desk, workspace)[0])
    told = plain_text(colleague.wait_guide("already connected")["text"])
    assert "/replace" in told and "…" + VALID[-4:] in told
    colleague.send("/replace")
    colleague.wait_guide("Paste your key here")


def test_unauthorised_api_calls_are_refused(desk: Desk) -> None:
    body = {"workspace_id": "ws_demo"}
    for token in (None, "wrong-token-wrong-token", API_TOKEN[:-1], API_TOKEN + "x"):
        for method, path, kwargs in (("POST", "/api/handoffs", {"json": body}), ("GET", "/api/handoffs/1", {})):
            response = api(desk, method, path, token=token, **kwargs)
            assert response.status_code == 401, (token, method)
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert "t.me" not in response.text
    basic = httpx.post(desk.api_url + "/api/handoffs", json=body, timeout=10,
                       headers={"Authorization": "Basic " + base64.b64encode(b"x:" + API_TOKEN.encode()).decode()})
    assert basic.status_code == 401
    assert api(desk, "POST", "/api/handoffs", content=b"not json").status_code == 400
    for bad, reason in (({"workspace_id": "has space"}, "bad_workspace"), ({}, "bad_workspace"),
                        ({"workspace_id": "ws_x", "agent_user_id": 5}, "unknown_agent"),
                        ({"workspace_id": "ws_x", "expires_in": "99d"}, "bad_expiry"),
                        ({"workspace_id": "ws_x", "token": "mine"}, "unknown_fields")):
        response = api(desk, "POST", "/api/handoffs", json=bad)
        assert (response.status_code, response.json()["error"]) == (422, reason)
    assert api(desk, "GET", "/api/handoffs/999999").status_code == 404


def test_without_a_configured_token_the_api_is_disabled() -> None:
    from starlette.testclient import TestClient

    with TestClient(create_handoff_app(database_url="sqlite+aiosqlite:///:memory:", token=None,
                                       bot_username=BOT)) as client:
        response = client.post("/api/handoffs", json={"workspace_id": "ws_demo"},
                               headers={"Authorization": "Bearer anything-at-all"})
    assert response.status_code == 503 and response.json()["error"] == "disabled"


# -- stuck customers: a bot of its own with a short threshold --------------------------------------------

def test_a_stuck_customer_is_reported_once_per_step(tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = tmp_path_factory.mktemp("stuck")
    stack = Stack.start(folder, new_database_url("sqlite", folder), demo_open_workspaces=False,
                        agent_user_ids=str(AGENT),
                        stuck_after_minutes="0.01", stuck_check_interval_s="0.1")  # 0.6 s
    try:
        agent = ChatDriver(stack.sandbox.telegram_url, AGENT)
        stack.drivers.append(agent)
        agent.send("/handoff ws_demo Stu")
        photo = agent.wait_for(lambda: next((m for m in agent.bot_messages() if m["photo"]), None), what="link")
        customer = stack.user(username="stu")
        customer.send("/start " + LINK.search(plain_text(photo["caption"])).group(1))  # type: ignore[union-attr]
        customer.wait_guide("Connect DoubleTick to OpenAI")
        first = agent.wait_text("has been at step")
        assert "“Connect DoubleTick to OpenAI”" in first and "@stu" in first and "Stu" in first
        time.sleep(1.0)  # ten more passes of the watch: still one message for this step
        assert sum("has been at step" in t for t in texts(agent)) == 1
        customer.press("start")
        customer.wait_guide("Open the API keys page")
        assert "“Open the API keys page”" in agent.wait_text("Open the API keys page", timeout=15)
        assert sum("has been at step" in t for t in texts(agent)) == 2
    finally:
        stack.close()


def _scope(call: dict[str, Any]) -> tuple[str, int | None]:
    scope = call["params"].get("scope") or {"type": "default"}
    if isinstance(scope, str):
        scope = json.loads(scope)
    return scope["type"], scope.get("chat_id")


def _commands(call: dict[str, Any]) -> list[dict[str, str]]:
    commands = call["params"]["commands"]
    return json.loads(commands) if isinstance(commands, str) else list(commands)
