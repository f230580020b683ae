"""The real bot in process against the stand-ins, with Telegram faults scheduled per Bot API method.

Why a schedule: "fail the 2nd editMessageText from now with a 429" reaches any point of the guide or
the key pipeline without timing games. 429 and 5xx are produced by the Telegram stand-in itself
(``fail_next``, armed just before the scheduled call goes out), so the bot sees Telegram's own error
bodies. A timeout is the one fault the stand-in cannot make: the request is delivered and its answer
lost, PTB raises ``TimedOut`` (the worst case: the effect happened, the bot does not know).

Everything is driven from the test: updates are fetched with getUpdates and fed through the update
processor (the secret guard first, as in production), and after each step the runtime settles (key
pipelines and repaints done), so a test reads the end state, never a race.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import re
from collections import Counter
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from telegram.error import TimedOut
from telegram.request import BaseRequest

from bot.config import Settings
from bot.core.runtime import conversation_of
from bot.standins.sandbox import Sandbox
from bot.telegram.application import ALLOWED_UPDATES, BotApp, build_bot
from flows.content import load_content
from flows.steps import Step
from storage.migrate import upgrade
from tests.e2e.pasting import fresh_key

__all__ = ["FAULTS", "Fault", "FaultyBot", "User", "run", "running"]

# kind -> (error_code, description, retry_after); descriptions as Telegram words them.
FAULTS: dict[str, tuple[int, str, int | None]] = {
    "429_short": (429, "Too Many Requests: retry after 1", 1),  # waited out inside the limiter
    "429_long": (429, "Too Many Requests: retry after 2", 2),  # longer than max_wait: shown later
    "502": (502, "Bad Gateway", None),
    "500": (500, "Internal Server Error", None),
    "timeout": (0, "", None),
}
MAX_WAIT_S = 1.5  # the limiter waits out 429_short, not 429_long
TITLES = {step: html.unescape(re.sub(r"<[^>]+>", "", load_content("en").step(step)["title"])) for step in Step}


@dataclass(frozen=True)
class Fault:
    method: str  # Bot API method name, e.g. "editMessageText"
    nth: int  # 1: the next call of that method
    kind: str  # a key of FAULTS


@dataclass
class _Armed:
    faults: list[Fault]
    counts: Counter[str] = field(default_factory=Counter)
    fired: list[Fault] = field(default_factory=list)


class _ScheduledFaults:
    """Wraps a PTB request object: counts calls per method and fires the scheduled fault."""

    def __init__(self, harness: FaultyBot, request: BaseRequest) -> None:
        self.harness = harness
        original = request.do_request

        async def do_request(url: str, method: str, *args: Any, **kwargs: Any) -> tuple[int, bytes]:
            endpoint = url.rsplit("/", 1)[-1]
            fault = harness.take(endpoint)
            if fault is not None and fault.kind != "timeout":
                code, description, retry_after = FAULTS[fault.kind]
                harness.sandbox.telegram.fail_next(endpoint, code, description, retry_after=retry_after)
            result = await original(url, method, *args, **kwargs)
            if fault is not None and fault.kind == "timeout":
                raise TimedOut("injected: the request was delivered, its answer lost")
            return result

        request.do_request = do_request  # type: ignore[method-assign]


class FaultyBot:
    """One in-process bot (``build_bot``) against a fresh Sandbox; see the module docstring."""

    def __init__(self, folder: Path, *, sole_consumer: bool = False, **settings: Any) -> None:
        self.sole_consumer = sole_consumer  # polling's wiring (e.g. redelivery of transient failures)
        self.sandbox = Sandbox().start()
        # The stand-in's flood control is off here: these tests schedule every 429 themselves and drive a
        # chat at machine speed (the whole guide in milliseconds), so the per-chat limit (1/s after a burst
        # of 10) would add unscheduled 429s and make each schedule's outcome depend on timing
        # (e.g. test_a_quick_deletion_says_nothing_extra saw its delete flood-waited past the 1 s notice).
        self.sandbox.telegram.configure(flood_control=False)
        url = f"sqlite+aiosqlite:///{folder / 'bot.db'}"
        asyncio.run(upgrade(url))
        settings = {"telegram_delete_deadline_s": 8, **settings}  # a test may shorten the deadline
        env = self.sandbox.bot_environment(url, key_submissions_per_user_per_hour=100_000,
                                           verifications_per_minute=1_000_000, telegram_max_rate_per_s=1000,
                                           telegram_max_wait_s=MAX_WAIT_S, telegram_delete_notice_after_s=1,
                                           **settings)
        self.settings = Settings(_env_file=None, **{k.lower(): v for k, v in env.items()})  # type: ignore[arg-type]
        self.bot_app: BotApp | None = None
        self.offset = 0
        self.armed = _Armed([])
        self.next_user = 7_000_000

    async def start(self) -> None:
        self.bot_app = build_bot(self.settings, sole_consumer=self.sole_consumer)
        for callback in self.bot_app.application.error_handlers:  # the harness feeds updates itself and
            redelivery = getattr(getattr(callback, "__self__", None), "redelivery", None)  # never starts the
            if redelivery is not None:  # application, so "running" would say no to every redelivery
                redelivery.running = lambda: True
        self.bot_app.runtime.repaint_first_delay_s = 0.05
        await self.bot_app.application.initialize()
        assert self.bot_app.delete_bot is not None
        await self.bot_app.delete_bot.initialize()
        for bot in (self.bot_app.application.bot, self.bot_app.delete_bot):
            _ScheduledFaults(self, bot._request[1])

    async def stop(self) -> None:
        assert self.bot_app is not None
        await self.bot_app.runtime.drain(10)
        await self.bot_app.application.shutdown()
        await self.bot_app.close()
        self.sandbox.stop()

    @property
    def app(self) -> BotApp:
        assert self.bot_app is not None
        return self.bot_app

    # -- faults ---------------------------------------------------------------------------------
    def arm(self, *faults: Fault) -> None:
        """Schedule faults, counted from now; replaces any earlier schedule."""
        self.armed = _Armed(list(faults))

    def take(self, endpoint: str) -> Fault | None:
        armed = self.armed
        armed.counts[endpoint] += 1
        for fault in armed.faults:
            if fault.method == endpoint and fault.nth == armed.counts[endpoint] and fault not in armed.fired:
                armed.fired.append(fault)
                return fault
        return None

    # -- driving --------------------------------------------------------------------------------
    async def pump(self, rounds: int = 100) -> None:
        """Feed every pending update to the bot and wait until pipelines and repaints are done."""
        app = self.app.application
        for _ in range(rounds):
            updates = list(await app.bot.get_updates(offset=self.offset, timeout=0, allowed_updates=ALLOWED_UPDATES))
            if updates:
                self.offset = updates[-1].update_id + 1
            while not app.update_queue.empty():  # put back by the bot itself (polling's redelivery)
                updates.append(app.update_queue.get_nowait())
            for update in updates:
                await app.update_processor.process_update(update, app.process_update(update))
            runtime = self.app.runtime
            await getattr(runtime, "settle", runtime.drain)(30)  # settle: also pending repaints
            await asyncio.sleep(0)
            if not updates and not getattr(runtime, "repaints_pending", 0) and not runtime.pipelines_running:
                return
        raise AssertionError("the bot did not settle")

    def user(self) -> User:
        """A new customer with a workspace of their own (only the chat that connected a workspace may
        replace its key, so customers sharing one would refuse each other)."""
        self.next_user += 1
        workspace = f"ws_u{self.next_user}"
        self.sandbox.doubletick.configure(workspaces={workspace: f"Workspace of {self.next_user}"})
        return User(self, self.next_user, workspace)


@dataclass
class User:
    bot: FaultyBot
    user_id: int
    workspace: str = "ws_demo"

    @property
    def fake(self) -> Any:
        return self.bot.sandbox.telegram

    async def send(self, text: str) -> int:
        sent = self.fake.send(self.user_id, text)
        await self.bot.pump()
        return int(sent["message_id"])

    def press_later(self, label: str) -> None:
        """Press the button whose label contains ``label`` on the latest keyboard (no pump)."""
        for message in reversed(self.messages()):
            if message["from_bot"] and not message["deleted"] and message["reply_markup"]:
                for row in message["reply_markup"].get("inline_keyboard", []):
                    for button in row:
                        if label.lower() in button["text"].lower() and "callback_data" in button:
                            self.fake.press(self.user_id, message["message_id"], button["callback_data"])
                            return
                raise LookupError(f"no button {label!r} on message {message['message_id']}")
        raise LookupError("no keyboard in the chat")

    async def press(self, label: str) -> None:
        self.press_later(label)
        await self.bot.pump()

    async def reach_paste_step(self) -> None:
        """The whole guide like a person, up to "Paste your key here" (typing the user's own workspace)."""
        await self.send("/start")
        for label in ("start", "Next", "Next", "Personal", "Next", "Default", "All", "I copied it"):
            await self.press(label)
        if await self.step() == Step.ENTER_WORKSPACE:
            await self.send(self.workspace)
        assert await self.step() == Step.PASTE_KEY, await self.step()

    def new_valid_key(self) -> str:
        key = fresh_key("project")
        self.bot.sandbox.openai.register(key, "valid")
        return key

    # -- what is true now -----------------------------------------------------------------------
    async def row(self) -> Any:
        return await self.bot.app.runtime.conversations.get(self.user_id)

    async def step(self) -> Step | None:
        conv = conversation_of(await self.row())
        return conv.step if conv else None

    def messages(self) -> list[dict[str, Any]]:
        return list(self.fake.messages(self.user_id))

    def message(self, message_id: int) -> dict[str, Any]:
        return next(m for m in self.messages() if m["message_id"] == message_id)

    async def shown_step_matches_db(self) -> tuple[bool, str]:
        """The guide message the DB names is visible and shows the DB's step (its title)."""
        row = await self.row()
        step = await self.step()
        if row is None or step is None or row.guide_message_id is None:
            return False, f"no conversation or guide (row={row is not None}, step={step})"
        shown = [m for m in self.messages() if m["message_id"] == row.guide_message_id and not m["deleted"]]
        if not shown:
            return False, f"guide message {row.guide_message_id} is gone"
        text = shown[0]["text"] or ""
        return TITLES[step] in text, f"DB step {step.value} ({TITLES[step]!r}) but chat shows {text[:120]!r}"

    def unanswered_queries(self) -> list[dict[str, Any]]:
        return [q for q in self.fake.callback_answers() if q["user_id"] == self.user_id and not q["answered"]]

    def connect_posts(self) -> list[Any]:
        return [r for r in self.bot.sandbox.doubletick.requests
                if r.method == "POST" and r.status is not None and 200 <= r.status < 300]


@contextlib.contextmanager
def running(folder: Path, *, sole_consumer: bool = False, **settings: Any) -> Iterator[FaultyBot]:
    """A started harness with an event loop of its own (a module's tests share it), stopped afterwards."""
    harness = FaultyBot(folder, sole_consumer=sole_consumer, **settings)
    loop = asyncio.new_event_loop()
    harness.loop = loop  # type: ignore[attr-defined]
    loop.run_until_complete(harness.start())
    try:
        yield harness
    finally:
        harness.arm()
        loop.run_until_complete(harness.stop())
        loop.close()


def run(bot: FaultyBot, coroutine: Coroutine[Any, Any, Any]) -> None:
    """Run one scenario on the harness's loop."""
    bot.loop.run_until_complete(coroutine)  # type: ignore[attr-defined]
