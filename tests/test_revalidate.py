"""Stale-while-revalidate in-process: a clock the test moves, the fake upstream, real SQLite and hnswlib."""

from __future__ import annotations

import httpx
import pytest

from proxy.policies import Policy, PolicySet

pytestmark = pytest.mark.anyio
SWR = PolicySet([Policy(threshold=0.95, long_threshold=0.97, ttl=10, stale_while_revalidate=60)])


async def refreshed(proxy) -> None:
    await proxy.services.revalidator.wait()
    await proxy.cache.drain()


def exact_key(text: str) -> str:
    from proxy.canonical import Owner, build_chat_request, tenant_of

    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}
    return build_chat_request(body, Owner(tenant_of("Bearer sk-a"))).exact_key


def counted(proxy, outcome: str) -> float:
    return proxy.services.metrics.stale_refreshes.labels(outcome)._value.get()


async def test_failed_refresh_keeps_serving_the_stale_entry_and_retries(make_proxy, upstream):
    now = [1000.0]
    question = "What is the capital of Chile?"
    async with make_proxy(policies=SWR) as proxy:
        proxy.cache.clock = lambda: now[0]
        assert (await proxy.chat(question)).headers["x-cache-ttl"] == "10"
        now[0] += 15  # 5 s past the TTL, inside the 60 s window
        upstream.fail_next = 1
        stale = await proxy.chat(question)
        assert stale.headers["x-cache-status"] == "STALE" and stale.headers["x-cache-ttl"] == "0"
        await refreshed(proxy)
        assert counted(proxy, "failed") == 1 and upstream.calls == 2
        again = await proxy.chat(question)
        assert again.headers["x-cache-status"] == "STALE"
        assert again.json()["choices"][0]["message"]["content"].startswith("answer #1 ")
        await refreshed(proxy)
        assert counted(proxy, "started") == 2 and counted(proxy, "replaced") == 1 and upstream.calls == 3
        fresh = await proxy.chat(question)
        assert fresh.headers["x-cache-status"] == "HIT"
        assert fresh.json()["choices"][0]["message"]["content"].startswith("answer #3 ")


async def test_refresh_replaces_the_entry_under_the_same_key(make_proxy, upstream):
    now = [1000.0]
    async with make_proxy(policies=SWR) as proxy:
        proxy.cache.clock = lambda: now[0]
        await proxy.chat("Tell me about condors")
        old_id = int((await proxy.chat("Tell me about condors")).headers["x-cache-key"])
        now[0] += 15
        assert (await proxy.chat("Tell me about condors")).headers["x-cache-status"] == "STALE"
        await refreshed(proxy)
        stored = await proxy.cache.store.get_exact(exact_key("Tell me about condors"))
        assert stored is not None and stored.id != old_id and stored.created_at == now[0]
        assert await proxy.cache.store.get_many([old_id]) == {}
        assert upstream.requests[-1]["body"].get("stream") is None


async def test_past_the_window_is_a_miss_and_max_age_beats_the_window(make_proxy):
    now = [1000.0]
    async with make_proxy(policies=SWR) as proxy:
        proxy.cache.clock = lambda: now[0]
        await proxy.chat("What is the capital of Chile?")
        now[0] += 15
        capped = await proxy.chat("What is the capital of Chile?", headers={"Cache-Control": "max-age=12"})
        assert capped.headers["x-cache-status"] == "MISS"
        now[0] += 100  # past TTL + window of the answer just stored
        assert (await proxy.chat("What is the capital of Chile?")).headers["x-cache-status"] == "MISS"


async def test_other_endpoints_get_the_volatile_ttl_and_stale_refreshes(make_proxy):
    from .fakes import RealisticUpstream

    realistic = RealisticUpstream()
    policies = PolicySet([Policy(threshold=0.95, long_threshold=0.97, ttl=10, volatile_ttl=5,
                                 stale_while_revalidate=60)])
    now = [1000.0]
    async with make_proxy(policies=policies, transport=httpx.ASGITransport(app=realistic.app)) as proxy:
        proxy.cache.clock = lambda: now[0]

        async def respond(text: str, **extra):
            response = await proxy.client.post("/v1/responses", json={"model": "gpt-4o-mini", "input": text, **extra},
                                               headers={"Authorization": "Bearer sk-a"})
            await proxy.cache.drain()
            return response

        volatile = await respond("What's the weather in Paris today?")
        assert volatile.headers["x-cache-ttl"] == "5" and volatile.headers["x-cache-volatile"] == "relative_day"
        timeless = await respond("What is the capital of Chile?")
        assert timeless.headers["x-cache-ttl"] == "10"
        now[0] += 12
        stale = await respond("What is the capital of Chile?", stream=True)
        assert stale.headers["x-cache-status"] == "STALE" and "response #2 " in stale.text
        await refreshed(proxy)
        assert realistic.calls_to["/v1/responses"] == 3 and realistic.seen[-1]["body"].get("stream") is None
        fresh = await respond("What is the capital of Chile?")
        assert fresh.headers["x-cache-status"] == "HIT" and "response #3 " in fresh.text
        # The volatile answer is past its 5 s and never served stale.
        assert (await respond("What's the weather in Paris today?")).headers["x-cache-status"] == "MISS"


async def test_azure_refresh_keeps_the_api_version(make_proxy):
    from .fakes import RealisticUpstream

    realistic = RealisticUpstream()
    now = [1000.0]
    path = "/openai/deployments/dep/chat/completions?api-version=2024-10-21"
    body = {"messages": [{"role": "user", "content": "What is the capital of Chile?"}]}
    async with make_proxy(policies=SWR, transport=httpx.ASGITransport(app=realistic.app)) as proxy:
        proxy.cache.clock = lambda: now[0]
        await proxy.client.post(path, json=body, headers={"api-key": "k"})
        await proxy.cache.drain()
        now[0] += 15
        stale = await proxy.client.post(path, json=body, headers={"api-key": "k"})
        assert stale.headers["x-cache-status"] == "STALE"
        await refreshed(proxy)
        assert [seen["query"] for seen in realistic.seen] == ["api-version=2024-10-21"] * 2
