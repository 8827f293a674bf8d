"""Store faults that once served or lost answers (issue 9, defects 1, 6 and 11): a failed commit leaves nothing
findable and no vector under an id SQLite hands out again; a candidate of another partition is never served;
a damaged index file is rebuilt, never read; a corrupt SQLite file ends `deja serve` at once with one line."""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys

import numpy as np
import pytest

from proxy.stores.base import EntryFilter
from proxy.stores.index import VectorIndex

from .fakes import HashEmbedder

pytestmark = pytest.mark.anyio


def content(response) -> str:
    return response.json()["choices"][0]["message"]["content"]


async def test_failed_commit_leaves_no_vector_for_the_id_the_next_insert_gets(make_proxy, monkeypatch):
    async with make_proxy() as proxy:
        store = proxy.cache.store
        await proxy.chat("seed question of tenant a", key="sk-a")  # tenant A's partition has an index

        async def disk_full() -> None:
            raise sqlite3.OperationalError("database or disk is full")

        real_commit = store.writer.commit
        monkeypatch.setattr(store.writer, "commit", disk_full)
        first = await proxy.chat("what is the refund policy", key="sk-a")
        assert first.status_code == 200 and first.headers["x-cache-status"] == "MISS"
        monkeypatch.setattr(store.writer, "commit", real_commit)
        assert await store.count_entries(EntryFilter()) == 1
        # Tenant B (another key, another model) stores the same question: SQLite hands it the rolled-back id.
        await proxy.chat("what is the refund policy", key="sk-b", model="gpt-4o")
        again = await proxy.chat("what is the refund policy", key="sk-a")
        assert again.headers["x-cache-status"] == "MISS" and "sk-b" not in again.text
        assert content(again) != content(await proxy.chat("what is the refund policy", key="sk-b", model="gpt-4o"))
        # The partition still answers by meaning (its live count matches the index: no BYPASS, defect 11).
        assert (await proxy.chat("Seed question of tenant A?", key="sk-a")).headers["x-cache-match"] == "semantic"
        assert proxy.cache.foreign_candidates == 0


async def test_a_candidate_of_another_partition_is_refused_and_counted(make_proxy):
    async with make_proxy() as proxy:
        await proxy.chat("tenant a asks something", key="sk-a")
        await proxy.chat("tenant b secret plan", key="sk-b")
        a_entry, b_entry = sorted(await proxy.cache.store.list_entries(EntryFilter(), 10, 0), key=lambda e: e.id)
        # An index fault: B's entry id under A's partition, with B's vector.
        index = proxy.cache.store.indexes.get(a_entry.partition)
        index.add([b_entry.id], HashEmbedder().embed(["tenant b secret plan"]))
        got = await proxy.chat("tenant b secret plan", key="sk-a")
        assert got.headers["x-cache-status"] == "MISS"
        assert proxy.cache.foreign_candidates == 1
        assert "deja_foreign_candidates_total 1.0" in (await proxy.client.get("/metrics")).text


def test_search_never_raises_when_fewer_vectors_are_reachable_than_counted():
    index = VectorIndex(4)
    index.add([1, 2], np.eye(4, dtype=np.float32)[:2])
    index.live = 5  # a count that overstates what the index holds
    assert [i for i, _ in index.search(np.eye(4, dtype=np.float32)[0], 8)][0] == 1


async def test_damaged_index_file_with_an_intact_header_is_rebuilt_not_read(make_proxy, tmp_path, caplog):
    data = tmp_path / "data"
    async with make_proxy(data_dir=data) as proxy:
        await proxy.chat("how do I rotate my keys")
    (path,) = (data / "indexes").glob("*.hnsw")
    raw = bytearray(path.read_bytes())
    raw[200:400] = b"\xff" * 200  # past the header: hnswlib would read garbage links
    path.write_bytes(bytes(raw))
    caplog.set_level(logging.WARNING, logger="deja.index")
    async with make_proxy(data_dir=data) as proxy:
        assert "checksum mismatch" in caplog.text
        assert (await proxy.chat("How do I ROTATE my keys?")).headers["x-cache-match"] == "semantic"


def test_corrupt_sqlite_file_ends_start_up_with_one_line(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "deja.sqlite3").write_bytes(b"this is not a database" * 200)
    result = subprocess.run([sys.executable, "-m", "proxy", "serve", "--data-dir", str(data), "--port", "0"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"deja: cannot open the embedded store {data / 'deja.sqlite3'}: file is not a database"]
