"""Single-flight coalescing through the real app: concurrent identical misses, one upstream call."""

from __future__ import annotations

import asyncio
import json

import anyio
import pytest

pytestmark = pytest.mark.anyio


async def until(predicate, seconds: float = 5.0) -> None:
    """The proxy and the fake upstream share this event loop: yield to them until `predicate` holds."""
    with anyio.fail_after(seconds):
        while not predicate():
            await asyncio.sleep(0.005)


def sse_content(text: str) -> str:
    parts = []
    for line in text.splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            event = json.loads(line[6:])
            for choice in event.get("choices", []):
                parts.append(choice.get("delta", {}).get("content") or "")
    return "".join(parts)


async def flight(proxy, leader: dict, followers: list[dict], waiting: int | None = None):
    """Start the leader, let it reach the (held) upstream, start the followers, wait until they all joined (or
    `waiting` of them), then release the upstream; returns every response, leader first."""
    client = proxy.client
    calls_before = proxy.upstream.calls

    async def send(spec: dict):
        return await client.post("/v1/chat/completions", headers={"Authorization": "Bearer sk-a",
                                                                   **spec.pop("headers", {})}, json=spec)

    first = asyncio.create_task(send(leader))
    await until(lambda: proxy.upstream.calls == calls_before + 1)
    rest = [asyncio.create_task(send(spec)) for spec in followers]
    await until(lambda: proxy.cache.flights.waiting == (len(followers) if waiting is None else waiting))
    proxy.upstream.release.set()
    responses = await asyncio.gather(first, *rest)
    await proxy.cache.drain()
    return responses


def body(text: str, **extra) -> dict:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}], **extra}


async def test_concurrent_identical_misses_make_one_upstream_call(proxy):
    q = "HOLD what is coalescing?"
    leader, *followers = await flight(proxy, body(q), [body(q) for _ in range(5)] + [body(q, stream=True)] * 2)
    assert proxy.upstream.calls == 1
    answer = leader.json()["choices"][0]["message"]["content"]
    assert answer == f"answer #1 to: {q}"
    assert leader.headers["x-cache-status"] == "MISS" and "x-cache-coalesced" not in leader.headers
    for r in followers[:5]:
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == answer
        assert r.headers["x-cache-status"] == "MISS" and r.headers["x-cache-coalesced"] == "true"
    for r in followers[5:]:
        assert r.headers["content-type"].startswith("text/event-stream")
        assert sse_content(r.text) == answer and r.text.rstrip().endswith("data: [DONE]")
    assert proxy.cache.flights.coalesced == 7 and len(proxy.cache.flights) == 0
    again = await proxy.chat(q)
    assert again.headers["x-cache-status"] == "HIT" and proxy.upstream.calls == 1


async def test_streaming_leader_hands_its_assembled_answer_to_followers(proxy):
    q = "HOLD stream it please"
    leader, plain, streamed = await flight(proxy, body(q, stream=True), [body(q), body(q, stream=True)])
    assert proxy.upstream.calls == 1
    answer = f"answer #1 to: {q}"
    assert sse_content(leader.text) == answer
    assert plain.json()["choices"][0]["message"]["content"] == answer
    assert sse_content(streamed.text) == answer and streamed.headers["x-cache-coalesced"] == "true"


async def test_upstream_error_is_shared_once_and_never_cached(proxy):
    q = "HOLD FAIL500 please"
    responses = await flight(proxy, body(q), [body(q), body(q)])
    assert [r.status_code for r in responses] == [500, 500, 500]
    assert all(r.json()["error"]["message"] == "upstream exploded" for r in responses)
    assert proxy.upstream.calls == 1
    later = await proxy.chat(q)
    assert later.status_code == 500 and proxy.upstream.calls == 2


async def test_no_store_and_no_cache_requests_do_not_join(proxy):
    q = "HOLD fresh answers only"
    responses = await flight(proxy, body(q), [body(q, headers={"Cache-Control": "no-cache"}),
                                               body(q, headers={"Cache-Control": "no-store"})], waiting=0)
    assert proxy.upstream.calls == 3
    assert [r.headers["x-cache-status"] for r in responses] == ["MISS", "REFRESH", "BYPASS"]
    assert all(r.headers.get("x-cache-coalesced") is None for r in responses)


async def test_followers_get_the_answer_when_the_leader_hangs_up(proxy):
    q = "HOLD the leader will hang up"

    def send():
        return proxy.client.post("/v1/chat/completions", json=body(q), headers={"Authorization": "Bearer sk-a"})

    leader = asyncio.create_task(send())
    await until(lambda: proxy.upstream.calls == 1)
    followers = [asyncio.create_task(send()) for _ in range(3)]
    await until(lambda: proxy.cache.flights.waiting == 3)
    leader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leader
    proxy.upstream.release.set()
    responses = await asyncio.gather(*followers)
    assert [r.status_code for r in responses] == [200] * 3
    assert [r.json()["choices"][0]["message"]["content"] for r in responses] == [f"answer #1 to: {q}"] * 3
    assert all(r.headers["x-cache-coalesced"] == "true" for r in responses)
    await proxy.cache.drain()
    assert proxy.upstream.calls == 1 and len(proxy.cache.flights) == 0
    again = await proxy.chat(q)
    assert again.headers["x-cache-status"] == "HIT" and proxy.upstream.calls == 1


async def test_a_leader_hanging_up_alone_still_stores_its_answer(proxy):
    q = "HOLD nobody else asks this"
    leader = asyncio.create_task(proxy.client.post("/v1/chat/completions", json=body(q),
                                                   headers={"Authorization": "Bearer sk-a"}))
    await until(lambda: proxy.upstream.calls == 1)
    leader.cancel()
    proxy.upstream.release.set()
    await until(lambda: len(proxy.cache.flights) == 0)
    await proxy.cache.drain()
    assert (await proxy.chat(q)).headers["x-cache-status"] == "HIT" and proxy.upstream.calls == 1


async def test_a_streamed_leader_gone_before_its_answer_starts_leaves_no_open_flight(proxy):
    q = "HOLD stream nobody reads"
    leader = asyncio.create_task(proxy.client.post("/v1/chat/completions", json=body(q, stream=True),
                                                   headers={"Authorization": "Bearer sk-a"}))
    await until(lambda: proxy.upstream.calls == 1)
    leader.cancel()
    proxy.upstream.release.set()
    await until(lambda: len(proxy.cache.flights) == 0)  # nobody waited: the relay stopped and landed it empty
    again = await proxy.chat(q)  # answered, not left waiting on a flight nobody lands
    assert again.status_code == 200 and again.json()["choices"][0]["message"]["content"].endswith(q)


async def test_other_tenants_do_not_share_a_flight(proxy):
    q = "HOLD whose answer is this"
    _, other = await flight(proxy, body(q), [body(q, headers={"Authorization": "Bearer sk-b"})], waiting=0)
    assert proxy.upstream.calls == 2 and other.headers.get("x-cache-coalesced") is None
