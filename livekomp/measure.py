"""Percentiles of measured times, one way for every part of livekomp that reports them."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable


def summarize_ms(values_s: Iterable[float]) -> dict[str, float]:
    """{"count", "p50_ms", "p99_ms", "max_ms"} of a collection of seconds."""
    values = sorted(values_s)
    if not values:
        return {"count": 0, "p50_ms": math.nan, "p99_ms": math.nan, "max_ms": math.nan}
    if len(values) == 1:
        p50 = p99 = values[0]
    else:
        cuts = statistics.quantiles(values, n=100, method="inclusive")
        p50, p99 = cuts[49], cuts[98]
    return {
        "count": len(values),
        "p50_ms": p50 * 1e3,
        "p99_ms": p99 * 1e3,
        "max_ms": values[-1] * 1e3,
    }
