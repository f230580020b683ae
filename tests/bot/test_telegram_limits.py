"""Telegram's limits and refusals: every text fits, button URLs are checked at start, impossible is said.

Issue 9 scenarios 4-6: a DoubleTick message of ~3,800 characters, /links with 47 open links (in pages), /status
with the longest allowed label, name and id; SUPPORT_URL that Telegram would refuse on a button;
ChatMigrated and Forbidden; and the deletion of a pasted key that takes long or is impossible.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from telegram.error import BadRequest, ChatMigrated, Forbidden, RetryAfter

from bot.core.chat_text import CAPTION_LIMIT, TEXT_LIMIT, telegram_length
from bot.core.ports import DeleteOutcome
from bot.telegram.application import check_button_urls
from bot.telegram.fit import fit_html, fit_request
from bot.telegram.messenger import classify_delete_error
from bot.telegram.ratelimit import ChatRateLimiter
from flows.capabilities import CAPABILITIES
from flows.content import load_content
from flows.problems import PROBLEMS
from flows.state import Conversation
from flows.steps import Step
from flows.urls import button_url_problem
from flows.view import ViewSettings, render_step
from tests.bot.faulty import Fault, FaultyBot, run, running
from tests.bot.support import sandbox_settings

ADMIN = 6_100_001


# -- one helper owns the limits ------------------------------------------------------------------------
def test_a_long_list_is_cut_at_whole_lines_with_a_count() -> None:
    lines = ["<b>Open links</b>"] + [f"#{n} <b>ws_{'x' * 40}</b> · <i>{'label ' * 12}</i>" for n in range(47)]
    text, mode = fit_html("\n".join(lines))
    assert mode == "HTML"
    assert telegram_length(text, "HTML") <= TEXT_LIMIT
    assert "more not shown" in text and text.startswith("<b>Open links</b>")
    assert text.count("<b>") == text.count("</b>") and text.count("<i>") == text.count("</i>")


def test_one_giant_line_becomes_plain_text_cut_to_the_limit() -> None:
    text, mode = fit_html("<b>" + "&amp;😀" * 3000 + "</b>")
    assert mode is None
    assert telegram_length(text, None) <= TEXT_LIMIT  # UTF-16: each emoji counts twice


def test_fit_request_fits_texts_and_captions_and_leaves_short_ones_alone() -> None:
    data: dict[str, Any] = {"chat_id": 1, "text": "x" * 5000}
    fit_request("sendMessage", data)
    assert telegram_length(data["text"], None) <= TEXT_LIMIT
    caption: dict[str, Any] = {"chat_id": 1, "caption": "<i>" + "y" * 2000 + "</i>", "parse_mode": "HTML"}
    fit_request("sendPhoto", caption)
    assert telegram_length(caption["caption"], caption.get("parse_mode")) <= CAPTION_LIMIT
    short = {"chat_id": 1, "text": "<b>hi</b>", "parse_mode": "HTML"}
    fit_request("sendMessage", short)
    assert short == {"chat_id": 1, "text": "<b>hi</b>", "parse_mode": "HTML"}


@pytest.mark.parametrize("problem", sorted(PROBLEMS))
def test_every_problem_fits_with_a_3800_character_message_from_doubletick(problem: str) -> None:
    conv = Conversation(step=Step.KEY_PROBLEM, problem=problem, problem_detail="<&>" + "v" * 3800,
                        workspace_id="ws_" + "a" * 60, workspace_name="N" * 128, key_last_four="abcd",
                        help_shown=True)
    settings = ViewSettings(operator="O" * 200, capabilities=tuple(CAPABILITIES), hold_minutes=15, retention_days=90,
                            support_url="https://example.com/" + "p" * 200, support_contact="S" * 200)
    view = render_step(conv, load_content("en"), settings, "stale_button")
    assert telegram_length(view.text, "HTML") <= TEXT_LIMIT
    assert "v" * 300 not in view.text  # DoubleTick's words are cut to a safe length, not quoted in full


# -- URLs that become buttons ----------------------------------------------------------------------------
@pytest.mark.parametrize("url", ["mailto:help@example.com", "https://localhost", "web.doubletick.io",
                                 "ftp://example.com", "https://exa mple.com", "javascript:alert(1)"])
def test_a_support_url_telegram_would_refuse_stops_the_start_with_one_line(url: str, tmp_path: Path) -> None:
    assert button_url_problem(url) is not None
    with pytest.raises(ValidationError) as caught:
        sandbox_settings("http://127.0.0.1:9", tmp_path, support_url=url)
    message = caught.value.errors(include_input=False)[0]["msg"]
    assert "\n" not in message and "Telegram button" in message


@pytest.mark.parametrize("url", ["https://web.doubletick.io", "http://example.com/x?y=1", "tg://resolve?domain=x"])
def test_good_button_urls_pass(url: str, tmp_path: Path) -> None:
    assert button_url_problem(url) is None
    check_button_urls(sandbox_settings("http://127.0.0.1:9", tmp_path, support_url=url))


# -- ChatMigrated, Forbidden, impossible deletions ------------------------------------------------------
async def test_a_send_follows_a_migrated_group_once_and_an_edit_does_not() -> None:
    limiter = ChatRateLimiter(1000)
    seen: list[int] = []

    async def migrated_callback(endpoint: str, data: dict[str, Any]) -> bool:
        seen.append(data["chat_id"])
        if data["chat_id"] == -100:
            raise ChatMigrated(-1001234)
        return True

    data: dict[str, Any] = {"chat_id": -100, "text": "hi"}
    assert await limiter.process_request(migrated_callback, ("sendMessage", data), {}, "sendMessage", data, None)
    assert seen == [-100, -1001234]
    edit: dict[str, Any] = {"chat_id": -100, "message_id": 5, "text": "hi"}
    with pytest.raises(ChatMigrated):
        await limiter.process_request(migrated_callback, ("editMessageText", edit), {}, "editMessageText", edit, None)
    assert seen == [-100, -1001234, -100]


async def test_a_long_flood_wait_is_handed_back_not_waited_in_a_handler() -> None:
    limiter = ChatRateLimiter(1000, max_wait_s=0.5)
    calls = 0

    async def flooded(endpoint: str, data: dict[str, Any]) -> bool:
        nonlocal calls
        calls += 1
        raise RetryAfter(30)

    data: dict[str, Any] = {"chat_id": 42, "text": "hi"}
    with pytest.raises(RetryAfter):
        await limiter.process_request(flooded, ("sendMessage", data), {}, "sendMessage", data, None)
    assert calls == 1 and limiter.paused_for(42) > 29 and limiter.paused_for(43) == 0
    with pytest.raises(RetryAfter):  # still paused: not even tried
        await limiter.process_request(flooded, ("sendMessage", data), {}, "sendMessage", data, None)
    assert calls == 1


@pytest.mark.parametrize(("error", "chat_id", "outcome"), [
    (BadRequest("Message to delete not found"), 5, DeleteOutcome.DELETED),
    (BadRequest("Message can't be deleted for everyone"), 5, DeleteOutcome.TOO_OLD),
    (BadRequest("Message can't be deleted"), -5, DeleteOutcome.NO_RIGHTS),
    (BadRequest("Not enough rights to delete a message"), -5, DeleteOutcome.NO_RIGHTS),
    (Forbidden("Forbidden: bot was kicked from the group chat"), -5, DeleteOutcome.NO_RIGHTS),
    (ChatMigrated(-1005), -5, DeleteOutcome.NO_RIGHTS),
    (RetryAfter(3), 5, None),
    (BadRequest("Message identifier is not specified"), 5, DeleteOutcome.FAILED),
])
def test_what_a_delete_error_means(error: Any, chat_id: int, outcome: DeleteOutcome | None) -> None:
    assert classify_delete_error(error, chat_id) == outcome


# -- through the real bot -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultyBot]:
    with running(tmp_path_factory.mktemp("limits"), admin_user_ids=str(ADMIN)) as harness:
        yield harness



def test_links_with_47_open_links_and_status_with_the_longest_values_are_shown(bot: FaultyBot) -> None:
    async def scenario() -> None:
        handoffs = bot.app.support.desk.handoffs  # type: ignore[union-attr]
        workspace = "ws_" + ("acme.retail-" * 6)[:61]  # the longest id (64); one long run would look like a key
        made = []
        for n in range(47):
            # the longest name (128) and label (64), in words: one long run of letters would look like a key
            link = await handoffs.create(workspace, via="api", workspace_name=("Acme Retail Group " * 8)[:128],
                                         label=(f"{n:02d} " + "follow up on the pilot " * 3)[:64],
                                         created_by=ADMIN)
            made.append(link.id)
        bot.sandbox.telegram.send(ADMIN, "/links")
        await bot.pump()
        message = [m for m in bot.sandbox.telegram.messages(ADMIN) if m["from_bot"]][-1]
        seen: list[int] = []
        pages = 0
        while pages < 10:  # paged, not trimmed: Next until there is no Next
            pages += 1
            text = str(message["text"])
            assert "more not shown" not in text and len(text.encode("utf-16-le")) // 2 <= 4096
            seen += [int(n) for n in re.findall(r"^#(\d+) ", text, re.MULTILINE)]
            following = [b for row in (message.get("reply_markup") or {}).get("inline_keyboard", []) for b in row
                         if b["text"].startswith("Next")]
            if not following:
                break
            bot.sandbox.telegram.press(ADMIN, message["message_id"], following[0]["callback_data"])
            await bot.pump()
            message = next(m for m in bot.sandbox.telegram.messages(ADMIN) if m["message_id"] == message["message_id"])
        assert sorted(n for n in seen if n in made) == sorted(made) and len(seen) == len(set(seen))
        assert pages >= 2 and f"Page {pages} of {pages}" in str(message["text"])
        bot.sandbox.telegram.send(ADMIN, f"/status {workspace}")
        await bot.pump()
        status = [c for c in bot.sandbox.telegram.calls(method="sendMessage") if c["chat_id"] == ADMIN][-1]
        assert status["ok"], status["description"]

    run(bot, scenario())


def test_status_of_a_busy_workspace_with_the_longest_id_pages_through_all_its_customers(bot: FaultyBot) -> None:
    async def scenario() -> None:
        workspace = "ws_" + ("busy.retail-" * 6)[:61]  # 64: too long for a button, so it carries start + hash
        conversations = bot.app.runtime.conversations
        handoffs = bot.app.support.desk.handoffs  # type: ignore[union-attr]
        for n in range(10):  # the ten a workspace lookup reads, each bound by a link with the longest values
            chat = 8_800_000 + n
            await conversations.create(chat_id=chat, user_id=chat, step="paste_key",
                                       username=f"c{n:02d}_" + "customer" * 3 + "x" * 4, workspace_id=workspace)
            link = await handoffs.create(workspace, via="api", workspace_name=("Busy Retail Group " * 8)[:128],
                                         label=(f"{n:02d} " + "follow up on the pilot " * 3)[:64], created_by=ADMIN)
            assert await handoffs.links.claim(link.id, user_id=chat, chat_id=chat)
        bot.sandbox.telegram.send(ADMIN, f"/status {workspace}")
        await bot.pump()
        message = [m for m in bot.sandbox.telegram.messages(ADMIN) if m["from_bot"]][-1]
        texts = [str(message["text"])]
        buttons = [b for row in (message.get("reply_markup") or {}).get("inline_keyboard", []) for b in row]
        assert "Page 1 of 2" in texts[0] and [b["text"] for b in buttons] == ["Next ▶️"]
        assert len(buttons[0]["callback_data"].encode()) <= 64 and workspace not in buttons[0]["callback_data"]
        bot.sandbox.telegram.press(ADMIN, message["message_id"], buttons[0]["callback_data"])
        await bot.pump()
        texts.append(str(next(m for m in bot.sandbox.telegram.messages(ADMIN)
                              if m["message_id"] == message["message_id"])["text"]))
        assert "Page 2 of 2" in texts[1]
        for text in texts:
            assert workspace in text and len(text.encode("utf-16-le")) // 2 <= 4096  # the workspace on each page
        names = [n for text in texts for n in re.findall(r"@(c\d\d_\w+)", text)]
        assert sorted(set(names)) == sorted(names) and len(names) == 10

    run(bot, scenario())


def test_a_slow_deletion_says_deleting_then_cleans_up(bot: FaultyBot) -> None:
    async def scenario() -> None:
        user = bot.user()
        await user.reach_paste_step()
        bot.arm(Fault("deleteMessage", 1, "429_long"), Fault("deleteMessage", 2, "429_long"))
        key = user.new_valid_key()
        key_message = await user.send(key)
        await asyncio.sleep(0.2)
        await bot.pump()
        assert user.message(key_message)["deleted"]
        assert await user.step() == Step.CONNECTED
        notes = [m for m in user.messages() if m["from_bot"] and "Deleting your message" in (m["text"] or "")]
        assert notes and all(m["deleted"] for m in notes), "said 'deleting…' and took it back"

    run(bot, scenario())


def test_a_quick_deletion_says_nothing_extra(bot: FaultyBot) -> None:
    async def scenario() -> None:
        user = bot.user()
        await user.reach_paste_step()
        key_message = await user.send(user.new_valid_key())
        assert user.message(key_message)["deleted"]
        assert not [m for m in user.messages() if "Deleting your message" in (m["text"] or "")]

    run(bot, scenario())


def test_an_impossible_deletion_is_reported_at_once_and_the_key_is_not_used(bot: FaultyBot) -> None:
    async def scenario() -> None:
        user = bot.user()
        await user.reach_paste_step()
        posts = len(user.connect_posts())
        sent = bot.sandbox.telegram.send(user.user_id, user.new_valid_key())
        bot.sandbox.telegram.age_message(user.user_id, sent["message_id"], 49 * 3600)
        await bot.pump()
        assert await user.step() == Step.KEY_PROBLEM
        row = await user.row()
        assert row.last_outcome == "deletion_failed"
        assert len(user.connect_posts()) == posts
        deletes = [c for c in bot.sandbox.telegram.calls(method="deleteMessage")
                   if c["params"].get("message_id") == sent["message_id"] and c["chat_id"] == user.user_id]
        assert len(deletes) == 1, "Telegram said impossible: no useless retries"
        shown, why = await user.shown_step_matches_db()
        assert shown, why

    run(bot, scenario())


def test_a_user_who_blocks_the_bot_mid_paste_costs_no_error(bot: FaultyBot, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        user = bot.user()
        await user.reach_paste_step()
        bot.sandbox.telegram.send(user.user_id, user.new_valid_key())
        bot.sandbox.telegram.block(user.user_id)
        with caplog.at_level(logging.INFO):
            await bot.pump()
        assert await user.step() in (Step.CONNECTED, Step.KEY_PROBLEM)
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text[-2000:]

    run(bot, scenario())
