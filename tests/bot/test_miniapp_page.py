"""The Mini App's pure parts: the PUBLIC_BASE_URL setting, the button in the guide, the page's markup."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from bot.config import public_origin
from bot.web.miniapp import CSP, TELEGRAM_SCRIPT, page_texts, plain, render_page
from flows.content import MINIAPP_TEXTS, Content, load_content
from flows.state import Conversation
from flows.steps import Step
from flows.view import ViewSettings, render_problem, render_step
from tests.bot.support import sandbox_settings


@pytest.mark.parametrize(("value", "origin"), [
    ("https://bot.example.com", "https://bot.example.com"),
    ("https://bot.example.com/", "https://bot.example.com"),
    ("https://example.com/onboarding/", "https://example.com/onboarding"),
    ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
    ("http://localhost:8080", "http://localhost:8080"),
    ("http://[::1]:8080", "http://[::1]:8080"),
    ("http://127.0.0.2:8080", "http://127.0.0.2:8080"),
])
def test_public_base_url_accepts_https_and_loopback_http(value: str, origin: str) -> None:
    assert public_origin(value) == origin


@pytest.mark.parametrize("value", ["http://bot.example.com", "http://10.0.0.5", "ftp://x.example",
                                   "http://127.attacker.example", "http://127.0.0.1.nip.io", "http://localhost.evil",
                                   "bot.example.com", "https://u:p@bot.example.com", "https://x.example/?a=1"])
def test_public_base_url_refuses_plain_http_elsewhere_and_non_origins(value: str) -> None:
    with pytest.raises(ValueError, match="PUBLIC_BASE_URL"):
        public_origin(value)


def test_the_setting_refuses_plain_http_at_start(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="https"):
        sandbox_settings("http://127.0.0.1:9", tmp_path, public_base_url="http://bot.example.com")


def _paste_view(settings: ViewSettings, step: Step = Step.PASTE_KEY) -> list[tuple[str, str | None]]:
    view = render_step(Conversation(step=step), load_content("en"), settings)
    return [(b.label, b.web_app) for b in view.buttons]


def test_the_paste_step_offers_the_mini_app_first_only_when_public_base_url_is_https(tmp_path: Path) -> None:
    https = sandbox_settings("http://127.0.0.1:9", tmp_path, public_base_url="https://bot.example.com")
    buttons = _paste_view(https.view_settings())
    assert buttons[0] == ("🔐 Enter the key securely", "https://bot.example.com/miniapp/key?lang=en")
    assert [label for label, url in buttons if url] == ["🔐 Enter the key securely"]
    assert not [url for _, url in _paste_view(https.view_settings(), Step.WELCOME) if url]
    loopback = sandbox_settings("http://127.0.0.1:9", tmp_path, public_base_url="http://127.0.0.1:8080")
    assert not [url for _, url in _paste_view(loopback.view_settings()) if url]  # Telegram needs HTTPS
    unset = sandbox_settings("http://127.0.0.1:9", tmp_path)
    assert not [url for _, url in _paste_view(unset.view_settings()) if url]


class _Markup(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.script_bodies: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.script_bodies.append(data)


def _parse(page: str) -> _Markup:
    markup = _Markup()
    markup.feed(page)
    return markup


def test_the_page_has_no_inline_script_or_style_and_a_careful_key_field() -> None:
    markup = _parse(render_page(load_content("en")))
    scripts = [attrs.get("src") for tag, attrs in markup.tags if tag == "script"]
    assert scripts == [TELEGRAM_SCRIPT, "static/key.js"] and not markup.script_bodies
    assert not [tag for tag, attrs in markup.tags if "style" in attrs or any(a.startswith("on") for a in attrs)]
    assert not [tag for tag, _ in markup.tags if tag == "style"]
    field = next(attrs for tag, attrs in markup.tags if tag == "input")
    assert field["type"] == "password" and field["autocomplete"] == "off"
    assert field["autocapitalize"] == "off" and field["spellcheck"] == "false"
    html_tag = next(attrs for tag, attrs in markup.tags if tag == "html")
    assert (html_tag["lang"], html_tag["dir"]) == ("en", "ltr")
    assert "script-src 'self' https://telegram.org/js/telegram-web-app.js;" in CSP and "unsafe" not in CSP


def test_the_page_is_right_to_left_for_arabic_and_reads_the_locale_texts() -> None:
    english = load_content("en")
    arabic_texts = {name: f"نص {name}" for name in MINIAPP_TEXTS if name != "network"}
    arabic = Content("ar", {**english.data, "miniapp": arabic_texts})
    page = render_page(arabic)
    html_tag = next(attrs for tag, attrs in _parse(page).tags if tag == "html")
    assert (html_tag["lang"], html_tag["dir"]) == ("ar", "rtl")
    texts = page_texts(arabic)
    assert texts["title"] == "نص title" and texts["network"] == english.miniapp("network")  # untranslated: English
    assert 'data-t-checking="نص checking"' in page
    key_field = next(attrs for tag, attrs in _parse(page).tags if tag == "input")
    assert key_field["dir"] == "ltr"  # a key reads left to right in any language


def test_page_texts_are_escaped() -> None:
    english = load_content("en")
    hostile = Content("en", {**english.data, "miniapp": {**english.data["miniapp"], "title": '<b x="1">&'}})
    page = render_page(hostile)
    assert "<b x" not in page and "&lt;b x=&quot;1&quot;&gt;&amp;" in page


def test_the_422_help_is_the_chats_problem_text_in_plain_words() -> None:
    settings = ViewSettings()
    chat = render_step(Conversation(step=Step.KEY_PROBLEM, problem="organization_id"), load_content("en"), settings)
    help_text = plain(render_problem("organization_id", load_content("en"), settings))
    assert help_text and help_text.split("\n")[0] in plain(chat.text)
    assert not re.search(r"<[a-z/]", help_text)


def test_a_key_from_the_mini_app_is_not_said_to_be_a_deleted_message() -> None:
    from flows import events as ev
    from flows.inspection import inspect_pasted_text
    from flows.machine import Policy, advance

    key = "sk-proj-" + "Ab1" * 30
    at_paste = Conversation(step=Step.PASTE_KEY, workspace_id="ws_demo")
    for via, expected, absent in ((True, "never a message", "deleted"), (False, "deleted", "never a message")):
        moved = advance(at_paste, ev.KeyPasted(inspect_pasted_text(key), via_miniapp=via), Policy(), 10.0)
        assert moved.conversation.step == Step.VERIFYING
        text = plain(render_step(moved.conversation, load_content("en"), ViewSettings()).text)
        assert expected in text and absent not in text
