"""Percentiles of latency samples, the way the README reports them.

Why nearest-rank: with a few hundred samples an interpolated p99 invents a value nobody observed; the
nearest-rank p99 is a real sample, and ``max`` is always reported beside it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

__all__ = ["percentile", "summary_ms"]


def percentile(sorted_values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile of an ascending list (``fraction`` in 0..1); None when empty."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def summary_ms(seconds: Iterable[float]) -> dict[str, float | int | None]:
    """``p50``/``p95``/``p99``/``max``/``mean`` in milliseconds (rounded to 0.01; None without samples)
    and the sample ``count``."""
    values = sorted(s * 1000.0 for s in seconds)
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None, "mean": None, "count": 0}
    return {
        "p50": _ms(percentile(values, 0.50)),
        "p95": _ms(percentile(values, 0.95)),
        "p99": _ms(percentile(values, 0.99)),
        "max": round(values[-1], 2),
        "mean": round(sum(values) / len(values), 2),
        "count": len(values),
    }
