"""Print the machine as a Mermaid state diagram, derived by running the machine itself.

Why derived: a hand-drawn diagram drifts; this one is produced by feeding representative events to
:func:`flows.machine.advance` from every step under every policy and recording where it goes.
"""

from __future__ import annotations

from collections import defaultdict
from itertools import product

from flows import events as ev
from flows.inspection import inspect_pasted_text
from flows.machine import Policy, advance
from flows.outcomes import ConnectionOutcome, ConnectionResult, VerificationOutcome, VerificationResult
from flows.problems import PROBLEMS
from flows.state import Conversation
from flows.steps import SPECS, SkipContext, Step, is_skipped

__all__ = ["edges", "mermaid"]

SAMPLE_KEY = "sk-proj-" + "A1b2C3d4E5f6G7h8I9j0" + "T3BlbkFJ" + "K1l2M3n4O5p6Q7r8S9t0"
POLICIES = [Policy(auto_connect=a, asks_workspace=w, can_hold=h)
            for a, w, h in product((False, True), repeat=3) if a or not w]
POLICIES.append(Policy(requires_invitation=True))  # closed mode, before the customer opened a link
VARIANTS = [
    {"owner": "personal", "permissions": "all"},
    {"owner": "personal", "permissions": "restricted"},
    {"owner": "service"},
]


def _events(conv: Conversation) -> list[tuple[str, ev.Event]]:
    spec = SPECS[conv.step]
    out: list[tuple[str, ev.Event]] = [(c.action, ev.ButtonPressed(conv.step.value, c.action)) for c in spec.choices]
    if conv.step == Step.KEY_PROBLEM and conv.problem:
        out += [(a.action, ev.ButtonPressed(conv.step.value, a.action)) for a in PROBLEMS[conv.problem].actions]
    if conv.step == Step.CONFIRM_DISCONNECT:
        out.append(("disconnected", ev.DisconnectFinished(ConnectionResult(ConnectionOutcome.CONNECTED))))
    if conv.step == Step.INVITATION_NEEDED:
        out.append(("agent's link opened", ev.InvitationRedeemed("ws")))
    if conv.step in (Step.PASTE_KEY, Step.KEY_PROBLEM):  # elsewhere: see the note in mermaid()
        out += [("key pasted", ev.KeyPasted(inspect_pasted_text(SAMPLE_KEY))),
                ("not a key", ev.KeyPasted(inspect_pasted_text("hello")))]
    out += [
        ("workspace id", ev.TextSent("acme-sales")),
        ("/replace", ev.ReplaceAsked()),
        ("/disconnect", ev.DisconnectAsked()),
    ]
    for outcome in VerificationOutcome:
        label = "valid" if outcome == VerificationOutcome.VALID else "verdict: problem"
        if outcome in (VerificationOutcome.INDETERMINATE, VerificationOutcome.RATE_LIMITED):
            label = "OpenAI unsure"
        out.append((label, ev.VerificationFinished(conv.attempt, VerificationResult(outcome))))
    out.append(("already connected", ev.VerificationFinished(
        conv.attempt, VerificationResult(VerificationOutcome.VALID), already_connected=True)))
    for c_outcome in ConnectionOutcome:
        label = {"connected": "connected", "transient": "DoubleTick down",
                 "not_configured": "no auto-connect"}.get(c_outcome.value, "DoubleTick refused")
        out.append((label, ev.ConnectionFinished(conv.attempt, ConnectionResult(c_outcome))))
    return out


def edges() -> dict[tuple[Step, Step], set[str]]:
    """Every (from, to) step pair the machine can take, with the events that take it."""
    found: dict[tuple[Step, Step], set[str]] = defaultdict(set)
    for step, policy, choices in product(SPECS, POLICIES, VARIANTS):
        if is_skipped(step, SkipContext(choices=choices, asks_workspace=policy.asks_workspace,
                                        needs_invitation=policy.requires_invitation)):
            continue
        problems = list(PROBLEMS) if step == Step.KEY_PROBLEM else [None]
        for problem in problems:
            conv = Conversation(step=step, choices=choices, problem=problem, connected=step == Step.CONNECTED,
                                key_last_four="abcd", workspace_id="ws" if policy.auto_connect else None,
                                resume_step=Step.CONNECTED)
            for label, event in _events(conv):
                target = advance(conv, event, policy, now=0.0).conversation.step
                if target != step:
                    found[(step, target)].add(label)
    return found


def mermaid() -> str:
    lines = ["stateDiagram-v2", "    [*] --> welcome"]
    for (source, target), labels in sorted(edges().items(), key=lambda item: (item[0][0].value, item[0][1].value)):
        label = ", ".join(sorted(labels))
        lines.append(f"    {source.value} --> {target.value}: {label}")
    lines.append("    connected --> [*]")
    lines.append("    note right of welcome: every guide step has Back and I'm stuck;"
                 " a key pasted at any step is deleted and verified")
    return "\n".join(lines)
