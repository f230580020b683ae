"""The Mini App in a real browser: Debian's chromium driven by selenium, against the real bot process.

Telegram's ``telegram-web-app.js`` is blocked (no network in tests); a stand-in ``window.Telegram.WebApp``
is installed before the page's own scripts run (Chrome DevTools ``Page.addScriptToEvaluateOnNewDocument``),
carrying an initData the test computed with Telegram's algorithm, theme colours, and a MainButton drawn as a
real button at the bottom of the window, like Telegram's. The page itself is exactly what users get.

Set MINIAPP_SCREENSHOT=docs/miniapp-360.png to refresh the README's screenshot.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from bot.standins.chat_driver import ChatDriver
from bot.standins.demo_keys import DEMO_KEYS
from flows.locales import LOCALE_CODES
from tests.e2e.harness import new_database_url
from tests.e2e.miniapp import MiniAppStack, init_data_for, start_miniapp_stack
from tests.e2e.pasting import reach_paste_step

pytestmark = pytest.mark.e2e

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
if not (CHROMIUM and CHROMEDRIVER):
    pytest.skip("Debian's chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)",
                allow_module_level=True)

from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

WIDTH, HEIGHT = 360, 640
THEME = {"bg_color": "#fdf6e3", "text_color": "#1f2328", "hint_color": "#6d6d72", "link_color": "#1a73e8",
         "button_color": "#1a73e8", "button_text_color": "#ffffff", "secondary_bg_color": "#eee8d5"}
# The parts of Telegram.WebApp the page uses (https://core.telegram.org/bots/webapps#initializing-mini-apps).
STAND_IN = """
(function () {
  var state = window.__telegram = { closed: false, ready: false, expanded: false };
  var callbacks = [];
  var main = {
    text: '', isVisible: false, isActive: true, isProgressVisible: false,
    setText: function (text) { this.text = text; draw(); return this; },
    onClick: function (fn) { callbacks.push(fn); return this; },
    offClick: function (fn) { callbacks = callbacks.filter(function (f) { return f !== fn; }); return this; },
    show: function () { this.isVisible = true; draw(); return this; },
    hide: function () { this.isVisible = false; draw(); return this; },
    enable: function () { this.isActive = true; draw(); return this; },
    disable: function () { this.isActive = false; draw(); return this; },
    showProgress: function () { this.isProgressVisible = true; draw(); return this; },
    hideProgress: function () { this.isProgressVisible = false; draw(); return this; }
  };
  function draw() {
    if (!document.body) { document.addEventListener('DOMContentLoaded', draw); return; }
    var button = document.getElementById('tg-main-button');
    if (!button) {
      button = document.createElement('button');
      button.id = 'tg-main-button';
      button.addEventListener('click', function () {
        if (main.isActive) { callbacks.forEach(function (fn) { fn(); }); }
      });
      document.body.appendChild(button);
      document.body.style.paddingBottom = '56px';
    }
    button.textContent = main.isProgressVisible ? '…' : main.text;
    button.hidden = !main.isVisible;
    button.disabled = !main.isActive;
    button.style.cssText = 'position:fixed;left:0;right:0;bottom:0;height:48px;border:0;font:600 16px sans-serif;' +
      'background:' + THEME.button_color + ';color:' + THEME.button_text_color +
      (main.isVisible ? '' : ';display:none');
  }
  var THEME = __THEME__;
  window.Telegram = { WebApp: {
    initData: __INIT_DATA__, initDataUnsafe: {}, version: '8.0', platform: 'tdesktop', colorScheme: 'light',
    themeParams: THEME, MainButton: main,
    ready: function () { state.ready = true; }, expand: function () { state.expanded = true; },
    close: function () { state.closed = true; }, onEvent: function () {}
  } };
})();
"""


@pytest.fixture(scope="module")
def mini(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MiniAppStack]:
    folder = tmp_path_factory.mktemp("miniapp-browser")
    started = start_miniapp_stack(folder, new_database_url("sqlite", folder))
    yield started
    started.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     f"--window-size={WIDTH},{HEIGHT}", "--hide-scrollbars", "--force-device-scale-factor=1",
                     "--lang=en-US", "--no-first-run", "--disable-extensions"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["*telegram.org*"]})
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": True})
        yield driver
    finally:
        driver.quit()


def _open(browser: WebDriver, mini: MiniAppStack, user: ChatDriver, init_data: str) -> None:
    """Tap the guide's web_app button: Telegram opens its URL (here on the bot's loopback port) with initData."""
    buttons = [b for row in user.guide()["reply_markup"]["inline_keyboard"] for b in row if "web_app" in b]
    assert [b["text"] for b in buttons] == ["🔐 Enter the key securely"]
    target = urlsplit(buttons[0]["web_app"]["url"])
    _load(browser, f"{mini.url}{target.path}?{target.query}", init_data)


def _load(browser: WebDriver, url: str, init_data: str) -> None:
    """Open ``url`` as Telegram's webview would: ``Telegram.WebApp`` (the stand-in) is there before the page."""
    source = STAND_IN.replace("__INIT_DATA__", json.dumps(init_data)).replace("__THEME__", json.dumps(THEME))
    script = browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": source})
    try:
        browser.get(url)
        _wait(browser, lambda d: d.execute_script("return window.__telegram && window.__telegram.ready"))
    finally:
        browser.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", {"identifier": script["identifier"]})


def _wait(browser: WebDriver, condition: Any, timeout: float = 15) -> Any:
    return WebDriverWait(browser, timeout, poll_frequency=0.05).until(condition)


def _status(browser: WebDriver) -> str:
    return str(browser.find_element(By.ID, "status").text)


def _type_and_submit(browser: WebDriver, text: str) -> None:
    field = browser.find_element(By.ID, "key")
    field.clear()
    field.send_keys(text)
    main = browser.find_element(By.ID, "tg-main-button")
    assert main.is_displayed() and main.text == "Connect key"
    main.click()


def _at_paste_step(mini: MiniAppStack) -> ChatDriver:
    user = mini.stack.user()
    reach_paste_step(user)
    return user


def test_a_demo_key_typed_on_the_page_reaches_the_verdict_in_the_chat(browser: WebDriver,
                                                                       mini: MiniAppStack) -> None:
    user = _at_paste_step(mini)
    guide_before = user.guide()["message_id"]
    _open(browser, mini, user, init_data_for(user))
    field = browser.find_element(By.ID, "key")
    assert field.get_attribute("type") == "password"
    assert not browser.find_element(By.ID, "submit").is_displayed()  # Telegram's MainButton submits
    key = DEMO_KEYS["valid"].key
    field.send_keys(key)
    toggle = browser.find_element(By.ID, "toggle")
    toggle.click()
    assert (field.get_attribute("type"), toggle.text) == ("text", "Hide")
    toggle.click()
    assert (field.get_attribute("type"), toggle.text) == ("password", "Show")
    browser.find_element(By.ID, "tg-main-button").click()
    _wait(browser, lambda d: "Checking" in _status(d) or "Done" in _status(d))
    user.wait_for(lambda: user.guide()["message_id"] != guide_before and "You're done" in user.guide()["text"], 20,
                  "the chat's guide to reach the verdict")
    _wait(browser, lambda d: "Done" in _status(d), 20)
    _wait(browser, lambda d: d.execute_script("return window.__telegram.closed"), 10)  # closes itself
    assert browser.find_element(By.ID, "key").get_attribute("value") == ""
    assert key not in browser.page_source
    assert all(key not in (m.get("text") or "") for m in user.messages())  # never a message


def test_a_wrong_paste_is_explained_on_the_page(browser: WebDriver, mini: MiniAppStack) -> None:
    user = _at_paste_step(mini)
    _open(browser, mini, user, init_data_for(user))
    _type_and_submit(browser, "org-" + "Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2")
    _wait(browser, lambda d: d.find_element(By.ID, "help").is_displayed())
    assert "didn't work" in _status(browser)
    assert "organization" in browser.find_element(By.ID, "help").text.lower()
    assert browser.find_element(By.ID, "key").is_enabled()  # correct it right there
    assert "Paste your key here" in user.guide()["text"]  # the chat did not move


@pytest.mark.parametrize("launch", ["expired", "forged"])
def test_expired_or_forged_init_data_is_refused(browser: WebDriver, mini: MiniAppStack, launch: str) -> None:
    user = _at_paste_step(mini)
    init_data = init_data_for(user, age_s=3700) if launch == "expired" else init_data_for(user, token="1:FORGED")
    _open(browser, mini, user, init_data)
    _type_and_submit(browser, DEMO_KEYS["valid"].key)
    _wait(browser, lambda d: "expired" in _status(d))
    assert not browser.find_element(By.ID, "tg-main-button").is_displayed()
    assert "Paste your key here" in user.guide()["text"]


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_the_page_fits_a_360_pixel_phone_and_takes_telegrams_theme(browser: WebDriver, mini: MiniAppStack,
                                                                    tmp_path: Path) -> None:
    user = _at_paste_step(mini)
    _open(browser, mini, user, init_data_for(user))
    assert browser.execute_script("return document.documentElement.scrollWidth") <= WIDTH
    assert browser.execute_script("return getComputedStyle(document.body).backgroundColor") == "rgb(253, 246, 227)"
    assert browser.execute_script("return document.documentElement.dir") == "ltr"
    browser.find_element(By.ID, "key").send_keys("sk-proj-" + "•" * 10)
    png = browser.get_screenshot_as_png()
    assert _png_size(png) == (WIDTH, HEIGHT)
    (tmp_path / "miniapp-360.png").write_bytes(png)
    target = os.environ.get("MINIAPP_SCREENSHOT")
    if target:
        Path(target).write_bytes(png)


@pytest.mark.parametrize("language", LOCALE_CODES)
def test_every_language_fits_a_360_pixel_phone(browser: WebDriver, mini: MiniAppStack, language: str) -> None:
    """No sideways scrolling and nothing cut at the right edge in any language; Arabic reads right to left."""
    user = _at_paste_step(mini)
    _load(browser, f"{mini.url}/miniapp/key?lang={language}", init_data_for(user, language=language))
    browser.find_element(By.ID, "key").send_keys("sk-proj-" + "•" * 40)
    assert browser.execute_script("return document.documentElement.scrollWidth") <= WIDTH
    overflowing = browser.execute_script(
        "return Array.from(document.querySelectorAll('body *')).filter(e => e.offsetParent !== null)"
        ".filter(e => { const r = e.getBoundingClientRect(); return r.left < -0.5 || r.right > innerWidth + 0.5; })"
        ".map(e => e.id || e.tagName)")
    assert overflowing == [], overflowing
    assert browser.execute_script("return document.documentElement.dir") == ("rtl" if language == "ar" else "ltr")
    main = browser.find_element(By.ID, "tg-main-button")
    assert main.is_displayed() and main.text.strip()
    assert (main.text == "Connect key") == (language == "en"), main.text  # said in the page's language
