"""Telegram faults at the key steps of the guide and the key pipeline: nothing committed is ever lost.

For every Bot API method the bot calls on these paths (sendMessage, editMessageText, deleteMessage,
answerCallbackQuery), a 429 short enough to wait out, a 429 longer than the bot waits inside a handler,
a 5xx and a timeout (request delivered, answer lost), injected while a guide button is pressed and
while the key is pasted. Afterwards: the key is verified and connected exactly once, the key message is
gone from the chat, every button press was answered, and the chat shows the step the database holds.
Issue 9 scenarios 1-3 and 6 are their own tests below.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator

import pytest

from bot.standins.demo_keys import DEMO_KEYS
from flows.steps import Step
from tests.bot.faulty import FAULTS, Fault, FaultyBot, User, run, running

pytestmark = pytest.mark.e2e

METHODS = ("sendMessage", "editMessageText", "deleteMessage", "answerCallbackQuery")


@pytest.fixture(scope="module")
def bot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultyBot]:
    with running(tmp_path_factory.mktemp("faults")) as harness:
        yield harness



async def _paste_and_check(bot: FaultyBot, user: User, key: str | None = None) -> int:
    key = key or user.new_valid_key()
    posts_before = len(user.connect_posts())
    key_message = await user.send(key)
    assert await user.step() == Step.CONNECTED, await user.step()
    assert len(user.connect_posts()) == posts_before + 1, "connected exactly once"
    assert user.message(key_message)["deleted"], "the key message is gone from the chat"
    shown, why = await user.shown_step_matches_db()
    assert shown, why
    assert not user.unanswered_queries()
    return key_message


@pytest.mark.parametrize("kind", list(FAULTS))
@pytest.mark.parametrize("method", METHODS)
def test_a_fault_while_pasting_never_costs_the_key(bot: FaultyBot, method: str, kind: str) -> None:
    async def scenario() -> None:
        user = bot.user()
        await user.reach_paste_step()
        bot.arm(Fault(method, 1, kind), Fault(method, 2, kind) if kind == "429_long" else Fault(method, 99, kind))
        await _paste_and_check(bot, user)
        bot.arm()

    run(bot, scenario())


@pytest.mark.parametrize("kind", list(FAULTS))
@pytest.mark.parametrize("method", METHODS)
def test_a_fault_on_a_guide_button_shows_the_saved_step(bot: FaultyBot, method: str, kind: str) -> None:
    async def scenario() -> None:
        user = bot.user()
        await user.send("/start")
        await user.press("start")
        bot.arm(Fault(method, 1, kind))
        await user.press("Next")  # open_keys_page -> create_new_key
        assert await user.step() == Step.CREATE_NEW_KEY
        shown, why = await user.shown_step_matches_db()
        assert shown, why
        assert not user.unanswered_queries(), "every press is answered"
        bot.arm()
        for label in ("Next", "Personal", "Next", "Default", "All", "I copied it"):
            await user.press(label)
        await user.send(user.workspace)
        await _paste_and_check(bot, user)

    run(bot, scenario())


def test_issue_repro_one_502_on_the_edit_after_verification(bot: FaultyBot) -> None:
    """Issue 9 scenario 1: at paste_key with a workspace, one 502 on editMessageText, paste the demo key."""

    async def scenario() -> None:
        user = bot.user()
        await user.reach_paste_step()
        bot.arm(Fault("editMessageText", 1, "502"))
        await _paste_and_check(bot, user, DEMO_KEYS["valid"].key)
        assert bot.armed.fired, "the 502 was really injected"

    run(bot, scenario())


def test_three_long_429s_on_a_button_edit_still_answer_and_show_the_db_step(bot: FaultyBot) -> None:
    """Issue 9 scenario 2: the query is answered before the edit; the chat ends on the DB's step."""

    async def scenario() -> None:
        user = bot.user()
        await user.send("/start")
        bot.arm(*(Fault("editMessageText", n, "429_long") for n in (1, 2, 3)))
        await user.press("start")
        assert await user.step() == Step.OPEN_KEYS_PAGE
        assert not user.unanswered_queries()
        shown, why = await user.shown_step_matches_db()
        assert shown, why
        answers = [c for c in bot.sandbox.telegram.calls(method="answerCallbackQuery") if c["ok"]]
        edits = [c for c in bot.sandbox.telegram.calls(method="editMessageText")]
        assert answers and edits and answers[-1]["seq"] < edits[-3]["seq"], "answered before the edits"

    run(bot, scenario())


def test_a_flood_wait_in_one_chat_does_not_stall_another(bot: FaultyBot) -> None:
    """Issue 9 scenario 2, second half: another user's /help is not held by someone else's 429."""

    async def scenario() -> None:
        flooded, other = bot.user(), bot.user()
        await flooded.send("/start")
        await other.send("/start")
        limiter = bot.app.application.bot.rate_limiter
        assert limiter is not None
        bot.arm(Fault("editMessageText", 1, "429_short"))
        flooded.press_later("start")
        press = asyncio.ensure_future(bot.pump())
        for _ in range(200):  # until the 429 came back and the flooded chat waits out its retry_after
            if limiter.paused_for(flooded.user_id) > 0:  # type: ignore[attr-defined]
                break
            await asyncio.sleep(0.01)
        assert limiter.paused_for(flooded.user_id) > 0  # type: ignore[attr-defined]
        assert limiter.paused_for(other.user_id) == 0  # type: ignore[attr-defined]
        started = time.monotonic()
        await bot.app.runtime.messenger.send_html(other.user_id, "help for the other user")
        assert time.monotonic() - started < 0.5
        await press

    run(bot, scenario())


def test_three_429s_on_deleting_the_key_are_waited_out_in_full(bot: FaultyBot) -> None:
    """Issue 9 scenario 3: 429 x3 on deleteMessage; the key is deleted, verified and connected."""

    async def scenario() -> None:
        user = bot.user()
        await user.reach_paste_step()
        bot.arm(*(Fault("deleteMessage", n, "429_short") for n in (1, 2, 3)))
        key_message = await _paste_and_check(bot, user)
        deletes = [c for c in bot.sandbox.telegram.calls(method="deleteMessage")
                   if c["params"].get("message_id") == key_message and c["chat_id"] == user.user_id]
        assert [c["ok"] for c in deletes] == [False, False, False, True]
        gaps = [later["received_monotonic"] - earlier["finished_monotonic"]
                for earlier, later in itertools.pairwise(deletes)]
        assert all(gap >= 0.9 for gap in gaps), gaps  # retry_after (1 s) honoured in full each time

    run(bot, scenario())


def _keyboards(user: User) -> list[int]:
    return [m["message_id"] for m in user.messages()
            if m["from_bot"] and not m["deleted"] and (m["reply_markup"] or {}).get("inline_keyboard")]


def test_a_flood_wait_on_removing_the_old_guide_is_waited_out_in_the_background(bot: FaultyBot) -> None:
    """/help sends the guide afresh; the old one's deletion meets a 429 and is retried after it, so
    the chat never keeps two keyboards (seen under load in the three-replica test)."""

    async def scenario() -> None:
        user = bot.user()
        await user.send("/start")
        await user.press("start")
        old_guide = (await user.row()).guide_message_id
        bot.arm(Fault("deleteMessage", 1, "429_long"))
        await user.send("/help")
        await bot.app.runtime.messenger.settle(10)  # type: ignore[attr-defined]
        assert user.message(old_guide)["deleted"]
        assert _keyboards(user) == [(await user.row()).guide_message_id]
        deletes = [c for c in bot.sandbox.telegram.calls(method="deleteMessage")
                   if c["params"].get("message_id") == old_guide and c["chat_id"] == user.user_id]
        assert [c["ok"] for c in deletes] == [False, True]
        assert deletes[1]["received_monotonic"] - deletes[0]["finished_monotonic"] >= 1.9  # retry_after 2 s

    run(bot, scenario())


def test_an_old_guide_telegram_will_not_delete_loses_its_buttons(bot: FaultyBot) -> None:
    """Telegram deletes only messages younger than 48 hours: an older guide stays, without buttons."""

    async def scenario() -> None:
        user = bot.user()
        await user.send("/start")
        old_guide = (await user.row()).guide_message_id
        bot.sandbox.telegram.fail_next("deleteMessage", 400, "Bad Request: message can't be deleted")
        await user.send("/help")
        await bot.app.runtime.messenger.settle(10)  # type: ignore[attr-defined]
        assert not user.message(old_guide)["deleted"]
        assert not (user.message(old_guide)["reply_markup"] or {}).get("inline_keyboard")
        assert _keyboards(user) == [(await user.row()).guide_message_id]

    run(bot, scenario())
