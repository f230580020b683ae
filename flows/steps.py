"""The steps of the onboarding guide and how they follow each other, declared as data.

Why data: the transitions, the Back button, the Mermaid diagram and the content-completeness test all
read the same tables, so they cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

__all__ = [
    "GUIDE_ORDER",
    "MANUAL_ORDER",
    "PIPELINE_STEPS",
    "SPECS",
    "Choice",
    "Link",
    "Step",
    "StepSpec",
    "is_skipped",
]


class Step(StrEnum):
    WELCOME = "welcome"
    OPEN_KEYS_PAGE = "open_keys_page"  # guide 1.1
    CREATE_NEW_KEY = "create_new_key"  # 1.2
    CHOOSE_OWNER = "choose_owner"  # 1.3
    NAME_KEY = "name_key"  # 1.4
    CHOOSE_PROJECT = "choose_project"  # 1.5
    CHOOSE_PERMISSIONS = "choose_permissions"  # 1.6
    RESTRICTED_PERMISSIONS = "restricted_permissions"  # 1.6, when "Restricted" was chosen
    COPY_KEY = "copy_key"  # 1.7
    ENTER_WORKSPACE = "enter_workspace"  # open mode: the user names their DoubleTick workspace
    INVITATION_NEEDED = "invitation_needed"  # closed mode, no agent link opened: keys are not taken
    EDIT_PERMISSIONS = "edit_permissions"  # "Fix the permissions": edit the existing key, then paste it again
    PASTE_KEY = "paste_key"
    VERIFYING = "verifying"
    CONNECTING = "connecting"
    HELD = "held"  # key sealed in the retry outbox while OpenAI or DoubleTick recovers
    # Telegram is slow to delete the pasted message (429s, 5xx past the deadline): the key waits unused,
    # in memory only, until the message is gone (then it is checked) or Telegram says it can't be deleted.
    DELETING = "deleting"
    KEY_PROBLEM = "key_problem"  # what was pasted cannot be connected: say why and what to do
    DT_LOG_IN = "dt_log_in"  # guide 2.1 (manual connection)
    DT_INTEGRATIONS = "dt_integrations"  # 2.2
    DT_SELECT_OPENAI = "dt_select_openai"  # 2.3
    DT_PASTE_CONNECT = "dt_paste_connect"  # 2.4 + 2.5
    CONNECTED = "connected"
    CONFIRM_DISCONNECT = "confirm_disconnect"


Choices = Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Choice:
    """A button that records a choice (if any) and moves on."""

    action: str
    records: tuple[str, str] | None = None  # (choice name, value) kept in the conversation
    goes_to: Step | None = None  # None: the next step of the sequence, skipping what does not apply


@dataclass(frozen=True, slots=True)
class Link:
    """A URL button; its label comes from the content file under the same name."""

    name: str
    url: str


@dataclass(frozen=True, slots=True)
class StepSpec:
    step: Step
    number: str | None = None  # the guide's numbering ("1.3"), shown as progress
    choices: tuple[Choice, ...] = (Choice("next"),)
    links: tuple[Link, ...] = ()
    copy_texts: tuple[str, ...] = ()  # content names of copy-to-clipboard buttons
    back: bool = True
    stuck: bool = True
    expects_text: bool = False  # free text is an answer here, not a stray message


OPENAI_KEYS_URL = "https://platform.openai.com/settings/organization/api-keys"
OPENAI_LOGIN_URL = "https://platform.openai.com/login"
OPENAI_BILLING_URL = "https://platform.openai.com/settings/organization/billing/overview"
# Admin keys live on their own page (OpenAI admin-APIs guide: Organization settings → Admin keys).
OPENAI_ADMIN_KEYS_URL = "https://platform.openai.com/settings/organization/admin-keys"
OPENAI_HELP_URL = "https://help.openai.com"  # OpenAI's help center: the only help for deactivated accounts
DOUBLETICK_WEB_URL = "https://web.doubletick.io"

NEXT = Choice("next")

SPECS: dict[Step, StepSpec] = {
    s.step: s
    for s in (
        StepSpec(Step.WELCOME, back=False, choices=(Choice("begin"),)),
        StepSpec(Step.OPEN_KEYS_PAGE, "1.1", links=(Link("open_keys_page", OPENAI_KEYS_URL),
                                                    Link("log_in", OPENAI_LOGIN_URL))),
        StepSpec(Step.CREATE_NEW_KEY, "1.2"),
        StepSpec(
            Step.CHOOSE_OWNER,
            "1.3",
            choices=(Choice("personal", ("owner", "personal")), Choice("service", ("owner", "service"))),
        ),
        StepSpec(Step.NAME_KEY, "1.4", copy_texts=("key_name",)),
        StepSpec(
            Step.CHOOSE_PROJECT,
            "1.5",
            choices=(Choice("default", ("project", "default")), Choice("existing", ("project", "existing"))),
        ),
        StepSpec(
            Step.CHOOSE_PERMISSIONS,
            "1.6",
            choices=(Choice("all", ("permissions", "all")), Choice("restricted", ("permissions", "restricted"))),
        ),
        StepSpec(Step.RESTRICTED_PERMISSIONS, "1.6"),
        StepSpec(Step.COPY_KEY, "1.7", choices=(Choice("copied"),)),
        StepSpec(Step.EDIT_PERMISSIONS, "1.6", choices=(Choice("saved", goes_to=Step.PASTE_KEY),),
                 links=(Link("open_keys_page", OPENAI_KEYS_URL),)),
        StepSpec(Step.ENTER_WORKSPACE, choices=(), expects_text=True),
        StepSpec(Step.INVITATION_NEEDED, choices=()),
        StepSpec(Step.PASTE_KEY, choices=(), expects_text=True),
        StepSpec(Step.VERIFYING, choices=(), back=False, stuck=False),
        StepSpec(Step.CONNECTING, choices=(), back=False, stuck=False),
        StepSpec(Step.DELETING, choices=(), back=False, stuck=True),
        # A held key can be given up (the sealed copy is shredded) or connected by hand meanwhile.
        StepSpec(Step.HELD, choices=(Choice("stop_retrying", goes_to=Step.PASTE_KEY),
                                     Choice("manual", goes_to=Step.DT_LOG_IN)), back=False),
        StepSpec(Step.KEY_PROBLEM, choices=(), back=False),  # its buttons depend on the problem
        StepSpec(Step.DT_LOG_IN, "2.1", links=(Link("open_doubletick", DOUBLETICK_WEB_URL),)),
        StepSpec(Step.DT_INTEGRATIONS, "2.2"),
        StepSpec(Step.DT_SELECT_OPENAI, "2.3"),
        StepSpec(Step.DT_PASTE_CONNECT, "2.4", choices=(Choice("done", goes_to=Step.CONNECTED),)),
        StepSpec(Step.CONNECTED, choices=(), back=False, stuck=True),
        StepSpec(Step.CONFIRM_DISCONNECT, choices=(Choice("confirm"), Choice("keep")), back=False),
    )
}

# The two sequences Next and Back walk along. Pipeline steps are not on them: they are entered by
# events (a pasted key, a verdict), never by navigation.
GUIDE_ORDER: tuple[Step, ...] = (
    Step.WELCOME,
    Step.OPEN_KEYS_PAGE,
    Step.CREATE_NEW_KEY,
    Step.CHOOSE_OWNER,
    Step.NAME_KEY,
    Step.CHOOSE_PROJECT,
    Step.CHOOSE_PERMISSIONS,
    Step.RESTRICTED_PERMISSIONS,
    Step.COPY_KEY,
    Step.ENTER_WORKSPACE,
    Step.INVITATION_NEEDED,
    Step.PASTE_KEY,
)
MANUAL_ORDER: tuple[Step, ...] = (
    Step.DT_LOG_IN,
    Step.DT_INTEGRATIONS,
    Step.DT_SELECT_OPENAI,
    Step.DT_PASTE_CONNECT,
)
PIPELINE_STEPS = frozenset({Step.VERIFYING, Step.CONNECTING, Step.HELD})


@dataclass(frozen=True, slots=True)
class SkipContext:
    """What decides whether a step applies to this user."""

    choices: Choices = field(default_factory=dict)
    asks_workspace: bool = False
    needs_invitation: bool = False  # closed mode and no agent link opened yet


# OpenAI shows no permission controls for service-account keys, and the "which permissions" detail
# only applies after choosing Restricted. The workspace question only exists in open mode.
_SKIP_RULES: dict[Step, Callable[[SkipContext], bool]] = {
    Step.CHOOSE_PERMISSIONS: lambda c: c.choices.get("owner") == "service",
    Step.RESTRICTED_PERMISSIONS: lambda c: c.choices.get("owner") == "service"
    or c.choices.get("permissions") != "restricted",
    Step.ENTER_WORKSPACE: lambda c: not c.asks_workspace,
    # Closed mode: without an agent's link the guide ends at "ask your agent", never at pasting.
    Step.INVITATION_NEEDED: lambda c: not c.needs_invitation,
    Step.PASTE_KEY: lambda c: c.needs_invitation,
}


def is_skipped(step: Step, context: SkipContext) -> bool:
    rule = _SKIP_RULES.get(step)
    return bool(rule and rule(context))
