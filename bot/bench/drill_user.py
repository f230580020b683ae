"""A patient simulated user for fault drills: reads the chat, does the next thing, nudges when stuck.

Why not the benchmark's scripted walk: during a drill updates get lost (a bot killed mid-update, a
database restarting), so a fixed script would stall. This user looks at the newest guide message in
the chat, decides the next action from the step it shows (as a person would), and when nothing happens
for a while sends /start, like someone coming back to the chat. It stops at "You're done".
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from bot.bench.tap import CallTap, TappedTelegram
from flows.content import load_content
from flows.steps import Step
from flows.view import callback_data

__all__ = ["DrillUser", "shown_step"]

# The stand-in stores what Telegram would show: HTML turned into plain text plus entities, so the title
# is a line of its own in the message text.
TITLES: dict[str, Step] = {load_content("en").step(step)["title"]: step for step in Step}
PRESSES: dict[Step, str] = {
    Step.WELCOME: "begin", Step.OPEN_KEYS_PAGE: "next", Step.CREATE_NEW_KEY: "next",
    Step.CHOOSE_OWNER: "personal", Step.NAME_KEY: "next", Step.CHOOSE_PROJECT: "default",
    Step.CHOOSE_PERMISSIONS: "all", Step.RESTRICTED_PERMISSIONS: "next", Step.COPY_KEY: "copied",
}
WAITING = frozenset({Step.VERIFYING, Step.CONNECTING, Step.HELD})
MAX_PASTES = 4


def _step_of(text: str) -> Step | None:
    for line in text.splitlines():
        step = TITLES.get(line.strip())
        if step is not None:
            return step
    return None


def shown_step(messages: list[dict[str, Any]]) -> tuple[Step | None, int | None]:
    """The step the newest visible guide message shows, and that message's id (for presses)."""
    for message in reversed(messages):
        if not message.get("from_bot") or message.get("deleted"):
            continue
        step = _step_of(message.get("text") or "")
        if step is not None:
            return step, int(message["message_id"])
    return None, None


@dataclass
class DrillUser:
    telegram: TappedTelegram
    tap: CallTap
    user_id: int
    workspace: str
    key: str
    patience_s: float = 6.0
    pastes: int = 0
    nudges: int = 0  # /start sent because nothing happened
    actions: int = 0
    done: bool = False
    last_step: Step | None = None
    log: list[str] = field(default_factory=list)

    @property
    def chat_id(self) -> int:
        return self.user_id

    def look(self) -> tuple[Step | None, int | None]:
        return shown_step(self.telegram.messages(self.chat_id))

    def _act(self, step: Step | None, guide_id: int | None) -> str | None:
        """Do the next thing for ``step``; None when the right thing is to wait."""
        if step is None:
            self.telegram.send(self.user_id, "/start", first_name=f"Drill{self.user_id}")
            return "/start"
        if step in PRESSES and guide_id is not None:
            self.telegram.press(self.user_id, guide_id, callback_data(step, PRESSES[step]))
            return f"press {step.value}"
        if step == Step.ENTER_WORKSPACE:
            self.telegram.send(self.user_id, self.workspace, first_name=f"Drill{self.user_id}")
            return "workspace"
        if step in (Step.PASTE_KEY, Step.KEY_PROBLEM) and self.pastes < MAX_PASTES:
            self.pastes += 1
            self.telegram.send(self.user_id, self.key, first_name=f"Drill{self.user_id}")
            return "paste"
        return None

    async def _progress(self, before: int, within_s: float) -> bool:
        """True once the bot made a call about this chat (and then went quiet for a moment)."""
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            if self.tap.calls_per_chat[self.chat_id] > before:
                await self.tap.quiet(self.chat_id, 0.15, timeout=within_s)
                return True
            await asyncio.sleep(0.05)
        return False

    async def _shown_change(self, shown: tuple[Step | None, int | None], within_s: float) -> bool:
        """True once the chat shows another step or guide message than ``shown``."""
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            if self.look() != shown:
                return True
            await asyncio.sleep(0.05)
        return False

    async def run(self, deadline: float) -> None:
        """Walk to "You're done" or until ``deadline`` (monotonic)."""
        while time.monotonic() < deadline:
            step, guide_id = self.look()
            self.last_step = step
            if step == Step.CONNECTED:
                self.done = True
                return
            before = self.tap.calls_per_chat[self.chat_id]
            did = self._act(step, guide_id)
            if did is not None:
                self.actions += 1
                self.log.append(did)
            if did == "paste":
                # A person pastes again only when the chat shows nothing new; a deletion retried through
                # Telegram's flood waits makes calls, but shows nothing yet.
                await self._shown_change((step, guide_id), self.patience_s)
            elif not await self._progress(before, self.patience_s):
                self.nudges += 1
                self.log.append("/start (nudge)")
                self.telegram.send(self.user_id, "/start", first_name=f"Drill{self.user_id}")
                await self._progress(before, self.patience_s)
        self.last_step = self.look()[0]
        self.done = self.last_step == Step.CONNECTED
