"""``WEBHOOK_ANSWER=after_guard`` end to end: Telegram hears 200 once a pasted key is deleted.

The update then waits in the bot's own queue and is handled like a polled one; a full queue is answered
503 after the guard, so the key is gone at once and Telegram keeps the update for later. The real
``run --webhook`` process, the Telegram stand-in delivering as Telegram does (at most max_connections,
redelivery on non-2xx).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bot.standins.demo_keys import DEMO_KEYS
from tests.e2e.test_webhook_e2e import BOT_ID, WebhookStack, walk_to_connected

pytestmark = pytest.mark.e2e


@pytest.fixture
def after_guard(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[WebhookStack]:
    queue_max = getattr(request, "param", 2000)
    created = WebhookStack(tmp_path_factory.mktemp("after-guard"), webhook_answer="after_guard",
                           webhook_queue_max=queue_max)
    try:
        created.start_bot()
        yield created
    finally:
        created.close()


def test_a_walk_to_connected_with_the_answer_after_the_guard(after_guard: WebhookStack) -> None:
    user = walk_to_connected(after_guard, "ws_guard")
    assert after_guard.rows("SELECT step FROM conversation WHERE chat_id = ?", user.chat_id) == [("connected",)]


@pytest.mark.parametrize("after_guard", [0], indirect=True)
def test_a_full_queue_deletes_the_key_then_answers_503(after_guard: WebhookStack) -> None:
    stack = after_guard
    user = stack.user()
    pasted = user.send(DEMO_KEYS["valid"].key)  # the guard deletes a key at any step
    user.wait_for(lambda: user.message(pasted["message_id"])["deleted"] or None, 10, "the key to be deleted")

    def redelivered() -> bool | None:
        updates = [u for u in stack.sandbox.telegram.updates(bot_id=BOT_ID) if u["chat_id"] == user.chat_id]
        return (bool(updates) and all(not u["confirmed"] and u["attempts"] >= 2 for u in updates)) or None

    user.wait_for(redelivered, 20, "Telegram to deliver the update again")
    assert not [m for m in user.messages() if m.get("from_bot")], "nothing was processed"


def test_the_processor_counts_what_waits_for_a_slot() -> None:
    """WEBHOOK_QUEUE_MAX counts updates PTB already took from the queue: they wait in the processor."""
    import asyncio

    from bot.telegram.secret_guard import GuardedUpdateProcessor

    async def scenario() -> list[int]:
        processor = GuardedUpdateProcessor(1)
        release = asyncio.Event()
        seen: list[int] = []
        tasks = [asyncio.create_task(processor.do_process_update(object(), release.wait())) for _ in range(3)]
        await asyncio.sleep(0.01)
        seen.append(processor.in_flight)  # one in its slot, two waiting for it
        release.set()
        await asyncio.gather(*tasks)
        seen.append(processor.in_flight)
        return seen

    assert asyncio.run(scenario()) == [3, 0]
