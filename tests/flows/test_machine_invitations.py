"""Closed mode: only customers bound to a workspace by an agent's handoff link get keys verified."""

from __future__ import annotations

import pytest

from flows import effects as fx
from flows import events as ev
from flows.content import load_content
from flows.inspection import inspect_pasted_text
from flows.machine import Policy, advance, next_step, previous_step
from flows.state import Conversation
from flows.steps import Step
from flows.view import ViewSettings, render_step

KEY = "sk-proj-" + "Ab3dEf5hIj7lMn9pQr1t" + "T3BlbkFJ" + "Uv2xYz4bCd6fGh8jKl0n"
CLOSED = Policy(auto_connect=True, can_hold=True, requires_invitation=True)
CLOSED_MANUAL = Policy(requires_invitation=True)
OPEN = Policy(auto_connect=True, asks_workspace=True)
INVITE = ev.InvitationRedeemed("ws_demo", "Demo Workspace")


def step(conv: Conversation, event: ev.Event, policy: Policy = CLOSED, now: float = 100.0):
    return advance(conv, event, policy, now)


def walk_to_copy_key(policy: Policy = CLOSED, conv: Conversation | None = None) -> Conversation:
    conv = conv or Conversation()
    for action in ["begin", "next", "next", "personal", "next", "default", "all"]:
        conv = step(conv, ev.ButtonPressed(conv.step.value, action), policy).conversation
    assert conv.step == Step.COPY_KEY
    return conv


def notices(transition) -> list[str | None]:
    return [e.notice for e in transition.effects if isinstance(e, fx.Render)]


@pytest.mark.parametrize("policy", [CLOSED, CLOSED_MANUAL])
def test_an_uninvited_user_reaches_ask_your_agent_instead_of_pasting(policy: Policy) -> None:
    conv = walk_to_copy_key(policy)
    moved = step(conv, ev.ButtonPressed("copy_key", "copied"), policy).conversation
    assert moved.step == Step.INVITATION_NEEDED
    assert previous_step(moved, policy) == Step.COPY_KEY


@pytest.mark.parametrize("kind_text", [KEY, "hello there", "sk-admin-" + "x" * 40])
def test_an_uninvited_paste_is_never_verified(kind_text: str) -> None:
    conv = Conversation(step=Step.PASTE_KEY)  # e.g. a conversation from before closed mode
    result = step(conv, ev.KeyPasted(inspect_pasted_text(kind_text)))
    assert result.conversation.step == Step.INVITATION_NEEDED
    assert not any(isinstance(e, fx.Verify | fx.Connect | fx.HoldKey | fx.RecordKey) for e in result.effects)
    assert result.conversation.key_last_four is None and result.conversation.attempt == 0
    assert notices(result)[0] in ("invitation_needed_deleted", "invitation_needed_exposed")


def test_an_uninvited_admin_key_gets_the_exposure_warning() -> None:
    result = step(Conversation(step=Step.WELCOME), ev.KeyPasted(inspect_pasted_text("sk-admin-" + "Ab3dEf5h" * 6)))
    assert notices(result) == ["invitation_needed_exposed"]


def test_a_pasted_key_at_any_step_is_refused_without_a_binding() -> None:
    for where in (Step.WELCOME, Step.CHOOSE_OWNER, Step.INVITATION_NEEDED, Step.KEY_PROBLEM):
        result = step(Conversation(step=where), ev.KeyPasted(inspect_pasted_text(KEY)))
        assert result.conversation.step == Step.INVITATION_NEEDED
        assert not any(isinstance(e, fx.Verify) for e in result.effects)


def test_open_mode_still_lets_users_name_their_workspace() -> None:
    conv = walk_to_copy_key(OPEN)
    assert step(conv, ev.ButtonPressed("copy_key", "copied"), OPEN).conversation.step == Step.ENTER_WORKSPACE


def test_the_default_policy_is_unchanged_for_existing_deployments() -> None:
    conv = walk_to_copy_key(Policy())
    assert next_step(conv, Policy()) == Step.PASTE_KEY


def test_redeeming_on_the_welcome_step_binds_the_workspace_and_starts_the_guide() -> None:
    result = step(Conversation(), INVITE)
    conv = result.conversation
    assert (conv.step, conv.workspace_id, conv.workspace_name) == (Step.WELCOME, "ws_demo", "Demo Workspace")
    assert notices(result) == ["invitation_welcome"]
    text = render_step(conv, load_content(), ViewSettings(), "invitation_welcome").text
    assert "Demo Workspace" in text


def test_an_invited_user_goes_from_copying_straight_to_pasting_and_gets_verified() -> None:
    conv = walk_to_copy_key(CLOSED, step(Conversation(), INVITE).conversation)
    conv = step(conv, ev.ButtonPressed("copy_key", "copied")).conversation
    assert conv.step == Step.PASTE_KEY
    assert previous_step(conv, CLOSED) == Step.COPY_KEY
    result = step(conv, ev.KeyPasted(inspect_pasted_text(KEY)))
    assert result.conversation.step == Step.VERIFYING
    assert any(isinstance(e, fx.Verify) and e.workspace_id == "ws_demo" for e in result.effects)


def test_redeeming_while_waiting_for_an_invitation_continues_at_the_paste_step() -> None:
    waiting = step(walk_to_copy_key(), ev.ButtonPressed("copy_key", "copied")).conversation
    result = step(waiting, INVITE)
    assert result.conversation.step == Step.PASTE_KEY
    assert result.conversation.choices == waiting.choices  # the guide progress is kept
    assert notices(result) == ["invitation_accepted"]


def test_an_already_connected_workspace_is_announced_and_replace_is_offered() -> None:
    event = ev.InvitationRedeemed("ws_demo", "Demo Workspace", already_connected=True, connected_last_four="wxyz")
    result = step(Conversation(), event)
    conv = result.conversation
    assert (conv.step, conv.connected, conv.key_last_four) == (Step.CONNECTED, True, "wxyz")
    assert notices(result) == ["invitation_already_connected"]
    replacing = step(conv, ev.ReplaceAsked())
    assert replacing.conversation.step == Step.PASTE_KEY and replacing.conversation.live_last_four == "wxyz"
    assert replacing.effects[0] == fx.Render(fresh=True, notice="replace_intro", notice_params={"last_four": "wxyz"})


def test_a_link_for_another_workspace_starts_a_fresh_guide() -> None:
    connected = Conversation(step=Step.CONNECTED, workspace_id="ws_old", connected=True, key_last_four="abcd")
    conv = step(connected, INVITE).conversation
    assert (conv.step, conv.workspace_id, conv.connected, conv.key_last_four) == (
        Step.WELCOME, "ws_demo", False, None)


def test_reopening_the_same_link_mid_guide_resumes() -> None:
    conv = Conversation(step=Step.NAME_KEY, workspace_id="ws_demo", workspace_name="Demo Workspace")
    result = step(conv, INVITE)
    assert result.conversation.step == Step.NAME_KEY
    assert notices(result) == ["invitation_welcome_back"]


def test_a_link_opened_while_a_key_is_being_checked_changes_nothing() -> None:
    conv = Conversation(step=Step.VERIFYING, workspace_id="ws_old", attempt=3)
    assert step(conv, INVITE).conversation == conv


@pytest.mark.parametrize("reason", ["expired", "revoked", "used", "unknown", "something-else"])
def test_a_refused_link_explains_and_binds_nothing(reason: str) -> None:
    result = step(Conversation(), ev.InvitationRefused(reason))
    assert result.conversation.workspace_id is None
    expected = reason if reason != "something-else" else "unknown"
    assert notices(result) == [f"invitation_{expected}"]
    text = load_content().notice(f"invitation_{expected}")
    assert "ask your DoubleTick agent for a new link" in text


def test_restart_keeps_the_binding_and_cancel_forgets_it() -> None:
    bound = step(Conversation(), INVITE).conversation
    assert step(bound, ev.RestartAsked()).conversation.workspace_id == "ws_demo"
    assert step(bound, ev.CancelAsked()).conversation.workspace_id is None


def test_the_invitation_step_renders_with_back_and_help() -> None:
    view = render_step(Conversation(step=Step.INVITATION_NEEDED, help_shown=True), load_content(), ViewSettings())
    assert "invitation link" in view.text and "{" not in view.text
    assert [b.callback for b in view.buttons] == ["invitation_needed|back"]


def test_a_revoked_link_unbinds_its_customer_before_any_key_is_taken() -> None:
    at_paste = step(step(walk_to_copy_key(CLOSED, step(Conversation(), INVITE).conversation),
                         ev.ButtonPressed("copy_key", "copied")).conversation, ev.HelpAsked()).conversation
    assert at_paste.step == Step.PASTE_KEY
    result = step(at_paste, ev.InvitationRefused("revoked", unbind="ws_demo"))
    assert (result.conversation.step, result.conversation.workspace_id) == (Step.INVITATION_NEEDED, None)
    assert notices(result) == ["invitation_revoked"]
    refused = step(result.conversation, ev.KeyPasted(inspect_pasted_text(KEY)))
    assert not any(isinstance(e, fx.Verify) for e in refused.effects)


def test_revoking_changes_nothing_once_connected_or_for_another_workspace() -> None:
    connected = Conversation(step=Step.CONNECTED, workspace_id="ws_demo", connected=True)
    assert step(connected, ev.InvitationRefused("revoked", unbind="ws_demo")).conversation == connected
    other = Conversation(step=Step.PASTE_KEY, workspace_id="ws_new")
    assert step(other, ev.InvitationRefused("revoked", unbind="ws_demo")).conversation == other
    early = Conversation(step=Step.NAME_KEY, workspace_id="ws_demo")
    assert step(early, ev.InvitationRefused("revoked", unbind="ws_demo")).conversation.workspace_id is None
