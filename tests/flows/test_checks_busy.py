"""Issue 14: over the bot-wide verification limit a paste waits for its slot instead of being refused."""

from __future__ import annotations

from dataclasses import replace

from flows import effects as fx
from flows import events as ev
from flows.content import load_content
from flows.inspection import inspect_pasted_text
from flows.locales import LOCALE_CODES
from flows.machine import Policy, advance
from flows.outcomes import VerificationOutcome, VerificationResult
from flows.state import Conversation
from flows.steps import Step
from flows.view import ViewSettings, render_step

KEY = "sk-proj-" + "Ab3dEf5hIj7lMn9pQr1t" + "T3Blbk" + "FJ" + "Uv2xYz4bCd6fGh8jKl0n"
MEMORY = Policy(auto_connect=True, asks_workspace=True, can_hold=False, pipeline_timeout_s=120.0)
SEALED = replace(MEMORY, can_hold=True, queue_hold_s=450.0)


def at_paste() -> Conversation:
    return Conversation(step=Step.PASTE_KEY, workspace_id="ws_demo")


def queued(policy: Policy, wait: float = 41.2, now: float = 1000.0) -> tuple[Conversation, tuple[fx.Effect, ...]]:
    t = advance(at_paste(), ev.KeyPasted(inspect_pasted_text(KEY), queued_s=wait), policy, now)
    return t.conversation, t.effects


def busy_notice(effects: tuple[fx.Effect, ...]) -> fx.Render:
    return next(e for e in effects if isinstance(e, fx.Render) and e.notice == "checks_busy")


def test_without_an_outbox_the_key_waits_in_the_pipeline_for_its_slot() -> None:
    conv, effects = queued(MEMORY)
    assert conv.step == Step.VERIFYING and conv.attempt == 1 and conv.check_at == 1041.2
    assert fx.Verify(1, "ws_demo", wait_s=41.2) in effects
    assert busy_notice(effects).notice_params["seconds"] == "42"  # rounded up
    assert not any(isinstance(e, fx.HoldKey) for e in effects)


def test_with_an_outbox_the_key_is_sealed_until_its_slot() -> None:
    conv, effects = queued(SEALED)
    assert conv.step == Step.HELD and conv.check_at == 1041.2
    assert fx.HoldKey(1, "verify", 41.2, at_slot=True) in effects
    assert busy_notice(effects).notice_params["seconds"] == "42"
    assert not any(isinstance(e, fx.Verify) for e in effects)


def test_an_outbox_without_a_hold_time_leaves_the_key_in_the_pipeline() -> None:
    conv, effects = queued(replace(SEALED, queue_hold_s=0.0))
    assert conv.step == Step.VERIFYING and fx.Verify(1, "ws_demo", wait_s=41.2) in effects


def test_the_eta_is_at_least_one_second() -> None:
    _, effects = queued(MEMORY, wait=0.2)
    assert busy_notice(effects).notice_params["seconds"] == "1"


def test_a_queued_check_is_timed_from_its_slot_not_from_the_paste() -> None:
    conv, _ = queued(MEMORY, wait=100.0, now=1000.0)
    # 150 s after the paste is only 50 s into the check: /start must not call it interrupted
    assert advance(conv, ev.Started(), MEMORY, 1150.0).conversation.step == Step.VERIFYING
    assert advance(conv, ev.Started(), MEMORY, 1000.0 + 100.0 + 121.0).conversation.step == Step.PASTE_KEY


def test_the_verdict_of_a_queued_check_is_taken_and_the_wait_is_forgotten() -> None:
    conv, _ = queued(MEMORY)
    valid = ev.VerificationFinished(1, VerificationResult(VerificationOutcome.VALID))
    after = advance(conv, valid, MEMORY, 1050.0)
    assert after.conversation.step == Step.CONNECTING
    assert after.conversation.pipeline_since == 1050.0


def test_the_per_user_limit_still_refuses() -> None:
    t = advance(at_paste(), ev.KeyPasted(inspect_pasted_text(KEY), retry_in_minutes=12), MEMORY, 10.0)
    assert t.conversation.step == Step.KEY_PROBLEM and t.conversation.problem == "over_limit"
    assert not any(isinstance(e, fx.Verify | fx.HoldKey) for e in t.effects)


def test_no_wait_is_an_ordinary_check() -> None:
    t = advance(at_paste(), ev.KeyPasted(inspect_pasted_text(KEY), queued_s=0.0), MEMORY, 10.0)
    assert fx.Verify(1, "ws_demo") in t.effects and t.conversation.check_at is None


def test_every_locale_says_the_key_is_deleted_and_when_the_answer_comes() -> None:
    conv, effects = queued(MEMORY, wait=6.5)
    render = busy_notice(effects)
    for code in LOCALE_CODES:
        view = render_step(conv, load_content(code), ViewSettings(), render.notice, render.notice_params)
        assert "🔒" in view.text and "7" in view.text and "{" not in view.text, code
        assert len(view.text) <= 4096
    english = render_step(conv, load_content("en"), ViewSettings(), render.notice, render.notice_params)
    assert "Checks are busy right now" in english.text and "about 7 seconds" in english.text


def test_a_key_sealed_for_its_turn_is_not_called_a_failure() -> None:
    conv, effects = queued(SEALED)
    render = busy_notice(effects)
    for code in LOCALE_CODES:
        view = render_step(conv, load_content(code), ViewSettings(), render.notice, render.notice_params)
        assert load_content(code).step(Step.HELD)["title_queued"] in view.text, code
    english = render_step(conv, load_content("en"), ViewSettings()).text
    assert "waits its turn" in english and "isn't answering" not in english


def test_a_queued_check_that_ends_up_held_is_held_for_a_failure() -> None:
    conv, _ = queued(replace(SEALED, queue_hold_s=0.0))  # waited in memory, then OpenAI failed
    unsure = ev.VerificationFinished(1, VerificationResult(VerificationOutcome.INDETERMINATE))
    held = advance(conv, unsure, SEALED, 1050.0).conversation
    assert held.step == Step.HELD and held.check_at is None
    assert "isn't answering" in render_step(held, load_content("en"), ViewSettings()).text


def test_a_key_typed_in_the_mini_app_is_not_called_a_deleted_message() -> None:
    t = advance(at_paste(), ev.KeyPasted(inspect_pasted_text(KEY), queued_s=3.0, via_miniapp=True), MEMORY, 10.0)
    render = next(e for e in t.effects if isinstance(e, fx.Render))
    assert render.notice == "checks_busy_miniapp"
    text = render_step(t.conversation, load_content("en"), ViewSettings(), render.notice, render.notice_params).text
    assert "about 3 seconds" in text and "deleted" not in text.split("\n\n")[0]
