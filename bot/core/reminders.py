"""One gentle reminder for a customer who stopped mid-guide (REMINDER_AFTER_HOURS; 0 turns it off).

Why a periodic job over the database: any replica may run it; the conversation rows say who is idle,
the pure :func:`flows.reminders.reminder_due` says who deserves a message, and the ``reminder`` claim
row (one per conversation) says which replica sends it, so nobody gets two. The reminder is a short
message of its own (Continue, No more reminders); the guide message is left alone, and the
conversation's ``updated_at`` is not touched, so retention still counts from the user's last action.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from bot.core.periodic import PeriodicJob
from bot.core.ports import ChatPort, ChatUnreachable
from bot.metrics import record_reminder
from flows.content import load_content
from flows.reminders import REMINDABLE_STEPS, reminder_due
from flows.state import Conversation
from flows.view import ViewSettings, render_reminder
from storage.repositories import ReminderRepository
from storage.timestamps import utcnow

__all__ = ["ReminderWatch"]

log = logging.getLogger(__name__)


class ReminderWatch(PeriodicJob):
    name = "reminder watch"

    def __init__(self, reminders: ReminderRepository, messenger: ChatPort, view_settings: ViewSettings, *,
                 after: timedelta, interval_s: float = 300.0, clock: Callable[[], datetime] = utcnow) -> None:
        super().__init__(interval_s)
        self.reminders = reminders
        self.messenger = messenger
        self.view_settings = view_settings
        self.after = after
        self.clock = clock

    async def run_once(self) -> int:
        """One pass; returns how many reminders this replica claimed and sent."""
        sent = 0
        steps = [s.value for s in REMINDABLE_STEPS]
        for row in await self.reminders.due(steps, self.clock() - self.after):
            assert row.id is not None
            conv = Conversation.from_record(row.state) if row.state else Conversation()
            if not reminder_due(conv):  # finished, opted out or reminded already: keep it out of later scans
                await self.reminders.claim(row.id, row.chat_id, sent=False)
                continue
            if not await self.reminders.claim(row.id, row.chat_id):
                continue  # another replica has it
            if not await self.reminders.mark_in_state(row.id, row.version, conv.with_(reminded=True).to_record()):
                continue  # the user acted meanwhile: they are back, no reminder needed
            view = render_reminder(conv, load_content(row.language), self.view_settings)
            try:
                await self.messenger.send_view(row.chat_id, view)
            except ChatUnreachable:
                log.info("reminder for chat %s not delivered (blocked?)", row.chat_id)
                continue
            record_reminder("sent")
            sent += 1
        return sent
