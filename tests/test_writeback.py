"""Write-back keeps up (issue 9, defect 5): hits never take an answer's place, a round's questions are embedded
in one batch, answers are bounded by memory and every dropped one is counted; plus the bounded metrics labels
(defect 8), the guard's input bound (defect 10) and coalesced followers during an upstream timeout."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest

from proxy.cache import lookup as lookup_module
from proxy.cache.semantic import SemanticCache
from proxy.stores.sqlite import SqliteStore

from .fakes import FakeUpstream, HashEmbedder, ThreadedServer
from .test_cache import POLICY, answer, request

pytestmark = pytest.mark.anyio


async def opened_cache(tmp_path, embedder=None, **kw) -> SemanticCache:
    embedder = embedder or HashEmbedder()
    store = SqliteStore(tmp_path, embedder.name, embedder.dim)
    await store.open()
    cache = SemanticCache(store, embedder, **kw)
    await cache.start()
    return cache


async def close(cache: SemanticCache) -> None:
    await cache.close()
    await cache.store.close()


async def test_a_burst_of_hits_never_displaces_an_answer(tmp_path):
    cache = await opened_cache(tmp_path, queue_size=4)
    try:
        for _ in range(500):
            cache.record_hit(1)
        assert cache.queue_depth == 1  # one flush token for the whole burst
        assert cache.submit(request("asked during the burst"), POLICY, answer("kept"))
        await cache.drain()
        assert await cache.store.get_exact(request("asked during the burst").exact_key) is not None
    finally:
        await close(cache)


async def test_hits_are_counted_once_flushed(tmp_path):
    cache = await opened_cache(tmp_path)
    try:
        cache.submit(request("counted"), POLICY, answer("x"))
        await cache.drain()
        record = await cache.store.get_exact(request("counted").exact_key)
        for _ in range(7):
            cache.record_hit(record.id)
        await cache.drain()
        assert (await cache.store.get_many([record.id]))[record.id].hits == 7
    finally:
        await close(cache)


async def test_a_stream_of_hits_is_flushed_once_per_interval(tmp_path, monkeypatch):
    cache = await opened_cache(tmp_path)
    touches = []
    try:
        cache.submit(request("popular"), POLICY, answer("x"))
        await cache.drain()
        record = await cache.store.get_exact(request("popular").exact_key)
        real_touch = cache.store.touch

        async def touch(hits):
            touches.append(sum(n for n, _ in hits.values()))
            await real_touch(hits)

        monkeypatch.setattr(cache.store, "touch", touch)
        for _ in range(50):
            cache.record_hit(record.id)
            await asyncio.sleep(0.002)  # the worker runs between hits, as it does between requests
        assert touches == [1]  # the first hit's flush; the other 49 wait for the interval
        for _ in range(100):  # no further hit brings a token: the worker flushes them by itself
            if len(touches) == 2:
                break
            await asyncio.sleep(0.05)
        assert touches == [1, 49]
        cache.record_hit(record.id)
        await cache.drain()  # flushes at once, interval or not
        assert touches == [1, 49, 1]
        assert (await cache.store.get_many([record.id]))[record.id].hits == 51
    finally:
        await close(cache)


async def test_new_partitions_are_embedded_in_one_batch_at_write_back(tmp_path):
    embedder = HashEmbedder()
    cache = await opened_cache(tmp_path, embedder=embedder)
    try:
        for i in range(40):
            assert cache.submit(request(f"question number {i}", model=f"model-{i}"), POLICY, answer(str(i)))
        await cache.drain()
        assert embedder.calls <= 2
        assert len(cache.store.indexes.indexes) == 40
    finally:
        await close(cache)


async def test_answers_past_the_budget_are_dropped_and_counted(tmp_path):
    cache = await opened_cache(tmp_path, queue_size=2, max_answer_bytes=2000)
    try:
        assert cache.submit(request("a"), POLICY, answer("a"))
        assert cache.submit(request("b"), POLICY, answer("b"))
        assert not cache.submit(request("c"), POLICY, answer("c"))
        await cache.drain()
        assert cache.submit(request("d"), POLICY, answer("d"))  # room again once stored
        assert not cache.submit(request("e"), POLICY, answer("e" * 5000))
        await cache.drain()
        assert cache.budget.dropped == {"queue_full": 1, "too_large": 1}
        assert cache.budget.answers == 0 and cache.budget.bytes == 0
    finally:
        await close(cache)


async def test_queue_is_bounded_by_memory(tmp_path):
    cache = await opened_cache(tmp_path, queue_bytes=10_000)
    try:
        admitted = sum(cache.submit(request(f"q{i}"), POLICY, answer("x" * 1000)) for i in range(30))
        assert 5 <= admitted < 10 and cache.budget.dropped["queue_full"] == 30 - admitted
    finally:
        await close(cache)


async def test_dropped_answers_show_on_metrics(make_proxy):
    async with make_proxy(max_answer_bytes=300) as proxy:
        response = await proxy.chat("a question whose answer is long " + "x" * 400)
        assert response.status_code == 200 and response.headers["x-cache-status"] == "MISS"
        text = (await proxy.client.get("/metrics")).text
        assert 'deja_writeback_dropped_total{reason="too_large"} 1.0' in text
        assert 'deja_writeback_dropped_total{reason="queue_full"} 0.0' in text


# -- defect 8: label values are bounded --------------------------------------------------------------------------


async def test_long_model_names_are_labelled_other(proxy):
    for i in range(10):
        await proxy.chat("hi", model=f"{i}" + "m" * 200_000)
    text = (await proxy.client.get("/metrics")).text
    assert len(text) < 100_000
    assert 'deja_requests_total{match="none",model="other",status="MISS"} 10.0' in text


async def test_models_outside_specific_policies_are_labelled_other(make_proxy):
    from proxy.policies import Policy, PolicySet

    policies = PolicySet([Policy(match="gpt-4o*", name="gpt4o"), Policy(name="default")])
    async with make_proxy(policies=policies) as proxy:
        await proxy.chat("hi", model="gpt-4o-mini")
        await proxy.chat("hi", model="random-name-1")
        text = (await proxy.client.get("/metrics")).text
        assert 'model="gpt-4o-mini"' in text and "random-name-1" not in text and 'model="other"' in text


# -- defect 10: the guard's input is bounded and long pairs are vetted off the event loop --------------------------


async def test_questions_past_guard_max_chars_match_exactly_only(make_proxy):
    async with make_proxy(guard_max_chars=60) as proxy:
        long = "please explain how the write back queue of the proxy keeps up under load"
        await proxy.chat(long)
        assert (await proxy.chat(long)).headers["x-cache-status"] == "HIT"
        reworded = "under load please explain how the write back queue of the proxy keeps up"
        assert (await proxy.chat(reworded)).headers["x-cache-status"] == "MISS"
        short = "how does the queue keep up"
        await proxy.chat(short)
        assert (await proxy.chat("how does the queue keep up?")).headers["x-cache-status"] == "HIT"


async def test_long_pairs_are_vetted_off_the_event_loop(make_proxy, monkeypatch):
    threads = []
    real = lookup_module.find_conflict

    def spy(cached, incoming, similarity=None):
        threads.append(threading.current_thread() is threading.main_thread())
        return real(cached, incoming, similarity)

    monkeypatch.setattr(lookup_module, "find_conflict", spy)
    async with make_proxy() as proxy:
        words = " ".join(f"word{i}" for i in range(400))
        await proxy.chat(words)
        assert (await proxy.chat(words + " ?")).headers["x-cache-status"] == "HIT"
        await proxy.chat("short one here")
        assert (await proxy.chat("here short one")).headers["x-cache-status"] == "HIT"
    assert threads == [False, True]


# -- defect 5: a coalesced follower does not call the upstream again within the leader's timeout ----------------


class ToLoopback(httpx.AsyncBaseTransport):
    """The fake upstream on a real socket: ASGITransport has no timeouts, and this test is about one."""

    def __init__(self, url: str) -> None:
        self.target = httpx.URL(url)
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.url = request.url.copy_with(host=self.target.host, port=self.target.port)
        return await self.inner.handle_async_request(request)


async def test_followers_share_the_leaders_upstream_timeout(make_proxy):
    upstream = FakeUpstream()
    upstream.slow_seconds = 3.0
    with ThreadedServer(upstream.app) as url:
        async with make_proxy(upstream_read_timeout=0.5, transport=ToLoopback(url)) as proxy:
            body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "SLOW to answer"}]}

            def send():
                return proxy.client.post("/v1/chat/completions", json=body,
                                         headers={"Authorization": "Bearer sk-a"})

            leader = asyncio.create_task(send())
            while upstream.calls == 0:
                await asyncio.sleep(0.005)
            followers = [asyncio.create_task(send()) for _ in range(3)]
            responses = await asyncio.gather(leader, *followers)
            assert [r.status_code for r in responses] == [504] * 4
            assert all(r.headers["x-cache-status"] == "ERROR" for r in responses)
            assert upstream.calls == 1
