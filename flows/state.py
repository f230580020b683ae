"""The conversation as the pure machine sees it: plain values, no key material, serialisable.

Why a separate value: storage persists it as columns plus a JSON blob, the machine steps it, and
neither needs to know about the other. Only the last four characters and the family of a key are kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from flows.steps import Step

__all__ = ["Conversation"]


@dataclass(frozen=True, slots=True)
class Conversation:
    step: Step = Step.WELCOME
    choices: Mapping[str, str] = field(default_factory=dict)
    problem: str | None = None  # an inspection kind or a verification/connection outcome
    problem_detail: str | None = None  # e.g. the missing scope, OpenAI's masked echo, a provider
    help_shown: bool = False
    # The key in hand: the one being checked, connected or last refused (the candidate).
    key_last_four: str | None = None
    key_family: str | None = None
    # The key live at DoubleTick, kept apart from the candidate: a failed /replace must never make
    # the bot name the refused key as the one to replace, disconnect or revoke (issue 11 item 1).
    connected_last_four: str | None = None
    connected_family: str | None = None
    replacing: bool = False
    workspace_id: str | None = None
    workspace_name: str | None = None
    # How the workspace was bound: "agent_link", "signed_link" or "typed" (insecure demo mode), and when
    # (unix seconds; None for typed). Acting on another chat's connection needs a link opened after it.
    bound_via: str | None = None
    bound_at: float | None = None
    connected: bool = False
    attempt: int = 0  # correlates verdicts with the paste they belong to
    resume_step: Step | None = None  # where "keep it" returns to from the disconnect question
    step_entered_at: float = 0.0  # unix seconds
    check_at: float | None = None  # a queued check (checks busy) starts then: its pipeline is timed from it
    key_via: str = "chat"  # where the key being checked came from: "chat" (a deleted message) or "miniapp"
    reminded: bool = False  # the one "come back to the guide" reminder was sent for this conversation
    came_back: bool = False  # ... and the user has done something since (the funnel counts it once)
    reminders_off: bool = False  # /stop_reminders

    @property
    def pipeline_since(self) -> float:
        """When the running key pipeline began: a queued check only begins at its slot."""
        return max(self.step_entered_at, self.check_at or 0.0)

    @property
    def live_last_four(self) -> str | None:
        """Last four of the connected key; rows saved before the split kept it in ``key_last_four``."""
        if not self.connected:
            return None
        return self.connected_last_four or self.key_last_four

    @property
    def live_family(self) -> str | None:
        if not self.connected:
            return None
        return self.connected_family or (self.key_family if not self.connected_last_four else None)

    def with_(self, **changes: Any) -> Conversation:
        return replace(self, **changes)

    def to_record(self) -> dict[str, Any]:
        """A JSON-safe dict for storage."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Step):
                value = value.value
            elif isinstance(value, Mapping):
                value = dict(value)
            out[f.name] = value
        return out

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Conversation:
        """Rebuild from storage, tolerating fields added or removed since the row was written."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in record.items() if k in known}
        for name in ("step", "resume_step"):
            raw = values.get(name)
            if raw is not None:
                try:
                    values[name] = Step(raw)
                except ValueError:
                    values[name] = Step.WELCOME if name == "step" else None
        if "choices" in values:
            values["choices"] = dict(values["choices"] or {})
        return cls(**values)
