"""Who may change a workspace's connection, and what a customer without a link is told from the start."""

from __future__ import annotations

import pytest

from flows import effects as fx
from flows import events as ev
from flows.content import load_content
from flows.inspection import inspect_pasted_text
from flows.machine import Policy, advance
from flows.outcomes import ConnectionOutcome, ConnectionResult, VerificationOutcome, VerificationResult
from flows.state import Conversation
from flows.steps import Step
from flows.view import ViewSettings, render_reply, render_step

KEY = "sk-proj-" + "Ab3dEf5hIj7lMn9pQr1t" + "T3BlbkFJ" + "Uv2xYz4bCd6fGh8jKl0n"
CLOSED = Policy(auto_connect=True, can_hold=True, requires_invitation=True)
DEMO = Policy(auto_connect=True, asks_workspace=True)
CONTENT = load_content()


def step(conv: Conversation, event: ev.Event, policy: Policy = CLOSED, now: float = 1000.0):
    return advance(conv, event, policy, now)


def notices(transition) -> list[str | None]:
    return [e.notice for e in transition.effects if isinstance(e, fx.Render)]


def test_a_link_records_how_and_when_it_bound_the_chat() -> None:
    agent = step(Conversation(), ev.InvitationRedeemed("ws_a", bound_at=500.0)).conversation
    assert (agent.bound_via, agent.bound_at) == ("agent_link", 500.0)
    # A signed link binds as of its mint time, not of the moment it is opened (``now`` is 1000).
    signed = step(Conversation(), ev.InvitationRedeemed("ws_a", via="signed_link", bound_at=400.0)).conversation
    assert (signed.bound_via, signed.bound_at) == ("signed_link", 400.0)


def test_a_link_without_a_proof_time_never_counts_as_fresh() -> None:
    """A legacy signed link carries no mint time: it binds, but the machine must not invent one (now)."""
    legacy = step(Conversation(), ev.InvitationRedeemed("ws_a", via="signed_link")).conversation
    assert (legacy.workspace_id, legacy.bound_via, legacy.bound_at) == ("ws_a", "signed_link", None)
    # Reopening an old link after a fresh one: the binding is as old as the link last opened.
    fresh = Conversation(workspace_id="ws_a", bound_via="signed_link", bound_at=900.0)
    assert step(fresh, ev.InvitationRedeemed("ws_a", via="signed_link", bound_at=100.0)).conversation.bound_at == 100.0
    assert step(fresh, ev.InvitationRedeemed("ws_a", via="signed_link")).conversation.bound_at is None


def test_a_typed_workspace_is_never_a_proof() -> None:
    conv = Conversation(step=Step.ENTER_WORKSPACE)
    typed = step(conv, ev.TextSent("ws_demo"), DEMO).conversation
    assert (typed.workspace_id, typed.bound_via, typed.bound_at) == ("ws_demo", "typed", None)


def _verified(conv: Conversation, policy: Policy = CLOSED):
    pasted = step(conv, ev.KeyPasted(inspect_pasted_text(KEY)), policy).conversation
    return step(pasted, ev.VerificationFinished(pasted.attempt, VerificationResult(VerificationOutcome.VALID)),
                policy)


def test_connect_and_disconnect_carry_the_binding_time() -> None:
    conv = Conversation(step=Step.PASTE_KEY, workspace_id="ws_a", bound_via="agent_link", bound_at=700.0)
    verified = _verified(conv)
    assert fx.Connect(verified.conversation.attempt, "ws_a", 700.0) in verified.effects
    connected = Conversation(step=Step.CONNECTED, workspace_id="ws_a", connected=True, bound_at=700.0)
    asked = step(connected, ev.DisconnectAsked()).conversation
    confirm = step(asked, ev.ButtonPressed("confirm_disconnect", "confirm"))
    assert fx.Disconnect("ws_a", 700.0) in confirm.effects


def test_the_binding_survives_restart_and_disconnect() -> None:
    conv = Conversation(step=Step.CONNECTED, workspace_id="ws_a", connected=True, bound_via="signed_link",
                        bound_at=700.0)
    restarted = step(conv, ev.RestartAsked()).conversation
    assert (restarted.bound_via, restarted.bound_at) == ("signed_link", 700.0)
    gone = step(conv, ev.DisconnectFinished(ConnectionResult(ConnectionOutcome.DISCONNECTED))).conversation
    assert (gone.workspace_id, gone.bound_at) == ("ws_a", 700.0)


def test_a_refused_replacement_explains_and_keeps_nothing() -> None:
    conv = Conversation(step=Step.PASTE_KEY, workspace_id="ws_demo", bound_via="typed")
    verified = _verified(conv, DEMO).conversation
    result = step(verified, ev.ConnectionFinished(verified.attempt,
                                                  ConnectionResult(ConnectionOutcome.FOREIGN_WORKSPACE)), DEMO)
    assert (result.conversation.step, result.conversation.problem) == (Step.KEY_PROBLEM, "foreign_workspace")
    assert not result.conversation.connected
    assert not any(isinstance(e, fx.RecordKey) for e in result.effects)
    text = render_step(result.conversation, CONTENT, ViewSettings()).text
    assert "did <b>not</b> connect" in text and "new link" in text


def test_a_refused_disconnect_says_why_and_returns() -> None:
    conv = Conversation(step=Step.CONFIRM_DISCONNECT, workspace_id="ws_demo", connected=True,
                        resume_step=Step.CONNECTED)
    result = step(conv, ev.DisconnectFinished(ConnectionResult(ConnectionOutcome.FOREIGN_WORKSPACE)))
    assert result.conversation.step == Step.CONNECTED
    assert notices(result) == ["disconnect_foreign"]


@pytest.mark.parametrize("action", ["replace", "disconnect"])
def test_the_owner_hears_of_a_refused_attempt_and_keeps_its_connection(action: str) -> None:
    owner = Conversation(step=Step.CONNECTED, workspace_id="ws_demo", connected=True, key_last_four="abcd")
    result = step(owner, ev.WorkspaceChangedElsewhere("ws_demo", action, refused=True))
    assert result.conversation == owner
    assert notices(result) == [f"workspace_{action}_refused_elsewhere"]
    text = render_step(owner, CONTENT, ViewSettings(), notices(result)[0]).text
    assert "another chat" in text and "nothing changed" in text


@pytest.mark.parametrize("action", ["replace", "disconnect"])
def test_the_owner_hears_of_a_change_and_no_longer_claims_the_key(action: str) -> None:
    owner = Conversation(step=Step.CONNECTED, workspace_id="ws_demo", connected=True, key_last_four="abcd")
    result = step(owner, ev.WorkspaceChangedElsewhere("ws_demo", action, refused=False))
    assert not result.conversation.connected and result.conversation.key_last_four is None
    assert result.conversation.workspace_id == "ws_demo"
    assert notices(result) == [f"workspace_{action}_done_elsewhere"]


def test_a_change_to_another_workspace_is_ignored() -> None:
    owner = Conversation(step=Step.CONNECTED, workspace_id="ws_mine", connected=True)
    assert step(owner, ev.WorkspaceChangedElsewhere("ws_other", "replace", refused=False)).effects == ()


def test_without_a_link_the_customer_is_told_before_creating_a_key() -> None:
    begun = step(Conversation(), ev.ButtonPressed("welcome", "begin"))
    assert begun.conversation.step == Step.OPEN_KEYS_PAGE
    assert notices(begun) == ["link_needed_before_key"]
    onward = step(begun.conversation, ev.ButtonPressed("open_keys_page", "next"))
    assert onward.conversation.step == Step.CREATE_NEW_KEY
    assert notices(onward) == ["link_needed_before_key"]
    text = render_step(onward.conversation, CONTENT, ViewSettings(), "link_needed_before_key").text
    assert "Before you create a key" in text


def test_with_a_link_or_in_demo_mode_no_reminder() -> None:
    bound = Conversation(workspace_id="ws_a", bound_via="agent_link", bound_at=1.0)
    assert notices(step(bound, ev.ButtonPressed("welcome", "begin"))) == [None]
    assert notices(step(Conversation(), ev.ButtonPressed("welcome", "begin"), DEMO)) == [None]


def test_the_welcome_and_help_say_a_link_is_needed_when_the_operator_requires_one() -> None:
    closed = ViewSettings(requires_link=True, support_contact="Acme support")
    welcome = render_step(Conversation(), CONTENT, closed).text
    assert "You need a link" in welcome and "dashboard" in welcome
    assert "You need a link" not in render_step(Conversation(), CONTENT, ViewSettings()).text
    assert "You need a link" not in render_step(Conversation(workspace_id="ws_a"), CONTENT, closed).text
    help_text = render_reply("help", CONTENT, closed)
    assert "t.me/" in help_text and "paste it here" in help_text
    assert "t.me/" not in render_reply("help", CONTENT, ViewSettings())


def test_signed_link_refusals_have_their_own_words() -> None:
    for reason in ("signed_expired", "signed_forged", "signed_disabled"):
        result = step(Conversation(), ev.InvitationRefused(reason))
        assert notices(result) == [f"invitation_{reason}"]
        assert CONTENT.notice(f"invitation_{reason}")
    welcome = step(Conversation(), ev.InvitationRedeemed("ws_a", via="signed_link"))
    assert notices(welcome) == ["signed_link_welcome"]
