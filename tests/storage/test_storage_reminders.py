"""The reminder watch over a real database (SQLite and PostgreSQL): who is due, and "once" across replicas."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.core.ports import DeleteOutcome
from bot.core.reminders import ReminderWatch
from flows.state import Conversation
from flows.steps import Step
from flows.view import View, ViewSettings
from storage.repositories import ConversationRepository, ReminderRepository
from tests.clock import FakeClock

Sessions = async_sessionmaker[AsyncSession]
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


class Chats:
    """A ChatPort that records what would be sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, View]] = []

    async def send_view(self, chat_id: int, view: View) -> int:
        await asyncio.sleep(0.01)  # let concurrent passes interleave
        self.sent.append((chat_id, view))
        return len(self.sent)

    async def edit_view(self, chat_id: int, message_id: int, view: View) -> bool:
        return True

    async def send_html(self, chat_id: int, text: str, view: View | None = None) -> int:
        return 0

    async def delete(self, chat_id: int, message_id: int) -> DeleteOutcome:
        return DeleteOutcome.DELETED

    async def delete_quietly(self, chat_id: int, message_id: int) -> None:
        return None


async def _conversation(sessions: Sessions, chat_id: int, conv: Conversation) -> None:
    await ConversationRepository(sessions, clock=FakeClock(T0)).create(
        chat_id=chat_id, user_id=chat_id, step=conv.step.value, state=conv.to_record())


def _watch(sessions: Sessions, chats: Chats, now: datetime) -> ReminderWatch:
    return ReminderWatch(ReminderRepository(sessions, clock=FakeClock(now)), chats, ViewSettings(),
                         after=timedelta(hours=24), clock=FakeClock(now))


async def test_only_customers_who_stopped_mid_guide_are_reminded_once(sessions: Sessions) -> None:
    await _conversation(sessions, 1, Conversation(step=Step.NAME_KEY))
    await _conversation(sessions, 2, Conversation(step=Step.NAME_KEY, reminders_off=True))
    await _conversation(sessions, 3, Conversation(step=Step.PASTE_KEY))
    await _conversation(sessions, 4, Conversation(step=Step.HELD))
    await _conversation(sessions, 5, Conversation(step=Step.CONNECTED, connected=True))
    await _conversation(sessions, 6, Conversation(step=Step.NAME_KEY, connected=True))  # finished before
    chats = Chats()
    assert await _watch(sessions, chats, T0 + timedelta(hours=23)).run_once() == 0  # not idle long enough
    assert await _watch(sessions, chats, T0 + timedelta(hours=25)).run_once() == 1
    assert [chat for chat, _ in chats.sent] == [1]
    assert await _watch(sessions, chats, T0 + timedelta(days=5)).run_once() == 0  # once per conversation
    row = await ConversationRepository(sessions).get(1)
    assert row is not None and row.updated_at == T0  # the retention clock was not restarted
    assert Conversation.from_record(row.state).reminded


async def test_replicas_running_the_watch_at_once_send_one_reminder(sessions: Sessions) -> None:
    for chat_id in range(10, 20):
        await _conversation(sessions, chat_id, Conversation(step=Step.COPY_KEY))
    chats = Chats()
    later = T0 + timedelta(hours=30)
    results = await asyncio.gather(*(_watch(sessions, chats, later).run_once() for _ in range(3)))
    assert sum(results) == 10
    assert sorted(chat for chat, _ in chats.sent) == list(range(10, 20))


async def test_a_cancelled_conversation_takes_its_reminder_row_with_it(sessions: Sessions) -> None:
    await _conversation(sessions, 30, Conversation(step=Step.NAME_KEY))
    chats = Chats()
    assert await _watch(sessions, chats, T0 + timedelta(hours=25)).run_once() == 1
    assert await ConversationRepository(sessions).delete(30)  # /cancel
    assert await ReminderRepository(sessions).due([Step.NAME_KEY.value], T0 + timedelta(days=9)) == []
