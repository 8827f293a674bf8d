"""Bench-only loader: a data dir holding N entries in one partition, for the cold-start / RSS / hit-latency points.

The workload's questions are embedded for real and keyed exactly as `deja serve` keys the bench's requests; the
other N - len(workload) entries are synthetic: perturbed copies of those real embeddings (cosine ~0.5 to their
seed, below the bench threshold, so a paraphrase still finds its real entry). Embedding 1M real questions would
take about an hour here. Rows go to SQLite in bulk through sqlite3; the index is built in one hnswlib call with
M=8, ef_construction=40 (production indexes use 16/200, whose inserts run at ~300/s on this machine).

Usage: python -m bench.populate DATA_DIR N [--models DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sqlite3
import time
from pathlib import Path

import numpy as np

from proxy.canonical import Owner, build_chat_request, tenant_of
from proxy.embeddings import load_embedder
from proxy.settings import EmbeddingSettings
from proxy.stores.index import IndexSet, VectorIndex
from proxy.stores.sqlite import INSERT_SQL, RecordStore

from .workload import API_KEY, MODEL, workload

CHUNK = 50_000
NOISE = 1.7  # norm of the perturbation added to a unit seed vector: cosine ~ 1/sqrt(1 + NOISE^2) ~ 0.5


def completion(text: str) -> str:
    return json.dumps({"id": "chatcmpl-bench", "object": "chat.completion", "created": 0, "model": MODEL,
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                    "logprobs": None, "finish_reason": "stop"}]}, separators=(",", ":"))


def populate(data_dir: Path, n: int, models: Path) -> dict:
    started = time.monotonic()
    embedder = load_embedder(EmbeddingSettings(cache_dir=str(models)), models)
    asyncio.run(_schema(data_dir))
    items = workload(400)
    seeds = embedder.embed([q for q, _, _ in items])
    requests = [build_chat_request({"model": MODEL, "messages": [{"role": "user", "content": q}]},
                                   Owner(tenant_of(f"Bearer {API_KEY}")))
                for q, _, _ in items]
    partition = requests[0].partition
    rng = np.random.default_rng(7)
    db = sqlite3.connect(data_dir / "deja.sqlite3")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    index = VectorIndex(embedder.dim, n, m=8, ef_construction=40)
    now = time.time()
    for start in range(0, n, CHUNK):
        ids = list(range(start + 1, min(n, start + CHUNK) + 1))
        vectors = np.empty((len(ids), embedder.dim), dtype=np.float32)
        rows = []
        for row, entry_id in enumerate(ids):
            i = entry_id - 1
            if i < len(items):
                r, vectors[row] = requests[i], seeds[i]
                rows.append((r.exact_key, partition, r.tenant, MODEL, "", r.context_digest, "", r.question,
                             completion(items[i][2])))
            else:
                seed = seeds[i % len(items)]
                noise = rng.standard_normal(embedder.dim).astype(np.float32)
                v = seed + NOISE * noise / np.linalg.norm(noise)
                vectors[row] = v / np.linalg.norm(v)
                key = hashlib.sha256(f"filler-{i}".encode()).hexdigest()
                rows.append((key, partition, requests[0].tenant, MODEL, "", requests[0].context_digest, "",
                             f"synthetic filler {i}", completion(f"filler answer {i}")))
        db.executemany(INSERT_SQL, [(*r, embedder.name, vectors[k].tobytes(), now, None, now, 0)
                                    for k, r in enumerate(rows)])
        db.commit()
        index.add(ids, vectors)
        print(f"  {ids[-1]:,} / {n:,} entries ({time.monotonic() - started:.0f} s)", flush=True)
    (generation,) = db.execute("SELECT generation FROM partition_stats WHERE partition = ? AND embedder = ?",
                               (partition, embedder.name)).fetchone()
    db.close()
    indexes = IndexSet(data_dir / "indexes", embedder.name, embedder.dim)
    indexes.indexes[partition] = index
    indexes.save(partition, n, n, generation)
    asyncio.run(_schema(data_dir))  # a store opened once has its partition counts (see store.BACKFILL_STATS)
    return {"entries": n, "seconds": round(time.monotonic() - started, 1)}


async def _schema(data_dir: Path) -> None:
    store = RecordStore(data_dir / "deja.sqlite3")
    await store.open()
    await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("n", type=int)
    parser.add_argument("--models", type=Path, default=Path("/tmp/deja-bench/models"))
    args = parser.parse_args()
    args.data_dir.mkdir(parents=True, exist_ok=True)
    print(json.dumps(populate(args.data_dir, args.n, args.models)))


if __name__ == "__main__":
    main()
