"""Property: under any schedule of Telegram faults, no key is lost, left visible or connected twice.

Hypothesis draws up to four faults (429 short or long, 5xx, timeout) on any of the Bot API methods the
bot calls, counted from the user's /start, so they land anywhere in the guide walk or the key pipeline.
Whatever the schedule, once the bot settles: the key is verified and connected exactly once with its
message gone, or (only if Telegram kept refusing the deletion past the deadline) honestly reported as
not deleted and not used; every button press was answered; the chat shows the database's step; and
nothing was logged as an error.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flows.steps import Step
from tests.bot.faulty import FAULTS, Fault, FaultyBot, running

pytestmark = pytest.mark.e2e

METHODS = ("sendMessage", "editMessageText", "deleteMessage", "answerCallbackQuery")
schedules = st.lists(st.builds(Fault, st.sampled_from(METHODS), st.integers(1, 6), st.sampled_from(list(FAULTS))),
                     max_size=4, unique_by=lambda f: (f.method, f.nth))


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(f"{record.name}: {record.getMessage()}")


@pytest.fixture(scope="module")
def bot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultyBot]:
    with running(tmp_path_factory.mktemp("property")) as harness:
        yield harness


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(schedule=schedules)
def test_no_fault_schedule_loses_exposes_or_doubles_a_key(bot: FaultyBot, schedule: list[Fault]) -> None:
    errors = _Errors()
    watched = [logging.getLogger(name) for name in ("bot", "telegram", "storage")]
    for logger in watched:
        logger.addHandler(errors)

    async def scenario() -> None:
        user = bot.user()
        bot.arm(*schedule)
        await user.reach_paste_step()
        posts = len(user.connect_posts())
        key_message = await user.send(user.new_valid_key())
        bot.arm()
        step = await user.step()
        row = await user.row()
        if step == Step.CONNECTED:
            assert len(user.connect_posts()) == posts + 1, "connected exactly once"
            assert user.message(key_message)["deleted"], "the key is gone from the chat"
        else:
            assert step == Step.KEY_PROBLEM and row.last_outcome == "deletion_failed", (step, row.last_outcome)
            assert len(user.connect_posts()) == posts, "a key that may still be visible is never used"
        shown, why = await user.shown_step_matches_db()
        assert shown, why
        assert not user.unanswered_queries(), "every button press was answered"

    try:
        bot.loop.run_until_complete(scenario())  # type: ignore[attr-defined]
    finally:
        for logger in watched:
            logger.removeHandler(errors)
    assert not errors.records, errors.records
