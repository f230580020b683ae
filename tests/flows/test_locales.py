"""Every locale says everything English says: same keys, placeholders, tags and dashboard labels, within
Telegram's limits and at most 1.6× the English length per step; plurals come from CLDR; Arabic keeps
English labels, key endings, codes and URLs in their own order (checked with a real bidi implementation).
"""

from __future__ import annotations

import re
import string
import tomllib
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from bidi import get_base_level, get_display

from flows.content import CONTENT_FOLDER, load_content, missing_content
from flows.labels import DASHBOARD_LABELS, bold_labels
from flows.locales import LOCALE_CODES, LOCALES, locale_for
from flows.numbers import FSI, LRI, PDI, count, duration, plural_categories
from flows.problems import PROBLEMS
from flows.secret_shapes import SHORTER_THAN_USUAL
from flows.state import Conversation
from flows.steps import SPECS, Step
from flows.view import (
    ViewSettings,
    parse_language_callback,
    render_language_changed,
    render_language_picker,
    render_reply,
    render_step,
)

OTHERS = [code for code in LOCALE_CODES if code != "en"]
TAG = re.compile(r"<(/?)([a-zA-Z-]+)([^>]*)>")
# Bot API "Formatting options", HTML style: the only tags Telegram accepts.
TELEGRAM_TAGS = {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler", "a",
                 "tg-emoji", "code", "pre", "blockquote"}
MAX_TEXT = 4096  # sendMessage/editMessageText text, after entity parsing
MAX_CAPTION = 1024  # sendPhoto caption (the handoff link's QR)
MAX_COMMAND = 256  # BotCommand.description
MAX_TOAST = 200  # answerCallbackQuery text
MAX_COPY = 256  # CopyTextButton.text
LENGTH_RATIO = 1.6
ISOLATES = FSI + LRI + PDI


def raw(code: str) -> dict[str, Any]:
    return tomllib.loads((CONTENT_FOLDER / f"{code}.toml").read_text(encoding="utf-8"))


def flat(data: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from flat(value, path + ".")
        else:
            yield path, value


def texts(code: str) -> dict[str, str]:
    """Every translatable string, by dotted key; plural tables are checked on their own."""
    return {k: str(v) for k, v in flat(raw(code)) if not k.startswith("plurals.") and k != "meta.locale"}


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


PLAIN_SECTIONS = ("commands.", "agent_commands.", "admin_commands.", "callback_answers.", "buttons.", "links.",
                  "copy.", "media_kinds.", "texts.", "miniapp.")  # plain text, never parsed as HTML


def html_texts(code: str) -> dict[str, str]:
    return {k: v for k, v in texts(code).items() if not k.startswith(PLAIN_SECTIONS)}


def tags(text: str) -> Counter[str]:
    return Counter(f"{close}{name}" for close, name, _ in TAG.findall(text))


def plain(text: str) -> str:
    return re.sub(r"<[^>]+>", "", text).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


LONG = ViewSettings(operator="O" * 64, hold_minutes=120, retention_days=365,
                    support_url="https://example.com/" + "s" * 60)


def long_conversation(step: Step, problem: str | None = None) -> Conversation:
    return Conversation(step=step, problem=problem, problem_detail="d" * 120, help_shown=True,
                        workspace_id="w" * 64, workspace_name="N" * 128, key_last_four="abcd")


def usual_conversation(step: Step, problem: str | None = None) -> Conversation:
    return Conversation(step=step, problem=problem, problem_detail="5", help_shown=True, workspace_id="acme-sales",
                        key_last_four="abcd")


def every_view(code: str, settings: ViewSettings = LONG, *, longest: bool = True) -> Iterator[tuple[str, str]]:
    content = load_content(code)
    make = long_conversation if longest else usual_conversation
    for step in SPECS:
        for problem in (list(PROBLEMS) if step == Step.KEY_PROBLEM else [None]):
            view = render_step(make(step, problem), content, settings)
            yield f"{step.value}/{problem}", view.text


# -- structure -------------------------------------------------------------------------------------
def test_every_locale_has_a_file_and_the_loader_finds_it() -> None:
    for locale in LOCALES:
        assert (CONTENT_FOLDER / f"{locale.code}.toml").is_file(), locale.code
        assert load_content(locale.code).locale == locale.code
        assert raw(locale.code)["meta"]["locale"] == locale.code


@pytest.mark.parametrize("code", OTHERS)
def test_locale_has_exactly_the_english_keys(code: str) -> None:
    english, other = texts("en"), texts(code)
    assert sorted(set(english) - set(other)) == [], "missing"
    assert sorted(set(other) - set(english)) == [], "not in en.toml"
    assert missing_content(load_content(code)) == []


@pytest.mark.parametrize("code", LOCALE_CODES)
def test_plural_tables_cover_every_cldr_category_of_the_locale(code: str) -> None:
    english_names = set(raw("en").get("plurals", {}))
    tables = raw(code).get("plurals", {})
    assert set(tables) == english_names
    for name, forms in tables.items():
        assert set(forms) >= plural_categories(code), (name, sorted(plural_categories(code)))
        assert all(placeholders(v) <= {"n"} for v in forms.values()), name  # Arabic says "رابطان", no digit


@pytest.mark.parametrize("code", OTHERS)
def test_same_placeholders_and_same_tags_as_english(code: str) -> None:
    english, other = texts("en"), texts(code)
    for key, text in other.items():
        assert placeholders(text) == placeholders(english[key]), key
        if not key.startswith(PLAIN_SECTIONS):
            assert tags(text) == tags(english[key]), key


@pytest.mark.parametrize("code", LOCALE_CODES)
def test_tags_are_balanced_and_allowed_by_telegram(code: str) -> None:
    for key, text in html_texts(code).items():
        stack: list[str] = []
        for close, name, _ in TAG.findall(text):
            assert name in TELEGRAM_TAGS, (key, name)
            if close:
                assert stack and stack.pop() == name, (key, text)
            else:
                stack.append(name)
        assert not stack, (key, text)


@pytest.mark.parametrize("code", OTHERS)
def test_every_english_dashboard_label_stays_in_english_and_bold(code: str) -> None:
    english, other = texts("en"), texts(code)
    for key, text in english.items():
        needed = Counter(bold_labels(text))
        kept = Counter(bold_labels(other[key]))
        assert not needed - kept, (key, sorted((needed - kept).elements()))


def test_the_label_list_only_names_labels_the_english_text_uses() -> None:
    used = {label for text in texts("en").values() for label in bold_labels(text)}
    assert used == DASHBOARD_LABELS


# Texts that may read the same as English: names, codes and formats, no sentence to translate.
SAME_AS_ENGLISH = {"copy.key_name.text", "steps.key_problem.text", "notices.key_warning", "agent.agents_line",
                   "agent.customer", "media_kinds.animation", "callback_answers.ok", "links.open_doubletick",
                   "buttons.default", "buttons.all", "buttons.restricted", "buttons.service", "agent.link_line",
                   "media_kinds.sticker", "media_kinds.video", "media_kinds.audio", "agent.origin_admin",
                   "agent_families.service_account",
                   "agent.status_workspace",  # Indonesian says "workspace" too
                   "miniapp.placeholder", "permission_texts.line",
                   *(f"permissions.{name}.label" for name in ("models_read", "model_request", "responses_write",
                                                              "assistants_write", "threads_write", "files_write",
                                                              "vector_stores_write"))}


@pytest.mark.parametrize("code", OTHERS)
def test_no_sentence_is_left_in_english(code: str) -> None:
    english, other = texts("en"), texts(code)
    same = {k for k, v in other.items() if v == english[k] and v.strip()} - SAME_AS_ENGLISH
    assert sorted(same) == []


# -- limits ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("code", LOCALE_CODES)
def test_rendered_texts_fit_telegram_with_the_longest_values(code: str) -> None:
    content = load_content(code)
    for where, text in every_view(code):
        assert utf16(plain(text)) <= MAX_TEXT, where
        assert "{" not in text, where
    for name in ("help", "privacy", "cancelled", "disconnected", "group_redirect", "group_deleted",
                 "group_cannot_delete", "forwarded_original"):
        assert utf16(plain(render_reply(name, content, LONG))) <= MAX_TEXT, name
    for key, text in texts(code).items():
        section = key.split(".")[0]
        if section in ("commands", "agent_commands", "admin_commands"):
            assert 1 <= len(text) <= MAX_COMMAND, key
        if section == "callback_answers":
            assert len(text) <= MAX_TOAST, key
        if section in ("buttons", "links") or key == "copy.key_name.label":
            assert len(text) <= 64, key
    for name in raw(code)["notices"]:  # every notice with every value at its longest
        notice = content.notice(name)
        filled = notice.format(**{field: "N" * 128 for field in placeholders(notice)})
        assert utf16(plain(filled)) <= MAX_TEXT, name
    assert len(content.copy("key_name")[1]) <= MAX_COPY
    from bot.agents.notifications import agent_text  # the real renderer of agent texts

    caption = agent_text(content, "link_created", workspace="w" * 128, label=" · " + "l" * 64,
                         link="https://t.me/" + "b" * 32 + "?start=" + "t" * 64, id=99999999,
                         expires="2026-12-31 23:59 UTC")
    assert utf16(plain(caption)) <= MAX_CAPTION


def _lengths(code: str) -> dict[str, int]:
    return {where: len(plain(text)) for where, text in every_view(code, ViewSettings(), longest=False)}


@pytest.mark.parametrize("code", OTHERS)
def test_each_step_is_at_most_1_6_times_the_english_length(code: str) -> None:
    english, other = _lengths("en"), _lengths(code)
    too_long = {where: round(n / english[where], 2) for where, n in other.items() if n > LENGTH_RATIO * english[where]}
    assert too_long == {}


# -- choosing a locale -----------------------------------------------------------------------------
@pytest.mark.parametrize(("telegram", "expected"), [
    ("pt", "pt-BR"), ("pt-br", "pt-BR"), ("pt-BR", "pt-BR"), ("pt-PT", "pt-BR"), ("es", "es"), ("es-419", "es"),
    ("es-MX", "es"), ("in", "id"), ("id", "id"), ("hi", "hi"), ("ar", "ar"), ("ar-SA", "ar"), ("en-GB", "en"),
    ("fr", "en"), ("zh-hans", "en"), ("", "en"), (None, "en"),
])
def test_telegram_language_code_maps_to_a_locale(telegram: str | None, expected: str) -> None:
    assert locale_for(telegram).code == expected
    assert load_content(telegram).locale == expected


def test_language_picker_shows_the_six_in_their_own_names_and_ticks_the_current() -> None:
    view = render_language_picker(load_content("es"))
    labels = [b.label for b in view.buttons]
    assert labels == [("✅ " if locale.code == "es" else "") + locale.name for locale in LOCALES]
    assert [parse_language_callback(b.callback) for b in view.buttons] == list(LOCALE_CODES)
    assert "Elige tu idioma" in view.text
    assert "Español" in render_language_changed(load_content("es"))
    assert parse_language_callback("language|xx") is None and parse_language_callback("welcome|next") is None


# -- plurals and numbers ---------------------------------------------------------------------------
@pytest.mark.parametrize(("code", "one", "five"), [
    ("en", "1 minute", "5 minutes"), ("es", "1 minuto", "5 minutos"), ("pt-BR", "1 minuto", "5 minutos"),
    ("id", "1 menit", "5 menit"), ("hi", "1 मिनट", "5 मिनट"), ("ar", "دقيقة", "5 دقائق"),
])
def test_try_again_in_one_minute_or_five_minutes_comes_from_cldr(code: str, one: str, five: str) -> None:
    content = load_content(code)
    for n, expected in ((1, one), (5, five)):
        conv = Conversation(step=Step.KEY_PROBLEM, problem="over_limit", problem_detail=str(n))
        text = plain(render_step(conv, content, ViewSettings()).text)
        assert expected in text.translate({ord(c): None for c in ISOLATES}), (code, n, text)
    assert duration("en", 1, "second") == "1 second" and duration("en", 30, "second") == "30 seconds"


def test_counts_pick_the_cldr_form() -> None:
    assert count("en", load_content("en").plural("open_links"), 1) == "1 link"
    assert count("en", load_content("en").plural("open_links"), 3) == "3 links"
    arabic = load_content("ar").plural("open_links")
    assert {count("ar", arabic, n) for n in (0, 1, 2, 3, 11, 100)} == {arabic[c].format(n=n) for c, n in (
        ("zero", 0), ("one", 1), ("two", 2), ("few", 3), ("many", 11), ("other", 100))}


# -- Arabic: right to left -------------------------------------------------------------------------
LTR_ISLAND = re.compile(r"<code>(.*?)</code>|<b>(.*?)</b>|(https?://\S+|web\.doubletick\.io|platform\.openai\.com)")


ARABIC_LETTER = re.compile(r"[\u0600-\u06ff]")


def _visual_lines(text: str) -> list[str]:
    """What a reader sees, line by line: the Unicode bidi algorithm (python-bidi), each paragraph's direction
    found from its first strong character as Telegram's clients do; a line with Arabic must come out RTL."""
    lines = []
    for line in plain(text).split("\n"):
        if ARABIC_LETTER.search(line):
            assert get_base_level(line) == 1, f"line would be laid out left to right: {line!r}"
        lines.append(get_display(line).translate({ord(c): None for c in ISOLATES}))
    return lines


def _islands(text: str) -> list[str]:
    """The left-to-right runs an Arabic text holds: codes, dashboard labels, key endings, URLs."""
    found: list[str] = []
    for code_part, bold, url in LTR_ISLAND.findall(text):
        for part in (code_part, bold, url):
            part = plain(part).translate({ord(c): None for c in ISOLATES}).strip().rstrip(".,;:)")
            if part and (part in DASHBOARD_LABELS or code_part or url) and not ARABIC_LETTER.search(part):
                found.append(part)
    return found


def test_arabic_keeps_english_labels_key_endings_codes_and_urls_in_reading_order() -> None:
    settings = ViewSettings(support_url="https://web.doubletick.io")
    checked = 0
    for where, text in every_view("ar", settings):
        visual = "\n".join(_visual_lines(text))
        for island in _islands(text):
            assert island in visual, (where, island)
            checked += 1
        if "…abcd" in plain(text).translate({ord(c): None for c in ISOLATES}):
            assert "…abcd" in visual, where
    assert checked > 50


@pytest.mark.parametrize("code", LOCALE_CODES)
def test_media_kinds_and_key_warnings_are_said_in_the_locale(code: str) -> None:
    content = load_content(code)
    paste = Conversation(step=Step.PASTE_KEY)
    photo = render_step(paste, content, ViewSettings(), "media_at_paste", {"kind": "photo"}).text
    assert content.data["media_kinds"]["photo"] in photo
    warned = render_step(paste, content, ViewSettings(), "key_warning", {"warning": SHORTER_THAN_USUAL}).text
    assert content.data["key_warnings"]["shorter"] in warned
    assert (SHORTER_THAN_USUAL in warned) == (code == "en")


def test_arabic_buttons_and_commands_read_right_to_left() -> None:
    content = load_content("ar")
    labels = [b.label for step in SPECS for b in render_step(Conversation(step=step), content, ViewSettings()).buttons]
    labels += list(content.commands().values())
    for label in labels:
        if ARABIC_LETTER.search(label):
            assert get_base_level(label) == 1, label


def test_arabic_isolates_the_values_it_fills_in() -> None:
    conv = Conversation(step=Step.CONNECTED, workspace_id="acme-sales", key_last_four="abcd")
    text = render_step(conv, load_content("ar"), ViewSettings()).text
    assert f"{FSI}acme-sales{PDI}" in text
    english = render_step(conv, load_content("en"), ViewSettings()).text
    assert not set(ISOLATES) & set(english)
