"""The guide texts are data: every step, problem, notice and button has its text."""

from __future__ import annotations

import re

import pytest

from flows.content import load_content, missing_content
from flows.problems import PROBLEMS
from flows.state import Conversation
from flows.steps import SPECS, Step
from flows.view import MAX_CALLBACK_BYTES, ViewSettings, parse_callback_data, render_reply, render_step


def test_english_content_is_complete() -> None:
    assert missing_content(load_content("en")) == []


def test_unknown_locale_falls_back_to_english() -> None:
    assert load_content("pt-br").locale == "en"


@pytest.mark.parametrize("step", list(SPECS))
def test_every_step_renders_with_buttons_that_fit_telegram(step: Step) -> None:
    for problem in list(PROBLEMS) if step == Step.KEY_PROBLEM else [None]:
        view = render_step(
            Conversation(step=step, problem=problem, help_shown=True), load_content(), ViewSettings()
        )
        assert view.text.strip() and len(view.text) < 4096
        for button in view.buttons:
            assert button.label
            if button.callback:
                assert len(button.callback.encode()) <= MAX_CALLBACK_BYTES
                assert parse_callback_data(button.callback) == (step.value, button.callback.split("|")[1])
        assert "{" not in view.text, view.text


def test_guide_steps_offer_back_and_im_stuck() -> None:
    labels = [
        b.label
        for b in render_step(Conversation(step=Step.CHOOSE_OWNER), load_content(), ViewSettings()).buttons
    ]
    assert any("Back" in label for label in labels) and any("stuck" in label for label in labels)
    assert any("Personal" in label for label in labels) and any("Service" in label for label in labels)


def test_keys_page_step_links_to_openai_and_name_step_has_a_copy_button() -> None:
    content, settings = load_content(), ViewSettings()
    urls = [b.url for b in render_step(Conversation(step=Step.OPEN_KEYS_PAGE), content, settings).buttons]
    assert "https://platform.openai.com/settings/organization/api-keys" in urls
    copies = [b.copy_text for b in render_step(Conversation(step=Step.NAME_KEY), content, settings).buttons]
    assert "DoubleTick Integration" in copies


def test_user_supplied_values_are_html_escaped() -> None:
    conv = Conversation(step=Step.CONNECTED, workspace_id="<b>x</b>", connected=True, key_last_four="<i>")
    text = render_step(conv, load_content(), ViewSettings()).text
    assert ("&lt;b&gt;x&lt;/b&gt;" in text and "<i>" not in text.replace("<i>", "", 0)) or "&lt;i&gt;" in text


@pytest.mark.parametrize("data", [None, "", "a|b|c", "x" * 65, "welcome|<script>", "welcome"])
def test_forged_callback_data_is_rejected(data: str | None) -> None:
    assert parse_callback_data(data) is None


def test_privacy_says_who_runs_the_bot_what_is_stored_and_for_how_long() -> None:
    text = render_reply("privacy", load_content(), ViewSettings(operator="Acme Ops", retention_days=30))
    assert "Acme Ops" in text and "30 days" in text and "Never the key itself" in text


def test_welcome_promises_deletion_and_says_how_long_it_takes() -> None:
    text = render_step(Conversation(), load_content(), ViewSettings()).text
    assert "delete your message the moment it arrives" in text and "5 minutes" in text


# -- step 1.6 from OPENAI_REQUIRED_CAPABILITIES (issue 11 item 5) ----------------------------------------


def _plain(text: str) -> str:
    return re.sub(r"<[^>]+>", "", text)


def test_step_1_6_lists_exactly_the_permissions_of_the_required_capabilities() -> None:
    content = load_content()
    default = _plain(render_step(Conversation(step=Step.RESTRICTED_PERMISSIONS), content, ViewSettings()).text)
    assert "Models (List models): Read" in default and "Model capabilities: Request" in default
    assert "Responses" not in default and "Assistants" not in default
    wide = ViewSettings(capabilities=("models.read", "chat.completions", "responses"))
    text = _plain(render_step(Conversation(step=Step.RESTRICTED_PERMISSIONS, help_shown=True), content, wide).text)
    assert "Responses (/v1/responses): Write" in text and "api.responses.write" in text
    assert text.count("Model capabilities: Request") == 1  # chat and responses share it: listed once
    narrow = ViewSettings(capabilities=("chat.completions",))
    only = _plain(render_step(Conversation(step=Step.RESTRICTED_PERMISSIONS), content, narrow).text)
    assert "Models (List models)" not in only and "Model capabilities: Request" in only


def test_step_1_6_names_read_only_and_why_it_will_not_do() -> None:
    content = load_content()
    text = _plain(render_step(Conversation(step=Step.CHOOSE_PERMISSIONS), content, ViewSettings()).text)
    assert "Read only" in text and "Don't pick it" in text and "Model capabilities: Request" in text
    reading = ViewSettings(capabilities=("models.read",))
    assert "enough here" in _plain(render_step(Conversation(step=Step.CHOOSE_PERMISSIONS), content, reading).text)


def test_the_missing_permission_is_named_in_openais_words_and_ours() -> None:
    conv = Conversation(step=Step.KEY_PROBLEM, problem="missing_scope", problem_detail="api.responses.write")
    settings = ViewSettings(capabilities=("models.read", "chat.completions", "responses"))
    text = _plain(render_step(conv, load_content(), settings).text)
    assert "lacks a permission DoubleTick needs: Model capabilities → Responses (/v1/responses): Write" in text
    assert "Missing scopes: api.responses.write" in text


def test_the_paste_step_says_what_the_check_costs_once() -> None:
    content = load_content()
    billed = _plain(render_step(Conversation(step=Step.PASTE_KEY), content, ViewSettings()).text)
    assert billed.count("test request") == 1 and "fraction of a cent" in billed
    free = _plain(render_step(Conversation(step=Step.PASTE_KEY), content, ViewSettings(billed_probe=False)).text)
    assert "free requests only" in free and "cent" not in free
