"""GET /metrics: Prometheus text from a per-app registry, over real SQLite and hnswlib."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from proxy.health import HEALTH_WINDOW, RecentErrors
from proxy.metrics import Metrics
from proxy.pricing import PriceTable
from proxy.settings import ModelPrice, load_settings
from proxy.stats import snapshot

from .fakes import BrokenEmbedder

pytestmark = pytest.mark.anyio


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def scrape(proxy) -> dict:
    response = await proxy.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return samples(response.text)


async def test_requests_are_counted_by_status_match_and_model(proxy):
    await proxy.chat("what is the capital of france")
    await proxy.chat("what is the capital of france")  # exact
    await proxy.chat("What is the capital of France?")  # semantic (same words)
    await proxy.chat("no store please", headers={"Cache-Control": "no-store"})
    m = await scrape(proxy)
    key = "deja_requests_total"
    assert m[(key, (("match", "none"), ("model", "gpt-4o-mini"), ("status", "MISS")))] == 1
    assert m[(key, (("match", "exact"), ("model", "gpt-4o-mini"), ("status", "HIT")))] == 1
    assert m[(key, (("match", "semantic"), ("model", "gpt-4o-mini"), ("status", "HIT")))] == 1
    assert m[(key, (("match", "none"), ("model", "gpt-4o-mini"), ("status", "BYPASS")))] == 1


async def test_hits_count_the_cached_usage_as_tokens_and_cost_saved(proxy):
    await proxy.chat("How do I reset my password?")
    await proxy.chat("How do I reset my password?")
    await proxy.chat("How do I reset my password?")
    m = await scrape(proxy)
    # The fake upstream reports 10 prompt + 5 completion tokens; gpt-4o-mini is $0.15 / $0.60 per 1M.
    assert m[("deja_tokens_saved_total", (("kind", "prompt"), ("model", "gpt-4o-mini")))] == 20
    assert m[("deja_tokens_saved_total", (("kind", "completion"), ("model", "gpt-4o-mini")))] == 10
    assert m[("deja_cost_saved_usd_total", (("model", "gpt-4o-mini"),))] == pytest.approx(
        (20 * 0.15 + 10 * 0.60) / 1e6)


async def test_a_model_without_a_price_counts_tokens_but_invents_no_cost(proxy):
    await proxy.chat("Hello there", model="my-local-llama")
    await proxy.chat("Hello there", model="my-local-llama")
    m = await scrape(proxy)
    assert m[("deja_tokens_saved_unpriced_total", (("model", "my-local-llama"),))] == 15
    assert ("deja_cost_saved_usd_total", (("model", "my-local-llama"),)) not in m


async def test_entries_index_size_and_queue_depth_are_reported_per_partition(proxy):
    await proxy.chat("first question", key="sk-a")
    await proxy.chat("second question", key="sk-a")
    await proxy.chat("first question", key="sk-b")
    m = await scrape(proxy)
    per_partition = {labels: v for (name, labels), v in m.items() if name == "deja_entries"}
    assert sorted(per_partition.values()) == [1, 2]
    vectors = {labels: v for (name, labels), v in m.items() if name == "deja_index_vectors"}
    assert vectors == per_partition
    assert m[("deja_entries_all", ())] == 3
    assert m[("deja_partitions", ())] == 2
    assert m[("deja_writeback_queue_depth", ())] == 0


async def test_latency_histograms_cover_lookup_embedding_and_upstream(proxy):
    await proxy.chat("first question")
    await proxy.chat("first questions")  # semantic lookup: embeds
    m = await scrape(proxy)
    assert m[("deja_lookup_seconds_count", ())] == 2
    assert m[("deja_embedding_seconds_count", ())] >= 2  # the lookup and the write-back
    assert m[("deja_upstream_seconds_count", (("model", "gpt-4o-mini"),))] == 2


async def test_embedding_failures_are_counted_once_as_embedding_errors(make_proxy, tmp_path):
    data = tmp_path / "shared"
    async with make_proxy(data_dir=data) as healthy:
        await healthy.chat("first question")
    async with make_proxy(data_dir=data, embedder=BrokenEmbedder()) as broken:
        response = await broken.chat("second question")
        assert response.status_code == 200 and response.headers["x-cache-status"] == "BYPASS"
        m = await scrape(broken)
    assert m[("deja_errors_total", (("kind", "embedding"),))] >= 1
    assert m[("deja_errors_total", (("kind", "store"),))] == 0


async def test_upstream_failures_are_counted(make_proxy):
    def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    async with make_proxy(transport=httpx.MockTransport(unreachable)) as proxy:
        response = await proxy.chat("anything")
        assert response.status_code == 502
        m = await scrape(proxy)
    assert m[("deja_errors_total", (("kind", "upstream"),))] == 1


async def test_upstream_5xx_answers_count_as_upstream_errors(proxy):
    await proxy.chat("please FAIL500")
    m = await scrape(proxy)
    assert m[("deja_errors_total", (("kind", "upstream"),))] == 1


async def test_each_app_has_its_own_registry(make_proxy, tmp_path):
    async with make_proxy(data_dir=tmp_path / "one") as one:
        await one.chat("a question")
    async with make_proxy(data_dir=tmp_path / "two") as two:
        m = await scrape(two)
    assert not any(name == "deja_requests_total" for name, _ in m)


def test_longest_matching_price_glob_wins():
    prices = PriceTable()
    assert prices.price_for("gpt-4o-mini-2024-07-18") == ModelPrice(0.15, 0.60)
    assert prices.price_for("gpt-4o-2024-08-06") == ModelPrice(2.50, 10.0)
    assert prices.price_for("unknown-model") is None
    assert prices.cost("unknown-model", 100, 100) is None


def test_configured_prices_override_and_extend_the_defaults(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("prices:\n  gpt-4o*: {input: 1, output: 2}\n  llama-*: {input: 0.1, output: 0.2}\n")
    settings = load_settings(config)
    prices = Metrics(settings.prices).prices
    assert prices.price_for("gpt-4o") == ModelPrice(1.0, 2.0)
    assert prices.price_for("llama-3") == ModelPrice(0.1, 0.2)
    assert prices.price_for("gpt-4o-mini") == ModelPrice(0.15, 0.60)


@pytest.mark.parametrize("text, message", [
    ("prices: {gpt-x: {input: 1}}\n", "missing key 'prices.gpt-x.output'"),
    ("prices: {gpt-x: {input: cheap, output: 1}}\n", "expected float"),
    ("prices: [1, 2]\n", "expected a mapping"),
])
def test_bad_price_tables_stop_start_up_with_the_key(tmp_path, text, message):
    from proxy.errors import ConfigError

    config = tmp_path / "config.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_settings(config)


def test_admin_stats_totals_are_the_prometheus_counters():
    metrics = Metrics()
    metrics.requests.labels("gpt-4o-mini", "HIT", "semantic").inc(3)
    metrics.requests.labels("other", "MISS", "none").inc()
    metrics.tokens_saved.labels("gpt-4o-mini", "prompt").inc(7)
    metrics.unpriced_tokens.labels("llama").inc(5)
    metrics.errors.labels("store").inc(2)
    stats = snapshot(metrics)
    assert stats["requests"]["HIT"] == 3 and stats["requests"]["total"] == 4 and stats["hit_rate"] == 0.75
    assert stats["matches"] == {"exact": 0, "semantic": 3}
    assert stats["tokens_saved"] == {"prompt": 7, "completion": 0, "total": 7}
    assert stats["unpriced_models"] == ["llama"] and stats["errors"]["store"] == 2


def test_a_recent_error_clears_when_the_same_operation_succeeds_again():
    now = [1000.0]
    recent = RecentErrors(lambda: now[0])
    writes = [0]
    recent.writes = lambda: writes[0]
    recent.failed("store", "OSError: disk full", "write")
    recent.failed("embedding", "RuntimeError: boom")
    now[0] += 5
    assert recent.reasons(("store", "embedding")) == ["embedding failing (RuntimeError: boom; 5 s ago)",
                                                      "store failing (OSError: disk full; 5 s ago)"]
    recent.succeeded("store")  # a read says nothing about writes
    assert len(recent.reasons(("store",))) == 1
    writes[0] += 1
    assert recent.reasons(("store",)) == []
    recent.succeeded("embedding")
    assert recent.reasons(("embedding",)) == []
    recent.failed("store", "OSError: unreadable")
    now[0] += HEALTH_WINDOW
    assert recent.reasons(("store",)) == []  # aged out


def test_the_lookup_histogram_exposes_what_prometheus_clients_histogram_would():
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    from proxy.metrics import FAST_BUCKETS
    from proxy.tally import LatencyHistogram

    theirs, ours = CollectorRegistry(), CollectorRegistry()
    reference = Histogram("deja_lookup_seconds", "Cache lookup time", buckets=FAST_BUCKETS, registry=theirs)
    histogram = LatencyHistogram("deja_lookup_seconds", "Cache lookup time", FAST_BUCKETS)
    ours.register(histogram)
    for seconds in (0.0, 0.0005, 0.00051, 0.003, 2.5, 7.0, 0.0005):  # bounds themselves count as "less or equal"
        reference.observe(seconds)
        histogram.observe(seconds)
    wanted = {k: v for k, v in samples(generate_latest(theirs).decode()).items() if "_created" not in k[0]}
    assert samples(generate_latest(ours).decode()) == wanted
    assert wanted[("deja_lookup_seconds_bucket", (("le", "0.0005"),))] == 3
