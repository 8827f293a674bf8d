"""VectorIndex locking on a real hnswlib index: a save never holds up searches; adds wait for it."""

from __future__ import annotations

import threading

import numpy as np

from proxy.stores.index import VectorIndex


class SlowSave:
    """The real hnswlib index, whose save waits until the test lets it finish."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.saving = threading.Event()
        self.finish = threading.Event()

    def save_index(self, path: str) -> None:
        self.saving.set()
        assert self.finish.wait(10)
        self.inner.save_index(path)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def unit(rows: int, dim: int = 8, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(rows, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_searches_run_while_the_index_is_saved_and_adds_wait_for_the_save(tmp_path):
    vectors = unit(50)
    index = VectorIndex(8)
    index.add(list(range(1, 51)), vectors)
    slow = index._index = SlowSave(index._index)
    saver = threading.Thread(target=index.save, args=(tmp_path / "i.hnsw",))
    saver.start()
    assert slow.saving.wait(10)
    found: list[list[tuple[int, float]]] = []
    searcher = threading.Thread(target=lambda: found.append(index.search(vectors[7], 1)))
    searcher.start()
    searcher.join(5)
    assert not searcher.is_alive() and found[0][0][0] == 8  # answered during the save
    adder = threading.Thread(target=index.add, args=([51], unit(1, seed=1)))
    adder.start()
    adder.join(0.2)
    assert adder.is_alive()  # an add changes the graph: it waits until the save is done
    slow.finish.set()
    saver.join(10)
    adder.join(10)
    assert not adder.is_alive() and index.live == 51
    loaded = VectorIndex.load(tmp_path / "i.hnsw", 8, 50)
    assert loaded.search(vectors[7], 1)[0][0] == 8
