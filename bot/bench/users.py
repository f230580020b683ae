"""Simulated users for load: thousands of chats walking the guide at once, on one event loop.

Why not ``standins/chat_driver.ChatDriver``: it is a blocking HTTP client that polls the control API,
fine for a handful of users. Here each user is a coroutine that calls ``FakeTelegram`` directly (the
stand-in runs in a thread of this process) and is woken by the ``CallTap`` when the bot answers.

The guide script is derived from the flow definitions (step titles from the content file, callback data
from ``flows.view.callback_data``), so it follows the guide as the code defines it.
"""

from __future__ import annotations

import html
import secrets
import string
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from bot.bench.tap import CallTap, TappedTelegram, method_is
from bot.standins.telegram_world import CallRecord
from flows.content import load_content
from flows.steps import Step
from flows.view import callback_data

__all__ = ["GUIDE_WALK", "Action", "SimUser", "bench_key", "step_heading"]

ActionKind = Literal["text", "press"]


@dataclass(frozen=True, slots=True)
class Action:
    """One thing the user does, and the step the bot should show afterwards."""

    kind: ActionKind
    payload: str  # text to send, or callback data to press; "{workspace}" is filled per user
    shows: Step


# Personal owner, default project, all permissions, open mode (the user names a workspace).
GUIDE_WALK: tuple[Action, ...] = (
    Action("text", "/start", Step.WELCOME),
    Action("press", callback_data(Step.WELCOME, "begin"), Step.OPEN_KEYS_PAGE),
    Action("press", callback_data(Step.OPEN_KEYS_PAGE, "next"), Step.CREATE_NEW_KEY),
    Action("press", callback_data(Step.CREATE_NEW_KEY, "next"), Step.CHOOSE_OWNER),
    Action("press", callback_data(Step.CHOOSE_OWNER, "personal"), Step.NAME_KEY),
    Action("press", callback_data(Step.NAME_KEY, "next"), Step.CHOOSE_PROJECT),
    Action("press", callback_data(Step.CHOOSE_PROJECT, "default"), Step.CHOOSE_PERMISSIONS),
    Action("press", callback_data(Step.CHOOSE_PERMISSIONS, "all"), Step.COPY_KEY),
    Action("press", callback_data(Step.COPY_KEY, "copied"), Step.ENTER_WORKSPACE),
    Action("text", "{workspace}", Step.PASTE_KEY),
)

_ALNUM = string.ascii_letters + string.digits
_MARKER = "T3Blbk" + "FJ"


def bench_key() -> str:
    """A fresh key with the shape of an OpenAI project key (register it with the OpenAI stand-in)."""
    half = "".join(secrets.choice(_ALNUM) for _ in range(20))
    tail = "".join(secrets.choice(_ALNUM) for _ in range(20))
    return f"sk-proj-{half}{_MARKER}{tail}"


def step_heading(step: Step) -> str:
    """The bold title line every rendering of ``step`` carries, as it appears in the sent HTML."""
    return f"<b>{html.escape(load_content('en').step(step)['title'])}</b>"


def shows_step(step: Step) -> Callable[[CallRecord], bool]:
    heading = step_heading(step)
    renders = method_is("sendMessage", "editMessageText")
    return lambda record: renders(record) and record.ok is True and heading in str(record.params.get("text", ""))


answered = method_is("answerCallbackQuery")
deleted = method_is("deleteMessage")


def echoes(text: str) -> Callable[[CallRecord], bool]:
    sends = method_is("sendMessage")
    return lambda record: sends(record) and record.params.get("text") == text


@dataclass
class Sent:
    """What one action produced: when it was done and when the bot's answer reached Telegram."""

    action: Action
    at: float  # monotonic, just before the update was queued
    update_id: int | None
    message_id: int | None
    answered_at: float | None = None  # received_monotonic of the call that showed the next step


@dataclass
class SimUser:
    """One private chat; ``user_id`` is also the chat id."""

    telegram: TappedTelegram
    tap: CallTap
    user_id: int
    workspace: str = "ws_demo"
    timeout: float = 60.0
    echo: bool = False  # talking to the echo baseline: expect the text back / a callback answer
    guide_message_id: int | None = None
    history: list[Sent] = field(default_factory=list)

    @property
    def chat_id(self) -> int:
        return self.user_id

    def send_now(self, text: str) -> Sent:
        """Queue a text message without waiting for any answer (open-loop load)."""
        at = time.monotonic()
        result = self.telegram.send(self.user_id, text, first_name=f"Bench{self.user_id}")
        sent = Sent(Action("text", text, Step.WELCOME), at, result.get("update_id"), result.get("message_id"))
        self.history.append(sent)
        return sent

    async def do(self, action: Action) -> Sent:
        """Perform ``action`` and wait until the bot shows ``action.shows`` and answers a press.

        Against the echo baseline: wait for the text to come back, or for the press to be answered.
        """
        text = action.payload.format(workspace=self.workspace)
        if self.echo:
            shown = self.tap.expect(self.chat_id, echoes(text) if action.kind == "text" else answered)
            answer = None
        else:
            shown = self.tap.expect(self.chat_id, shows_step(action.shows))
            answer = self.tap.expect(self.chat_id, answered) if action.kind == "press" else None
        at = time.monotonic()
        if action.kind == "text":
            result = self.telegram.send(self.user_id, text, first_name=f"Bench{self.user_id}")
            message_id = result.get("message_id")
            if self.echo:
                self.guide_message_id = message_id  # the echo bot has no guide: press under our message
        else:
            if self.guide_message_id is None:
                self.guide_message_id = self._find_guide()
            result = self.telegram.press(self.user_id, self.guide_message_id, action.payload)
            message_id = result.get("message_id")
        sent = Sent(action, at, result.get("update_id"), message_id)
        self.history.append(sent)
        try:
            record = await self.tap.wait(shown, self.timeout, f"{action.shows.value} in chat {self.chat_id}")
            sent.answered_at = record.received_monotonic
            if answer is not None:
                await self.tap.wait(answer, self.timeout, f"callback answer in chat {self.chat_id}")
        except BaseException:
            self.tap.forget(self.chat_id)
            raise
        if record.method.lower() == "sendmessage" and not self.echo:
            self.guide_message_id = None  # a fresh guide message: look its id up before the next press
        return sent

    async def walk(self, actions: tuple[Action, ...] = GUIDE_WALK) -> list[Sent]:
        return [await self.do(action) for action in actions]

    def _find_guide(self) -> int:
        """The newest bot message with an inline keyboard in this chat."""
        for message in reversed(self.telegram.messages(self.chat_id)):
            if message.get("from_bot") and not message.get("deleted") and \
                    (message.get("reply_markup") or {}).get("inline_keyboard"):
                return int(message["message_id"])
        raise LookupError(f"no guide message in chat {self.chat_id}")
