"""Metrics: the Prometheus series of `GET /metrics`, the only counters Deja keeps. `/admin/stats`, the dashboard
and `deja stats` read them through stats.py; the dashboard's recent window is activity.py, prices pricing.py.

Each app owns its `CollectorRegistry` (tests build many apps in one process). A hit's counts wait in a tally
(tally.py) until `flush()`, which every reader calls first. What is measured and where:
  requests   routes (and /modelcache queries): by model, cache status and match type; every answer of the proxy
             routes, pass-through included, by route, X-Cache-Status and HTTP status (route_counts.py)
  latency    lookup (routes), embedding (TimedEmbedder wraps the embedder), upstream (time to response headers)
  savings    each hit adds the cached completion's `usage`; cost from the price table, or counted as unpriced
  size       entries and index vectors per partition, write-back queue depth: read from the cache at scrape time
  errors     embedding (TimedEmbedder), store (a failed lookup not caused by embedding, a failed write-back),
             upstream (unreachable, timeout, broken stream, 5xx answer)
  freshness  time-sensitive questions by reason (routes), answers not stored by reason (nonanswers), stale
             refreshes by outcome (revalidate), variety buckets served or filled (variety)
"""

from __future__ import annotations

import fnmatch
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .activity import Activity
from .health import Operation, RecentErrors
from .memo import Memo
from .pricing import PriceTable
from .settings import ModelPrice
from .status import Status
from .tally import LatencyHistogram, Tally

if TYPE_CHECKING:
    from .cache.lookup import Hit
    from .cache.semantic import SemanticCache
    from .embeddings import Embedder

ErrorKind = str  # "embedding" | "store" | "upstream"
ERROR_KINDS = ("embedding", "store", "upstream")
STATUSES = tuple(s.value for s in Status if s is not Status.ERROR)
# Model names come from clients: past this many distinct names, new ones are labelled "other".
MAX_MODEL_LABELS = 50
HEALTH_REASON_CHARS = 200
RECENT_TEXT_CHARS = 500
# Per-partition series on /metrics: the largest partitions only (totals cover all of them).
MAX_PARTITION_SERIES = 100
PARTITION_LABEL_CHARS = 16
# Labelled series whose child object is kept at hand (prometheus_client's labels() costs microseconds per call).
MAX_CHILDREN = 10_000
FAST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
UPSTREAM_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


def mark_error(exc: BaseException, kind: ErrorKind) -> None:
    """Remember that `exc` was counted already, so a caller further up does not count it again."""
    try:
        exc.deja_error_kind = kind  # type: ignore[attr-defined]
    except AttributeError:
        pass


def counted_kind(exc: BaseException | None) -> ErrorKind | None:
    while exc is not None:
        kind = getattr(exc, "deja_error_kind", None)
        if kind:
            return str(kind)
        exc = exc.__cause__ or exc.__context__
    return None


class Metrics:
    def __init__(self, prices: Mapping[str, ModelPrice] | None = None, clock: Callable[[], float] = time.time) -> None:
        self.prices = PriceTable(prices)
        self.clock = clock
        self.started_at = clock()
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("deja_requests", "Chat completion requests by cache status and match type",
                                ["model", "status", "match"], registry=r)
        self.lookup_seconds = LatencyHistogram("deja_lookup_seconds", "Cache lookup time (exact + semantic)",
                                               FAST_BUCKETS)
        r.register(self.lookup_seconds)
        self.embedding_seconds = Histogram("deja_embedding_seconds", "Time to embed one batch of texts",
                                           buckets=FAST_BUCKETS, registry=r)
        self.upstream_seconds = Histogram("deja_upstream_seconds", "Upstream time to response headers",
                                          ["model"], buckets=UPSTREAM_BUCKETS, registry=r)
        self.tokens_saved = Counter("deja_tokens_saved", "Tokens not sent upstream thanks to hits (cached usage)",
                                    ["model", "kind"], registry=r)
        self.cost_saved = Counter("deja_cost_saved_usd", "Estimated USD saved by hits, for models with a price",
                                  ["model"], registry=r)
        self.unpriced_tokens = Counter("deja_tokens_saved_unpriced",
                                       "Tokens saved for models without a price (no cost is estimated)",
                                       ["model"], registry=r)
        self.shortcut_hits = Counter("deja_shortcut_hits", "Exact hits answered before routing (shortcut.py); "
                                     "counted in deja_requests and deja_route_requests too", registry=r)
        self.routes = Counter("deja_route_requests", "Requests per route (cached endpoint or passed-through API), "
                              "X-Cache-Status and HTTP status", ["route", "status", "code"], registry=r)
        self.errors = Counter("deja_errors", "Errors by kind; the request was still answered if it could be",
                              ["kind"], registry=r)
        for kind in ERROR_KINDS:
            self.errors.labels(kind)
        self.semantic_skipped = Counter("deja_semantic_skipped",
                                        "Lookups that matched exactly only: no embedding model reads the question",
                                        ["reason"], registry=r)
        self.semantic_skipped.labels("unreadable")
        # Freshness (proxy/freshness.py, nonanswers.py, revalidate.py, variety.py): reasons and outcomes.
        self.time_sensitive = Counter("deja_time_sensitive", "Questions found time-sensitive (volatile_ttl), by reason",
                                      ["reason"], registry=r)
        self.not_stored = Counter("deja_not_stored", "Upstream answers not stored because they are not answers",
                                  ["reason"], registry=r)
        self.stale_refreshes = Counter("deja_stale_refreshes", "Background refreshes of stale entries, by outcome",
                                       ["outcome"], registry=r)
        self.variety = Counter("deja_variety", "Requests of variety partitions: served from the bucket or filling it",
                               ["event"], registry=r)
        self._models: set[str] = set()
        self._others: set[str] = set()  # names already labelled "other" (a decision that never changes)
        # The hot path's counts (requests, routes, savings, shortcut hits), added to their series by flush().
        self.tally = Tally()
        # A hit's savings series, by model name: its label and price never change once decided.
        self._savings: Memo[str, Savings] = Memo(self._saving_series, MAX_CHILDREN)
        self._children: Memo[tuple[Any, tuple[str, ...]], Any] = Memo(lambda key: key[0].labels(*key[1]), MAX_CHILDREN)
        self.activity = Activity(clock)
        # Labels are client-chosen text: Services.open sets the bound (max_model_label_chars) and the policies' globs.
        self.max_label_chars = 64
        self.label_globs: list[str] = []
        # The latest error of each part: /healthz reports "degraded" while one is recent and not recovered from.
        self.recent = RecentErrors(clock)

    # -- wiring ---------------------------------------------------------------------------------------------------

    def bind(self, cache: SemanticCache) -> None:
        """Entries, index vectors and queue depth are read from the cache when Prometheus scrapes."""
        self.registry.register(CacheCollector(cache))
        self.recent.writes = lambda: cache.writer.committed

    def flush(self) -> None:
        """Add what the hot path counted to the Prometheus series: every reader calls this first."""
        self.tally.flush()

    def render(self) -> bytes:
        self.flush()
        return generate_latest(self.registry)

    def model_label(self, model: str) -> str:
        """The model's own name while it is short and one of the first MAX_MODEL_LABELS names (that match a
        specific policy, where there are any), else "other": every series stays bounded whatever clients send."""
        if model in self._models:
            return model
        if model in self._others:
            return "other"
        if (len(model) <= self.max_label_chars and len(self._models) < MAX_MODEL_LABELS
                and (not self.label_globs or any(fnmatch.fnmatchcase(model, glob) for glob in self.label_globs))):
            self._models.add(model)
            return model
        if len(self._others) < MAX_MODEL_LABELS * 20:
            self._others.add(model)
        return "other"

    def child(self, metric: Any, *labels: str) -> Any:
        """`metric.labels(*labels)`, remembered: the same few series are counted on every request."""
        return self._children((metric, labels))

    # -- observations ---------------------------------------------------------------------------------------------

    def observe_request(self, model: str, status: str, match: str = "none") -> None:
        self.count_request(self.model_label(model), status, match)

    def count_request(self, label: str, status: str, match: str) -> None:
        self.tally.add(self.child(self.requests, label, status, match))
        if status in ("HIT", "MISS"):
            self.activity.bucket()["requests"] += 1

    def observe_hit(self, model: str, hit: Hit, asked: str, status: str = "HIT") -> None:
        label = self.model_label(model)
        self.count_request(label, status, hit.match)
        self.activity.hit({"entry_id": hit.record.id, "model": label, "match": hit.match,
                           "similarity": None if hit.similarity is None else round(hit.similarity, 4),
                           "asked": asked[:RECENT_TEXT_CHARS], "matched": hit.record.question[:RECENT_TEXT_CHARS]})
        self.observe_saved(model, hit.record.response.get("usage") if isinstance(hit.record.response, dict) else None)

    def observe_saved(self, model: str, usage: Any) -> None:
        """Tokens (and their cost) a cached answer saved: its stored usage, in chat or Responses API names."""
        usage = usage if isinstance(usage, dict) else {}
        prompt = _int(usage.get("prompt_tokens", usage.get("input_tokens")))
        completion = _int(usage.get("completion_tokens", usage.get("output_tokens")))
        series = self._savings(model)
        add = self.tally.add
        add(series.prompt, prompt)
        add(series.completion, completion)
        cost = self.prices.cost(model, prompt, completion)
        add(series.money, prompt + completion if cost is None else cost)
        self.activity.saved(prompt + completion, cost)

    def _saving_series(self, model: str) -> Savings:
        label = self.model_label(model)
        money = (self.unpriced_tokens if self.prices.price_for(model) is None else self.cost_saved).labels(label)
        return Savings(self.tokens_saved.labels(label, "prompt"), self.tokens_saved.labels(label, "completion"), money)

    def observe_route(self, route: str, status: str, code: int) -> None:
        self.tally.add(self.child(self.routes, route, status, str(code)))

    def observe_lookup(self, seconds: float) -> None:
        self.lookup_seconds.observe(seconds)
        self.recent.succeeded("store")
        self.activity.latency["lookup"].append(seconds)

    def observe_embedding(self, seconds: float) -> None:
        self.embedding_seconds.observe(seconds)
        self.recent.succeeded("embedding")
        self.activity.latency["embedding"].append(seconds)

    def observe_upstream(self, model: str, seconds: float) -> None:
        self.child(self.upstream_seconds, self.model_label(model)).observe(seconds)
        self.activity.latency["upstream"].append(seconds)

    def count_error(self, kind: ErrorKind, exc: BaseException | None = None, operation: Operation = "read") -> None:
        """Count an error once: an exception already counted lower down (e.g. by the embedder) is skipped."""
        if exc is not None:
            if counted_kind(exc) is not None:
                return
            mark_error(exc, kind)
        self.errors.labels(kind).inc()
        what = f"{type(exc).__name__}: {exc}" if exc is not None else "failed"
        self.recent.failed(kind, what[:HEALTH_REASON_CHARS], operation)

    def degraded_reasons(self, kinds: tuple[str, ...] = ("embedding", "store")) -> list[str]:
        """Which of Deja's own parts (not the upstream) failed recently and have not worked since (health.py)."""
        return self.recent.reasons(kinds)


class Savings(NamedTuple):
    prompt: Any  # deja_tokens_saved children
    completion: Any
    money: Any  # deja_cost_saved_usd's child, or deja_tokens_saved_unpriced's for a model without a price


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


class CacheCollector(Collector):
    def __init__(self, cache: SemanticCache) -> None:
        self.cache = cache

    def collect(self) -> Iterator[Metric]:
        sizes = self.cache.partition_sizes()
        entries = GaugeMetricFamily("deja_entries", "Stored entries per partition (the largest partitions)",
                                    labels=["partition"])
        vectors = GaugeMetricFamily("deja_index_vectors", "Live vectors in the partition's index",
                                    labels=["partition"])
        largest = sorted(sizes.items(), key=lambda kv: kv[1][0], reverse=True)[:MAX_PARTITION_SERIES]
        for partition, (count, live) in largest:
            label = partition[:PARTITION_LABEL_CHARS]
            entries.add_metric([label], count)
            vectors.add_metric([label], live)
        yield entries
        yield vectors
        yield GaugeMetricFamily("deja_entries_all", "Stored entries in every partition",
                                value=sum(c for c, _ in sizes.values()))
        yield GaugeMetricFamily("deja_partitions", "Partitions with at least one entry",
                                value=sum(1 for c, _ in sizes.values() if c))
        yield GaugeMetricFamily("deja_writeback_queue_depth", "Jobs waiting for the write-back worker",
                                value=self.cache.queue_depth)
        yield GaugeMetricFamily("deja_coalesced_waiting", "Requests waiting for an identical miss's upstream call",
                                value=self.cache.flights.waiting)
        yield CounterMetricFamily("deja_coalesced", "Misses answered by an identical miss's upstream call",
                                  value=self.cache.flights.coalesced)
        dropped = CounterMetricFamily("deja_writeback_dropped", "Answers served but not cached: no room left in "
                                      "write-back (queue_full) or larger than max_answer_bytes (too_large)",
                                      labels=["reason"])
        for why, count in self.cache.budget.dropped.items():
            dropped.add_metric([why], count)
        yield dropped
        store = GaugeMetricFamily("deja_store_info", "The store in use (entry counts are the whole store's; "
                                  "request counters this process's)", labels=["kind", "shared"])
        store.add_metric([self.cache.store.kind, str(self.cache.store.shared).lower()], 1)
        yield store
        yield CounterMetricFamily("deja_foreign_candidates", "Candidates of another partition than the request's, "
                                  "refused (defence in depth: should stay 0)", value=self.cache.foreign_candidates)
        rejections = CounterMetricFamily("deja_candidates_rejected", "Candidates above the similarity threshold "
                                         "turned away, by guard rule (or context, stale)", labels=["reason"])
        for reason, count in sorted(self.cache.rejections.items()):
            rejections.add_metric([reason], count)
        yield rejections


class TimedEmbedder:
    """Wraps the embedder: times each batch and counts its failures as `embedding` errors."""

    def __init__(self, inner: Embedder, metrics: Metrics) -> None:
        self.inner = inner
        self.metrics = metrics
        self.name = inner.name
        self.dim = inner.dim

    def embed(self, texts: list[str]) -> np.ndarray:
        started = time.perf_counter()
        try:
            vectors = self.inner.embed(texts)
        except Exception as exc:
            self.metrics.count_error("embedding", exc)
            raise
        self.metrics.observe_embedding(time.perf_counter() - started)
        return vectors

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class WriteBackErrorCounter(logging.Handler):
    """Counts failures the write-back worker logs (it logs and carries on: the answer stays uncached)."""

    def __init__(self, metrics: Metrics) -> None:
        super().__init__(level=logging.ERROR)
        self.metrics = metrics

    def emit(self, record: logging.LogRecord) -> None:
        exc = record.exc_info[1] if record.exc_info else None
        self.metrics.count_error("store", exc, "write")
