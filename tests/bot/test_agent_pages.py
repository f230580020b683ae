"""/links and /status in pages (issue 9): every entry once, every page within Telegram's 4096, in all six
languages at the longest allowed values; page buttons that fit 64 bytes and never look like guide buttons.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from bot.agents.links import MAX_LABEL, MAX_WORKSPACE_NAME
from bot.agents.notifications import Customer, agent_text
from bot.agents.pages import (
    LINKS,
    MAX_PAGE,
    PAGE_PATTERN,
    STATUS,
    PageRequest,
    is_key_of,
    page_buttons,
    page_callback,
    parse_page_callback,
    shortened_key,
    split_pages,
)
from bot.agents.status import CustomerStatus, StatusDesk, StatusReport
from bot.core.chat_text import TEXT_LIMIT, telegram_length
from flows.content import Content, load_content
from flows.locales import LOCALE_CODES
from flows.numbers import count, number
from flows.state import Conversation
from flows.steps import SPECS, Step
from flows.view import ViewSettings, parse_callback_data, render_step
from storage.models import Conversation as ConversationRow
from storage.models import HandoffLink, KeyRecord

WORKSPACE = ("acme.retail-" * 6)[:64]  # the longest id (64), in words: one long run would look like a key
NAME = ("Acme Retail Group " * 8)[:MAX_WORKSPACE_NAME]
UNTIL = "2026-12-31 23:59 UTC"


def longest_link_line(content: Content, n: int) -> str:
    """One /links line at its longest: big id, longest name and label, opened by a 32-character username."""
    customer = Customer(9_999_999_999, "u" * 32).describe(content)
    state = agent_text(content, "state_opened", safe={"customer": customer})
    label = f" · {(f'{n:04d} ' + 'follow up on the pilot ' * 3)[:MAX_LABEL]}"
    return agent_text(content, "link_line", id=99_999_000 + n, workspace=NAME, label=label, expires=UNTIL,
                      safe={"state": state})


def marker_of(content: Content) -> Any:
    def marker(page: int, total: int) -> str:
        return agent_text(content, "page_marker", page=number(content.locale, page),
                          pages=number(content.locale, total))
    return marker


def head_of(content: Content, n: int) -> str:
    return agent_text(content, "links_header", count=count(content.locale, content.plural("open_links"), n))


def check_pages(pages: list[str], head: str, entries: list[str], joiner: str) -> None:
    """Every page fits; every entry is on exactly one page, whole and in order; head on every page."""
    assert pages
    for text in pages:
        assert telegram_length(text, "HTML") <= TEXT_LIMIT
        assert text.startswith(head)
    seen = [entry for text in pages for entry in text.split(joiner) if entry in entries]
    assert seen == entries


@pytest.mark.parametrize("code", LOCALE_CODES)
@pytest.mark.parametrize("n", [0, 1, 2, 20, 60, 333])
def test_links_pages_hold_every_entry_once_and_fit_in_every_language(code: str, n: int) -> None:
    content = load_content(code)
    entries = [longest_link_line(content, i) for i in range(n)]
    head = head_of(content, n)
    pages = split_pages(head, entries, marker_of(content))
    check_pages(pages, head, entries, "\n")
    total = len(pages)
    if total == 1:
        assert pages == ["\n".join([head, *entries])]  # one page: as before, no "page 1 of 1"
        return
    assert n >= 20
    for at, text in enumerate(pages, start=1):
        assert text.split("\n")[1] == marker_of(content)(at, total)
    # as many whole entries as fit: the next page's first entry would not have fitted
    position = 0
    for at, text in enumerate(pages[:-1], start=1):
        position += len([line for line in text.split("\n") if line in entries])
        assert telegram_length(text + "\n" + entries[position], "HTML") > TEXT_LIMIT, (at, total)


@pytest.mark.parametrize("code", LOCALE_CODES)
def test_an_entry_near_the_limit_gets_a_page_of_its_own(code: str) -> None:
    content = load_content(code)
    big = "<b>" + "word " * 790 + "</b>"  # ~3,950 characters: fits with the head and the marker, alone
    small = [longest_link_line(content, i) for i in range(3)]
    entries = [small[0], big, small[1], small[2]]
    head = head_of(content, len(entries))
    pages = split_pages(head, entries, marker_of(content))
    check_pages(pages, head, entries, "\n")
    assert [big in text for text in pages] == [False, True, False]
    too_big = "x" * (TEXT_LIMIT + 10)  # cannot fit even alone: its own page, cut by fit.py when sent
    pages = split_pages(head, [small[0], too_big, small[1]], marker_of(content))
    assert len(pages) == 3 and too_big in pages[1]
    assert telegram_length(pages[0], "HTML") <= TEXT_LIMIT and telegram_length(pages[2], "HTML") <= TEXT_LIMIT


def _customer(n: int, now: datetime) -> CustomerStatus:
    row = ConversationRow(chat_id=10_000_000_000 + n, user_id=10_000_000_000 + n, username=f"{n:02d}" + "c" * 30,
                          step=Step.KEY_PROBLEM.value, workspace_id=WORKSPACE, last_outcome="o" * 64,
                          created_at=now, updated_at=now, step_entered_at=now)
    link = HandoffLink(id=99_999_000 + n, digest="0" * 64, workspace_id=WORKSPACE, workspace_name=NAME,
                       label="l" * MAX_LABEL, created_by=1, created_via="bot", created_at=now,
                       expires_at=now + timedelta(days=3))
    key = KeyRecord(chat_id=row.chat_id, user_id=row.user_id, workspace_id=WORKSPACE, fingerprint="f" * 64,
                    last_four="abcd", family="service_account", outcome="o" * 64, connected_at=now)
    return CustomerStatus(row, link, key)


@pytest.mark.parametrize("code", LOCALE_CODES)
def test_status_of_a_busy_workspace_is_paged_with_the_workspace_on_every_page(code: str) -> None:
    content = load_content(code)
    now = datetime(2026, 12, 1, tzinfo=UTC)
    customers = [_customer(n, now) for n in range(30)]
    report = StatusReport(WORKSPACE, WORKSPACE, customers[0].key, [c.link for c in customers[:5] if c.link],
                          customers)
    desk = StatusDesk(cast(Any, None), clock=lambda: now)
    head, entries = desk.render_parts(report, content)
    assert WORKSPACE in head and len(entries) == 35
    pages = split_pages(head, entries, marker_of(content), joiner="\n\n")
    assert len(pages) > 1
    check_pages(pages, head, entries, "\n\n")
    assert desk.render(report, content) == "\n\n".join([head, *entries])  # the API's one-piece form


# -- buttons ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("key", ["", "ws_demo", "@" + "u" * 32, "#999999999", WORKSPACE, "w" * 64])
@pytest.mark.parametrize("page", [1, 42, MAX_PAGE])
def test_page_callbacks_fit_64_bytes_and_round_trip(key: str, page: int) -> None:
    kind = STATUS if key else LINKS
    data = page_callback(kind, page, key)
    assert 1 <= len(data.encode()) <= 64
    request = parse_page_callback(data)
    assert request is not None and request.kind == kind and request.page == page
    if len(f"ap:{kind}:{page}:{key}") <= 64:
        assert request == PageRequest(kind, page, key)
    else:  # shortened: the start of the id and a hash that tells it from others with the same start
        short = shortened_key(request.key)
        assert short is not None and key.startswith(short[0]) and is_key_of(key, short[1])
        assert not is_key_of(key[:-1] + "x", short[1])


@pytest.mark.parametrize("data", [None, "", "ap:l", "ap:x:1", "ap:l:0", "ap:l:-1", "ap:l:1e3", "ap:s:2",
                                  "ap:l:100000", "xp:l:1", "ap:l:٣", "ap:s:1:" + "w" * 64, "welcome|next"])
def test_forged_or_foreign_callbacks_are_not_pages(data: str | None) -> None:
    assert parse_page_callback(data) is None


def test_page_buttons_never_look_like_guide_buttons_and_guide_buttons_never_like_pages() -> None:
    content = load_content("en")
    for step in SPECS:
        view = render_step(Conversation(step=step), content, ViewSettings())
        for button in view.buttons:
            assert button.callback is None or not re.match(PAGE_PATTERN, button.callback)
    for data in (page_callback(LINKS, 3), page_callback(STATUS, 2, WORKSPACE), page_callback(STATUS, 2, "@ana")):
        assert re.match(PAGE_PATTERN, data) and parse_callback_data(data) is None


@pytest.mark.parametrize("code", LOCALE_CODES)
def test_previous_and_next_only_where_there_is_a_page_to_go_to(code: str) -> None:
    content = load_content(code)
    assert page_buttons(content, LINKS, 1, 1) is None
    first, middle, last = (page_buttons(content, STATUS, at, 3, "ws_demo") for at in (1, 2, 3))
    assert first is not None and middle is not None and last is not None
    labels = [[b.text for b in markup.inline_keyboard[0]] for markup in (first, middle, last)]
    previous, following = content.button("page_previous"), content.button("page_next")
    assert labels == [[following], [previous, following], [previous]]
    assert [b.callback_data for b in middle.inline_keyboard[0]] == ["ap:s:1:ws_demo", "ap:s:3:ws_demo"]
