"""For each thing that can go wrong with a paste, the way forward offered to the user.

A problem is named by an inspection kind (``masked``, ``admin`` ...), a verification outcome
(``invalid``, ``missing_scope`` ...), a connection outcome or ``deletion_failed``. Its text lives in the
content file under ``problems.<name>``; its buttons are declared here.
"""

from __future__ import annotations

from dataclasses import dataclass

from flows.steps import (
    OPENAI_ADMIN_KEYS_URL,
    OPENAI_BILLING_URL,
    OPENAI_HELP_URL,
    OPENAI_KEYS_URL,
    Link,
    Step,
)

__all__ = ["PROBLEMS", "ProblemAction", "ProblemSpec"]


@dataclass(frozen=True, slots=True)
class ProblemAction:
    action: str
    goes_to: Step


PASTE_AGAIN = ProblemAction("paste_again", Step.PASTE_KEY)
NEW_KEY = ProblemAction("new_key", Step.CREATE_NEW_KEY)
FIX_PERMISSIONS = ProblemAction("fix_permissions", Step.EDIT_PERMISSIONS)
MANUAL = ProblemAction("manual", Step.DT_LOG_IN)

KEYS_PAGE = Link("open_keys_page", OPENAI_KEYS_URL)
BILLING_PAGE = Link("open_billing", OPENAI_BILLING_URL)
ADMIN_KEYS_PAGE = Link("open_admin_keys", OPENAI_ADMIN_KEYS_URL)
OPENAI_HELP = Link("openai_help", OPENAI_HELP_URL)


@dataclass(frozen=True, slots=True)
class ProblemSpec:
    actions: tuple[ProblemAction, ...]
    links: tuple[Link, ...] = ()
    support: bool = False  # offer the operator's support link
    exposed: bool = False  # a live secret was exposed: tell the user to revoke it


PROBLEMS: dict[str, ProblemSpec] = {
    # What was pasted (recognised offline, nothing sent to OpenAI)
    "admin": ProblemSpec((NEW_KEY,), (ADMIN_KEYS_PAGE, KEYS_PAGE), exposed=True),
    "masked": ProblemSpec((NEW_KEY, PASTE_AGAIN), (KEYS_PAGE,)),
    "incomplete": ProblemSpec((PASTE_AGAIN, NEW_KEY), (KEYS_PAGE,)),
    "organization_id": ProblemSpec((PASTE_AGAIN, NEW_KEY)),
    "project_id": ProblemSpec((PASTE_AGAIN, NEW_KEY)),
    "other_provider": ProblemSpec((PASTE_AGAIN, NEW_KEY), exposed=True),
    "telegram_bot_token": ProblemSpec((PASTE_AGAIN,), exposed=True),
    "session_token": ProblemSpec((PASTE_AGAIN, NEW_KEY), exposed=True),
    "several_keys": ProblemSpec((PASTE_AGAIN,), exposed=True),
    "not_a_key": ProblemSpec((PASTE_AGAIN, NEW_KEY)),
    "deletion_failed": ProblemSpec((NEW_KEY,), (KEYS_PAGE,), exposed=True),
    # What OpenAI answered
    "invalid": ProblemSpec((PASTE_AGAIN, NEW_KEY), (KEYS_PAGE,)),
    "missing_scope": ProblemSpec((FIX_PERMISSIONS, PASTE_AGAIN), (KEYS_PAGE,)),
    "account_deactivated": ProblemSpec((PASTE_AGAIN,), (OPENAI_HELP,)),
    "no_organization": ProblemSpec((NEW_KEY, PASTE_AGAIN)),
    "no_credit": ProblemSpec((PASTE_AGAIN,), (BILLING_PAGE,)),
    "billing_inactive": ProblemSpec((PASTE_AGAIN,), (BILLING_PAGE,)),
    "model_not_available": ProblemSpec((PASTE_AGAIN, NEW_KEY)),
    "region_blocked": ProblemSpec((MANUAL, PASTE_AGAIN), support=True),
    "ip_not_allowed": ProblemSpec((PASTE_AGAIN, NEW_KEY)),
    "rate_limited": ProblemSpec((PASTE_AGAIN,)),
    "indeterminate": ProblemSpec((PASTE_AGAIN, MANUAL)),
    # What DoubleTick answered
    "credential_rejected": ProblemSpec((MANUAL,), support=True),
    "validation_error": ProblemSpec((MANUAL, PASTE_AGAIN), support=True),
    "transient": ProblemSpec((MANUAL, PASTE_AGAIN)),
    "foreign_workspace": ProblemSpec((), support=True),
    "over_limit": ProblemSpec((PASTE_AGAIN,)),
}
