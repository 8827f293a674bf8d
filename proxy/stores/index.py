"""VectorIndex: one hnswlib index per (partition, embedding model), saved under <data_dir>/indexes.

Separate indexes are what makes isolation hold by construction: a search only ever sees its own partition.
hnswlib is not safe for adding while another thread queries, but queries and saves only read: each index has a
shared/exclusive lock, so searches run while the index is saved and only adds and deletes wait. Labels are the
store's entry ids. Each index file has a sidecar recording what it holds (entry count, highest id, the store's
change generation) and the file's SHA-256: start-up loads the file only if all of them match SQLite and the bytes,
and rebuilds it from the stored vectors otherwise (hnswlib must never read a damaged file: it can crash on one).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import hnswlib
import numpy as np

log = logging.getLogger("deja.index")

INITIAL_CAPACITY = 1024
EF_CONSTRUCTION = 200
M = 16
EF_SEARCH = 64


class SharedLock:
    """Many readers at once (searches, a save) or one writer (add, delete). Readers never wait for a writer that
    is only waiting: a periodic save must not hold up the lookups queued behind an add."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._readers = 0
        self._writing = False

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._changed:
            while self._writing:
                self._changed.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._changed:
                self._readers -= 1
                self._changed.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._changed:
            while self._writing or self._readers:
                self._changed.wait()
            self._writing = True
        try:
            yield
        finally:
            with self._changed:
                self._writing = False
                self._changed.notify_all()


class VectorIndex:
    def __init__(self, dim: int, capacity: int = INITIAL_CAPACITY, *, m: int = M,
                 ef_construction: int = EF_CONSTRUCTION) -> None:
        self.dim = dim
        self._index = hnswlib.Index(space="ip", dim=dim)  # vectors are unit length: inner product = cosine
        self._index.init_index(max_elements=capacity, ef_construction=ef_construction, M=m)
        self._index.set_ef(EF_SEARCH)
        self._lock = SharedLock()
        self.live = 0

    @classmethod
    def load(cls, path: Path, dim: int, live: int) -> VectorIndex:
        self = cls.__new__(cls)
        self.dim = dim
        self._index = hnswlib.Index(space="ip", dim=dim)
        self._index.load_index(str(path))
        self._index.set_ef(EF_SEARCH)
        self._lock = SharedLock()
        self.live = live
        return self

    @property
    def deleted(self) -> int:
        """Slots held by deleted vectors (hnswlib keeps them until the index is rebuilt)."""
        return self._index.get_current_count() - self.live

    def add(self, ids: list[int], vectors: np.ndarray) -> None:
        with self._lock.exclusive():
            needed = self._index.get_current_count() + len(ids)
            if needed > self._index.get_max_elements():
                self._index.resize_index(max(needed, 2 * self._index.get_max_elements()))
            self._index.add_items(vectors, ids)
            self.live += len(ids)

    def remove(self, entry_id: int) -> None:
        with self._lock.exclusive():
            try:
                self._index.mark_deleted(entry_id)
            except RuntimeError:  # not in this index (never added, or already deleted)
                return
            self.live -= 1

    def remove_many(self, entry_ids: list[int]) -> None:
        for entry_id in entry_ids:
            self.remove(entry_id)

    def search(self, vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        """Up to k nearest (entry id, cosine similarity), best first."""
        with self._lock.shared():
            k = min(k, self.live)
            while k > 0:
                try:
                    labels, distances = self._index.knn_query(vector.reshape(1, -1), k=k)
                    break
                except RuntimeError:  # fewer reachable vectors than k (many deletions): ask for fewer
                    k //= 2
            else:
                return []
        return [(int(label), float(1.0 - d)) for label, d in zip(labels[0], distances[0], strict=True)]

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        with self._lock.shared():
            self._index.save_index(str(tmp))
        os.replace(tmp, path)


class IndexSet:
    """The indexes of one embedding model, by partition, with their files."""

    def __init__(self, directory: Path, embedder: str, dim: int) -> None:
        self.directory = directory
        self.embedder = embedder
        self.dim = dim
        self.indexes: dict[str, VectorIndex] = {}
        self.dirty: set[str] = set()
        directory.mkdir(parents=True, exist_ok=True)

    def _path(self, partition: str) -> Path:
        name = hashlib.sha256(f"{partition}\x00{self.embedder}".encode()).hexdigest()[:32]
        return self.directory / f"{name}.hnsw"

    def get(self, partition: str) -> VectorIndex | None:
        return self.indexes.get(partition)

    def get_or_create(self, partition: str) -> VectorIndex:
        index = self.indexes.get(partition)
        if index is None:
            index = self.indexes[partition] = VectorIndex(self.dim)
        return index

    def _mark(self, partition: str, count: int, max_id: int, generation: int) -> dict[str, object]:
        return {"partition": partition, "embedder": self.embedder, "dim": self.dim, "count": count,
                "max_id": max_id, "generation": generation}

    def try_load(self, partition: str, count: int, max_id: int, generation: int) -> bool:
        """Load the saved index if its sidecar says it holds exactly what SQLite holds and the file is the one
        that was saved (its SHA-256 is checked before hnswlib reads a byte of it)."""
        path = self._path(partition)
        sidecar = path.with_suffix(".json")
        try:
            meta = json.loads(sidecar.read_text())
            digest = meta.pop("sha256", None)
        except (OSError, ValueError, AttributeError):
            return False
        expected = self._mark(partition, count, max_id, generation)
        if meta != expected:
            log.warning("index %s disagrees with the store (%s vs %s): rebuilding", path.name, meta, expected)
            return False
        try:
            with path.open("rb") as f:
                actual = hashlib.file_digest(f, "sha256").hexdigest()
        except OSError as exc:
            log.warning("index %s cannot be read (%s): rebuilding", path.name, exc)
            return False
        if actual != digest:
            log.warning("index %s is damaged (checksum mismatch): rebuilding", path.name)
            return False
        try:
            self.indexes[partition] = VectorIndex.load(path, self.dim, count)
        except (RuntimeError, OSError) as exc:
            log.warning("index %s cannot be loaded (%s): rebuilding", path.name, exc)
            return False
        return True

    def save(self, partition: str, count: int, max_id: int, generation: int) -> None:
        path = self._path(partition)
        sidecar = path.with_suffix(".json")
        # The sidecar goes first and is removed: a crash mid-save leaves no sidecar, so start-up rebuilds.
        sidecar.unlink(missing_ok=True)
        self.indexes[partition].save(path)
        with path.open("rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        tmp = sidecar.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({**self._mark(partition, count, max_id, generation), "sha256": digest}))
        os.replace(tmp, sidecar)
        self.dirty.discard(partition)
