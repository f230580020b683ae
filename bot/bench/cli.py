"""``onboarding-bot bench`` and ``onboarding-bot drill``: argument parsing and printing only.

Why here and not in ``bot/cli/main.py``: the main CLI stays a list of subcommands; these two have many
options and import the stand-ins, so they register themselves and load their code only when run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_bench_parsers", "cmd_bench", "cmd_drill", "write_json"]


def write_json(path: str | None, report: dict[str, Any]) -> None:
    if path:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(report, indent=2, sort_keys=False) + "\n")
        print(f"\nJSON written to {target}", flush=True)


def _quiet_logs() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("httpx", "httpcore", "uvicorn", "uvicorn.error", "telegram"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


def _setting(text: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not equals or not name.strip():
        raise SystemExit(f"--bot-setting wants NAME=VALUE, not {text!r}")
    return name.strip().upper(), value


def cmd_bench(args: argparse.Namespace) -> int:
    """Measure the exposure window, throughput against a bare PTB echo bot, memory and Telegram calls."""
    from bot.bench.report import bench_tables
    from bot.bench.runner import BenchOptions, Transport, run_bench

    _quiet_logs()
    transports: tuple[Transport, ...] = ("polling", "webhook") if args.transport == "both" else (args.transport,)
    options = BenchOptions(quick=args.quick, openai_latency_ms=args.openai_latency_ms, transports=transports,
                           database=args.database, postgres_url=args.postgres, workdir=Path(args.workdir),
                           bot_settings=dict(_setting(text) for text in args.bot_setting),
                           guard_lane=args.guard_lane, webhook_workers=args.webhook_workers,
                           webhook_intake=args.webhook_intake)
    print(f"benchmark ({'quick' if args.quick else 'full'}) running; transports: {', '.join(transports)} ...",
          flush=True)
    report = asyncio.run(run_bench(options))
    print(bench_tables(report), flush=True)
    write_json(args.json, report)
    return 0


def cmd_drill(args: argparse.Namespace) -> int:
    """Fault drills: injected 5xx/429/timeouts/resets, PostgreSQL restarts, SIGKILL restarts; all counts must be 0."""
    from bot.bench.drill import DrillOptions, run_drill
    from bot.bench.report import markdown_table

    _quiet_logs()
    options = DrillOptions(quick=args.quick, users=args.users, fault_rate=args.fault_rate, kills=args.kills,
                           database=args.database, postgres_url=args.postgres,
                           restart_postgres=not args.no_postgres_restart, workdir=Path(args.workdir), seed=args.seed,
                           transport=args.transport, flood_control=args.telegram_flood_control)
    print(f"fault drill ({'quick' if args.quick else 'full'}) running ...", flush=True)
    report = asyncio.run(run_drill(options))
    print(markdown_table(["check", "count"], list(report["counts"].items())), flush=True)
    print("", flush=True)
    for note in report.get("notes", []):
        print(f"note: {note}", flush=True)
    print(f"drill: {'PASS' if report['passed'] else 'FAIL'} ({report['summary']})", flush=True)
    write_json(args.json, report)
    return 0 if report["passed"] else 1


def add_bench_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``bench`` and ``drill`` on the main CLI."""
    bench = sub.add_parser("bench", help=cmd_bench.__doc__)
    bench.add_argument("--quick", action="store_true", help="small numbers, under a minute")
    bench.add_argument("--json", metavar="PATH", help="also write the full report as JSON here")
    bench.add_argument("--transport", choices=["polling", "webhook", "both"], default="both",
                       help="how updates reach the bots (default both; webhook needs the bot's webhook server)")
    bench.add_argument("--openai-latency-ms", type=float, default=800.0,
                       help="how long the OpenAI stand-in takes per request (default 800)")
    bench.add_argument("--database", choices=["auto", "sqlite", "postgres"], default="auto",
                       help="auto: PostgreSQL when one answers (as in production), else SQLite files")
    bench.add_argument("--postgres", metavar="URL",
                       help="PostgreSQL server for scratch databases (default TEST_POSTGRES_URL or 127.0.0.1:5432)")
    bench.add_argument("--workdir", default="var/bench", help="logs and SQLite files (default var/bench)")
    bench.add_argument("--bot-setting", action="append", default=[], metavar="NAME=VALUE",
                       help="a setting for the measured bot, e.g. WEBHOOK_ANSWER=after_guard (repeatable)")
    bench.add_argument("--guard-lane", choices=["process", "thread", "off"], default=None,
                       help="GUARD_LANE for the bot under test (default: the bot's own default)")
    bench.add_argument("--webhook-workers", type=int, default=1, metavar="N",
                       help="the webhook bot as `run --webhook --workers N` (needs PostgreSQL above 1)")
    bench.add_argument("--webhook-intake", choices=["guard", "server"], default="server",
                       help="who takes the webhook POSTs: the guard lane on WEBHOOK_GUARD_PORT, or the web server")
    bench.set_defaults(func=cmd_bench)

    drill = sub.add_parser("drill", help=cmd_drill.__doc__)
    drill.add_argument("--quick", action="store_true", help="the shortened drill the tests run")
    drill.add_argument("--json", metavar="PATH", help="also write the report as JSON here")
    drill.add_argument("--users", type=int, default=None, help="simulated users (default 12 quick, 60 full)")
    drill.add_argument("--fault-rate", type=float, default=None,
                       help="fraction of OpenAI/DoubleTick requests that fail, spread over 5xx/429/timeout/reset")
    drill.add_argument("--kills", type=int, default=None, help="SIGKILL restarts of the bot (default 1 quick, 4 full)")
    drill.add_argument("--database", choices=["auto", "sqlite", "postgres"], default="auto",
                       help="auto: PostgreSQL when one answers (needed for the restart drill), else SQLite")
    drill.add_argument("--postgres", metavar="URL",
                       help="PostgreSQL server for the scratch database (default TEST_POSTGRES_URL or 127.0.0.1:5432)")
    drill.add_argument("--transport", choices=["polling", "webhook"], default="polling",
                       help="how updates reach the bot (webhook needs the bot's webhook server)")
    drill.add_argument("--no-postgres-restart", action="store_true", help="skip restarting PostgreSQL mid-run")
    drill.add_argument("--seed", type=int, default=None, help="seed for fault injection and kill times")
    drill.add_argument("--telegram-flood-control", action="store_true",
                       help="Telegram's flood limits on (the users act faster than people: many 429s)")
    drill.add_argument("--workdir", default="var/drill", help="logs and SQLite files (default var/drill)")
    drill.set_defaults(func=cmd_drill)
