"""HitShortcut: a repeated request that is a fresh exact hit is answered before routing, as the usual path would
answer it, and anything else goes the usual way.

The usual path's answer to the same request is what each test compares with: X-Cache-Debug sends a request past
the shortcut (a hit carries no debug information, so the answer is the same), and `deja_shortcut_hits` on /metrics
says which path answered.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import default_policies

pytestmark = pytest.mark.anyio

MODEL = "gpt-4o-mini"
QUESTION = "How do I export my invoices as CSV?"
USUAL = {"X-Cache-Debug": "1"}  # goes past the shortcut
# Age and X-Cache-TTL count seconds: two answers a second apart differ there and nowhere else.
CLOCK_HEADERS = {"age", "x-cache-ttl"}


def metric(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


async def counts(proxy) -> dict[str, float]:
    text = (await proxy.client.get("/metrics")).text
    return {"shortcut": metric(text, "deja_shortcut_hits_total"),
            "exact": metric(text, "deja_requests_total", model=MODEL, status="HIT", match="exact"),
            "route": metric(text, "deja_route_requests_total", route="chat/completions", status="HIT", code="200"),
            "saved": metric(text, "deja_tokens_saved_total", model=MODEL, kind="completion")}


async def ask(proxy, key: str = "sk-a", headers: dict[str, str] | None = None, seed: int | None = None,
              **params) -> httpx.Response:
    if seed is not None:
        random.seed(seed)  # the hit's own id comes from `random`: the same seed, the same id on both paths
    return await proxy.chat(QUESTION, key=key, headers=headers, **params)


def without_created(body: bytes) -> bytes:
    return re.sub(rb'"created":\d+', b'"created":0', body)


def contract_headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k not in CLOCK_HEADERS}


@pytest.mark.parametrize("stream", [False, True])
async def test_a_repeated_hit_is_the_usual_answer_byte_for_byte(make_proxy, upstream, stream):
    async with make_proxy() as proxy:
        assert (await ask(proxy, stream=stream)).headers["x-cache-status"] == "MISS"
        before = await counts(proxy)
        fast = await ask(proxy, seed=7, stream=stream)
        between = await counts(proxy)
        usual = await ask(proxy, headers=USUAL, seed=7, stream=stream)
        after = await counts(proxy)
    assert upstream.calls == 1
    assert fast.headers["x-cache-status"] == usual.headers["x-cache-status"] == "HIT"
    assert fast.headers["x-cache-match"] == "exact" and fast.headers["x-cache-key"] == usual.headers["x-cache-key"]
    assert contract_headers(fast) == contract_headers(usual)
    assert without_created(fast.content) == without_created(usual.content)
    assert (b"data: [DONE]" in fast.content) is stream
    # Both answers are counted the same way; only the first took the shortcut.
    assert (between["shortcut"] - before["shortcut"], after["shortcut"] - between["shortcut"]) == (1, 0)
    for series in ("exact", "route", "saved"):
        assert between[series] - before[series] == after[series] - between[series] > 0, series


async def test_each_hit_still_gets_its_own_id(proxy):
    await ask(proxy)
    first, second = (await ask(proxy)).json(), (await ask(proxy)).json()
    assert first["id"] != second["id"] and first["id"].startswith("chatcmpl-")
    assert (await counts(proxy))["shortcut"] == 2


async def test_another_key_never_gets_the_entry(proxy, upstream):
    await ask(proxy, key="sk-a")
    assert (await ask(proxy, key="sk-a")).headers["x-cache-status"] == "HIT"
    other = await ask(proxy, key="sk-b")
    assert other.headers["x-cache-status"] == "MISS" and upstream.calls == 2
    assert (await counts(proxy))["shortcut"] == 1
    # The namespace partitions inside a tenant in the same way.
    spaced = await ask(proxy, key="sk-a", headers={"X-Cache-Namespace": "other"})
    assert spaced.headers["x-cache-status"] == "MISS" and upstream.calls == 3


async def test_the_key_gate_and_header_limit_run_before_it(make_proxy, upstream, monkeypatch):
    monkeypatch.setenv("DEJA_UPSTREAM_API_KEY", "sk-server")
    digests = [hashlib.sha256(b"team-a").hexdigest()]
    async with make_proxy(host="0.0.0.0", client_keys=digests, max_header_bytes=2048) as proxy:
        await ask(proxy, key="team-a")
        assert (await ask(proxy, key="team-a")).headers["x-cache-status"] == "HIT"
        body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": QUESTION}]})
        keyless = await proxy.client.post("/v1/chat/completions", content=body)
        assert keyless.status_code == 401 and keyless.json()["error"]["code"] == "missing_api_key"
        huge = await ask(proxy, key="team-a", headers={"X-Padding": "x" * 4096})
        assert huge.status_code == 431
        assert (await ask(proxy, key="team-b")).headers["x-cache-status"] == "MISS"
        assert (await counts(proxy))["shortcut"] == 1
    assert upstream.calls == 2


@pytest.mark.parametrize(("headers", "status"), [({"Cache-Control": "no-cache"}, "REFRESH"),
                                                 ({"Cache-Control": "no-store"}, "BYPASS"),
                                                 ({"X-Cache-Debug": "anything"}, "HIT")])
async def test_requests_that_ask_for_more_take_the_usual_path(proxy, upstream, headers, status):
    await ask(proxy)
    response = await ask(proxy, headers=headers)
    assert response.headers["x-cache-status"] == status
    assert upstream.calls == (1 if status == "HIT" else 2)
    assert (await counts(proxy))["shortcut"] == 0


async def test_a_bad_threshold_header_is_still_a_400(proxy):
    await ask(proxy)
    response = await ask(proxy, headers={"X-Cache-Threshold": "2"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_cache_threshold"
    assert (await counts(proxy))["shortcut"] == 0


async def test_an_expired_entry_is_never_served(make_proxy, upstream):
    async with make_proxy(policies=default_policies(ttl=60, stale_while_revalidate=0)) as proxy:
        await ask(proxy)
        assert (await ask(proxy)).headers["x-cache-status"] == "HIT"
        proxy.cache.clock = lambda: time.time() + 120
        assert (await ask(proxy)).headers["x-cache-status"] == "MISS"
        assert (await counts(proxy))["shortcut"] == 1
    assert upstream.calls == 2


async def test_a_stale_entry_is_served_stale_by_the_usual_path(make_proxy, upstream):
    async with make_proxy(policies=default_policies(ttl=60, stale_while_revalidate=600)) as proxy:
        await ask(proxy)
        proxy.cache.clock = lambda: time.time() + 120
        assert (await ask(proxy)).headers["x-cache-status"] == "STALE"
        assert (await counts(proxy))["shortcut"] == 0


async def test_a_deleted_entry_is_never_served(make_proxy, upstream, monkeypatch):
    monkeypatch.setenv("DEJA_ADMIN_TOKEN", "admin-secret")
    async with make_proxy() as proxy:
        await ask(proxy)
        hit = await ask(proxy)
        assert hit.headers["x-cache-status"] == "HIT"
        deleted = await proxy.client.delete(f"/admin/entries/{hit.headers['x-cache-key']}",
                                            headers={"Authorization": "Bearer admin-secret"})
        assert deleted.json()["deleted"] == 1
        assert (await ask(proxy)).headers["x-cache-status"] == "MISS"
        assert (await counts(proxy))["shortcut"] == 1
    assert upstream.calls == 2


async def test_bodies_it_does_not_read_whole_still_reach_the_app(proxy, upstream):
    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": QUESTION}]}).encode()
    auth = {"Authorization": "Bearer sk-a", "Content-Type": "application/json"}
    await proxy.client.post("/v1/chat/completions", content=body, headers=auth)
    await proxy.cache.drain()

    async def pieces():
        yield body[:10]
        yield body[10:]

    chunked = await proxy.client.post("/v1/chat/completions", content=pieces(), headers=auth)  # no Content-Length
    assert chunked.headers["x-cache-status"] == "HIT"
    big = {"model": MODEL, "messages": [{"role": "user", "content": "y" * 20_000}]}
    assert (await proxy.client.post("/v1/chat/completions", json=big, headers=auth)).status_code == 200
    assert (await counts(proxy))["shortcut"] == 0


async def test_every_answer_is_counted_exactly_once_whenever_metrics_are_read(proxy, upstream):
    """Hits are tallied and folded into the Prometheus series on read (tally.py): reading /metrics between
    requests, or twice in a row, neither loses nor repeats a count, on the shortcut or the usual path."""
    def wanted(text: str) -> dict[str, float]:
        return {"shortcut": metric(text, "deja_shortcut_hits_total"),
                **{status: metric(text, "deja_requests_total", model=MODEL, status=status)
                   for status in ("HIT", "MISS", "BYPASS")},
                **{f"route {status}": metric(text, "deja_route_requests_total", route="chat/completions",
                                             status=status, code="200") for status in ("HIT", "MISS", "BYPASS")},
                "saved": metric(text, "deja_tokens_saved_total", model=MODEL, kind="completion"),
                "lookups": metric(text, "deja_lookup_seconds_count")}

    expected = dict.fromkeys(wanted(""), 0.0)
    steps = [({}, "MISS", {"MISS": 1, "route MISS": 1, "lookups": 1}),
             ({}, "HIT", {"shortcut": 1, "HIT": 1, "route HIT": 1, "saved": 5, "lookups": 1}),
             (USUAL, "HIT", {"HIT": 1, "route HIT": 1, "saved": 5, "lookups": 1}),
             ({"Cache-Control": "no-store"}, "BYPASS", {"BYPASS": 1, "route BYPASS": 1}),
             ({}, "HIT", {"shortcut": 1, "HIT": 1, "route HIT": 1, "saved": 5, "lookups": 1})]
    for headers, status, added in steps:
        assert (await ask(proxy, headers=headers)).headers["x-cache-status"] == status
        for name, amount in added.items():
            expected[name] += amount
        assert wanted((await proxy.client.get("/metrics")).text) == expected
        assert wanted((await proxy.client.get("/metrics")).text) == expected
    assert upstream.calls == 2
