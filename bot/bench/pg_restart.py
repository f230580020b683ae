"""Restart the local PostgreSQL cluster that holds the drill's database, when that is possible.

Why a plan first: restarting needs root, ``pg_ctlcluster`` (Debian's postgresql-common) and a server on
this machine; anywhere else the drill says plainly why it skipped this part instead of failing.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from dataclasses import dataclass

from sqlalchemy.engine import make_url

__all__ = ["RestartPlan", "plan_postgres_restart", "restart_postgres"]

LOOPBACK = {"127.0.0.1", "localhost", "::1", None, ""}


@dataclass(frozen=True, slots=True)
class RestartPlan:
    command: tuple[str, ...] | None
    reason: str  # why it is not possible (empty when it is)

    @property
    def possible(self) -> bool:
        return self.command is not None


async def _cluster_for_port(lsclusters: str, port: int) -> tuple[str, str] | None:
    process = await asyncio.create_subprocess_exec(lsclusters, "--no-header", stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.DEVNULL)
    out, _ = await process.communicate()
    for line in out.decode(errors="replace").splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[2] == str(port):
            return fields[0], fields[1]
    return None


async def plan_postgres_restart(database_url: str | None) -> RestartPlan:
    """How to restart the server behind ``database_url`` (``pg_ctlcluster ... restart``), or why not."""
    if database_url is None:
        return RestartPlan(None, "the drill runs on SQLite (no PostgreSQL server answered)")
    url = make_url(database_url)
    if url.host not in LOOPBACK:
        return RestartPlan(None, f"PostgreSQL runs on {url.host}, not on this machine")
    ctl, ls = shutil.which("pg_ctlcluster"), shutil.which("pg_lsclusters")
    if ctl is None or ls is None:
        return RestartPlan(None, "pg_ctlcluster is not installed (postgresql-common)")
    if os.geteuid() != 0:
        return RestartPlan(None, "restarting PostgreSQL needs root")
    cluster = await _cluster_for_port(ls, url.port or 5432)
    if cluster is None:
        return RestartPlan(None, f"no local cluster listens on port {url.port or 5432}")
    version, name = cluster
    return RestartPlan((ctl, "--skip-systemctl-redirect", version, name, "restart"), "")


async def restart_postgres(plan: RestartPlan, timeout_s: float = 90.0) -> tuple[bool, float, str]:
    """Run the restart; (succeeded, seconds it took, what went wrong)."""
    if plan.command is None:
        return False, 0.0, plan.reason
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(*plan.command, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(process.communicate(), timeout_s)
    except TimeoutError:
        process.kill()
        return False, time.monotonic() - started, "pg_ctlcluster timed out"
    took = time.monotonic() - started
    if process.returncode != 0:
        return False, took, out.decode(errors="replace").strip()[-300:]
    return True, took, ""
