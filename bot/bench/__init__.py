"""Benchmarks and fault drills: ``onboarding-bot bench`` and ``onboarding-bot drill``.

Why a package of its own: the figures the README quotes (exposure window, throughput against a bare
PTB echo bot, memory, Telegram calls per step) and the fault drills' zero counts are produced by code
that drives the real bot process against the stand-ins, exactly as a user would, and nothing in the bot
depends on it.

Module map: ``tap`` observes every Bot API call as it finishes, ``stack`` starts stand-ins and bot
processes, ``users`` simulates many chats at once, ``stats`` summarises samples, ``echo_bot`` is the
baseline, ``walk``/``exposure``/``throughput``/``memory`` are the measurements, ``runner`` runs them
and ``report`` prints the table; ``drill`` and ``drill_checks`` are the fault drills.
"""

from __future__ import annotations

__all__: list[str] = []
