"""``onboarding-bot try``: chat with the real bot in a terminal, with no network and no Telegram token.

It starts the stand-ins, runs the real bot (``onboarding-bot run``) as a child process pointed at them,
and plays the Telegram user: bot messages are printed, buttons become numbered choices, links are
shown as text. What you type is sent as your message; paste a demo key at the paste step.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from bot.standins.chat_driver import ChatDriver, plain_text
from bot.standins.demo_keys import DEMO_KEYS
from bot.standins.sandbox import Sandbox

__all__ = ["run_try"]

USER_ID = 1001
# Lines that reach stdin within this long of each other are one paste (a key that wrapped over two lines).
PASTE_GAP_S = 0.08
# Try mode lists more demo keys than a real customer's hourly allowance: the limits are lifted per run.
TRY_LIMITS = {"KEY_SUBMISSIONS_PER_USER_PER_HOUR": "1000", "VERIFICATIONS_PER_MINUTE": "1000"}
INTRO = """\
Offline try-it mode: the real bot, talking to local stand-ins of Telegram, OpenAI and DoubleTick.
Type a number to press a button, type text to send a message, /quit to leave.
When the bot asks for your DoubleTick workspace, type: ws_demo
Demo keys (paste one at the paste step; each gives a different verification outcome):"""


class Transcript:
    """Prints what changed in the chat since last time."""

    def __init__(self, driver: ChatDriver, out: TextIO) -> None:
        self.driver = driver
        self.out = out
        self.seen: dict[int, tuple[Any, ...]] = {}
        self.buttons: list[dict[str, Any]] = []
        self.printed = False

    def show_changes(self, *, buttons_always: bool = True) -> bool:
        """Print new and edited messages (then the buttons); True if anything was new."""
        self.printed = False
        for message in self.driver.messages():
            state = (message.get("text"), str(message.get("reply_markup")), message.get("deleted"))
            previous = self.seen.get(message["message_id"])
            self.seen[message["message_id"]] = state
            if previous == state:
                continue
            if not message.get("from_bot"):
                if message.get("deleted") and (previous is None or not previous[2]):
                    self.print("🗑  (the bot deleted your message at once)")
                continue
            if message.get("deleted"):
                continue
            heading = "🤖 bot" if previous is None else "🤖 bot (updated its message)"
            self.print(f"\n{heading}:\n{plain_text(message.get('text') or message.get('caption') or '')}")
        changed = self.printed
        if changed or buttons_always:
            self.show_buttons()
        return changed

    def show_buttons(self) -> None:
        try:
            guide = self.driver.guide()
        except LookupError:
            self.buttons = []
            return
        self.buttons = [b for row in (guide.get("reply_markup") or {}).get("inline_keyboard", []) for b in row]
        for number, button in enumerate(self.buttons, 1):
            suffix = f"  → {button['url']}" if "url" in button else ""
            self.print(f"  [{number}] {button['text']}{suffix}")

    def print(self, text: str) -> None:
        self.printed = True
        print(text, file=self.out, flush=True)


class Watcher(threading.Thread):
    """Prints answers that arrive while you are typing (a verification that takes a few seconds)."""

    def __init__(self, transcript: Transcript, lock: threading.Lock) -> None:
        super().__init__(daemon=True, name="try-watcher")
        self.transcript = transcript
        self.lock = lock
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(0.5):
            with self.lock:
                try:
                    if self.transcript.show_changes(buttons_always=False):
                        print("\nyou> ", end="", flush=True)
                except Exception:
                    return


def _keyboard_lines(source: TextIO) -> Iterator[str]:
    """Yield what you typed, one message per paste: lines arriving together are joined with a newline."""
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        for line in iter(source.readline, ""):
            lines.put(line.rstrip("\r\n"))
        lines.put(None)

    threading.Thread(target=read, daemon=True, name="try-keyboard").start()
    while True:
        print("\nyou> ", end="", flush=True)
        first = lines.get()
        if first is None:
            return
        message = [first]
        while True:
            try:
                more = lines.get(timeout=PASTE_GAP_S)
            except queue.Empty:
                break
            if more is None:
                yield "\n".join(message)
                return
            message.append(more)
        yield "\n".join(message)


def _lines(script: str | None) -> Iterator[str]:
    if script:
        for line in Path(script).read_text(encoding="utf-8").splitlines():
            print(f"\nyou> {line}", flush=True)
            yield line
        return
    yield from _keyboard_lines(sys.stdin)


def _act(driver: ChatDriver, transcript: Transcript, line: str) -> bool:
    text = line.strip()
    if text in ("/quit", "/exit"):
        return False
    if text.isdigit() and 1 <= int(text) <= len(transcript.buttons):
        button = transcript.buttons[int(text) - 1]
        if "url" in button:
            transcript.print(f"🔗 In Telegram this opens {button['url']} in your browser.")
            return True
        if "web_app" in button:
            transcript.print(f"🔐 In Telegram this opens the key page {button['web_app']['url']} inside the app.")
            return True
        if "copy_text" in button:
            transcript.print(f"📋 Copied to your clipboard: {button['copy_text']['text']}")
            return True
        driver.press_data(driver.guide()["message_id"], button["callback_data"])
    elif text:
        driver.send(text)
    driver.wait_idle(quiet=0.5, timeout=15)
    transcript.show_changes()
    return True


def run_try(script: str | None = None) -> int:
    """One run: its own database and log (two runs side by side never touch each other's), limits lifted."""
    var = Path("var")
    var.mkdir(exist_ok=True)
    database = var / f"try-{os.getpid()}.db"
    log_path = var / f"try-bot-{os.getpid()}.log"
    try:
        return _run(database, log_path, script)
    finally:
        for own in var.glob(f"{database.name}*"):
            own.unlink(missing_ok=True)


def _run(database: Path, log_path: Path, script: str | None) -> int:
    with Sandbox() as sandbox:
        env = {**os.environ, **sandbox.bot_environment(f"sqlite+aiosqlite:///{database.resolve()}"),
               **TRY_LIMITS}
        with open(log_path, "w", encoding="utf-8") as log:
            bot = subprocess.Popen([sys.executable, "-m", "bot.cli.main", "run"], env=env, stdout=log, stderr=log)
            driver = ChatDriver(sandbox.telegram_url, USER_ID, first_name="You")
            try:
                print(INTRO)
                for name, demo in DEMO_KEYS.items():
                    print(f"  {name:<22} {demo.key}")
                print(f"\n(bot log: {log_path})")
                transcript = Transcript(driver, sys.stdout)
                driver.wait_bot_polling()
                driver.send("/start")
                driver.wait_for(lambda: driver.bot_messages(), timeout=60, what="the bot to answer /start")
                driver.wait_idle(quiet=0.3)
                transcript.show_changes()
                lock = threading.Lock()
                watcher = Watcher(transcript, lock)
                if not script:
                    watcher.start()
                for line in _lines(script):
                    with lock:
                        if not _act(driver, transcript, line):
                            break
                watcher.stopped.set()
            finally:
                driver.close()
                bot.terminate()
                try:
                    bot.wait(15)
                except subprocess.TimeoutExpired:
                    bot.kill()
    return 0
