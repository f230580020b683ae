"""A key whose message Telegram is slow to delete waits unused ("deleting"), then goes on or is exposed."""

from __future__ import annotations

from flows import effects as fx
from flows import events as ev
from flows.inspection import inspect_pasted_text
from flows.machine import Policy, advance
from flows.state import Conversation
from flows.steps import Step

POLICY = Policy(auto_connect=True, deleting_timeout_s=700.0)
KEY = "sk-proj-" + "A1b2C3d4E5" * 15 + "wxyz"


def at(step: Step, **changes: object) -> Conversation:
    return Conversation(step=step, workspace_id="ws_demo", attempt=3, **changes)  # type: ignore[arg-type]


def pending(conv: Conversation, message_id: int = 77) -> tuple[Conversation, tuple[fx.Effect, ...]]:
    t = advance(conv, ev.DeletionPending(message_id, inspect_pasted_text(KEY)), POLICY, 100.0)
    return t.conversation, t.effects


def test_a_slow_deletion_waits_unused_and_is_never_called_exposed() -> None:
    conv, effects = pending(at(Step.PASTE_KEY))
    assert conv.step == Step.DELETING and conv.attempt == 4 and conv.problem is None
    assert fx.AwaitDeletion(77, 4) in effects
    assert not any(isinstance(e, fx.Verify | fx.Connect | fx.HoldKey | fx.RecordKey) for e in effects)
    assert "wxyz" not in repr(conv.to_record()) and KEY not in repr(conv.to_record())


def test_once_the_message_is_gone_the_paste_goes_on_as_usual() -> None:
    conv, _ = pending(at(Step.PASTE_KEY))
    t = advance(conv, ev.DeletionConfirmed(4, ev.KeyPasted(inspect_pasted_text(KEY))), POLICY, 110.0)
    assert t.conversation.step == Step.VERIFYING and t.conversation.key_last_four == "wxyz"
    assert any(isinstance(e, fx.Verify) and e.attempt == t.conversation.attempt for e in t.effects)


def test_telegram_finally_refusing_says_exposed() -> None:
    conv, _ = pending(at(Step.PASTE_KEY))
    t = advance(conv, ev.DeletionFailed("too_old", 4, late=True), POLICY, 110.0)
    assert t.conversation.step == Step.KEY_PROBLEM and t.conversation.problem == "deletion_failed"


def test_a_newer_paste_wins_and_the_older_key_is_dropped_unused() -> None:
    conv, _ = pending(at(Step.PASTE_KEY))
    newer = advance(conv, ev.KeyPasted(inspect_pasted_text(KEY)), POLICY, 105.0).conversation
    assert newer.step == Step.VERIFYING
    late = advance(newer, ev.DeletionConfirmed(4, ev.KeyPasted(inspect_pasted_text(KEY))), POLICY, 110.0)
    assert late.conversation == newer and not late.effects
    exposed = advance(newer, ev.DeletionFailed("other", 4, late=True), POLICY, 110.0)
    assert exposed.conversation == newer, "a running check of the newer key is not cut off"
    assert fx.Reply("deletion_failed_late") in exposed.effects


def test_while_another_key_is_checked_the_slow_one_is_not_used() -> None:
    conv, effects = pending(at(Step.VERIFYING))
    assert conv.step == Step.VERIFYING and conv.attempt == 3
    assert fx.AwaitDeletion(77, None) in effects
    assert any(isinstance(e, fx.Render) and e.notice == "still_deleting_unused" for e in effects)


def test_a_file_slow_to_delete_is_watched_only() -> None:
    t = advance(at(Step.PASTE_KEY), ev.DeletionPending(5, None), POLICY, 100.0)
    assert t.conversation.step == Step.PASTE_KEY and fx.AwaitDeletion(5, None) in t.effects


def test_replacing_a_connected_key_is_remembered_while_deleting() -> None:
    conv, _ = pending(at(Step.CONNECTED, connected=True, connected_last_four="old1"))
    assert conv.replacing
    t = advance(conv, ev.DeletionConfirmed(4, ev.KeyPasted(inspect_pasted_text(KEY))), POLICY, 110.0)
    assert t.conversation.replacing and t.conversation.step == Step.VERIFYING


def test_after_a_crash_start_says_the_message_may_still_be_visible() -> None:
    conv, _ = pending(at(Step.PASTE_KEY))
    early = advance(conv, ev.Started(), POLICY, 200.0)
    assert early.conversation.step == Step.DELETING
    late = advance(conv, ev.Started(), POLICY, 100.0 + 701.0)
    assert late.conversation.step == Step.PASTE_KEY
    assert any(isinstance(e, fx.Render) and e.notice == "deleting_interrupted" for e in late.effects)


def test_buttons_and_stray_text_do_not_end_the_wait() -> None:
    conv, _ = pending(at(Step.PASTE_KEY))
    assert advance(conv, ev.ButtonPressed("deleting", "stuck"), POLICY, 101.0).conversation.step == Step.DELETING
    assert advance(conv, ev.TextSent("hello?"), POLICY, 101.0).conversation.step == Step.DELETING
