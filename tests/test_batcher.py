"""EmbeddingBatcher's step before embedding (the exact-key read on the embedding thread): when it answers, nothing
is embedded; when it fails, its error is the job's; when it finds nothing, the text is embedded as usual."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from proxy.batcher import EmbeddingBatcher
from proxy.stores.sqlite import SqliteStore

from .fakes import HashEmbedder

pytestmark = pytest.mark.anyio


@pytest.fixture
def batcher():
    embedder = HashEmbedder()
    batcher = EmbeddingBatcher(embedder)
    yield batcher
    batcher.close()


async def test_a_step_that_answers_leaves_the_text_unembedded(batcher):
    threads = []

    def answer() -> str:
        threads.append(threading.current_thread().name)
        return "stored answer"

    assert await batcher.embed("a question", lambda v: ("searched", v), answer) == "stored answer"
    assert batcher.embedder.calls == 0
    assert threads == ["deja-embed"]


async def test_a_step_that_finds_nothing_embeds_and_follows_up(batcher):
    found, vector = await batcher.embed("a question", lambda v: ("searched", v), lambda: None)
    assert found == "searched" and batcher.embedder.calls == 1
    assert np.allclose(vector, HashEmbedder().embed(["a question"])[0])


async def test_a_step_that_fails_fails_its_own_job_only(batcher):
    def broken() -> None:
        raise OSError("disk I/O error")

    with pytest.raises(OSError, match="disk I/O error"):
        await batcher.embed("a question", None, broken)
    assert (await batcher.embed("another question")).shape == (HashEmbedder.dim,)


async def test_the_exact_reader_reads_on_its_thread_and_stops_with_the_store(tmp_path):
    store = SqliteStore(tmp_path, HashEmbedder.name, HashEmbedder.dim)
    await store.open()
    reader = store.exact_reader()
    assert reader is not None
    result: list[object] = []
    worker = threading.Thread(target=lambda: result.append(reader("no such key")))
    worker.start()
    worker.join()
    assert result == [None]
    await store.close()
    with pytest.raises(Exception, match="closed"):
        reader("no such key")
    await store.open()  # opened again, it reads again
    assert reader("no such key") is None
    await store.close()
