"""Build the PTB Application and everything behind it from one Settings object (all wiring here)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from telegram import BotCommand, BotCommandScopeAllPrivateChats, LinkPreviewOptions, Update
from telegram.constants import ParseMode
from telegram.ext import Application, ApplicationBuilder, Defaults, ExtBot, TypeHandler

from bot.agents.desk import SupportDesk, build_support_desk
from bot.config import Settings
from bot.core.intake import Intake, SubmissionLimits
from bot.core.keyflow import KeyFlow
from bot.core.maintenance import Maintenance
from bot.core.outbox import OutboxWorker, RetryPolicy, SealedOutbox
from bot.core.periodic import CallbackJob, PeriodicJob
from bot.core.reminders import ReminderWatch
from bot.core.runtime import Runtime
from bot.metrics import COUNT_GROUP, count_update, record_guard_verdict
from bot.services.doubletick import DoubleTickConnector
from bot.services.openai import OpenAIVerifier
from bot.telegram.handlers import BotHandlers
from bot.telegram.messenger import Messenger
from bot.telegram.ratelimit import ChatRateLimiter
from bot.telegram.redelivery import Redelivery
from bot.telegram.request import ObservedRequest
from bot.telegram.secret_guard import GuardedUpdateProcessor, SecretGuard
from flows.content import Content, load_content
from flows.locales import LOCALES
from flows.problems import PROBLEMS
from flows.secret import SecretKey
from flows.steps import SPECS
from flows.urls import button_url_problem
from storage.db import create_engine, session_factory
from storage.locks import NoCrossProcessLocks, cross_process_locks
from storage.repositories import (
    AuditLog,
    ConversationRepository,
    KeyRecordRepository,
    LimitRepository,
    OutboxRepository,
    ProcessedUpdateRepository,
    ReminderRepository,
)

__all__ = ["ALLOWED_UPDATES", "BotApp", "build_bot"]

log = logging.getLogger(__name__)

# Business and channel updates are left out on purpose (reference section 1.4 and 4.1).
ALLOWED_UPDATES = [Update.MESSAGE, Update.EDITED_MESSAGE, Update.CALLBACK_QUERY, Update.MY_CHAT_MEMBER]
MAX_CONCURRENT_UPDATES = 512
# A 429 pauses the chat it names for retry_after, then retries (deletes bypass the limiter).
RATE_LIMIT_RETRIES = 3


@dataclass
class BotApp:
    application: Application
    runtime: Runtime
    settings: Settings
    worker: OutboxWorker | None = None
    maintenance: Maintenance | None = None
    support: SupportDesk | None = None  # agents: handoff links, notifications, stuck watch, handoff API
    closers: list[Any] = field(default_factory=list)
    background: list[asyncio.Task[None]] = field(default_factory=list)
    engine: AsyncEngine | None = None  # for /readyz and /metrics in webhook mode
    delete_bot: ExtBot[None] | None = None  # unthrottled: deleting a pasted key never queues
    recovery: PeriodicJob | None = None  # tells users whose key pipeline died with a process
    intake: Intake | None = None  # the Mini App's submissions share the chat's limits
    reminders: PeriodicJob | None = None  # one gentle reminder for customers who stopped mid-guide

    def start_background(self) -> None:
        """Start the outbox worker (every replica runs one; rows are shared with SKIP LOCKED)."""
        if self.worker is not None:
            self.background.append(asyncio.create_task(self.worker.run(), name="outbox-worker"))
        if self.maintenance is not None:
            self.background.append(asyncio.create_task(self.maintenance.run(), name="maintenance"))
        if self.support is not None:
            self.background.append(self.support.start())
        if self.recovery is not None:  # a pipeline killed with its process is reported, not left hanging
            self.background.append(asyncio.create_task(self.recovery.run(), name="interrupted-pipelines"))
        if self.reminders is not None:
            self.background.append(asyncio.create_task(self.reminders.run(), name="reminders"))

    async def close(self) -> None:
        """Graceful stop: no new retries, let running key pipelines finish, then close clients."""
        for job in (self.worker, self.maintenance, self.support, self.recovery, self.reminders):
            if job is not None:
                job.stop()
        if self.background:
            await asyncio.wait(self.background, timeout=30)
        self.runtime.stop_queued()
        await self.runtime.drain()
        await self.runtime.stop_repaints()  # a step not shown yet is shown by the user's next /start
        if isinstance(self.runtime.messenger, Messenger):
            await self.runtime.messenger.settle(timeout=5.0)  # late key deletions get a last chance
        for close in self.closers:
            await close()


def build_bot(settings: Settings, *, sole_consumer: bool = False) -> BotApp:
    """The real bot; only the base URLs in ``settings`` decide whether it talks to stand-ins.

    ``sole_consumer``: this process is the only one that receives updates (polling: Telegram answers a
    second ``getUpdates`` caller with 409 Conflict), so no other process steps its chats and the
    cross-process advisory locks are skipped (one connection and transaction fewer per update).
    """
    if settings.telegram_bot_token is None:
        raise SystemExit("TELEGRAM_BOT_TOKEN is not set (see README: 'Run it for real').")
    if settings.fingerprint_secret is None:
        raise SystemExit('FINGERPRINT_SECRET is not set: generate one with '
                         '`python -c "import secrets; print(secrets.token_urlsafe(32))"`.')
    check_button_urls(settings)
    processor = GuardedUpdateProcessor(MAX_CONCURRENT_UPDATES)
    base = settings.telegram_api_base_url
    application = (
        ApplicationBuilder()
        .token(settings.telegram_bot_token.get_secret_value())
        .base_url(f"{base}/bot")
        .base_file_url(f"{base}/file/bot")
        .defaults(Defaults(parse_mode=ParseMode.HTML, link_preview_options=LinkPreviewOptions(is_disabled=True)))
        .concurrent_updates(processor)
        # 32, not more: httpcore checks every pooled connection on each request (has_expired, a poll() per
        # idle socket); with 128 that was 12 % of the bot's CPU in the flame graph (docs/flame-polling.svg).
        .request(ObservedRequest())
        .rate_limiter(ChatRateLimiter(settings.telegram_rate_per_replica, max_retries=RATE_LIMIT_RETRIES,
                                      max_wait_s=settings.telegram_max_wait_s))
        .post_init(_post_init)
        .build()
    )
    delete_bot = ExtBot(settings.telegram_bot_token.get_secret_value(), base_url=f"{base}/bot",
                        base_file_url=f"{base}/file/bot", request=ObservedRequest())
    engine = create_engine(settings.database_url)
    sessions = session_factory(engine)
    messenger = Messenger(application.bot, delete_bot, delete_deadline_s=settings.telegram_delete_deadline_s,
                          delete_slow_after_s=settings.telegram_delete_notice_after_s,
                          delete_after_deadline_s=settings.telegram_delete_background_s)
    guard = SecretGuard(messenger)
    guard.observers.append(record_guard_verdict)
    processor.guard = guard
    verifier = OpenAIVerifier(base_url=settings.openai_api_base_url,
                              required_models=settings.openai_required_models,
                              required_capabilities=settings.openai_required_capabilities,
                              billed_probe=settings.openai_billed_probe, probe_model=settings.openai_probe_model,
                              timeout=settings.openai_timeout_s)
    dt_key = settings.doubletick_api_key
    connector = DoubleTickConnector(base_url=settings.doubletick_api_base_url,
                                    api_key=SecretKey(dt_key.get_secret_value()) if dt_key else None,
                                    connect_path=settings.doubletick_connect_path,
                                    timeout=settings.doubletick_timeout_s,
                                    fingerprint_secret=settings.fingerprint_secret.get_secret_value().encode())
    keyring = settings.keyring()
    retry = RetryPolicy(hold=timedelta(minutes=settings.outbox_hold_minutes),
                        first_delay_s=settings.outbox_first_retry_s)
    outbox_repo = OutboxRepository(sessions)
    keyflow = KeyFlow(verifier=verifier, connector=connector, keys=KeyRecordRepository(sessions),
                      fingerprint_secret=settings.fingerprint_secret.get_secret_value().encode(),
                      holder=SealedOutbox(outbox_repo, keyring, retry))
    conversations = ConversationRepository(sessions)
    locks = NoCrossProcessLocks() if sole_consumer else cross_process_locks(settings.database_url)
    runtime = Runtime(conversations=conversations, updates=ProcessedUpdateRepository(sessions),
                      audit=AuditLog(sessions), messenger=messenger, keyflow=keyflow, policy=settings.policy,
                      view_settings=settings.view_settings(), cross_locks=locks)
    # The lease covers one attempt, which never outlives a pipeline: a row claimed by a process that was
    # killed is retried by another one after pipeline_timeout_s, not after a fixed two minutes.
    worker = OutboxWorker(repo=outbox_repo, conversations=conversations, keyring=keyring, runtime=runtime,
                          keyflow=keyflow, policy=retry, poll_s=settings.outbox_poll_s,
                          lease_s=settings.pipeline_timeout_s)
    limits = SubmissionLimits(LimitRepository(sessions), settings.key_submissions_per_user_per_hour,
                              settings.verifications_per_minute,
                              max_waiting=settings.verification_queue_per_process)
    support = build_support_desk(settings, application, sessions, runtime)
    support.register(application)  # agent commands and /start <link> first: in group 0 the first match wins
    intake = Intake(messenger, limits, settings.policy)
    runtime.intake = intake  # a key whose message was slow to delete is admitted once it is gone
    # Polling, and a webhook answered before processing (after_guard, or by the guard lane's intake), have
    # nobody to redeliver a failed update (Telegram does it for a webhook answered 503 after processing).
    queued = sole_consumer or settings.webhook_answer == "after_guard" or settings.webhook_guard_port is not None
    redelivery = Redelivery(application.update_queue, running=lambda: application.running) if queued else None
    BotHandlers(runtime, intake, guard, redelivery).register(application)
    application.add_handler(TypeHandler(Update, count_update), group=COUNT_GROUP)
    maintenance = Maintenance(conversations, runtime.updates, retention=timedelta(days=settings.retention_days),
                              audit=runtime.audit)
    recovery = CallbackJob("recovery of interrupted key pipelines", runtime.recovery_interval_s,
                           runtime.recover_interrupted)
    reminders = ReminderWatch(ReminderRepository(sessions), messenger, runtime.view_settings,
                              after=timedelta(hours=settings.reminder_after_hours),
                              interval_s=settings.reminder_check_interval_s) if settings.reminder_after_hours else None
    bot_app = BotApp(application, runtime, settings, recovery=recovery, worker=worker, maintenance=maintenance,
                     reminders=reminders,
                     closers=[verifier.aclose, connector.aclose, delete_bot.shutdown, locks.aclose,
                              engine.dispose],
                     engine=engine, delete_bot=delete_bot, intake=intake)
    bot_app.support = support
    bot_app.closers.insert(0, support.aclose)  # pending agent notifications go out before the engine closes
    application.bot_data["bot_app"] = bot_app
    return bot_app


def check_button_urls(settings: Settings) -> None:
    """Every URL that becomes a button must be one Telegram accepts: say which one, in one line, at start."""
    found = [("SUPPORT_URL", settings.support_url)] if settings.support_url else []
    for spec in SPECS.values():
        found.extend((f"link {link.name} of step {spec.step.value}", link.url) for link in spec.links)
    for name, problem in PROBLEMS.items():
        found.extend((f"link {link.name} of problem {name}", link.url) for link in problem.links)
    for where, url in found:
        if (problem_text := button_url_problem(url)) is not None:
            raise SystemExit(f"configuration error: {where} ({url!r}) becomes a Telegram button, so it "
                             f"{problem_text}.")


def _menu(content: Content) -> list[BotCommand]:
    return [BotCommand(name, text) for name, text in content.commands().items()]


async def _post_init(application: Application) -> None:
    """Register the command menu (setMyCommands) for private chats: English by default, and one per locale
    for users whose Telegram app speaks it (``language_code``, ISO 639-1 as the Bot API asks)."""
    await application.bot.set_my_commands(_menu(load_content("en")), scope=BotCommandScopeAllPrivateChats())
    for locale in LOCALES:
        await application.bot.set_my_commands(_menu(load_content(locale.code)), scope=BotCommandScopeAllPrivateChats(),
                                              language_code=locale.menu)
    log.info("bot @%s ready", application.bot.username)
    bot_app = application.bot_data.get("bot_app")
    if isinstance(bot_app, BotApp):
        if bot_app.delete_bot is not None:
            await bot_app.delete_bot.initialize()
        bot_app.start_background()
