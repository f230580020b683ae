"""Telegram slow to delete a pasted key (429s past TELEGRAM_DELETE_DEADLINE_S): the key waits unused, the
user hears "still deleting", never "exposed", unless Telegram finally says the message can't be deleted."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from flows.steps import Step
from tests.bot.faulty import Fault, FaultyBot, run, running

SLOW = "Still deleting your message"
EXPOSED = "couldn't delete"


@pytest.fixture(scope="module")
def bot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultyBot]:
    # 429 "retry after 2" twice: the second one would end past the 2 s deadline, so the key waits.
    with running(tmp_path_factory.mktemp("still-deleting"), telegram_delete_deadline_s=2,
                 telegram_delete_background_s=30) as harness:
        yield harness


def _texts(user: object) -> list[str]:
    return [m["text"] or "" for m in user.messages() if m["from_bot"]]  # type: ignore[attr-defined]


def test_a_slow_deletion_waits_then_the_key_is_verified_and_connected(bot: FaultyBot) -> None:
    async def scenario() -> None:
        user = bot.user()
        await user.reach_paste_step()
        posts = len(user.connect_posts())
        bot.arm(Fault("deleteMessage", 1, "429_long"), Fault("deleteMessage", 2, "429_long"))
        key_message = await user.send(user.new_valid_key())
        await bot.pump()
        assert user.message(key_message)["deleted"]
        assert await user.step() == Step.CONNECTED
        assert len(user.connect_posts()) == posts + 1
        texts = _texts(user)
        assert any(SLOW in t for t in texts), "the user was told Telegram is slow to delete"
        assert not any(EXPOSED in t for t in texts), "never called exposed"
        row = await user.row()
        assert row.last_outcome != "deletion_failed"

    run(bot, scenario())


def test_a_deletion_telegram_finally_refuses_is_reported_exposed(bot: FaultyBot) -> None:
    async def scenario() -> None:
        user = bot.user()
        await user.reach_paste_step()
        posts = len(user.connect_posts())
        bot.arm(Fault("deleteMessage", 1, "429_long"), Fault("deleteMessage", 2, "429_long"))
        sent = bot.sandbox.telegram.send(user.user_id, user.new_valid_key())
        # older than 48 hours by the background retry: Telegram answers "message can't be deleted"
        bot.sandbox.telegram.age_message(user.user_id, sent["message_id"], 49 * 3600)
        await bot.pump()
        assert await user.step() == Step.KEY_PROBLEM
        row = await user.row()
        assert row.last_outcome == "deletion_failed"
        assert len(user.connect_posts()) == posts, "the key was never used"
        texts = _texts(user)
        assert any(SLOW in t for t in texts) and any(EXPOSED in t for t in texts)
        shown, why = await user.shown_step_matches_db()
        assert shown, why

    run(bot, scenario())
