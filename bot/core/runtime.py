"""The runtime: load a conversation, step the pure machine, save with a version check, then act.

Why this order: state lives in the database so any replica can take the next update; effects run only
after the new state is committed, so a crash never leaves the user told something the database does
not know. The key travels only inside the ``KeyPasted`` event and the pipeline task that verifies and
connects it; it is never stored, logged or rendered.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

from bot.core.chat_locks import ChatLocks
from bot.core.intake import REASONS, Intake
from bot.core.keyflow import ForeignAction, KeyFlow
from bot.core.ports import ChatPort, ChatRef, ChatUnreachable, DeleteOutcome
from bot.metrics import record_reminder, record_step_entered
from flows import effects as fx
from flows import events as ev
from flows.content import load_content
from flows.locales import locale_for
from flows.machine import Policy, Transition, advance
from flows.secret import SecretKey
from flows.state import Conversation
from flows.steps import Step
from flows.view import (
    View,
    ViewSettings,
    render_language_changed,
    render_language_picker,
    render_reply,
    render_step,
)
from storage.db import is_transient_database_error
from storage.locks import CHAT_NAMESPACE, CrossProcessLocks, NoCrossProcessLocks, advisory_key
from storage.models import Conversation as ConversationRow
from storage.repositories import AuditLog, ConversationRepository, ProcessedUpdateRepository

__all__ = ["HandleResult", "Runtime", "conversation_of"]

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_SAVE_ATTEMPTS = 5
TOASTS = {"stale_button": "stale", "busy": "busy", "busy_deleted": "busy"}
EventSource = Callable[[Conversation], Awaitable[ev.Event]]
# Called once the new state is committed, before any effect is shown (e.g. answer the callback query).
Decided = Callable[["HandleResult"], Awaitable[None]]
# Showing a step that failed (flood wait, 5xx, timeout) is tried again for this long, then left to /start.
REPAINT_DEADLINE_S = 300.0
REPAINT_MAX_DELAY_S = 30.0
BUSY_DATABASE_PAUSES_S = (0.5, 1.0, 2.0, 4.0)  # saving a verdict that met a busy database is tried again after these
STEP_RETRY_PAUSES_S = (1.0, 3.0)  # a verification or connection step: at most two more (each may call out)
# Steps a key pipeline runs in; HELD is not here: the sealed outbox owns those (and their expiry).
# DELETING: a key waits in memory for its message's slow deletion (timed by policy.deleting_timeout_s).
INTERRUPTIBLE = (Step.VERIFYING.value, Step.CONNECTING.value, Step.DELETING.value)


class _Commit:
    """Whether ``_apply`` committed its new state (its ``decided`` callback runs right after the commit)."""

    def __init__(self) -> None:
        self.done = False

    async def seen(self, _result: HandleResult) -> None:
        self.done = True

    def not_yet(self) -> bool:
        return not self.done


class _StillRunning(Exception):
    """The conversation left the pipeline (or its pipeline is young) by the time its lock was held."""


@dataclass(slots=True)
class HandleResult:
    """What the adapter needs back: the text of a callback-query answer."""

    toast: str = ""
    effects: list[fx.Effect] = field(default_factory=list)


class Runtime:
    """Applies events to conversations and performs the machine's effects."""

    def __init__(
        self,
        *,
        conversations: ConversationRepository,
        updates: ProcessedUpdateRepository,
        audit: AuditLog,
        messenger: ChatPort,
        keyflow: KeyFlow,
        policy: Policy,
        view_settings: ViewSettings,
        clock: Callable[[], float] = time.time,
        cross_locks: CrossProcessLocks | None = None,
    ) -> None:
        self.conversations = conversations
        self.updates = updates
        self.audit = audit
        self.messenger = messenger
        self.keyflow = keyflow
        self.policy = policy
        self.view_settings = view_settings
        self.clock = clock
        self._locks = ChatLocks()
        # Replicas on one PostgreSQL: the in-process lock first, then one replica at a time per chat.
        self._cross: CrossProcessLocks = cross_locks or NoCrossProcessLocks()
        self._tasks: set[asyncio.Task[None]] = set()
        # Chats whose latest step could not be shown; one pending repaint per chat shows what the DB holds.
        self._repaints: dict[int, asyncio.Task[None]] = {}
        self.repaint_first_delay_s = 1.0
        self.repaint_deadline_s = REPAINT_DEADLINE_S
        # Called with (chat, before, after) once a step is saved, e.g. agent notifications; must not block.
        self.observers: list[Callable[[ChatRef, Conversation, Conversation], None]] = []
        # Called with (chat, locale code) after /language switched a chat, e.g. to republish its command menu.
        self.language_hooks: list[Callable[[ChatRef, str], Awaitable[None]]] = []
        # Set at shutdown: keys waiting in memory for a busy check's slot are dropped, not waited for.
        self._stopping = asyncio.Event()
        # Builds the paste of a key whose slow deletion succeeded (submission limits); set by the wiring.
        self.intake: Intake | None = None
        keyflow.on_foreign.append(self._tell_owner)

    # -- entry points ---------------------------------------------------------------------------
    async def handle(self, chat: ChatRef, event: ev.Event | EventSource, *, update_id: int | None = None,
                     pressed_message_id: int | None = None, decided: Decided | None = None) -> HandleResult:
        """Apply one event (or an event built from the loaded conversation) and perform its effects.

        ``decided`` runs right after the commit and before anything is shown: a button press is answered
        there, so a slow or refused edit can never leave the callback query unanswered.
        """
        result, deferred, key = await self._apply(chat, event, update_id=update_id,
                                                  pressed_message_id=pressed_message_id, decided=decided)
        if deferred:
            self._spawn(self._pipeline(chat, deferred, key))
        return result

    async def resume(self, chat: ChatRef, event: ev.Event, key: SecretKey | None,
                     discard: Callable[[], Awaitable[object]] | None = None) -> None:
        """Feed a verdict reached outside an update (the outbox worker) and finish the pipeline inline.

        ``discard`` (shred the outbox row that carried the key) runs under the chat's locks just before the
        verdict is saved: never a row left for a verdict already saved, and recovery, which looks under the
        same locks, never sees "held, nothing sealed" while a verdict is on its way.
        """
        _result, deferred, _ = await self._apply(chat, event, key=key, notify=True, before_save=discard)
        if deferred:
            await self._pipeline(chat, deferred, key)

    async def drain(self, timeout: float = 30.0) -> None:
        """Wait for running key pipelines (graceful shutdown); pending repaints are left to /start."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)

    def stop_queued(self) -> None:
        """Shutdown: keys waiting in memory for their slot die with the process now, not after the drain
        timeout; recovery tells their users once the slot plus the pipeline timeout has passed."""
        self._stopping.set()

    async def settle(self, timeout: float = 30.0) -> None:
        """Wait for key pipelines and pending repaints (tests, and a shutdown that can afford it)."""
        await self.drain(timeout)
        if self._repaints:
            await asyncio.wait(set(self._repaints.values()), timeout=timeout)

    async def stop_repaints(self) -> None:
        """Shutdown: pending repaints are dropped (the user's next /start shows the saved step)."""
        tasks = list(self._repaints.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=1.0)

    @property
    def repaints_pending(self) -> int:
        return len(self._repaints)

    @property
    def pipelines_running(self) -> int:
        return len(self._tasks)

    async def recover_interrupted(self) -> int:
        """Tell users whose key pipeline died with its process (SIGKILL, OOM, crash) to paste again.

        A pipeline cannot outlive ``policy.pipeline_timeout_s`` (its HTTP clients time out first), so a
        conversation still verifying or connecting after that lost its key with a process, on whichever
        replica. Without this the user would stare at "Checking your key…" until they typed /start.
        The /start transition for such a conversation is the message needed; it goes out as a new message
        under the same per-chat locks as any update, and is skipped if the conversation moved on meanwhile.
        A key queued for a busy check is timed from its slot (``pipeline_since``), not from the paste.
        """
        limit = self.policy.pipeline_timeout_s
        idle_since = datetime.fromtimestamp(self.clock() - limit, UTC)
        told = 0
        for row in await self.conversations.find_stale(INTERRUPTIBLE, idle_since):
            chat = ChatRef(row.chat_id, row.user_id, row.username, row.language)

            async def interrupted(conv: Conversation) -> ev.Event:
                longest = self.policy.deleting_timeout_s if conv.step == Step.DELETING else limit
                if conv.step.value not in INTERRUPTIBLE or self.clock() - conv.pipeline_since <= longest:
                    raise _StillRunning
                return ev.Started(None)

            if await self._recover_one(chat, interrupted):
                told += 1
                log.warning("key pipeline of chat %s was interrupted (process gone); asked to paste again",
                            chat.chat_id)
        return told + await self._recover_lost_holds(idle_since)

    async def _recover_one(self, chat: ChatRef, event: Callable[[Conversation], Awaitable[ev.Event]]) -> bool:
        """Apply a recovery event under the chat's locks; one chat that fails never stops the others."""
        try:
            await self._apply(chat, event, notify=True)
        except _StillRunning:
            return False
        except Exception:
            log.exception("recovery of chat %s failed; tried again on the next pass", chat.chat_id)
            return False
        return True

    async def _recover_lost_holds(self, idle_since: datetime) -> int:
        """Tell users held for a retry whose sealed key is not in the outbox (the process died between saving
        ``held`` and sealing the key, or between the worker shredding a row and saving its verdict) to paste
        again, instead of after the whole hold window.

        Sealing happens under the chat's locks right after ``held`` is saved, and the outbox worker shreds a
        row under the same locks right before it saves the row's verdict (``resume(discard=...)``), so
        "held, nothing sealed for this chat" seen under those locks means no process is going to retry it.
        """
        told = 0
        for row in await self.conversations.find_held_without_seal(idle_since):
            chat = ChatRef(row.chat_id, row.user_id, row.username, row.language)

            async def lost(conv: Conversation, chat_id: int = row.chat_id) -> ev.Event:
                if conv.step != Step.HELD or await self.keyflow.holds(chat_id):
                    raise _StillRunning
                return ev.HoldLost(conv.attempt)

            if await self._recover_one(chat, lost):
                told += 1
                log.warning("chat %s was held for a retry but its key is not sealed; asked to paste again",
                            chat.chat_id)
        return told

    @property
    def recovery_interval_s(self) -> float:
        """How often to run :meth:`recover_interrupted` (every replica may run it)."""
        return max(1.0, min(30.0, self.policy.pipeline_timeout_s / 4))

    async def _tell_owner(self, change: ForeignAction) -> None:
        """The chat that connected a workspace hears when another chat changed it (or tried to)."""
        owner = ChatRef(change.owner_chat_id, change.owner_user_id)
        event = ev.WorkspaceChangedElsewhere(change.workspace_id, change.action, change.refused)
        self._spawn(self._quietly(self.handle(owner, event)))

    @staticmethod
    async def _quietly(work: Awaitable[object]) -> None:
        try:
            await work
        except Exception:
            log.exception("telling a workspace's owner chat failed")

    # -- core ----------------------------------------------------------------------------------
    async def _apply(self, chat: ChatRef, event: ev.Event | EventSource, *, update_id: int | None = None,
                     pressed_message_id: int | None = None, key: SecretKey | None = None,
                     notify: bool = False, decided: Decided | None = None,
                     before_save: Callable[[], Awaitable[object]] | None = None,
                     ) -> tuple[HandleResult, list[fx.Effect], SecretKey | None]:
        """Load, step, save (retrying on a concurrent change), then perform the effects.

        ``notify``: show the result as a new message (Telegram notifies for those, not for edits), for
        verdicts that arrive minutes later from the outbox.
        """
        chat_key = advisory_key(CHAT_NAMESPACE, chat.chat_id)
        async with self._locks.hold(chat.chat_id), self._cross.hold(chat_key):
            # Under both locks only this task can claim this update (its chat is fixed), so a read
            # here plus the claim committed with the save is enough (see ConversationRepository.save).
            if before_save is not None:
                await before_save()
            loaded: ConversationRow | None = None
            if update_id is not None:
                seen, loaded = await self.conversations.get_unless_processed(chat.chat_id, update_id)
                if seen:
                    log.info("update %s was already processed; skipped", update_id)
                    return HandleResult(), [], None
            for _ in range(MAX_SAVE_ATTEMPTS):
                row = loaded or await self._load(chat)
                loaded = None  # a retry after a concurrent change reads afresh
                conv = Conversation.from_record(row.state) if row.state else Conversation(
                    step_entered_at=self.clock())
                concrete = event if not callable(event) else await event(conv)
                if isinstance(concrete, ev.KeyPasted) and concrete.pasted.key is not None:
                    key = concrete.pasted.key
                elif isinstance(concrete, ev.DeletionConfirmed) and concrete.paste.pasted.key is not None:
                    key = concrete.paste.pasted.key
                transition = advance(conv, concrete, self.policy, self.clock())
                if any(isinstance(e, fx.Forget) for e in transition.effects):
                    await self.conversations.delete(chat.chat_id)
                    if update_id is not None:
                        await self.updates.claim(update_id)
                    break
                expected = row.version
                _copy_into(row, transition.conversation)
                if await self.conversations.save(row, expected, claim_update=update_id):
                    if transition.conversation.step != conv.step:
                        record_step_entered(transition.conversation.step.value)
                    break
                log.info("conversation of chat %s changed concurrently; stepping again", chat.chat_id)
            else:
                raise RuntimeError(f"could not save conversation of chat {chat.chat_id}")
            result = HandleResult(toast=self._toast(row.language, transition))
            if decided is not None:
                try:
                    await decided(result)
                except Exception:  # answering a button must never cost the committed effects
                    log.exception("callback after commit failed")
            deferred = await self._perform(chat, row, transition, result, key, pressed_message_id, notify)
            for waits in [e for e in deferred if isinstance(e, fx.AwaitDeletion)]:
                deferred.remove(waits)
                pending = concrete if isinstance(concrete, ev.DeletionPending) else None
                self._spawn(self._await_deletion(chat, waits, pending))
            for observe in self.observers:
                try:
                    observe(chat, conv, transition.conversation)
                except Exception:  # an observer's bug must not break the customer's chat
                    log.exception("transition observer failed")
            return result, deferred, key

    async def _load(self, chat: ChatRef) -> ConversationRow:
        row = await self.conversations.get(chat.chat_id)
        if row is None:
            start = Conversation(step_entered_at=self.clock())
            # The language is chosen once, on first contact, from Telegram's language_code; /language changes it.
            row = await self.conversations.create(chat_id=chat.chat_id, user_id=chat.user_id,
                                                  username=chat.username, language=locale_for(chat.language).code,
                                                  step=start.step.value, state=start.to_record())
        return row

    @staticmethod
    def _toast(language: str, transition: Transition) -> str:
        for effect in transition.effects:
            if isinstance(effect, fx.Render) and (toast := TOASTS.get(effect.notice or "")):
                return load_content(language).callback_answer(toast)
        return ""

    # -- language ---------------------------------------------------------------------------------
    async def language_of(self, chat: ChatRef) -> str:
        """The chat's locale: the one stored on its conversation, else the one its Telegram app suggests."""
        row = await self.conversations.get(chat.chat_id)
        return locale_for(row.language if row is not None else chat.language).code

    async def show_language_picker(self, chat: ChatRef) -> None:
        """/language: the six languages as buttons, in the chat's current language."""
        view = render_language_picker(load_content(await self.language_of(chat)))
        try:
            await self.messenger.send_view(chat.chat_id, view)
        except Exception as exc:  # nothing was changed: /language again shows it
            log.info("language picker not shown in chat %s: %s", chat.chat_id, type(exc).__name__)

    async def set_language(self, chat: ChatRef, code: str, *, update_id: int | None = None,
                           picker_message_id: int | None = None) -> str:
        """Switch the chat's language at once: store it, re-render the guide message in place in the new
        language, and turn the picker into a short confirmation. Returns the toast text."""
        code = locale_for(code).code
        chat_key = advisory_key(CHAT_NAMESPACE, chat.chat_id)
        async with self._locks.hold(chat.chat_id), self._cross.hold(chat_key):
            if update_id is not None and await self.updates.seen(update_id):
                return ""
            row = await self._load(chat)
            row.language = code
            await self.conversations.set_language(chat.chat_id, code)
            if update_id is not None:
                await self.updates.claim(update_id)
            content = load_content(code)
            if picker_message_id is not None:
                try:
                    await self.messenger.edit_view(chat.chat_id, picker_message_id,
                                                   View(render_language_changed(content)))
                except Exception as exc:  # the choice is saved; the guide below shows it anyway
                    log.info("language picker not updated in chat %s: %s", chat.chat_id, type(exc).__name__)
            if row.guide_message_id is not None and row.state:
                # the guide in the new language, in place; a failure is repainted like any step
                await self._show(chat, row, Conversation.from_record(row.state), fx.Render(), None, False)
        for hook in self.language_hooks:
            try:
                await hook(chat, code)
            except Exception:  # a menu that could not be republished must not undo the switch
                log.exception("language hook failed")
        return ""

    async def _perform(self, chat: ChatRef, row: ConversationRow, transition: Transition,
                       result: HandleResult, key: SecretKey | None,
                       pressed_message_id: int | None, notify: bool = False) -> list[fx.Effect]:
        """Perform the committed transition's effects; each stands alone.

        The state effects (audit, key record, sealed hold) and the network effects (verify, connect,
        disconnect, handed back as ``deferred``) never depend on showing anything: a message that
        Telegram refuses or delays (429, 5xx, timeout) is shown again later from the saved state. A state
        effect that meets a busy database is tried again; an audit row that still cannot be written is
        logged and skipped (it records what happened, it must not stop it).
        """
        conv = transition.conversation
        deferred: list[fx.Effect] = []
        shows: list[fx.Render | fx.Reply] = []
        for effect in transition.effects:
            result.effects.append(effect)
            match effect:
                case fx.Render() | fx.Reply():
                    shows.append(effect)
                case fx.Audit(kind=kind, detail=detail):
                    try:
                        await self._through_a_busy_database(chat, partial(
                            self.audit.record, kind, chat_id=chat.chat_id, actor_user_id=chat.user_id, **detail))
                    except Exception:
                        log.exception("audit event %s of chat %s not written", kind, chat.chat_id)
                    if kind == "came_back_after_reminder":
                        record_reminder("came_back")
                case fx.RecordKey() | fx.HoldKey():
                    if key is not None:
                        await self._through_a_busy_database(chat, partial(
                            self.keyflow.keep, chat, conv, effect, key, conversation_id=row.id))
                case fx.ReleaseHeld():
                    await self._through_a_busy_database(chat, partial(self.keyflow.release, chat))
                case fx.Verify() | fx.Connect() | fx.Disconnect() | fx.AwaitDeletion():
                    deferred.append(effect)
        for show in shows:
            await self._show(chat, row, conv, show, pressed_message_id, notify)
        return deferred

    async def _show(self, chat: ChatRef, row: ConversationRow, conv: Conversation, effect: fx.Render | fx.Reply,
                    pressed_message_id: int | None, notify: bool) -> None:
        """Show a step or a reply; a failure is logged and the saved step is shown again later."""
        try:
            if isinstance(effect, fx.Render):
                await self._render(chat, row, conv, replace(effect, fresh=True) if notify else effect,
                                   pressed_message_id)
            else:
                text = render_reply(effect.text, load_content(row.language), self.view_settings, effect.params)
                await self.messenger.send_html(chat.chat_id, text)
        except ChatUnreachable:  # blocked meanwhile: the step is saved, /start shows it again
            log.info("chat %s cannot be reached (blocked?); step saved, not shown", chat.chat_id)
        except Exception as exc:  # whatever Telegram did, the committed state stands
            wait = getattr(exc, "retry_after", None)
            log.warning("could not show %s in chat %s (%s); the saved step is shown again %s",
                        type(effect).__name__, chat.chat_id, type(exc).__name__,
                        f"after {wait:.0f} s" if wait else "shortly")
            if isinstance(effect, fx.Reply):
                self._spawn_repaint(chat, None, wait, reply=effect.text)
            else:
                self._spawn_repaint(chat, effect if effect.notice or effect.fresh or notify else None, wait,
                                    fresh=notify or effect.fresh, step=conv.step)

    # -- repaint: show the saved state again after a failed render -----------------------------------
    def _spawn_repaint(self, chat: ChatRef, effect: fx.Render | None, wait: float | None, *,
                       fresh: bool = False, step: Step | None = None, reply: str | None = None) -> None:
        if reply is None and chat.chat_id in self._repaints:
            return  # one pending repaint shows whatever the database holds by then
        task: asyncio.Task[None] = asyncio.ensure_future(
            self._repaint(chat, effect, wait, fresh=fresh, step=step, reply=reply))
        if reply is None:
            self._repaints[chat.chat_id] = task

            def forget(done: asyncio.Task[None], chat_id: int = chat.chat_id) -> None:
                if self._repaints.get(chat_id) is done:
                    del self._repaints[chat_id]

            task.add_done_callback(forget)
        else:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _repaint(self, chat: ChatRef, effect: fx.Render | None, wait: float | None, *, fresh: bool,
                       step: Step | None, reply: str | None) -> None:
        """Retry showing the chat's saved step (or a lost reply), honouring Telegram's retry_after."""
        started = self.clock()
        delay = wait if wait is not None else self.repaint_first_delay_s
        backoff = self.repaint_first_delay_s
        while True:
            await asyncio.sleep(max(0.0, delay))
            try:
                if reply is not None:
                    text = render_reply(reply, load_content(await self.language_of(chat)), self.view_settings)
                    await self.messenger.send_html(chat.chat_id, text)
                else:
                    await self._repaint_once(chat, effect, fresh=fresh, step=step)
                return
            except (ChatUnreachable, _StillRunning):
                return
            except Exception as exc:  # retried until the deadline, then left to /start
                backoff = min(backoff * 2, REPAINT_MAX_DELAY_S)
                delay = getattr(exc, "retry_after", None) or backoff
                if self.clock() + delay - started > self.repaint_deadline_s:
                    log.warning("gave up showing the saved step in chat %s (%s); /start shows it",
                                chat.chat_id, type(exc).__name__)
                    return

    async def _repaint_once(self, chat: ChatRef, effect: fx.Render | None, *, fresh: bool,
                            step: Step | None) -> None:
        chat_key = advisory_key(CHAT_NAMESPACE, chat.chat_id)
        async with self._locks.hold(chat.chat_id), self._cross.hold(chat_key):
            row = await self.conversations.get(chat.chat_id)
            conv = conversation_of(row)
            if row is None or conv is None:
                raise _StillRunning  # forgotten meanwhile (/cancel): nothing to show
            if effect is None or conv.step != step:  # moved on: show the step as it is now
                effect = fx.Render(fresh=fresh and conv.step == step)
            await self._render(chat, row, conv, effect, None)

    async def _render(self, chat: ChatRef, row: ConversationRow, conv: Conversation, effect: fx.Render,
                      pressed_message_id: int | None) -> None:
        view = render_step(conv, load_content(row.language), self.view_settings, effect.notice,
                           effect.notice_params)
        guide = row.guide_message_id
        in_place = not effect.fresh and guide is not None and pressed_message_id in (None, guide)
        if in_place and guide is not None and await self.messenger.edit_view(chat.chat_id, guide, view):
            return
        new_id = await self.messenger.send_view(chat.chat_id, view)
        row.guide_message_id = new_id
        await self.conversations.set_guide_message(chat.chat_id, new_id)
        if guide is not None and guide != new_id:
            await self.messenger.delete_quietly(chat.chat_id, guide)

    # -- the key pipeline ----------------------------------------------------------------------
    def _spawn(self, coroutine: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _pipeline(self, chat: ChatRef, effects: list[fx.Effect], key: SecretKey | None) -> None:
        """Verify, then connect, feeding each verdict back into the machine; the key dies with this task."""
        queue = list(effects)
        try:
            while queue:
                effect = queue.pop(0)
                if isinstance(effect, fx.Verify) and effect.wait_s > 0 and not await self._slot_came(chat, effect):
                    return  # the user moved on while the key waited: it is dropped unchecked
                event = await self._through_a_busy_database(chat, partial(self.keyflow.perform, chat, effect, key),
                                                            pauses=STEP_RETRY_PAUSES_S)
                if event is None:
                    continue
                saved = _Commit()
                _result, more, _ = await self._through_a_busy_database(
                    chat, partial(self._apply, chat, event, key=key, decided=saved.seen), may_retry=saved.not_yet)
                queue.extend(more)
        except Exception:
            log.exception("key pipeline of chat %s failed", chat.chat_id)
            failure = self.keyflow.failure_event(effects)
            if failure is not None:
                await self._apply(chat, failure, key=key)
        finally:
            del key

    async def _through_a_busy_database(self, chat: ChatRef, attempt: Callable[[], Awaitable[T]], *,
                                       pauses: tuple[float, ...] = BUSY_DATABASE_PAUSES_S,
                                       may_retry: Callable[[], bool] = lambda: True) -> T:
        """Run one step of a key pipeline, again after a pause while the database is only busy (a pool
        timeout under a burst): losing the step would send the customer back to pasting. A verification
        run again costs one more probe (``STEP_RETRY_PAUSES_S``: at most two); a connection run again
        replays its Idempotency-Key. ``may_retry`` says no once the step's new state is committed: the
        same event applied to the state it produced would be stale and quietly do nothing."""
        for pause in (*pauses, None):
            try:
                return await attempt()
            except Exception as error:
                if pause is None or not is_transient_database_error(error) or not may_retry():
                    raise
                log.warning("a key pipeline step of chat %s met a busy database (%s); trying again in %.1f s",
                            chat.chat_id, type(error).__name__, pause)
                await asyncio.sleep(pause)
        raise AssertionError("unreachable: the last try raises or returns")

    # -- a key waiting for its message's slow deletion --------------------------------------------------
    async def _await_deletion(self, chat: ChatRef, effect: fx.AwaitDeletion,
                              pending: ev.DeletionPending | None) -> None:
        """Wait for the background deletion, then go on with the paste as if it had just arrived, or say
        the key is exposed. The key lives only in this task (never stored); it dies with the process, and
        recovery (``recover_interrupted``) then tells the user after ``policy.deleting_timeout_s``."""
        handle = self.intake.settled(chat.chat_id, effect.message_id) if self.intake else None
        pasted = pending.pasted if pending is not None and effect.attempt is not None else None
        forwarded = pending.forwarded if pending is not None else False
        try:
            outcome = await self._deletion_outcome(handle)
            if outcome is None:
                log.info("key of chat %s dropped while its message was still being deleted (shutdown)", chat.chat_id)
                return
            log.info("slow deletion in chat %s settled: %s", chat.chat_id, outcome)
            if outcome != DeleteOutcome.DELETED:
                await self.handle(chat, ev.DeletionFailed(REASONS.get(outcome, "other"), effect.attempt, late=True))
                return
            if pasted is None or effect.attempt is None:
                return  # nothing of that message is used; it is gone now
            attempt, intake, paste = effect.attempt, self.intake, pasted

            async def confirmed(conv: Conversation) -> ev.Event:
                waiting = conv.step == Step.DELETING and conv.attempt == attempt
                if waiting and intake is not None:  # the allowance is used only by a paste still wanted
                    return ev.DeletionConfirmed(attempt, await intake.paste_event(
                        conv, user_id=chat.user_id, pasted=paste, forwarded=forwarded))
                return ev.DeletionConfirmed(attempt, ev.KeyPasted(paste, forwarded=forwarded))

            await self.handle(chat, confirmed)
        except Exception:
            log.exception("waiting for the deletion of a key message in chat %s failed", chat.chat_id)
        finally:
            del pasted, pending

    async def _deletion_outcome(self, handle: Future[DeleteOutcome] | None) -> DeleteOutcome | None:
        """The background deletion's final outcome; FAILED without a handle or past the longest wait; None
        at shutdown (the key is dropped, never used)."""
        if handle is None:
            return DeleteOutcome.FAILED
        settled: asyncio.Future[DeleteOutcome] = asyncio.wrap_future(handle)
        stopping: asyncio.Future[bool] = asyncio.ensure_future(self._stopping.wait())
        try:
            either: list[asyncio.Future[Any]] = [settled, stopping]
            await asyncio.wait(either, timeout=self.policy.deleting_timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if settled.done():
            return settled.result()
        return None if self._stopping.is_set() else DeleteOutcome.FAILED

    async def _slot_came(self, chat: ChatRef, effect: fx.Verify) -> bool:
        """Checks were busy: sleep until the slot booked for this key, then say whether it is still wanted."""
        try:
            await asyncio.wait_for(self._stopping.wait(), effect.wait_s)
            log.info("key of chat %s dropped while it waited for a busy check (shutdown)", chat.chat_id)
            return False
        except TimeoutError:
            pass  # the slot has come
        conv = conversation_of(await self.conversations.get(chat.chat_id))
        return conv is not None and conv.step == Step.VERIFYING and conv.attempt == effect.attempt


def _copy_into(row: ConversationRow, conv: Conversation) -> None:
    row.step = conv.step.value
    row.choices = dict(conv.choices)
    row.state = conv.to_record()
    row.workspace_id = conv.workspace_id
    row.last_outcome = conv.problem


def conversation_of(row: ConversationRow | None) -> Conversation | None:
    """The machine's view of a stored row (for status commands and tests)."""
    if row is None or not row.state:
        return None
    return Conversation.from_record(row.state)

