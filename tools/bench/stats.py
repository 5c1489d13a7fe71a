"""Nearest-rank percentiles of values already in ms (the follow and Link benchmarks' phase
errors; `livekomp.measure.summarize_ms` is for seconds)."""

from __future__ import annotations

import math


def percentiles_ms(values_ms: list[float]) -> dict[str, float]:
    """{"count", "p50_ms", "p99_ms", "max_ms", "mean_ms"}; {"count": 0} of nothing."""
    ordered = sorted(values_ms)
    if not ordered:
        return {"count": 0}

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]

    return {
        "count": len(ordered),
        "p50_ms": pick(0.50),
        "p99_ms": pick(0.99),
        "max_ms": ordered[-1],
        "mean_ms": sum(ordered) / len(ordered),
    }
