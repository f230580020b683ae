"""``onboarding-bot drill``: the services around the bot fail, the bot is killed; nothing may be lost.

One run: the stand-ins start with the OpenAI and DoubleTick fault injectors on (5xx, 429 with
Retry-After, requests that hang past the client timeout, connections reset, at ``fault_rate`` in all),
the real bot runs as a child process, and simulated users walk the guide and paste valid keys. During
the chaos phase the bot is SIGKILLed at random moments and restarted, and the PostgreSQL cluster holding
its database is restarted once (when this machine allows it). Then the services recover, the users
finish, the bot is stopped, and the six counts of ``drill_checks`` are taken; all must be 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx

from bot.bench import drill_checks as checks
from bot.bench.drill_user import DrillUser
from bot.bench.machine import load_average, machine_info
from bot.bench.pg_restart import plan_postgres_restart, restart_postgres
from bot.bench.seed import migrate
from bot.bench.stack import (
    BotProcess,
    Database,
    StandIns,
    bot_command,
    find_postgres,
    loopback_port,
    wait_for_listener,
)
from bot.bench.users import Action, SimUser, bench_key
from bot.standins.faults import FaultConfig
from bot.standins.openai import Behaviour
from bot.standins.sandbox import SANDBOX_BOT_TOKEN
from flows.steps import Step

__all__ = ["COUNTS", "DrillOptions", "run_drill"]

COUNTS = ("conversations lost", "keys verified but neither connected nor reported", "duplicate connections",
          "duplicate messages or notifications", "plaintext occurrences", "pasted keys still visible")
USER_BASE = 7_000_000


@dataclass
class DrillOptions:
    quick: bool = False
    users: int | None = None
    fault_rate: float | None = None
    kills: int | None = None
    database: Literal["auto", "sqlite", "postgres"] = "auto"
    postgres_url: str | None = None
    restart_postgres: bool = True
    workdir: Path = field(default_factory=lambda: Path("var/drill"))
    seed: int | None = None
    transport: Literal["polling", "webhook"] = "polling"
    openai_latency_ms: float = 100.0
    chaos_s: float | None = None
    settle_s: float | None = None
    log_level: str = "INFO"
    flood_control: bool = False  # Telegram's flood limits on in the stand-in: 429s the bot did not expect

    def __post_init__(self) -> None:
        self.users = self.users if self.users is not None else (12 if self.quick else 60)
        self.fault_rate = self.fault_rate if self.fault_rate is not None else 0.2
        self.kills = self.kills if self.kills is not None else (1 if self.quick else 4)
        self.chaos_s = self.chaos_s if self.chaos_s is not None else (12.0 if self.quick else 45.0)
        self.settle_s = self.settle_s if self.settle_s is not None else (40.0 if self.quick else 180.0)
        self.seed = self.seed if self.seed is not None else secrets.randbelow(2**31)

    def faults(self) -> FaultConfig:
        """``fault_rate`` spread over the four kinds of failure."""
        rate = self.fault_rate or 0.0
        return FaultConfig(server_error=rate * 0.3, rate_limit=rate * 0.25, timeout=rate * 0.15, reset=rate * 0.3,
                           retry_after_s=1.0, hang_s=5.0)


@dataclass
class Chaos:
    """What was done to the bot and its database, for the report."""

    kills: list[float] = field(default_factory=list)  # seconds into the run
    postgres: dict[str, Any] = field(default_factory=dict)


class Drill:
    def __init__(self, options: DrillOptions) -> None:
        self.options = options
        self.rng = random.Random(options.seed)
        self.standins = StandIns(openai_latency_ms=options.openai_latency_ms, seed=options.seed)
        self.standins.telegram.configure(flood_control=options.flood_control)
        self.chaos = Chaos()
        self.notes: list[str] = []
        self.bot: BotProcess | None = None
        self.webhook: tuple[str, str] | None = None

    def bot_env(self, database: Database) -> dict[str, str]:
        # Short client timeouts keep the drill short; the pipeline bound follows from them: OpenAI 1.5 s,
        # DoubleTick 3 attempts x 1.5 s plus backoff (< 4 s) and Retry-After (1 s): well under 15 s.
        extra = {"OPENAI_TIMEOUT_S": "1.5", "DOUBLETICK_TIMEOUT_S": "1.5", "PIPELINE_TIMEOUT_S": "15",
                 "OUTBOX_FIRST_RETRY_S": "0.5", "OUTBOX_POLL_S": "0.2", "LOG_LEVEL": self.options.log_level,
                 "TELEGRAM_MAX_RATE_PER_S": "10000"}
        if self.options.transport == "webhook":
            port = loopback_port()
            secret = secrets.token_urlsafe(24)
            url = f"http://127.0.0.1:{port}/telegram"
            self.webhook = (url, secret)
            extra.update({"WEBHOOK_LISTEN": "127.0.0.1", "WEBHOOK_PORT": str(port), "WEBHOOK_SECRET_TOKEN": secret,
                          "WEBHOOK_URL": url})
        return self.standins.bot_environment(database.url, **extra)

    async def start_bot(self, database: Database) -> BotProcess:
        args = ["run", "--webhook"] if self.options.transport == "webhook" else ["run"]
        bot = BotProcess(bot_command(*args), self.bot_env(database), self.options.workdir / "bot.log")
        bot.start()
        if self.webhook is not None:
            await self._set_webhook(*self.webhook)
        assert self.standins.tap is not None
        probe = SimUser(self.standins.telegram, self.standins.tap, USER_BASE - 1)
        await probe.do(Action("text", "/start", Step.WELCOME))
        return bot

    async def _set_webhook(self, url: str, secret: str) -> None:
        await wait_for_listener(url)
        self.standins.telegram.configure(webhook_max_attempts=10_000, webhook_retry_max_s=1.0)
        async with httpx.AsyncClient(trust_env=False) as client:
            response = await client.post(f"{self.standins.telegram_url}/bot{SANDBOX_BOT_TOKEN}/setWebhook",
                                         json={"url": url, "secret_token": secret, "max_connections": 40})
            response.raise_for_status()

    async def _chaos(self, started: float, postgres_url: str | None) -> None:
        """SIGKILL + restart at random moments; one PostgreSQL restart in the middle third."""
        chaos_s = self.options.chaos_s or 0.0
        events = [(self.rng.uniform(1.5, chaos_s), "kill") for _ in range(self.options.kills or 0)]
        plan = await plan_postgres_restart(postgres_url) if self.options.restart_postgres else None
        if plan is None:
            self.chaos.postgres = {"restarted": False, "why_not": "disabled (--no-postgres-restart)"}
        elif not plan.possible:
            self.chaos.postgres = {"restarted": False, "why_not": plan.reason}
            self.notes.append(f"PostgreSQL restart skipped: {plan.reason}")
        else:
            events.append((self.rng.uniform(chaos_s / 3, 2 * chaos_s / 3), "postgres"))
        for at, what in sorted(events):
            delay = started + at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if what == "kill" and self.bot is not None:
                self.bot.kill()
                self.chaos.kills.append(round(time.monotonic() - started, 2))
                await asyncio.sleep(self.rng.uniform(0.0, 1.0))  # down for a moment, like a crash loop
                self.bot.start()
            elif what == "postgres" and plan is not None:
                ok, took, error = await restart_postgres(plan)
                self.chaos.postgres = {"restarted": ok, "at_s": round(at, 2), "took_s": round(took, 2),
                                       "error": error or None}
                if not ok:
                    self.notes.append(f"PostgreSQL restart failed: {error}")

    async def run(self) -> dict[str, Any]:
        options = self.options
        options.workdir.mkdir(parents=True, exist_ok=True)
        started_at = time.monotonic()
        load_before = load_average()
        postgres_url = await find_postgres(options.database, options.postgres_url)
        self.standins.start()
        assert self.standins.tap is not None
        database = await Database.create(options.workdir, postgres_url, label="drill")
        users: list[DrillUser] = []
        try:
            await migrate(database.url)
            ids = [USER_BASE + i for i in range(options.users or 0)]
            self.standins.doubletick.configure(workspaces={f"ws_d{i}": f"Drill {i}" for i in ids})
            for user_id in ids:
                key = bench_key()
                self.standins.openai.register(key, Behaviour.VALID)
                users.append(DrillUser(self.standins.telegram, self.standins.tap, user_id, f"ws_d{user_id}", key))
            self.bot = await self.start_bot(database)
            self.standins.set_faults(options.faults(), options.faults())
            started = time.monotonic()
            deadline = started + (options.chaos_s or 0) + (options.settle_s or 0)
            chaos = asyncio.ensure_future(self._chaos(started, postgres_url))

            async def walk(user: DrillUser) -> None:
                await asyncio.sleep(self.rng.uniform(0, (options.chaos_s or 0) / 2))
                await user.run(deadline)

            walks = asyncio.gather(*(walk(user) for user in users))
            await chaos
            self.standins.set_faults(FaultConfig(), FaultConfig())  # the services recover
            await walks
            await asyncio.sleep(2.0)  # last calls land
            metrics = await self._metrics()
            self.bot.stop()
            report = await self._report(database, users, started, metrics)
        finally:
            if self.bot is not None:
                self.bot.stop()
            self.standins.stop()
            with contextlib.suppress(Exception):
                await database.drop()
        report["machine"] = {**machine_info(), "load_before": load_before, "load_after": load_average()}
        report["elapsed_s"] = round(time.monotonic() - started_at, 1)
        return report

    async def _metrics(self) -> list[tuple[str, bytes]]:
        """The bot's /metrics page (webhook mode serves one), to scan it like everything else written."""
        if self.webhook is None:
            return []
        base = self.webhook[0].rsplit("/", 1)[0]
        async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
            response = await client.get(f"{base}/metrics")
        return [("/metrics", response.content)] if response.status_code == 200 else []

    async def _report(self, database: Database, users: list[DrillUser], started: float,
                      metrics: list[tuple[str, bytes]]) -> dict[str, Any]:
        stored = await checks.stored_steps(database, [u.chat_id for u in users])
        lost = checks.lost_conversations(self.standins, users, stored)
        unreported, untold = checks.key_outcomes(self.standins, users)
        repeated, done_twice = checks.count_duplicates(self.standins, users)
        duplicates = checks.duplicate_connections(self.standins, users)
        log_path = self.options.workdir / "bot.log"
        findings = await checks.plaintext_findings([u.key for u in users], standins=self.standins,
                                                   database=database, files=[log_path], extra=metrics)
        scanner_ok = not users or checks.scanner_works(users[0].key)
        if not scanner_ok:
            self.notes.append("the plaintext scanner failed its self-check: its count means nothing")
        visible = checks.keys_left_visible(self.standins, users)
        counts = dict(zip(COUNTS, (len(lost), len(unreported), len(duplicates), repeated + done_twice, len(findings),
                                   len(visible)), strict=True))
        finished = sum(1 for u in users if u.done)
        log_text = log_path.read_text(errors="replace") if log_path.exists() else ""
        requests = self.standins.openai.requests
        return {
            "counts": counts,
            "passed": scanner_ok and all(v == 0 for v in counts.values()),
            "summary": f"{finished}/{len(users)} users reached 'You're done'; {len(self.chaos.kills)} SIGKILLs; "
                       f"PostgreSQL restarted: {self.chaos.postgres.get('restarted')}",
            "notes": self.notes,
            "details": {
                "lost": lost[:20], "unreported": unreported[:20], "connected_but_not_told": untold[:20],
                "log_of_failed_chats": checks.log_of_chats(log_text, [*lost, *unreported, *untold][:5]),
                "duplicate_connections": [d for d in duplicates if d][:20],
                "connect_replays": checks.connect_replays(self.standins),
                "repeated_messages": repeated, "done_shown_twice": done_twice, "keys_left_visible": visible[:20],
                "plaintext": checks.summarise(findings),
                "users": len(users), "users_finished": finished,
                "unfinished": [f"chat {u.chat_id}: at {u.last_step.value if u.last_step else 'nothing'}; "
                               f"did {' / '.join(u.log[-6:])}" for u in users if not u.done][:20],
                "nudges": sum(u.nudges for u in users), "pastes": sum(u.pastes for u in users),
                "kills_at_s": self.chaos.kills, "postgres": self.chaos.postgres,
                "bot_starts": self.bot.starts if self.bot else 0,
                "openai_requests": len(requests), "doubletick_requests": len(self.standins.doubletick.requests),
                "bot_log_errors": sum(1 for line in log_text.splitlines() if " ERROR " in line),
                "bot_log_tracebacks": log_text.count("Traceback"),
                "scanned": ["bot log", "database (files or every row)", "outbound Bot API requests",
                            *(["/metrics"] if metrics else [])],
            },
            "settings": {"quick": self.options.quick, "users": len(users), "fault_rate": self.options.fault_rate,
                         "faults": self.options.faults().to_json(), "kills": self.options.kills,
                         "chaos_s": self.options.chaos_s, "settle_s": self.options.settle_s,
                         "transport": self.options.transport, "seed": self.options.seed,
                         "database": "postgresql" if not database.is_sqlite else "sqlite",
                         "openai_latency_ms": self.options.openai_latency_ms},
        }


async def run_drill(options: DrillOptions) -> dict[str, Any]:
    return await Drill(options).run()
