"""Activity: the recent window the dashboard draws — per-minute requests, hits and savings, the latest hits, and
latency samples for percentiles. Totals since start are Prometheus counters (metrics.py), never kept here."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

SERIES_MINUTES = 120
LATENCY_SAMPLES = 2000
RECENT_HITS = 50
LATENCY_KINDS = ("lookup", "embedding", "upstream")


class Activity:
    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.series: deque[dict[str, Any]] = deque(maxlen=SERIES_MINUTES)
        self.recent_hits: deque[dict[str, Any]] = deque(maxlen=RECENT_HITS)
        self.latency: dict[str, deque[float]] = {k: deque(maxlen=LATENCY_SAMPLES) for k in LATENCY_KINDS}

    def bucket(self) -> dict[str, Any]:
        """This minute's point of the series."""
        minute = int(self.clock() // 60 * 60)
        if not self.series or self.series[-1]["t"] != minute:
            self.series.append({"t": minute, "requests": 0, "hits": 0, "tokens_saved": 0, "cost_saved_usd": 0.0})
        return self.series[-1]

    def hit(self, entry: dict[str, Any]) -> None:
        self.bucket()["hits"] += 1
        self.recent_hits.appendleft({"at": self.clock(), **entry})

    def saved(self, tokens: int, cost: float | None) -> None:
        bucket = self.bucket()
        bucket["tokens_saved"] += tokens
        bucket["cost_saved_usd"] += cost or 0.0
