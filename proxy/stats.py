"""`/admin/stats`: the totals read from the Prometheus counters (the only counters) plus the recent activity."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
from prometheus_client import Counter

if TYPE_CHECKING:
    from .metrics import Metrics


def totals(counter: Counter, label: str) -> dict[str, float]:
    """The counter's value summed by one of its labels."""
    sums: dict[str, float] = defaultdict(float)
    for family in counter.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                sums[sample.labels[label]] += sample.value
    return dict(sums)


def percentiles(samples: Iterable[float]) -> dict[str, float | int | None]:
    values = np.fromiter(samples, dtype=np.float64)
    if values.size == 0:
        return {"count": 0, "p50": None, "p90": None, "p99": None}
    p50, p90, p99 = np.percentile(values, [50, 90, 99]) * 1000.0
    return {"count": int(values.size), "p50": round(float(p50), 3), "p90": round(float(p90), 3),
            "p99": round(float(p99), 3)}


def snapshot(metrics: Metrics) -> dict[str, Any]:
    from .metrics import ERROR_KINDS, STATUSES

    metrics.flush()
    statuses = {**dict.fromkeys(STATUSES, 0), **_ints(totals(metrics.requests, "status"))}
    matches = {"exact": 0, "semantic": 0, **_ints(totals(metrics.requests, "match"))}
    matches.pop("none", None)
    tokens = _ints(totals(metrics.tokens_saved, "kind"))
    prompt, completion = tokens.get("prompt", 0), tokens.get("completion", 0)
    unpriced = _ints(totals(metrics.unpriced_tokens, "model"))
    lookups = statuses["HIT"] + statuses["MISS"]
    activity = metrics.activity
    return {
        "since": metrics.started_at,
        "uptime_seconds": round(metrics.clock() - metrics.started_at, 3),
        "requests": {"total": sum(statuses.values()), **statuses},
        "matches": matches,
        # Of the requests that were looked up (HIT + MISS); BYPASS and REFRESH never could hit.
        "hit_rate": round(statuses["HIT"] / lookups, 4) if lookups else None,
        "tokens_saved": {"prompt": prompt, "completion": completion, "total": prompt + completion},
        "cost_saved_usd": round(sum(totals(metrics.cost_saved, "model").values()), 6),
        "unpriced_tokens_saved": sum(unpriced.values()),
        "unpriced_models": sorted(model for model, n in unpriced.items() if n),
        "latency_ms": {k: percentiles(list(v)) for k, v in activity.latency.items()},
        "errors": {**dict.fromkeys(ERROR_KINDS, 0), **_ints(totals(metrics.errors, "kind"))},
        "series": [{**b, "cost_saved_usd": round(b["cost_saved_usd"], 6)} for b in activity.series],
        "recent_hits": list(activity.recent_hits),
    }


def _ints(values: dict[str, float]) -> dict[str, int]:
    return {k: int(v) for k, v in values.items()}
