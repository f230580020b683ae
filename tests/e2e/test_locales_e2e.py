"""Every step, in every language, through the real bot: a user whose Telegram app speaks Hindi, Spanish,
Portuguese, Indonesian or Arabic walks the whole guide (both parts, a failure, a held key, the invitation
step, /help, /privacy, /disconnect) and never sees an English sentence; /language switches at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from bot.standins.chat_driver import ChatDriver, plain_text
from bot.standins.demo_keys import DEMO_KEYS
from flows.content import Content, load_content
from flows.locales import LOCALE_CODES, LOCALES
from flows.numbers import FSI, LRI, PDI
from flows.problems import PROBLEMS
from flows.steps import Step
from tests.e2e.harness import Stack, new_database_url
from tests.e2e.pasting import fresh_key, own_workspace

pytestmark = pytest.mark.e2e

FAST_OUTBOX = {"outbox_first_retry_s": 0.2, "outbox_poll_s": 0.1}
# A deletion that outlasts its deadline shows the "still deleting" step (two 429s of 4 s each past 5 s).
SLOW_DELETION = {"telegram_delete_deadline_s": 5, "telegram_delete_background_s": 60}
FLOOD_WAIT = "Too Many Requests: retry after 4"
# What each locale's Telegram app may send as language_code (IETF tags, lower or mixed case).
TELEGRAM_CODES = {"en": "en", "hi": "hi", "es": "es-419", "pt-BR": "pt-br", "id": "id", "ar": "ar"}
ISOLATES = {ord(c): None for c in FSI + LRI + PDI}


def _text(value: str) -> str:
    return plain_text(value).translate(ISOLATES).lower()


@pytest.fixture(scope="module")
def stacks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Stack]]:
    """Open mode with DoubleTick connecting (held keys retried fast); the guided Step 2; invitation-only."""
    started: dict[str, Stack] = {}
    for name, env in {"auto": {**FAST_OUTBOX, **SLOW_DELETION},
                      "manual": {"auto_connect": False, "demo_open_workspaces": True},
                      "closed": {"demo_open_workspaces": False}}.items():
        folder = tmp_path_factory.mktemp(f"locales-{name}")
        started[name] = Stack.start(folder, new_database_url("sqlite", folder), **env)
    yield started
    for stack in started.values():
        stack.close()


class Walker:
    """A user in one locale: presses buttons by their translated labels, waits for translated titles."""

    def __init__(self, stack: Stack, code: str) -> None:
        self.stack, self.content = stack, load_content(code)
        self.user: ChatDriver = stack.user(language_code=TELEGRAM_CODES[code])

    def title(self, step: Step) -> str:
        return self.content.step(step)["title"]

    def wait(self, step: Step, timeout: float = 10.0) -> dict[str, Any]:
        wanted = _text(self.title(step))
        return dict(self.user.wait_for(lambda: (g := self.user.guide()) and wanted in _text(g.get("text") or "")
                                       and g, timeout, f"the {step.value} step in {self.content.locale}"))

    def press(self, action: str, then: Step) -> None:
        self.user.press(self.content.button(action))
        self.wait(then)

    def said(self) -> list[str]:
        """Every text the bot sent or edited into this chat, including the short-lived pipeline steps."""
        out = []
        for call in self.user.calls():
            params = call.get("params") or {}
            if str(params.get("chat_id")) == str(self.user.chat_id) and (params.get("text") or params.get("caption")):
                out.append(_text(params.get("text") or params.get("caption")))
        return out

    def wait_said(self, text: str, timeout: float = 10.0) -> None:
        wanted = _text(text.strip().split("\n")[0][:40])
        self.user.wait_for(lambda: any(wanted in t for t in self.said()), timeout, f"{wanted!r}")


def part_one(walker: Walker, owner: str = "personal") -> None:
    walker.user.send("/start")
    walker.wait(Step.WELCOME)
    walker.press("begin", Step.OPEN_KEYS_PAGE)
    walker.press("next", Step.CREATE_NEW_KEY)
    walker.press("next", Step.CHOOSE_OWNER)
    walker.press(owner, Step.NAME_KEY)
    walker.press("next", Step.CHOOSE_PROJECT)
    if owner == "service":
        walker.press("default", Step.COPY_KEY)
        return
    walker.press("default", Step.CHOOSE_PERMISSIONS)
    walker.press("restricted", Step.RESTRICTED_PERMISSIONS)
    walker.press("next", Step.COPY_KEY)


def english_leaks(content: Content, said: list[str]) -> list[str]:
    """English step titles and problem texts the bot said although this locale words them differently."""
    english = load_content("en")
    leaks = []
    for step in Step:
        title = _text(english.step(step)["title"])
        if title != _text(content.step(step)["title"]) and any(title in t for t in said):
            leaks.append(title)
    for problem in PROBLEMS:  # a problem's first sentence, before any value is filled in
        opening = _text(english.problem(problem)).split("{")[0].split(". ")[0].strip()
        if len(opening) >= 12 and opening not in _text(content.problem(problem)) and any(opening in t for t in said):
            leaks.append(opening)
    return leaks


@pytest.mark.parametrize("code", LOCALE_CODES)
def test_every_step_in_every_locale_through_the_real_bot(stacks: dict[str, Stack], code: str) -> None:
    seen: set[Step] = set()
    # 1. Open mode: part one, the workspace, a failure, a held key, connected, /help, /privacy, /disconnect.
    walker = Walker(stacks["auto"], code)
    part_one(walker)
    walker.user.press(walker.content.button("stuck"))
    walker.wait_said(walker.content.step(Step.COPY_KEY)["help"].split("\n")[0][2:])
    walker.press("copied", Step.ENTER_WORKSPACE)
    walker.user.send(own_workspace(walker.user))  # only the chat that connected a workspace may change it
    walker.wait(Step.PASTE_KEY)
    walker.user.send(DEMO_KEYS["invalid"].key)
    walker.wait(Step.KEY_PROBLEM)
    walker.wait_said(walker.content.problem("invalid").split(".")[0])
    walker.press("paste_again", Step.PASTE_KEY)
    restricted = fresh_key(hint="Scope")  # a restricted key without Models: Read
    walker.stack.sandbox.openai.register(restricted, "missing_scope_models")
    walker.user.send(restricted)
    walker.wait(Step.KEY_PROBLEM)
    walker.press("fix_permissions", Step.EDIT_PERMISSIONS)
    walker.press("saved", Step.PASTE_KEY)
    held = fresh_key(hint="Held")  # OpenAI answers 500 for it until the test lets it recover
    walker.stack.sandbox.openai.register(held, "server_error")
    walker.user.send(held)
    walker.wait(Step.HELD)
    walker.user.wait_for(lambda: len(walker.stack.openai_requests_for(held)) >= 3, what="a retry")
    walker.stack.sandbox.openai.register(held, "valid")
    walker.wait(Step.CONNECTED, timeout=15)
    walker.user.send("/help")
    walker.wait_said(walker.content.reply("help"))
    walker.user.send("/privacy")
    walker.wait_said(walker.content.reply("privacy"))
    walker.user.send("/disconnect")
    walker.wait(Step.CONFIRM_DISCONNECT)
    walker.press("keep", Step.CONNECTED)
    said = walker.said()
    seen |= {step for step in Step if _text(walker.title(step)) in "\n".join(said)}
    leaks = english_leaks(walker.content, said)
    # 1b. Telegram slow to delete a pasted key: the key waits unused ("still deleting"), then is checked.
    slow = Walker(stacks["auto"], code)
    part_one(slow)
    slow.press("copied", Step.ENTER_WORKSPACE)
    slow.user.send(own_workspace(slow.user))
    slow.wait(Step.PASTE_KEY)
    # The previous guide's deletion must not take one of the flood waits meant for the key's.
    slow.user.wait_for(lambda: len(slow.user.bot_messages()) == 1 or None, 10, "only the new guide left")
    for _ in range(2):
        slow.stack.sandbox.telegram.fail_next("deleteMessage", 429, FLOOD_WAIT, retry_after=4)
    slow_key = fresh_key(hint="Slow")
    slow.stack.sandbox.openai.register(slow_key, "valid")
    slow.user.send(slow_key)
    slow.wait(Step.DELETING, timeout=15)
    slow.wait(Step.CONNECTED, timeout=20)
    seen |= {step for step in Step if _text(slow.title(step)) in "\n".join(slow.said())}
    leaks += english_leaks(slow.content, slow.said())
    # 2. No automatic connection: the guided Step 2.
    manual = Walker(stacks["manual"], code)
    part_one(manual, owner="service")
    manual.press("copied", Step.PASTE_KEY)
    service_key = fresh_key("service_account", hint="Manual")
    manual.stack.sandbox.openai.register(service_key, "valid")
    manual.user.send(service_key)
    manual.wait(Step.DT_LOG_IN)
    manual.press("next", Step.DT_INTEGRATIONS)
    manual.press("next", Step.DT_SELECT_OPENAI)
    manual.press("next", Step.DT_PASTE_CONNECT)
    manual.press("done", Step.CONNECTED)
    seen |= {step for step in Step if _text(manual.title(step)) in "\n".join(manual.said())}
    leaks += english_leaks(manual.content, manual.said())
    # 3. Invitation only: a key needs an agent's link.
    closed = Walker(stacks["closed"], code)
    part_one(closed)
    closed.press("copied", Step.INVITATION_NEEDED)
    seen |= {step for step in Step if _text(closed.title(step)) in "\n".join(closed.said())}
    leaks += english_leaks(closed.content, closed.said())

    assert set(Step) - seen == set()
    assert leaks == [] or code == "en"


def test_language_switches_at_once_and_rerenders_the_guide_in_place(stacks: dict[str, Stack]) -> None:
    walker = Walker(stacks["auto"], "en")
    walker.user.send("/start")
    walker.wait(Step.WELCOME)
    walker.press("begin", Step.OPEN_KEYS_PAGE)
    guide_id = walker.user.guide()["message_id"]
    walker.user.send("/language")
    picker = walker.user.wait_for(lambda: next((m for m in walker.user.bot_messages()
                                                if "Choose your language" in (m.get("text") or "")), None),
                                  what="the language picker")
    labels = walker.user.labels(picker)
    assert [label.removeprefix("✅ ") for label in labels] == [locale.name for locale in LOCALES]
    assert labels[0].startswith("✅ ")
    walker.user.press("Español", picker["message_id"])
    spanish = load_content("es")
    guide = walker.user.wait_for(lambda: (m := walker.user.message(guide_id)) and
                                 spanish.step(Step.OPEN_KEYS_PAGE)["title"] in (m.get("text") or "") and m,
                                 what="the guide in Spanish, edited in place")
    assert not guide["deleted"] and spanish.link("open_keys_page") in walker.user.labels(guide)
    walker.user.wait_for(lambda: "Español" in (walker.user.message(picker["message_id"]).get("text") or ""),
                         what="the picker confirming the switch")
    # The choice sticks: the next step, /help and the chat's command menu are in Spanish.
    walker.user.press(spanish.button("next"))
    walker.user.wait_guide(spanish.step(Step.CREATE_NEW_KEY)["title"])
    menus = [c for c in walker.user.calls("setMyCommands")
             if (c["params"].get("scope") or {}).get("chat_id") in (walker.user.user_id, str(walker.user.user_id))]
    assert menus and {c["description"] for c in menus[-1]["params"]["commands"]} >= {spanish.commands()["language"]}


def test_command_menus_are_registered_per_language(stacks: dict[str, Stack]) -> None:
    user = stacks["auto"].user()
    registered = {c["params"].get("language_code"): c["params"]["commands"] for c in user.calls("setMyCommands")
                  if (c["params"].get("scope") or {}).get("type") == "all_private_chats"}
    assert set(registered) >= {None, "en", "hi", "es", "pt", "id", "ar"}
    for locale in LOCALES:
        descriptions = {c["command"]: c["description"] for c in registered[locale.menu]}
        assert descriptions == load_content(locale.code).commands()
