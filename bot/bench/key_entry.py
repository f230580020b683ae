"""Key entry two ways in the same run: a pasted chat message against the Mini App form (issue 12).

Why side by side: the Mini App's promise is that the key is never a message, so its exposure window in
the chat is zero by construction; what is left to measure is whether the customer waits longer for the
verdict. Users alternate between the two paths on one bot process, so both meet the same machine. Every
latency starts when the user acts (the stand-in receives the message, or the page sends its POST) and
ends when the stand-in receives the guide call that shows "You're done".
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from bot.bench.stats import summary_ms
from bot.bench.tap import CallTap
from bot.bench.users import Action, SimUser, bench_key, shows_step
from bot.standins.openai import Behaviour, FakeOpenAI
from bot.standins.telegram_webapp import launch_init_data
from flows.steps import Step

__all__ = ["KeyEntryResult", "compare_key_entry"]

PUBLIC_BASE_URL = "https://bench.example.test"  # what the button shows; the bench posts to the port itself
TIMEOUT_S = 60.0


@dataclass
class KeyEntryResult:
    chat_verdict_s: list[float] = field(default_factory=list)
    miniapp_accepted_s: list[float] = field(default_factory=list)  # POST -> 202
    miniapp_verdict_s: list[float] = field(default_factory=list)  # POST -> "You're done" in the guide
    errors: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"chat_paste_to_verdict_ms": summary_ms(self.chat_verdict_s),
                "miniapp_post_to_202_ms": summary_ms(self.miniapp_accepted_s),
                "miniapp_post_to_verdict_ms": summary_ms(self.miniapp_verdict_s),
                "miniapp_key_message_exposure_ms": 0,  # never a message (the chat paste's: exposure_window_ms)
                "errors": self.errors[:10]}


async def compare_key_entry(openai: FakeOpenAI, tap: CallTap, pairs: Sequence[tuple[SimUser, SimUser]],
                            miniapp_url: str) -> KeyEntryResult:
    """For each pair, the first pastes a valid key in the chat, then the second submits one in the Mini App."""
    result = KeyEntryResult()
    async with httpx.AsyncClient(base_url=miniapp_url, timeout=TIMEOUT_S, trust_env=False) as client:
        for chat_user, app_user in pairs:
            try:
                result.chat_verdict_s.append(await _paste_in_chat(openai, chat_user))
                accepted, verdict = await _submit_in_miniapp(openai, tap, client, app_user)
                result.miniapp_accepted_s.append(accepted)
                result.miniapp_verdict_s.append(verdict)
            except (TimeoutError, httpx.HTTPError, AssertionError) as error:
                result.errors.append(f"{type(error).__name__}: {error}")
    return result


async def _paste_in_chat(openai: FakeOpenAI, user: SimUser) -> float:
    key = bench_key()
    openai.register(key, Behaviour.VALID)
    sent = await user.do(Action("text", key, Step.CONNECTED))
    assert sent.answered_at is not None
    return sent.answered_at - sent.at


async def _submit_in_miniapp(openai: FakeOpenAI, tap: CallTap, client: httpx.AsyncClient,
                             user: SimUser) -> tuple[float, float]:
    key = bench_key()
    openai.register(key, Behaviour.VALID)
    shown = tap.expect(user.chat_id, shows_step(Step.CONNECTED))
    init_data = launch_init_data(user.user_id)
    at = time.monotonic()
    response = await client.post("/miniapp/api/key", json={"init_data": init_data, "key": key})
    accepted = time.monotonic() - at
    assert response.status_code == 202, f"the Mini App answered {response.status_code}: {response.text[:200]}"
    record = await tap.wait(shown, TIMEOUT_S, f"the verdict in chat {user.chat_id}")
    return accepted, record.received_monotonic - at
