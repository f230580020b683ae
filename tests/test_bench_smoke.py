"""``onboarding-bot bench`` end to end, in miniature: the report has every figure the README quotes.

No timing is asserted (figures depend on the machine); only that each figure is there, of a sane type,
and that the run itself worked: every paste deleted, every walk finished, the JSON serialisable.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from bot.bench.cli import write_json
from bot.bench.runner import BenchOptions, run_bench

pytestmark = pytest.mark.e2e

RATES = ("50", "200", "500")
SIZES = ("1000", "100000")  # a quick run measures the growth target's two ends


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


def test_a_miniature_bench_reports_every_figure(tmp_path: Path) -> None:
    options = BenchOptions(quick=True, transports=("polling",), wave_s=0.04, light_users=2, saturated_users=4,
                           key_entry_users=1,
                           database="postgres" if os.environ.get("TEST_POSTGRES_URL") else "sqlite",
                           workdir=tmp_path / "bench")
    report = asyncio.run(run_bench(options))
    write_json(str(tmp_path / "bench.json"), report)
    report = json.loads((tmp_path / "bench.json").read_text())

    exposure = report["exposure_window_ms"]
    assert set(exposure) == set(RATES)
    for rate in RATES:
        wave = exposure[rate]
        assert all(_number(wave[p]) for p in ("p50", "p95", "p99", "max"))
        assert wave["deleted"] == wave["pastes"] > 0
    bot_side = report["bot_receipt_to_delete_ms"]
    assert set(bot_side) == set(RATES)
    for rate in RATES:  # the customer's window starts when they send: never shorter than the bot's share
        assert _number(bot_side[rate]["p99"]) and exposure[rate]["max"] >= bot_side[rate]["max"]
    assert _number(report["cpu_ms_per_update"])
    assert {"exposure_p99_ms_at_50", "exposure_p99_ms_at_200", "exposure_p99_ms_at_500",
            "cpu_ms_per_update"} <= set(report["targets"])
    throughput = report["throughput_updates_per_s"]
    assert all(_number(throughput[name]) and throughput[name] > 0 for name in ("bot", "echo"))
    assert _number(report["throughput_ratio_vs_echo"])
    assert _number(report["telegram_calls_per_onboarding"]) and report["telegram_calls_per_onboarding"] > 0
    assert set(report["rss_mb"]) == set(SIZES) and all(_number(v) for v in report["rss_mb"].values())
    assert _number(report["step_latency_ms"]["p50"]) and _number(report["step_latency_ms"]["p99"])
    walks = report["transports"]["polling"]["walks"]
    assert all(walk["failed"] == 0 and walk["completed"] == walk["users"] for walk in walks.values())
    assert set(report["targets"]) and all(isinstance(t["met"], bool) for t in report["targets"].values())
    assert report["machine"]["nproc"] and report["machine"]["python"]
    assert {"polling", "key entry", "memory"} <= set(report["phases_s"])  # where the time went, to keep it short
    key_entry = report["key_entry"]  # issue 12: chat paste and Mini App side by side, every submission verified
    assert key_entry["errors"] == [] and key_entry["bot_log_errors"] == 0
    for path in ("chat_paste_to_verdict_ms", "miniapp_post_to_verdict_ms", "miniapp_post_to_202_ms"):
        assert key_entry[path]["count"] == 1 and _number(key_entry[path]["p50"]), (path, key_entry[path])
    assert key_entry["miniapp_post_to_202_ms"]["max"] <= key_entry["miniapp_post_to_verdict_ms"]["max"]
