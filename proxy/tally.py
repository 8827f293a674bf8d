"""Cheap counting for the hot path: plain numbers that readers only ever see through Prometheus (metrics.py).

prometheus_client's `inc()` and `observe()` take a lock and check their arguments on every call; an exact hit made
eight of them, the largest share of Deja's own work per hit (bench/RESULTS.md, "speed work"). Here a hit adds to a
dict entry instead, and `Tally.flush` folds the pending amounts into the Prometheus series before anything reads
them (`Metrics.render` for /metrics, `stats.snapshot` for /admin/stats and the dashboard). Counting and reading
both happen on the event loop's thread (async handlers), so neither needs a lock. Counts made from other threads
(embedding, write-back errors) keep calling prometheus_client directly.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString


class Tally:
    """Amounts counted but not yet added to their Counter (or labelled child), by series."""

    def __init__(self) -> None:
        self.pending: dict[Any, float] = {}

    def add(self, series: Any, amount: float = 1) -> None:
        pending = self.pending
        pending[series] = pending.get(series, 0) + amount

    def flush(self) -> None:
        pending, self.pending = self.pending, {}
        for series, amount in pending.items():
            series.inc(amount)


class LatencyHistogram(Collector):
    """A Prometheus histogram (`_bucket`, `_count`, `_sum`) whose observation is one bisect and two additions;
    it is exposed through the registry it is registered with, like any other series."""

    def __init__(self, name: str, documentation: str, buckets: Sequence[float]) -> None:
        self.name = name
        self.documentation = documentation
        self.bounds = tuple(sorted(buckets))
        self.counts = [0] * (len(self.bounds) + 1)  # the last one: above every bound (+Inf)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(self.bounds, seconds)] += 1  # Prometheus buckets are "less or equal"
        self.sum += seconds

    def collect(self) -> Iterator[Metric]:
        cumulative, buckets = 0, []
        for bound, count in zip((*map(floatToGoString, self.bounds), "+Inf"), self.counts, strict=True):
            cumulative += count
            buckets.append((bound, cumulative))
        yield HistogramMetricFamily(self.name, self.documentation, buckets=buckets, sum_value=self.sum)
