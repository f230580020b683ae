"""Print a benchmark or drill report as plain tables (Markdown, so docs can take them as they are)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["bench_tables", "machine_line", "markdown_table"]


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_fmt(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def machine_line(machine: dict[str, Any]) -> str:
    return (f"{machine.get('nproc')} CPU ({machine.get('cpu_model')}), {machine.get('memory_gib')} GiB RAM, "
            f"Python {machine.get('python')}, load average before/after {machine.get('load_before')} / "
            f"{machine.get('load_after')}, revision {machine.get('git_revision')}")


def _exposure_rows(transport: str, figures: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for rate, wave in figures.get("exposure_window_ms", {}).items():
        bot_side = figures.get("bot_receipt_to_delete_ms", {}).get(rate) or {}
        rows.append([transport, rate, wave.get("achieved_rate_per_s"), wave.get("pastes"), wave.get("deleted"),
                     wave.get("p50"), wave.get("p95"), wave.get("p99"), wave.get("max"), bot_side.get("p99"),
                     wave.get("bot_cpu_busy_while_pasting"), wave.get("connected"), wave.get("all_connected_after_s")])
    return rows


def bench_tables(report: dict[str, Any]) -> str:
    """The report as Markdown: targets, exposure window, throughput and steps, memory, machine."""
    settings = report.get("settings", {})
    out = [f"Database: {settings.get('database')}; OpenAI stand-in latency {settings.get('openai_latency_ms'):g} ms;"
           f" {'quick run' if settings.get('quick') else 'full run'} in {report.get('elapsed_s')} s.", ""]
    targets = report.get("targets", {})
    out.append(markdown_table(["target", "goal", "measured", "met"],
                              [[name, target.get("target"), target.get("measured"), target.get("met")]
                               for name, target in targets.items()]))
    out.append("")
    exposure: list[list[Any]] = []
    steps: list[list[Any]] = []
    for transport, figures in report.get("transports", {}).items():
        exposure += _exposure_rows(transport, figures)
        throughput = figures.get("throughput_updates_per_s", {})
        latency = figures.get("step_latency_ms", {})
        calls = figures.get("telegram_calls_per_step", {})
        walks = figures.get("walks", {})
        cpu_bot = walks.get("saturated", {}).get("cpu_ms_per_update")
        cpu_echo = walks.get("echo", {}).get("cpu_ms_per_update")
        steps.append([transport, throughput.get("bot"), throughput.get("echo"), figures.get("throughput_ratio_vs_echo"),
                      cpu_bot, cpu_echo, latency.get("p50"), latency.get("p99"), calls.get("max_guide_step"),
                      figures.get("telegram_calls_per_onboarding"), figures.get("bot_log_errors")])
    out.append("Exposure window as the customer sees it (message sent -> `deleteMessage` received), ms; beside it"
               " the bot's own share (update handed over -> deletion):")
    out.append("")
    out.append(markdown_table(["transport", "pastes/s", "achieved/s", "pastes", "deleted", "p50", "p95", "p99", "max",
                               "bot-side p99", "bot CPU busy", "connected", "all connected after s"], exposure))
    out.append("")
    out.append(markdown_table(["transport", "bot updates/s", "echo updates/s", "ratio", "bot CPU ms/update",
                               "echo CPU ms/update", "step p50 ms", "step p99 ms", "max calls/guide step",
                               "calls/onboarding", "bot log errors"], steps))
    out.append("")
    memory = report.get("memory", {})
    out.append(markdown_table(["stored conversations", "RSS MiB", "peak RSS MiB", "seeding s"],
                              [[size, point.get("rss_mb"), point.get("peak_rss_mb"), point.get("seed_s")]
                               for size, point in memory.items()]))
    out.append("")
    key_entry = report.get("key_entry") or {}
    if key_entry:
        out.append(f"Key entry, {key_entry.get('users_per_path')} users per path on one polling bot (the Mini App's"
                   " key is never a message: no exposure window in the chat), ms:")
        out.append("")
        out.append(markdown_table(["path", "p50", "p95", "max", "count"], [
            [label, figures.get("p50"), figures.get("p95"), figures.get("max"), figures.get("count")]
            for label, figures in (("chat paste: message sent -> verdict", key_entry["chat_paste_to_verdict_ms"]),
                                   ("Mini App: POST -> verdict", key_entry["miniapp_post_to_verdict_ms"]),
                                   ("Mini App: POST -> 202", key_entry["miniapp_post_to_202_ms"]))]))
        out.append("")
    out.append("Machine: " + machine_line(report.get("machine", {})))
    return "\n".join(out)
