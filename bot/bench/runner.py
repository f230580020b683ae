"""``onboarding-bot bench``: every measurement, in one run, beside the echo baseline.

Order per transport (polling, then webhook when the bot has a webhook server): start the stand-ins and
our bot on a fresh database (with users already at the paste step for the exposure waves), a few users
walk the guide and paste (step latency, Telegram calls per step and per onboarding), many users walk at
once (throughput), paste waves at each rate (exposure window); then the echo baseline serves the same
walk on the same stand-in and transport. Memory is measured last, with 1k/10k/100k stored
conversations, on polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx

from bot.bench.exposure import PasteWave, paste_wave
from bot.bench.key_entry import PUBLIC_BASE_URL, compare_key_entry
from bot.bench.machine import load_average, machine_info
from bot.bench.memory import measure_memory
from bot.bench.seed import AT_PASTE_STEP, migrate, seed_conversations
from bot.bench.stack import (
    BotProcess,
    Database,
    StandIns,
    bot_command,
    find_postgres,
    loopback_port,
    wait_for_listener,
)
from bot.bench.stats import summary_ms
from bot.bench.users import GUIDE_WALK, Action, SimUser, bench_key
from bot.bench.walk import WalkResult, walk_light, walk_saturated
from bot.standins.openai import Behaviour
from bot.standins.sandbox import SANDBOX_BOT_TOKEN
from flows.steps import Step

__all__ = ["BenchOptions", "Transport", "run_bench", "webhook_available"]

Transport = Literal["polling", "webhook"]
RATES = (50, 200, 500)
MEMORY_SIZES = (1_000, 10_000, 100_000)
QUICK_MEMORY_SIZES = (1_000, 100_000)  # the growth target's two ends; the middle point costs ~4 s of a quick run
# Issue 14's targets: sent -> deleted p99 per paste rate, in both transports; throughput and CPU per update
# against the echo bot; memory; Telegram calls per guide step.
TARGETS = {"exposure_p99_ms_at_50": 25.0, "exposure_p99_ms_at_200": 50.0, "exposure_p99_ms_at_500": 100.0,
           "throughput_ratio_vs_echo": 0.6, "cpu_ms_per_update": 3.0, "rss_growth_mb_1k_to_100k": 20.0,
           "telegram_calls_per_guide_step": 2}
ECHO_MODULE = "bot.bench.echo_bot"


def webhook_available() -> bool:
    """The bot's webhook server exists in this tree (``onboarding-bot run --webhook``)."""
    return importlib.util.find_spec("bot.web.server") is not None


@dataclass
class BenchOptions:
    quick: bool = False
    openai_latency_ms: float = 800.0
    transports: Sequence[Transport] = ("polling", "webhook")
    database: Literal["auto", "sqlite", "postgres"] = "auto"
    postgres_url: str | None = None  # the server to create scratch databases on (resolved at start)
    workdir: Path = field(default_factory=lambda: Path("var/bench"))
    rates: Sequence[int] = RATES
    memory_sizes: Sequence[int] | None = None
    wave_s: float | None = None  # seconds of pasting per rate
    light_users: int | None = None
    saturated_users: int | None = None
    saturated_concurrency: int = 30  # users walking at once in the throughput phase (see walk_saturated)
    key_entry_users: int | None = None  # per path in the chat-paste vs Mini App comparison (0 skips it)
    bot_settings: dict[str, str] = field(default_factory=dict)  # extra settings of the measured bot
    guard_lane: str | None = None  # GUARD_LANE for the bot under test (None: the bot's default)
    webhook_workers: int = 1  # the webhook bot as ``run --webhook --workers N`` (its CPU counts every worker)
    # Who takes Telegram's POSTs: the guard lane on a port of its own (WEBHOOK_GUARD_PORT), or the web server
    webhook_intake: Literal["guard", "server"] = "server"

    def __post_init__(self) -> None:
        # quick: 10 / 40 / 100 pastes per wave; enough for a p99 that is the worst of them, and under a minute
        self.wave_s = self.wave_s if self.wave_s is not None else (0.2 if self.quick else 2.0)
        self.memory_sizes = self.memory_sizes or (QUICK_MEMORY_SIZES if self.quick else MEMORY_SIZES)
        self.light_users = self.light_users if self.light_users is not None else (4 if self.quick else 40)
        self.saturated_users = self.saturated_users if self.saturated_users is not None else \
            (30 if self.quick else 300)
        self.key_entry_users = self.key_entry_users if self.key_entry_users is not None else \
            (1 if self.quick else 30)

    def pastes_at(self, rate: int) -> int:
        assert self.wave_s is not None
        return max(2, round(rate * self.wave_s))


class UserIds:
    """Hands out fresh user ids so no two phases share a chat."""

    def __init__(self, start: int = 100_000) -> None:
        self.next = start

    def take(self, count: int) -> list[int]:
        ids = list(range(self.next, self.next + count))
        self.next += count
        return ids


@dataclass
class TransportRun:
    transport: Transport
    light: WalkResult | None = None
    saturated: WalkResult | None = None
    echo: WalkResult | None = None
    waves: dict[str, PasteWave] = field(default_factory=dict)
    bot_log_errors: int = 0
    echo_log_errors: int = 0
    notes: list[str] = field(default_factory=list)


class Bench:
    def __init__(self, options: BenchOptions) -> None:
        self.options = options
        self.ids = UserIds()
        self.standins = StandIns(openai_latency_ms=options.openai_latency_ms)
        self.workdir = options.workdir
        self.processes: list[BotProcess] = []
        self.phases_s: dict[str, float] = {}  # where the run's time went (``bench --quick`` must stay under a minute)

    @contextlib.asynccontextmanager
    async def phase(self, name: str) -> AsyncIterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.phases_s[name] = round(time.monotonic() - started, 2)

    @property
    def tap(self) -> Any:
        assert self.standins.tap is not None
        return self.standins.tap

    def user(self, user_id: int, *, workspace: str = "ws_demo", echo: bool = False) -> SimUser:
        return SimUser(self.standins.telegram, self.tap, user_id, workspace=workspace, echo=echo)

    def workspaces(self, names: Sequence[str]) -> None:
        self.standins.doubletick.configure(workspaces={name: f"Bench {name}" for name in names})

    # -- processes --------------------------------------------------------------------------------------
    async def start_ours(self, database: Database, transport: Transport, label: str,
                         **settings: str) -> BotProcess:
        extra: dict[str, str] = {"TELEGRAM_MAX_RATE_PER_S": "1000000", "LOG_LEVEL": "WARNING",
                                 **self.options.bot_settings, **settings}
        if self.options.guard_lane:
            extra.setdefault("GUARD_LANE", self.options.guard_lane)
        args = ["run"]
        port = 0
        if transport == "webhook":
            port = loopback_port()
            extra.update({"WEBHOOK_LISTEN": "127.0.0.1", "WEBHOOK_PORT": str(port),
                          "WEBHOOK_SECRET_TOKEN": secrets.token_urlsafe(24)})
            if self.options.webhook_intake == "guard":
                port = loopback_port()
                extra["WEBHOOK_GUARD_PORT"] = str(port)
            extra["WEBHOOK_URL"] = f"http://127.0.0.1:{port}/telegram"
            args.append("--webhook")
            if self.options.webhook_workers > 1:
                args += ["--workers", str(self.options.webhook_workers)]
        env = self.standins.bot_environment(database.url, **extra)
        bot = BotProcess(bot_command(*args), env, self.workdir / f"{label}.log")
        self.processes.append(bot)
        bot.start()
        if transport == "webhook":
            await self.set_webhook(f"http://127.0.0.1:{port}/telegram", extra["WEBHOOK_SECRET_TOKEN"])
        probe = self.user(self.ids.take(1)[0])
        await probe.do(Action("text", "/start", Step.WELCOME))
        return bot

    async def start_echo(self, transport: Transport, label: str) -> BotProcess:
        env = {"TELEGRAM_BOT_TOKEN": SANDBOX_BOT_TOKEN, "TELEGRAM_API_BASE_URL": self.standins.telegram_url}
        port = 0
        if transport == "webhook":
            port = loopback_port()
            env["ECHO_WEBHOOK_PORT"] = str(port)
        import sys

        echo = BotProcess([sys.executable, "-m", ECHO_MODULE], env, self.workdir / f"{label}.log")
        self.processes.append(echo)
        echo.start()
        if transport == "webhook":
            await self.set_webhook(f"http://127.0.0.1:{port}/telegram", None)
        probe = self.user(self.ids.take(1)[0], echo=True)
        await probe.do(Action("text", "ping", Step.WELCOME))
        return echo

    async def set_webhook(self, url: str, secret: str | None) -> None:
        """Register the webhook once the server accepts connections (as ``webhook set`` would)."""
        await wait_for_listener(url)
        payload: dict[str, Any] = {"url": url, "max_connections": 40,
                                   "allowed_updates": ["message", "edited_message", "callback_query",
                                                       "my_chat_member"]}
        if secret:
            payload["secret_token"] = secret
        async with httpx.AsyncClient(trust_env=False) as client:
            response = await client.post(f"{self.standins.telegram_url}/bot{SANDBOX_BOT_TOKEN}/setWebhook",
                                         json=payload)
            response.raise_for_status()

    # -- phases -----------------------------------------------------------------------------------------
    def walkers(self, count: int, *, echo: bool = False, paste: bool = False) -> tuple[list[SimUser],
                                                                                      dict[int, tuple[Action, ...]]]:
        ids = self.ids.take(count)
        names = [f"ws_u{user_id}" for user_id in ids]
        self.workspaces(names)
        users = [self.user(user_id, workspace=name, echo=echo) for user_id, name in zip(ids, names, strict=True)]
        scripts: dict[int, tuple[Action, ...]] = {}
        for user in users:
            actions = GUIDE_WALK
            if paste:
                key = bench_key()
                self.standins.openai.register(key, Behaviour.VALID)
                actions = (*GUIDE_WALK, Action("text", key, Step.CONNECTED))
            scripts[user.user_id] = actions
        return users, scripts

    async def light_walk(self, count: int) -> WalkResult:
        """A few users walk the whole guide and paste a key, five at a time."""
        users, scripts = self.walkers(count, paste=True)
        return await walk_light(self.tap, users, scripts, concurrency=5)

    async def transport_run(self, transport: Transport) -> TransportRun:
        run = TransportRun(transport)
        options = self.options
        self.standins.fresh_telegram()
        database = await Database.create(self.workdir, options.postgres_url, label=f"bench_{transport}")
        bot: BotProcess | None = None
        try:
            await migrate(database.url)
            waves: dict[int, list[int]] = {rate: self.ids.take(options.pastes_at(rate)) for rate in options.rates}
            paste_ids = [user_id for ids in waves.values() for user_id in ids]
            names = [f"ws_p{user_id}" for user_id in paste_ids]
            self.workspaces(names)
            await seed_conversations(database.url, paste_ids, step=AT_PASTE_STEP, workspaces=names)
            async with self.phase(f"{transport}: start"):
                bot = await self.start_ours(database, transport, f"bot-{transport}")
            async with self.phase(f"{transport}: light walk"):
                run.light = await _with_cpu(bot, self.light_walk(options.light_users or 1))
            users, _ = self.walkers(options.saturated_users or 1)
            async with self.phase(f"{transport}: throughput"):
                run.saturated = await _with_cpu(bot, walk_saturated(users, concurrency=options.saturated_concurrency))
            for rate, ids in waves.items():
                await asyncio.sleep(0.3 if options.quick else 2.0)  # the previous phase's last calls land
                wave_users = [self.user(user_id, workspace=f"ws_p{user_id}") for user_id in ids]
                async with self.phase(f"{transport}: wave {rate}/s"):
                    run.waves[str(rate)] = await paste_wave(self.standins, wave_users, rate, cpu=bot.cpu_seconds,
                                                            settle_timeout_s=30.0 if options.quick else 180.0,
                                                            stall_s=10.0 if options.quick else 30.0)
            bot.stop()
            run.bot_log_errors = _log_errors(bot.log_text())
            bot = None
            self.standins.fresh_telegram()
            async with self.phase(f"{transport}: echo start"):
                echo = await self.start_echo(transport, f"echo-{transport}")
            try:
                users, _ = self.walkers(options.saturated_users or 1, echo=True)
                async with self.phase(f"{transport}: echo throughput"):
                    run.echo = await _with_cpu(echo, walk_saturated(users,
                                                                    concurrency=options.saturated_concurrency))
            finally:
                echo.stop()
                run.echo_log_errors = _log_errors(echo.log_text())
        finally:
            if bot is not None:
                bot.stop()
            await database.drop()
        return run

    async def key_entry(self) -> dict[str, Any]:
        """Chat paste against the Mini App, alternating users on one polling bot that serves both."""
        count = self.options.key_entry_users or 0
        self.standins.fresh_telegram()
        database = await Database.create(self.workdir, self.options.postgres_url, label="bench_key_entry")
        try:
            await migrate(database.url)
            ids = self.ids.take(2 * count)
            names = [f"ws_k{user_id}" for user_id in ids]
            self.workspaces(names)
            await seed_conversations(database.url, ids, step=AT_PASTE_STEP, workspaces=names)
            port = loopback_port()
            bot = await self.start_ours(database, "polling", "bot-key-entry", PUBLIC_BASE_URL=PUBLIC_BASE_URL,
                                        WEBHOOK_LISTEN="127.0.0.1", WEBHOOK_PORT=str(port))
            try:
                await wait_for_listener(f"http://127.0.0.1:{port}/")
                users = [self.user(user_id, workspace=name) for user_id, name in zip(ids, names, strict=True)]
                for user in users:  # their private chats exist, as after the /start that began their guides
                    self.standins.telegram.block(user.user_id, blocked=False)  # (creates the chat, no update)
                result = await compare_key_entry(self.standins.openai, self.tap, list(zip(users[::2], users[1::2],
                                                                                          strict=True)),
                                                 f"http://127.0.0.1:{port}")
            finally:
                bot.stop()
            return {**result.to_json(), "users_per_path": count, "bot_log_errors": _log_errors(bot.log_text())}
        finally:
            await database.drop()

    async def memory(self) -> dict[str, Any]:
        self.standins.fresh_telegram()
        async def start(database: Database, label: str) -> BotProcess:
            return await self.start_ours(database, "polling", label)

        async def walk(size: int) -> WalkResult:
            return await self.light_walk(2 if self.options.quick else 5)

        if self.options.quick:  # resident memory does not depend on how long OpenAI takes; the minute does
            self.standins.openai.configure(latency_ms=0)
        try:
            return await measure_memory(self.standins, folder=self.workdir, postgres_url=self.options.postgres_url,
                                        sizes=self.options.memory_sizes or MEMORY_SIZES, start_bot=start, walk=walk,
                                        resumed_users=15 if self.options.quick else 200,
                                        settle_s=0.5 if self.options.quick else 1.0)
        finally:
            self.standins.openai.configure(latency_ms=self.options.openai_latency_ms)

    async def run(self) -> dict[str, Any]:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.options.postgres_url = await find_postgres(self.options.database, self.options.postgres_url)
        started = time.monotonic()
        load_before = load_average()
        self.standins.start()
        runs: dict[str, TransportRun] = {}
        memory: dict[str, Any] = {}
        key_entry: dict[str, Any] = {}
        try:
            for transport in self.options.transports:
                if transport == "webhook" and not webhook_available():
                    continue
                async with self.phase(transport):
                    runs[transport] = await self.transport_run(transport)
            async with self.phase("key entry"):
                key_entry = await self.key_entry() if self.options.key_entry_users else {}
            async with self.phase("memory"):
                memory = await self.memory()
        finally:
            for process in self.processes:
                with contextlib.suppress(Exception):
                    process.stop()
            self.standins.stop()
        machine = {**machine_info(), "load_before": load_before, "load_after": load_average()}
        report = assemble(self.options, runs, memory, key_entry=key_entry, machine=machine,
                          elapsed_s=time.monotonic() - started)
        report["phases_s"] = self.phases_s
        return report


async def _with_cpu(process: BotProcess, walk: Awaitable[WalkResult]) -> WalkResult:
    """Run ``walk`` and note how much CPU ``process`` used meanwhile."""
    before, harness = process.cpu_seconds(), time.process_time()
    result = await walk
    after = process.cpu_seconds()
    result.harness_cpu_s = time.process_time() - harness
    if before is not None and after is not None:
        result.cpu_s = after - before
    return result


def _log_errors(text: str) -> int:
    return sum(1 for line in text.splitlines() if " ERROR " in line or line.startswith("Traceback"))


def _transport_figures(run: TransportRun) -> dict[str, Any]:
    light, saturated, echo = run.light, run.saturated, run.echo
    figures: dict[str, Any] = {"exposure_window_ms": {rate: wave.to_json() for rate, wave in run.waves.items()},
                               "bot_receipt_to_delete_ms": {rate: wave.bot_side_json()
                                                            for rate, wave in run.waves.items()}}
    bot_rate = saturated.updates_per_s if saturated else 0.0
    echo_rate = echo.updates_per_s if echo else 0.0
    figures["throughput_updates_per_s"] = {"bot": round(bot_rate, 1), "echo": round(echo_rate, 1)}
    figures["throughput_ratio_vs_echo"] = round(bot_rate / echo_rate, 3) if echo_rate else None
    if light is not None:
        per_action = {label: round(sum(c) / len(c), 2) for label, c in light.calls_per_action.items() if c}
        guide = {label: v for label, v in per_action.items() if "-> connected" not in label}
        onboarding = sum(per_action.values())
        figures["telegram_calls_per_onboarding"] = round(onboarding, 2)
        figures["telegram_calls_per_step"] = {"max_guide_step": max(guide.values(), default=None),
                                              "mean_guide_step": round(sum(guide.values()) / len(guide), 2)
                                              if guide else None,
                                              "by_action": per_action}
        figures["step_latency_ms"] = summary_ms(light.press_latencies_s)
    figures["walks"] = {name: _walk_json(result) for name, result in
                        (("light", light), ("saturated", saturated), ("echo", echo)) if result is not None}
    figures["bot_log_errors"] = run.bot_log_errors
    figures["echo_log_errors"] = run.echo_log_errors
    return figures


def _walk_json(result: WalkResult) -> dict[str, Any]:
    return {"users": result.users, "completed": result.completed, "failed": result.failed, "updates": result.updates,
            "elapsed_s": round(result.elapsed_s, 2), "updates_per_s": round(result.updates_per_s, 1),
            **_cpu_json(result),
            "latency_ms": summary_ms(result.latencies_s), "errors": result.errors}


def _cpu_json(result: WalkResult) -> dict[str, float | None]:
    cpu, elapsed = result.cpu_s, result.elapsed_s
    harness = round(result.harness_cpu_s / elapsed, 2) if result.harness_cpu_s is not None and elapsed else None
    if cpu is None:
        return {"cpu_s": None, "cpu_busy": None, "cpu_ms_per_update": None, "harness_cpu_busy": harness}
    return {"cpu_s": round(cpu, 2), "cpu_busy": round(cpu / elapsed, 2) if elapsed else None,
            "cpu_ms_per_update": round(cpu * 1000 / result.updates, 2) if result.updates else None,
            "harness_cpu_busy": harness}


def _targets(figures: dict[str, Any], rss: dict[str, Any]) -> dict[str, Any]:
    exposure = figures.get("exposure_window_ms", {})

    def p99(rate: str) -> float | None:
        value = exposure.get(rate, {}).get("p99")
        return float(value) if value is not None else None

    low, high = rss.get("1000", {}).get("rss_mb"), rss.get("100000", {}).get("rss_mb")
    growth = round(high - low, 1) if low is not None and high is not None else None
    at_most = {f"exposure_p99_ms_at_{rate}": p99(rate) for rate in ("50", "200", "500")}
    at_most |= {"cpu_ms_per_update": figures.get("cpu_ms_per_update"), "rss_growth_mb_1k_to_100k": growth,
                "telegram_calls_per_guide_step": figures.get("telegram_calls_per_step", {}).get("max_guide_step")}
    at_least = {"throughput_ratio_vs_echo": figures.get("throughput_ratio_vs_echo")}
    out: dict[str, Any] = {}
    for name, value in {**at_most, **at_least}.items():
        met = None if value is None else bool(value >= TARGETS[name] if name in at_least else value <= TARGETS[name])
        out[name] = {"target": TARGETS[name], "measured": value, "met": met}
    return out


def _worst(transports: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per figure, the worse transport's value: the top level is what the slower transport delivers."""
    worst: dict[str, Any] = {"exposure_window_ms": {}, "bot_receipt_to_delete_ms": {}}
    for key in ("exposure_window_ms", "bot_receipt_to_delete_ms"):
        for figures in transports.values():
            for rate, wave in figures.get(key, {}).items():
                held = worst[key].get(rate)
                if held is None or (wave.get("p99") or 0) > (held.get("p99") or 0):
                    worst[key][rate] = {**wave}
    ratios = [f["throughput_ratio_vs_echo"] for f in transports.values() if f.get("throughput_ratio_vs_echo")]
    worst["throughput_ratio_vs_echo"] = min(ratios) if ratios else None
    cpus = [f.get("walks", {}).get("saturated", {}).get("cpu_ms_per_update") for f in transports.values()]
    worst["cpu_ms_per_update"] = max((c for c in cpus if c is not None), default=None)
    calls = [f.get("telegram_calls_per_step", {}).get("max_guide_step") for f in transports.values()]
    worst["max_guide_step_calls"] = max((c for c in calls if c is not None), default=None)
    return worst


def assemble(options: BenchOptions, runs: dict[str, TransportRun], memory: dict[str, Any], *,
             machine: dict[str, Any], elapsed_s: float, key_entry: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON report: every transport below, and at the top level the worse of them per figure."""
    transports = {name: _transport_figures(run) for name, run in runs.items()}
    primary = "polling" if "polling" in transports else next(iter(transports), None)
    top = dict(transports[primary]) if primary else {}
    worst = _worst(transports)
    report: dict[str, Any] = {
        "transport": primary,
        "exposure_window_ms": worst["exposure_window_ms"],
        "bot_receipt_to_delete_ms": worst["bot_receipt_to_delete_ms"],
        "throughput_updates_per_s": top.pop("throughput_updates_per_s", {}),
        "throughput_ratio_vs_echo": worst["throughput_ratio_vs_echo"],
        "cpu_ms_per_update": worst["cpu_ms_per_update"],
        "telegram_calls_per_onboarding": top.pop("telegram_calls_per_onboarding", None),
        "telegram_calls_per_step": {**top.pop("telegram_calls_per_step", {}),
                                    "max_guide_step": worst["max_guide_step_calls"]},
        "rss_mb": {size: point.get("rss_mb") for size, point in memory.items()},
        "step_latency_ms": top.pop("step_latency_ms", {}),
    }
    report["targets"] = _targets(report, memory)
    report["transports"] = transports
    report["memory"] = memory
    report["key_entry"] = key_entry or {}
    report["settings"] = {"quick": options.quick, "openai_latency_ms": options.openai_latency_ms,
                          "database": "postgresql" if options.postgres_url else "sqlite",
                          "rates_per_s": list(options.rates), "wave_s": options.wave_s,
                          "light_users": options.light_users, "saturated_users": options.saturated_users,
                          "saturated_concurrency": options.saturated_concurrency,
                          "memory_sizes": list(options.memory_sizes or ()), "key_entry_users": options.key_entry_users,
                          "bot_settings": dict(options.bot_settings),
                          "guard_lane": options.guard_lane or "default", "webhook_workers": options.webhook_workers,
                          "webhook_available": webhook_available()}
    report["machine"] = machine
    report["elapsed_s"] = round(elapsed_s, 1)
    return report


async def run_bench(options: BenchOptions) -> dict[str, Any]:
    return await Bench(options).run()
