"""The pure domain of the onboarding bot: steps, events, transitions, guide content, paste inspection.

Nothing in this package performs I/O or imports PTB, httpx or SQL; everything is testable with plain
function calls.
"""

from flows.inspection import PastedText, inspect_pasted_text
from flows.machine import Policy, Transition, advance
from flows.secret import SecretKey
from flows.state import Conversation
from flows.steps import Step

__all__ = [
    "Conversation",
    "PastedText",
    "Policy",
    "SecretKey",
    "Step",
    "Transition",
    "advance",
    "inspect_pasted_text",
]
