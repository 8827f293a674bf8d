"""Store faults: the cache is an optimisation, so a broken disk, file or embedder costs hits, never answers.
Faults that need a small or read-only filesystem use a tmpfs, skipped (with the reason) where mounting is not
allowed."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from pathlib import Path

import numpy as np
import pytest

from ..fakes import BrokenEmbedder
from .harness import Deja, fill, tmpfs, wait_for

pytestmark = pytest.mark.model


def remount(where: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(where)], check=True)


def health(deja: Deja) -> dict:
    return deja.client.get("/healthz").json()


STARTUP_FAILURE_SECONDS = 12  # the model loads in ~4 s; the store opens right after


def test_read_only_data_dir_exits_non_zero_with_one_line(fake, tmp_path, model_dir):
    _, url = fake
    with tmpfs(tmp_path / "mnt", "64m") as mnt:
        seeded = Deja(tmp_path, url, model_dir, data_dir=mnt / "data").wait_ready()
        seeded.chat("stored before the disk went read-only")
        assert seeded.stop() == 0
        remount(mnt, "ro")  # only possible with no file open for writing
        try:
            deja = Deja(tmp_path, url, model_dir, data_dir=mnt / "data")
            code = deja.exit_code(STARTUP_FAILURE_SECONDS)
            assert code not in (None, 0), f"start-up did not exit within {STARTUP_FAILURE_SECONDS} s:\n{deja.log}"
            assert any(line.startswith("deja:") for line in deja.log.splitlines())
        finally:
            remount(mnt, "rw")


def test_disk_full_never_serves_another_tenants_answer(fake, tmp_path, model_dir):
    _, url = fake
    with tmpfs(tmp_path / "mnt", "24m") as mnt:
        deja = Deja(tmp_path, url, model_dir, data_dir=mnt / "data").wait_ready()
        try:
            deja.chat("warm up the store", key="sk-a")
            assert wait_for(lambda: deja.chat("warm up the store", key="sk-a").headers["x-cache-status"] == "HIT")
            filler = fill(mnt)
            answer_a = deja.chat("What is the refund policy?", key="sk-a").json()
            assert wait_for(lambda: health(deja)["status"] == "degraded")
            filler.unlink()
            deja.chat("What is the refund policy?", key="sk-b", model="gpt-4o")
            assert wait_for(lambda: deja.chat("What is the refund policy?", key="sk-b", model="gpt-4o")
                            .headers["x-cache-status"] == "HIT")
            again = deja.chat("What is the refund policy?", key="sk-a")
            assert again.headers["x-cache-status"] == "MISS", "tenant A was served tenant B's answer"
            assert again.json()["choices"] != answer_a["choices"]
        finally:
            assert deja.stop() == 0


def test_health_is_ok_again_once_the_store_takes_writes_again(fake, tmp_path, model_dir):
    _, url = fake
    with tmpfs(tmp_path / "mnt", "24m") as mnt:
        deja = Deja(tmp_path, url, model_dir, data_dir=mnt / "data").wait_ready()
        try:
            deja.chat("warm up the store")
            assert wait_for(lambda: deja.chat("warm up the store").headers["x-cache-status"] == "HIT")
            assert health(deja)["status"] == "ok"
            filler = fill(mnt)
            deja.chat("asked while the disk is full")
            assert wait_for(lambda: health(deja)["status"] == "degraded")
            assert "store failing" in health(deja)["reasons"][0]
            # Lookups still work with the disk full: they say nothing about writes.
            assert deja.chat("warm up the store").headers["x-cache-status"] == "HIT"
            assert health(deja)["status"] == "degraded"
            filler.unlink()
            deja.chat("asked once the disk has room")
            assert wait_for(lambda: deja.chat("asked once the disk has room").headers["x-cache-status"] == "HIT")
            recovered = health(deja)
            assert recovered["status"] == "ok", recovered  # well inside the 60 s window: the write cleared it
        finally:
            assert deja.stop() == 0


def test_corrupted_sqlite_exits_non_zero_with_one_line(fake, tmp_path, model_dir):
    _, url = fake
    data = tmp_path / "data"
    data.mkdir()
    (data / "deja.sqlite3").write_bytes(b"SQLite format 3\0" + os.urandom(8192))
    deja = Deja(tmp_path, url, model_dir, data_dir=data)
    code = deja.exit_code(STARTUP_FAILURE_SECONDS)
    assert code not in (None, 0), f"start-up did not exit within {STARTUP_FAILURE_SECONDS} s:\n{deja.log}"
    assert any("deja:" in line and "sqlite" in line.lower() for line in deja.log.splitlines())


def test_corrupted_index_file_is_rebuilt_not_a_crash(fake, tmp_path, model_dir):
    _, url = fake
    deja = Deja(tmp_path, url, model_dir).wait_ready()
    questions = [f"What is the capital of country number {i}?" for i in range(5)]
    for q in questions:
        deja.chat(q)
    assert wait_for(lambda: all(deja.chat(q).headers["x-cache-status"] == "HIT" for q in questions))
    assert deja.stop() == 0
    (index,) = (deja.data_dir / "indexes").glob("*.hnsw")
    raw = bytearray(index.read_bytes())
    raw[256:] = np.random.default_rng(0).integers(0, 255, len(raw) - 256, dtype=np.uint8).tobytes()
    index.write_bytes(bytes(raw))
    again = Deja(tmp_path, url, model_dir).wait_ready()
    try:
        assert again.chat("What is the capital city of country number 3?").headers["x-cache-status"] in (
            "HIT", "MISS")
        assert all(again.chat(q).headers["x-cache-status"] == "HIT" for q in questions)
    finally:
        assert again.stop() == 0
    with sqlite3.connect(deja.data_dir / "deja.sqlite3") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


@pytest.mark.anyio
async def test_embedding_raising_fails_open_and_health_says_degraded(make_proxy, tmp_path):
    """In-process: a real `deja serve` offers no way to break its model while it runs."""
    async with make_proxy(data_dir=tmp_path / "d") as healthy:
        await healthy.chat("seed an index")
        assert (await healthy.client.get("/healthz")).json()["status"] == "ok"
    async with make_proxy(data_dir=tmp_path / "d", embedder=BrokenEmbedder()) as proxy:
        assert (await proxy.client.get("/healthz")).json()["status"] == "ok"
        got = await proxy.chat("a new question")
        assert got.status_code == 200 and got.headers["x-cache-status"] == "BYPASS"
        health = (await proxy.client.get("/healthz")).json()
        assert health["status"] == "degraded"
        assert health["reasons"] == [health["reasons"][0]] and "embedding failing" in health["reasons"][0]
        assert "embedding model exploded" in health["reasons"][0]
        assert (await proxy.chat("seed an index")).headers["x-cache-status"] == "HIT"  # exact needs no model
