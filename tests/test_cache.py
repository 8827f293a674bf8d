"""SemanticCache over each store (SQLite + hnswlib files, PostgreSQL): persistence, rebuild, eviction, model change."""

from __future__ import annotations

import json

import pytest

from proxy.cache.semantic import SemanticCache
from proxy.canonical import Owner, build_chat_request, tenant_of, validate_body
from proxy.policies import Policy
from proxy.stores.sqlite import SqliteStore

from .fakes import HashEmbedder

pytestmark = pytest.mark.anyio
POLICY = Policy(threshold=0.95, long_threshold=0.97)


class OtherModel(HashEmbedder):
    name = "test-hash-v2@256"


def request(text: str, model: str = "m"):
    body = validate_body({"model": model, "messages": [{"role": "user", "content": text}]})
    return build_chat_request(body, Owner(tenant_of("Bearer k")))


def answer(text: str) -> dict:
    return {"id": "c", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}]}


async def put(cache: SemanticCache, text: str, policy: Policy = POLICY, **kw) -> None:
    cache.submit(request(text, **kw), policy, answer(f"about {text}"))
    await cache.drain()


async def served(cache: SemanticCache, text: str, policy: Policy = POLICY, **kw) -> str | None:
    hit = (await cache.lookup(request(text, **kw), policy, None)).hit
    return None if hit is None else hit.record.response["choices"][0]["message"]["content"]


async def test_entries_and_vectors_survive_a_restart(tmp_path, opened, store_url):
    async with opened(tmp_path) as cache:
        await put(cache, "how do I rotate my keys")
    async with opened(tmp_path) as cache:
        assert store_url or not cache.store.indexes.dirty  # the embedded store loaded its saved index
        assert await served(cache, "How do I ROTATE my keys?") == "about how do I rotate my keys"


@pytest.mark.embedded_only
async def test_stale_index_is_rebuilt_from_sqlite_vectors(tmp_path, opened):
    async with opened(tmp_path) as cache:
        await put(cache, "first question here")
    sidecar = next((tmp_path / "indexes").glob("*.json"))
    saved = sidecar.read_text()
    async with opened(tmp_path) as cache:
        await put(cache, "second question here")
    sidecar.write_text(saved)  # as if the process died before the index was saved again
    embedder = HashEmbedder()
    async with opened(tmp_path, embedder) as cache:
        assert embedder.calls == 0  # rebuilt from stored vectors: nothing re-embedded
        assert await served(cache, "Second question here?") == "about second question here"
        assert await served(cache, "First question here?") == "about first question here"


async def test_another_embedding_model_never_matches_old_vectors(tmp_path, opened):
    async with opened(tmp_path) as cache:
        await put(cache, "what is the capital of france")
    async with opened(tmp_path, OtherModel()) as cache:
        assert await served(cache, "What is the capital of France?") is None
        assert await served(cache, "what is the capital of france") is not None  # exact hits need no vectors
        await put(cache, "what is the capital of spain")
        assert await served(cache, "What is the capital of Spain?") == "about what is the capital of spain"


async def test_least_recently_used_entries_are_evicted_from_store_and_index(tmp_path, opened):
    small = Policy(threshold=0.95, max_entries=2)
    async with opened(tmp_path) as cache:
        await put(cache, "alpha one", small)
        await put(cache, "beta two", small)
        hit = (await cache.lookup(request("alpha one"), small, None)).hit
        cache.record_hit(hit.record.id)
        await cache.drain()
        await put(cache, "gamma three", small)
        assert await served(cache, "beta two", small) is None
        assert await served(cache, "Two beta", small) is None  # gone from the index too
        assert await served(cache, "alpha one", small) == "about alpha one"
        assert cache.partition_sizes()[request("x").partition][1] == 2


async def test_expired_entries_are_swept_from_store_and_index(tmp_path, opened):
    now = [1000.0]
    async with opened(tmp_path, clock=lambda: now[0]) as cache:
        await put(cache, "short lived", Policy(threshold=0.95, ttl=10))
        now[0] += 11
        await cache.maintain(now[0])
        assert await cache.store.get_exact(request("short lived").exact_key) is None
        assert cache.partition_sizes()[request("x").partition][1] == 0


async def test_refresh_replaces_the_entry_and_its_vector(tmp_path, opened):
    async with opened(tmp_path) as cache:
        await put(cache, "news today")
        cache.submit(request("news today"), POLICY, answer("fresh news"))
        await cache.drain()
        assert await served(cache, "Today news") == "fresh news"
        assert cache.partition_sizes()[request("x").partition][1] == 1


async def test_partitions_are_separate_indexes(tmp_path, opened):
    async with opened(tmp_path) as cache:
        await put(cache, "shared words here", model="a")
        await put(cache, "shared words here", model="b")
        assert len(cache.partition_sizes()) == 2
        assert await served(cache, "Here shared words", model="c") is None


async def test_full_queue_drops_instead_of_blocking(tmp_path):
    store = SqliteStore(tmp_path, HashEmbedder.name, HashEmbedder.dim)
    await store.open()
    cache = SemanticCache(store, HashEmbedder(), queue_size=1)
    assert cache.submit(request("a"), POLICY, answer("a"))
    assert not cache.submit(request("b"), POLICY, answer("b"))
    await store.close()


async def test_stored_response_is_kept_verbatim(tmp_path, opened):
    async with opened(tmp_path) as cache:
        original = answer("x")
        original["system_fingerprint"] = "fp_1"
        cache.submit(request("verbatim"), POLICY, original)
        await cache.drain()
        record = await cache.store.get_exact(request("verbatim").exact_key)
        assert json.dumps(record.response, sort_keys=True) == json.dumps(original, sort_keys=True)


async def test_identical_request_stored_during_the_lookup_is_an_exact_hit(tmp_path, opened, monkeypatch):
    async with opened(tmp_path) as cache:
        await put(cache, "how do I reset my password")

        async def committed_too_late(exact_key):  # the exact read ran just before the write-back committed
            return None

        monkeypatch.setattr(cache.store, "get_exact", committed_too_late)
        if cache.store.exact_reader() is not None:  # SQLite reads the key on the embedding thread instead
            monkeypatch.setattr(cache.store, "exact_reader", lambda: lambda exact_key: None)
        monkeypatch.setattr(cache.hot, "by_key", lambda key: None)
        hit = (await cache.lookup(request("how do I reset my password"), POLICY, None)).hit
        assert hit is not None and hit.match == "exact" and hit.similarity is None


async def test_an_exact_hit_on_an_entry_out_of_memory_embeds_nothing(tmp_path, opened):
    embedder = HashEmbedder()
    async with opened(tmp_path, embedder) as cache:
        await put(cache, "how do I reset my password")
        cache.hot.clear()
        before = embedder.calls
        hit = (await cache.lookup(request("how do I reset my password"), POLICY, None)).hit
        assert hit is not None and hit.match == "exact"
        assert embedder.calls == before
        assert cache.hot.by_key(hit.record.exact_key) is not None  # and it is in memory for the next time
        # An exact key that is not stored: the same trip embeds the question and finds it by meaning.
        assert await served(cache, "How do I reset my password?") == "about how do I reset my password"
        assert embedder.calls == before + 1


async def test_an_expired_exact_entry_out_of_memory_is_not_served_exactly(tmp_path, opened):
    now = [1000.0]
    async with opened(tmp_path, clock=lambda: now[0]) as cache:
        await put(cache, "what is the weather today", Policy(threshold=0.95, long_threshold=0.97, ttl=60))
        cache.hot.clear()
        now[0] += 120
        assert await served(cache, "what is the weather today") is None
