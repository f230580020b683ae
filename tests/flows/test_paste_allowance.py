"""Only a paste that will really be checked uses up the user's hourly allowance (issue 11 item 2)."""

from __future__ import annotations

import pytest

from flows.machine import Policy, paste_is_checked
from flows.state import Conversation
from flows.steps import Step

OPEN = Policy(auto_connect=True, asks_workspace=True)
CLOSED = Policy(auto_connect=True, requires_invitation=True)


@pytest.mark.parametrize(("policy", "conv", "checked"), [
    (OPEN, Conversation(step=Step.ENTER_WORKSPACE), False),  # workspace not typed yet: "workspace first"
    (OPEN, Conversation(step=Step.WELCOME), False),
    (OPEN, Conversation(step=Step.PASTE_KEY, workspace_id="ws_demo"), True),
    (CLOSED, Conversation(step=Step.PASTE_KEY), False),  # uninvited: refused, nothing sent to OpenAI
    (CLOSED, Conversation(step=Step.PASTE_KEY, workspace_id="ws_acme"), True),
    (Policy(), Conversation(step=Step.VERIFYING), False),  # busy: "send it again once I'm done"
    (Policy(), Conversation(step=Step.KEY_PROBLEM), True),
])
def test_a_paste_counts_only_when_it_is_checked(policy: Policy, conv: Conversation, checked: bool) -> None:
    assert paste_is_checked(conv, policy) is checked
