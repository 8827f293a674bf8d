"""Concurrent identical /v1/embeddings misses share one upstream call, per tenant and partition (real store and
index; the upstream is the counting fake, held until every follower joined)."""

from __future__ import annotations

import asyncio

import pytest

from .test_coalescing import until

pytestmark = pytest.mark.anyio
PATH = "/v1/embeddings"


def embed(deja, items, key: str = "sk-a", **headers: str):
    return asyncio.create_task(deja.client.post(PATH, json={"model": "text-embedding-3-small", "input": items},
                                                headers={"Authorization": f"Bearer {key}", **headers}))


async def held(deja, realistic, leader, followers, waiting: int, calls: int = 1):
    """The leader reaches the held upstream (its `calls`th call), the followers start, `waiting` of them join, then
    the upstream answers; every response, leader first."""
    await until(lambda: realistic.calls_to.get(PATH, 0) == calls)
    rest = [follower() for follower in followers]
    await until(lambda: deja.cache.flights.waiting == waiting)
    await asyncio.sleep(0.05)  # a request that wrongly did not join would reach the upstream meanwhile
    realistic.release.set()
    responses = await asyncio.gather(leader, *rest)
    await deja.cache.drain()
    return responses


async def test_concurrent_identical_embeddings_misses_make_one_upstream_call(deja, realistic):
    items = ["HOLD first text", "second text"]
    leader = embed(deja, items)
    responses = await held(deja, realistic, leader, [lambda: embed(deja, items)] * 4, waiting=4)
    assert realistic.calls_to[PATH] == 1
    assert [r.status_code for r in responses] == [200] * 5
    first = responses[0].json()
    assert all(r.json()["data"] == first["data"] for r in responses)
    assert all(r.json()["usage"] == first["usage"] for r in responses)
    assert "x-cache-coalesced" not in responses[0].headers
    assert [r.headers["x-cache-coalesced"] for r in responses[1:]] == ["true"] * 4
    assert all(r.headers["x-cache-status"] == "MISS" for r in responses)
    assert len(deja.cache.flights) == 0
    again = await embed(deja, items)
    assert again.headers["x-cache-status"] == "HIT" and again.json()["data"] == first["data"]
    assert realistic.calls_to[PATH] == 1 and realistic.embedded == items


async def test_the_same_uncached_items_of_partly_cached_batches_share_a_call(deja, realistic):
    assert (await embed(deja, ["cached one"])).status_code == 200
    await deja.cache.drain()
    batch = ["cached one", "HOLD not yet cached"]
    responses = await held(deja, realistic, embed(deja, batch), [lambda: embed(deja, batch)], waiting=1, calls=2)
    assert realistic.calls_to[PATH] == 2 and realistic.embedded == ["cached one", "HOLD not yet cached"]
    assert [r.headers["x-cache-items"] for r in responses] == ["1/2", "1/2"]
    assert responses[0].json()["data"] == responses[1].json()["data"]


async def test_other_tenants_and_namespaces_never_share_an_embeddings_call(deja, realistic):
    items = ["HOLD whose vector is this"]
    responses = await held(deja, realistic, embed(deja, items), [
        lambda: embed(deja, items, key="sk-b"),
        lambda: embed(deja, items, **{"X-Cache-Namespace": "other"}),
    ], waiting=0)
    assert realistic.calls_to[PATH] == 3
    assert all(r.status_code == 200 and "x-cache-coalesced" not in r.headers for r in responses)


async def test_no_cache_embeddings_requests_make_their_own_call(deja, realistic):
    items = ["HOLD refresh me"]
    responses = await held(deja, realistic, embed(deja, items),
                           [lambda: embed(deja, items, **{"Cache-Control": "no-cache"})], waiting=0)
    assert realistic.calls_to[PATH] == 2
    assert [r.headers["x-cache-status"] for r in responses] == ["MISS", "REFRESH"]


async def test_an_upstream_error_is_shared_once_and_not_cached(deja, realistic):
    items = ["HOLD FAIL400 this one"]
    responses = await held(deja, realistic, embed(deja, items), [lambda: embed(deja, items)] * 2, waiting=2)
    assert [r.status_code for r in responses] == [400] * 3 and realistic.calls_to[PATH] == 1
    assert (await embed(deja, items)).status_code == 400 and realistic.calls_to[PATH] == 2
