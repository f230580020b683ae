"""The guide texts are data: every step, problem, notice and button has its text."""

from __future__ import annotations

import re

import pytest

from flows.content import load_content, missing_content
from flows.locales import LOCALES
from flows.problems import PROBLEMS
from flows.state import Conversation
from flows.steps import SPECS, Step
from flows.view import MAX_CALLBACK_BYTES, ViewSettings, parse_callback_data, render_reply, render_step


def test_english_content_is_complete() -> None:
    assert missing_content(load_content("en")) == []


def test_unknown_locale_falls_back_to_english() -> None:
    assert load_content("pt-br").locale == "pt-BR" and load_content("fr-CA").locale == "en"


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


# -- issue 11 items 8, 9, 11 ---------------------------------------------------------------------------------


def _problem(name: str, detail: str | None = None, settings: ViewSettings | None = None):
    conv = Conversation(step=Step.KEY_PROBLEM, problem=name, problem_detail=detail)
    return render_step(conv, load_content(), settings or ViewSettings(support_url="https://example.com/help"))


def test_the_admin_key_answer_opens_the_admin_keys_page() -> None:
    urls = [b.url for b in _problem("admin").buttons if b.url]
    assert urls[0] == "https://platform.openai.com/settings/organization/admin-keys"


def test_a_deactivated_account_is_sent_to_openai_help_not_doubletick_support() -> None:
    urls = [b.url for b in _problem("account_deactivated").buttons if b.url]
    assert urls == ["https://help.openai.com"]


@pytest.mark.parametrize("name", ["masked", "organization_id", "project_id", "incomplete"])
def test_harmless_pastes_say_they_were_deleted(name: str) -> None:
    assert "deleted" in _problem(name).text


def test_an_incomplete_key_is_not_called_masked() -> None:
    text = _plain(_problem("incomplete").text)
    assert "masked" not in text and "dots or stars" not in text and "beginning of a key" in text


def test_the_ip_allowlist_answer_gives_the_address_or_says_how_to_get_it() -> None:
    named = _plain(_problem("ip_not_allowed", "203.0.113.9").text)
    assert "The address to add: 203.0.113.9." in named
    egress = ViewSettings(egress_ips=("198.51.100.1", "198.51.100.2"))
    configured = _plain(_problem("ip_not_allowed", None, egress).text)
    assert "The address to add: 198.51.100.1, 198.51.100.2." in configured
    unknown = _plain(_problem("ip_not_allowed", None, ViewSettings(support_contact="@acme_help")).text)
    assert "Ask @acme_help for the address" in unknown


def test_privacy_names_the_privacy_contact_not_a_login_page() -> None:
    text = render_reply("privacy", load_content(), ViewSettings(privacy_contact="privacy@example.com",
                                                                support_url="https://web.doubletick.io"))
    assert "Questions or deletion requests: privacy@example.com" in text and "web.doubletick.io" not in text
    fallback = render_reply("privacy", load_content(), ViewSettings(support_url="https://web.doubletick.io"))
    assert "web.doubletick.io" not in fallback


@pytest.mark.parametrize("locale", [locale.code for locale in LOCALES])
def test_privacy_without_a_contact_says_what_the_customer_can_do(locale: str) -> None:
    """Issue 11, item 9: "Questions or deletion requests: DoubleTick support." named nobody to write to."""
    content = load_content(locale)
    text = render_reply("privacy", content, ViewSettings())
    last = text.rsplit("\n", 1)[-1]
    assert content.text("support_contact") not in last
    assert "/cancel" in last and "/disconnect" in last and "DoubleTick" in last


def test_step_1_2_and_its_help_agree_where_the_button_is() -> None:
    view = render_step(Conversation(step=Step.CREATE_NEW_KEY, help_shown=True), load_content(), ViewSettings())
    assert "bottom" not in view.text and "top" in view.text


def test_editing_the_permissions_lists_them_and_never_says_create() -> None:
    text = _plain(render_step(Conversation(step=Step.EDIT_PERMISSIONS), load_content(), ViewSettings()).text)
    assert "Model capabilities: Request" in text and "Save" in text and "Create secret key" not in text
