"""What only the PostgreSQL store has to get right: the partition inside the nearest-neighbour query (iterative
scan), migrations that two replicas start together, invalidation across replicas, clear start-up failures."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import numpy as np
import pytest

from proxy.app import create_app
from proxy.settings import Settings, StoreSettings
from proxy.stores.base import Entry, StoreStartError
from proxy.stores.postgres import PostgresStore

from .conftest import default_policies
from .fakes import FakeUpstream, HashEmbedder

pytestmark = pytest.mark.anyio
DIM = 16


def entry(partition: str, n: int, vector: np.ndarray | None) -> Entry:
    return Entry(exact_key=f"{partition}-{n}", partition=partition, tenant="t", model="m", namespace="",
                 context_digest="", context_text="", question=f"question {n}",
                 response={"id": str(n), "object": "chat.completion", "choices": []},
                 embedder="test@16" if vector is not None else None, created_at=time.time(), expires_at=None,
                 vector=vector)


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


async def test_a_small_partition_among_large_ones_still_finds_its_neighbours(postgres_database):
    store = PostgresStore(postgres_database, "test@16", DIM)
    await store.open()
    try:
        rng = np.random.default_rng(1)
        big = unit(rng.standard_normal((3000, DIM)))
        for start in range(0, len(big), 500):
            await store.put([entry("big", start + i, v) for i, v in enumerate(big[start:start + 500])], {})
        small = await store.put([entry("small", i, v) for i, v in enumerate(unit(rng.standard_normal((3, DIM))))],
                                {})
        query = big[0]  # nearest to big rows: the small partition's entries are far down the graph
        async with store.pool.acquire() as conn:
            transaction = conn.transaction()
            await transaction.start()
            # Only the HNSW index may answer (DDL is transactional: rolled back below).
            await conn.execute("DROP INDEX entries_vectors; ANALYZE entries; "
                               "SET LOCAL enable_seqscan = off")
            plan = "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + store.search_sql(), query, "small", 8))
            found = await conn.fetch(store.search_sql(), query, "small", 8)
            await conn.execute("SET LOCAL hnsw.iterative_scan = off")
            without = await conn.fetch(store.search_sql(), query, "small", 8)
            await transaction.rollback()
        assert store._index in plan
        assert sorted(r["id"] for r in found) == sorted(e.id for e in small)
        assert len(without) < 3  # what the iterative scan is for: a plain HNSW scan filters its 64 out
        assert sorted(i for i, _ in await store.search("small", query, 8)) == sorted(e.id for e in small)
        assert all(i not in {e.id for e in small} for i, _ in await store.search("big", query, 8))
    finally:
        await store.close()


async def test_replicas_starting_together_migrate_once(postgres_database):
    stores = [PostgresStore(postgres_database, "test@16", DIM) for _ in range(3)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        versions = await stores[0].pool.fetch("SELECT version FROM deja_migrations")
        assert [r["version"] for r in versions] == [1]
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_a_delete_on_one_replica_reaches_the_others_hot_records(postgres_database):
    a, b = PostgresStore(postgres_database, "test@16", DIM), PostgresStore(postgres_database, "test@16", DIM)
    await a.open()
    await b.open()
    heard: asyncio.Queue[list[int] | None] = asyncio.Queue()
    b.listen(heard.put_nowait)
    try:
        (stored,) = await a.put([entry("p", 1, unit(np.ones((1, DIM)))[0])], {})
        assert (await b.get_exact("p-1")).id == stored.id  # committed through A, read through B
        assert await a.delete_ids([stored.id]) == 1
        assert await asyncio.wait_for(heard.get(), 1.0) == [stored.id]
        assert await b.get_exact("p-1") is None
    finally:
        await a.close()
        await b.close()


async def test_a_role_that_may_not_create_the_extension_gets_one_clear_error(postgres_database):
    admin = await asyncpg.connect(postgres_database)
    role = f"r{time.monotonic_ns()}"
    await admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'pw'; GRANT ALL ON SCHEMA public TO {role}")
    await admin.close()
    parts = urlsplit(postgres_database)
    url = urlunsplit(parts._replace(netloc=f"{role}:pw@"))
    with pytest.raises(StoreStartError) as failure:
        await PostgresStore(url, "test@16", DIM).open()
    assert "pgvector" in str(failure.value) and "CREATE EXTENSION vector" in str(failure.value)
    assert "pw" not in str(failure.value).replace("pgvector", "")


def test_an_unreachable_database_ends_start_up_with_one_masked_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "proxy", "serve", "--data-dir", str(tmp_path), "--store",
                             "postgresql://deja:s3cret@127.0.0.1:9/deja"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("deja: cannot reach the PostgreSQL store postgresql://deja:***@127.0.0.1:9/deja")
    assert "s3cret" not in result.stderr


def test_workers_refuse_the_embedded_store(tmp_path):
    result = subprocess.run([sys.executable, "-m", "proxy", "serve", "--data-dir", str(tmp_path), "--workers", "2"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "deja: --workers needs the shared PostgreSQL store (--store postgresql://…): the embedded store belongs "
        "to one process"]


async def test_fail_open_serves_as_a_plain_proxy_and_says_degraded(tmp_path):
    upstream = FakeUpstream()
    settings = Settings(data_dir=str(tmp_path), upstream="http://upstream.test/v1",
                        store=StoreSettings(url="postgresql://deja:s3cret@127.0.0.1:9/deja", fail_open=True))
    app = create_app(settings, policies=default_policies(), embedder=HashEmbedder(),
                     transport=httpx.ASGITransport(app=upstream.app))
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                                                   base_url="http://deja.test") as client:
        for _ in range(2):
            got = await client.post("/v1/chat/completions", headers={"Authorization": "Bearer sk-a"}, json={
                "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "anything at all"}]})
            assert got.status_code == 200 and got.headers["x-cache-status"] == "MISS"
            await app.state.services.cache.drain()
        assert upstream.calls == 2
        health = (await client.get("/healthz")).json()
        reasons = " ".join(health["reasons"])
        assert health["status"] == "degraded" and "***" in reasons and "s3cret" not in reasons
