"""Who gets the one gentle reminder: customers who stopped mid-guide, before pasting a key.

Why pure: the reminder watch (bot/core/reminders.py) finds idle conversations in the database, and this
decides from the machine's own state whether one is worth a message. Not at the paste step or after it
(a key may be in flight or held), never once connected (they finished), never after /stop_reminders,
at most once per conversation. /cancel deletes the conversation, so nothing is left to remind.
"""

from __future__ import annotations

from flows.state import Conversation
from flows.steps import Step

__all__ = ["REMINDABLE_STEPS", "REMINDER_CALLBACK_STEP", "reminder_due"]

# The guide steps before pasting, and the manual DoubleTick steps (a verified key, no key held).
REMINDABLE_STEPS = frozenset({
    Step.OPEN_KEYS_PAGE, Step.CREATE_NEW_KEY, Step.CHOOSE_OWNER, Step.NAME_KEY, Step.CHOOSE_PROJECT,
    Step.CHOOSE_PERMISSIONS, Step.RESTRICTED_PERMISSIONS, Step.COPY_KEY, Step.ENTER_WORKSPACE,
    Step.EDIT_PERMISSIONS, Step.DT_LOG_IN, Step.DT_INTEGRATIONS, Step.DT_SELECT_OPENAI, Step.DT_PASTE_CONNECT,
})
# The reminder's buttons are not tied to a guide step: they work whatever step the user is at by then.
REMINDER_CALLBACK_STEP = "reminder"


def reminder_due(conv: Conversation) -> bool:
    return (conv.step in REMINDABLE_STEPS and not conv.connected and not conv.reminded
            and not conv.reminders_off)
