"""LRU eviction, TTL expiry and index compaction keep SQLite, the vector index and the in-memory records in step
(real SQLite and hnswlib in tmp_path)."""

from __future__ import annotations

import time

import pytest

from proxy.stores import sqlite as sqlite_store
from proxy.stores.base import EntryFilter

from .conftest import default_policies

pytestmark = pytest.mark.anyio


async def count_rows(cache) -> int:
    async with cache.store.reader.execute("SELECT COUNT(*) FROM entries") as cur:
        return (await cur.fetchone())[0]


def only_index(cache):
    (index,) = cache.store.indexes.indexes.values()
    return index


async def test_lru_eviction_drops_the_least_recently_used_from_store_index_and_memory(make_proxy):
    async with make_proxy(policies=default_policies(max_entries=3)) as proxy:
        for q in ("alpha question", "beta question", "gamma question"):
            await proxy.chat(q)
        assert (await proxy.chat("alpha question")).headers["x-cache-status"] == "HIT"  # alpha is now recent
        async with proxy.cache.store.reader.execute("SELECT id FROM entries WHERE question = 'beta question'") as cur:
            (beta_id,) = await cur.fetchone()
        assert proxy.cache.hot.by_id(beta_id) is not None
        await proxy.chat("delta question")  # a fourth entry: beta, least recently used, goes
        assert await count_rows(proxy.cache) == 3
        assert only_index(proxy.cache).live == 3
        (info,) = await proxy.cache.store.partitions(proxy.cache.store.indexes.embedder)  # trigger-kept counts agree
        assert info.count == 3
        assert proxy.cache.hot.by_id(beta_id) is None
        calls = proxy.upstream.calls
        assert (await proxy.chat("beta question")).headers["x-cache-status"] == "MISS"
        assert proxy.upstream.calls == calls + 1
        assert (await proxy.chat("alpha question")).headers["x-cache-status"] == "HIT"


async def test_ttl_sweep_deletes_expired_entries_everywhere(make_proxy):
    async with make_proxy(policies=default_policies(ttl=60)) as proxy:
        await proxy.chat("weather today?")
        await proxy.chat("news today?")
        assert await count_rows(proxy.cache) == 2 and len(proxy.cache.hot) == 2
        proxy.cache.clock = lambda: time.time() + 61
        await proxy.cache.maintain()
        assert await count_rows(proxy.cache) == 0
        assert only_index(proxy.cache).live == 0 and len(proxy.cache.hot) == 0
        assert (await proxy.chat("weather today?")).headers["x-cache-status"] == "MISS"


async def test_compaction_rebuilds_an_index_full_of_deleted_vectors(make_proxy, tmp_path, monkeypatch):
    monkeypatch.setattr(sqlite_store, "COMPACT_MIN", 5)
    data_dir = tmp_path / "compact"
    questions = [f"question number {word}" for word in
                 ("one two three four five six seven eight nine ten eleven twelve").split()]
    async with make_proxy(policies=default_policies(max_entries=3), data_dir=data_dir) as proxy:
        for q in questions:
            await proxy.chat(q)
        before = only_index(proxy.cache)
        assert before.live == 3 and before.deleted == 9
        await proxy.cache.maintain()
        after = only_index(proxy.cache)
        assert after is not before and after.live == 3 and after.deleted == 0
        calls = proxy.upstream.calls
        for q in questions[-3:]:
            response = await proxy.chat(q.upper())  # same words, other case: found through the new index
            assert response.headers["x-cache-match"] == "semantic"
        assert proxy.upstream.calls == calls
    # The compacted index was saved: a restart loads it as it is.
    async with make_proxy(policies=default_policies(max_entries=3), data_dir=data_dir) as proxy:
        reloaded = only_index(proxy.cache)
        assert reloaded.live == 3 and reloaded.deleted == 0
        assert (await proxy.chat(questions[-1].upper())).headers["x-cache-status"] == "HIT"


async def test_eviction_and_deletes_run_in_bounded_indexed_batches(make_proxy, monkeypatch):
    monkeypatch.setattr(sqlite_store, "DELETE_BATCH", 2)
    async with make_proxy() as proxy:
        store = proxy.cache.store
        statements: list[str] = []
        await store.writer.set_trace_callback(statements.append)
        for n in range(7):
            await proxy.chat(f"question {n} of seven")
        await proxy.cache.drain()
        async with store.reader.execute("SELECT id, question FROM entries ORDER BY id") as cur:
            rows = await cur.fetchall()
        (partition,) = store.sizes()
        evicted = await store.remove_lru(partition, keep=2)  # five go, oldest first, two at a time
        assert sorted(i for i, _, _ in evicted) == [i for i, _ in rows[:5]]
        assert await store.delete_ids([rows[5][0], rows[6][0], 10_000]) == 2
        assert await count_rows(proxy.cache) == 0
        selects = [s for s in statements if s.startswith("SELECT id, partition, embedder")]
        assert selects and not any("OFFSET" in s for s in statements)
        assert all(s.count(",") <= 3 for s in selects if " IN (" in s)  # at most DELETE_BATCH ids a statement
        assert all(s.rstrip().endswith(("LIMIT 1", "LIMIT 2")) for s in selects)


async def test_purge_deletes_in_batches_and_keeps_the_index_in_step(make_proxy, monkeypatch):
    monkeypatch.setattr(sqlite_store, "DELETE_BATCH", 2)
    async with make_proxy() as proxy:
        for n in range(5):
            await proxy.chat(f"purge me {n}")
        await proxy.cache.drain()
        assert await proxy.cache.store.delete_matching(EntryFilter()) == 5
        assert await count_rows(proxy.cache) == 0 and only_index(proxy.cache).live == 0
        assert (await proxy.chat("purge me 0")).headers["x-cache-status"] == "MISS"
