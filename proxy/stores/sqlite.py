"""The embedded store: entries in SQLite (WAL), one row per entry with its vector, and one hnswlib index per
partition in memory (saved beside it, stores/index.py).

Keeping each vector beside its entry makes SQLite the single source of truth: a missing, stale or damaged index
file is rebuilt from here without re-embedding anything. RecordStore is the SQL alone (also what `deja … --data-dir`
commands use on a stopped proxy); SqliteStore adds the indexes and is the Store SemanticCache talks to.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiosqlite
import numpy as np

from .base import Entry, EntryFilter, ExactReader, RemovalListener, StoreKind, StoreStartError
from .index import INITIAL_CAPACITY, IndexSet, VectorIndex

log = logging.getLogger("deja.store")

SCHEMA_VERSION = 2
SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,   -- never reused: it is also the vector's label in its index
    exact_key TEXT NOT NULL UNIQUE,
    partition TEXT NOT NULL,
    tenant TEXT NOT NULL,
    model TEXT NOT NULL,
    namespace TEXT NOT NULL,
    context_digest TEXT NOT NULL,
    context_text TEXT NOT NULL,
    question TEXT NOT NULL,
    response TEXT NOT NULL,                 -- the chat.completion object, JSON
    embedder TEXT,                          -- the model that made `vector`; NULL: exact matches only
    vector BLOB,
    created_at REAL NOT NULL,
    expires_at REAL,                        -- NULL: until evicted
    last_hit_at REAL NOT NULL,
    hits INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS entries_vectors ON entries(partition, embedder);
CREATE INDEX IF NOT EXISTS entries_lru ON entries(partition, last_hit_at);
CREATE INDEX IF NOT EXISTS entries_expiry ON entries(expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- Entries, highest id and a change generation per (partition, embedder), kept by triggers: start-up reads this
-- instead of counting a million rows, and an index file is loaded only if it was saved at the same generation.
-- embedder '' stands for NULL (exact-only entries).
CREATE TABLE IF NOT EXISTS partition_stats (
    partition TEXT NOT NULL,
    embedder TEXT NOT NULL,
    entries INTEGER NOT NULL,
    max_id INTEGER NOT NULL,
    generation INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (partition, embedder)
);
"""
# Version 1 had no generation; its triggers are replaced (every start: cheap, and always the current ones).
TRIGGERS = """
DROP TRIGGER IF EXISTS entries_counted;
DROP TRIGGER IF EXISTS entries_uncounted;
CREATE TRIGGER entries_counted AFTER INSERT ON entries BEGIN
    INSERT INTO partition_stats VALUES (NEW.partition, COALESCE(NEW.embedder, ''), 1, NEW.id, 1)
    ON CONFLICT (partition, embedder) DO UPDATE SET entries = entries + 1, max_id = MAX(max_id, NEW.id),
        generation = generation + 1;
END;
CREATE TRIGGER entries_uncounted AFTER DELETE ON entries BEGIN
    UPDATE partition_stats SET entries = entries - 1, generation = generation + 1
    WHERE partition = OLD.partition AND embedder = COALESCE(OLD.embedder, '');
END;
"""
# A store made before partition_stats existed (or loaded in bulk without the triggers) is counted once.
BACKFILL_STATS = """
INSERT INTO partition_stats SELECT partition, COALESCE(embedder, ''), COUNT(*), MAX(id), 0 FROM entries
WHERE NOT EXISTS (SELECT 1 FROM partition_stats) GROUP BY 1, 2
"""
INSERT_SQL = ("INSERT INTO entries (exact_key, partition, tenant, model, namespace, context_digest, context_text, "
              "question, response, embedder, vector, created_at, expires_at, last_hit_at, hits) "
              "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
# An index is rebuilt from SQLite once this share of its slots holds deleted vectors (and at least COMPACT_MIN):
# hnswlib only marks deletions, so evicted entries would otherwise cost memory and search time forever.
COMPACT_FRACTION = 0.3
COMPACT_MIN = 1000
# How long exact_reader's read waits for a lock (WAL readers hardly ever wait); past it the lookup fails and the
# request is forwarded uncached.
READ_TIMEOUT = 0.5
RECORD_COLUMNS = ("id, exact_key, partition, tenant, model, namespace, context_digest, context_text, question, "
                  "response, embedder, created_at, expires_at, hits")


@dataclass(frozen=True)
class PartitionInfo:
    partition: str
    embedder: str
    count: int
    max_id: int
    generation: int = 0


def _entry(row: Any) -> Entry:
    return Entry(id=row[0], exact_key=row[1], partition=row[2], tenant=row[3], model=row[4], namespace=row[5],
                 context_digest=row[6], context_text=row[7], question=row[8], response=json.loads(row[9]),
                 embedder=row[10], created_at=row[11], expires_at=row[12], hits=row[13])


def _where(selection: EntryFilter) -> tuple[str, list[Any]]:
    return selection.conditions(lambda n: "?")


# Rows one delete statement touches (and the most `?` one IN list holds): SQLite's lock is held that long.
DELETE_BATCH = 500
# (id, partition, embedder) of an entry that left the store.
Removed = tuple[int, str, str | None]


class RecordStore:
    """One writer connection and one reader connection: WAL lets lookups run while write-back commits."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        # exact_reader's connections, one per calling thread, closed by close().
        self._local = threading.local()
        self._thread_readers: list[sqlite3.Connection] = []
        self._thread_readers_lock = threading.Lock()

    async def open(self) -> None:
        """Raises StoreStartError (connections closed again: their threads must not keep the process alive)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = await aiosqlite.connect(self.path)
            await self._writer.execute("PRAGMA journal_mode=WAL")
            await self._writer.execute("PRAGMA synchronous=NORMAL")
            await self._writer.executescript(SCHEMA)
            async with self._writer.execute("PRAGMA table_info(partition_stats)") as cur:
                if "generation" not in {row[1] for row in await cur.fetchall()}:
                    await self._writer.execute("ALTER TABLE partition_stats ADD COLUMN generation INTEGER "
                                               "NOT NULL DEFAULT 0")
            await self._writer.executescript(TRIGGERS)
            await self._writer.execute(BACKFILL_STATS)
            await self._writer.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)",
                                       (str(SCHEMA_VERSION),))
            await self._writer.commit()
            self._reader = await aiosqlite.connect(self.path)
            await self._reader.execute("PRAGMA query_only=ON")
        except (sqlite3.Error, OSError) as exc:
            await self.close()
            raise StoreStartError(f"cannot open the embedded store {self.path}: {exc}") from exc

    async def close(self) -> None:
        for conn in (self._reader, self._writer):
            if conn is not None:
                await conn.close()
        self._reader = self._writer = None
        with self._thread_readers_lock:
            for thread_reader in self._thread_readers:
                thread_reader.close()
            self._thread_readers.clear()
            self._local = threading.local()

    @property
    def reader(self) -> aiosqlite.Connection:
        assert self._reader is not None, "RecordStore.open() first"
        return self._reader

    @property
    def writer(self) -> aiosqlite.Connection:
        assert self._writer is not None, "RecordStore.open() first"
        return self._writer

    async def get_exact(self, exact_key: str) -> Entry | None:
        # execute_fetchall: one trip to aiosqlite's thread, where execute, fetch and close took three (~0.15 ms)
        rows = await self.reader.execute_fetchall(f"SELECT {RECORD_COLUMNS} FROM entries WHERE exact_key = ?",
                                                  (exact_key,))
        return _entry(next(iter(rows))) if rows else None

    def exact_reader(self) -> ExactReader | None:
        return self._get_exact_now

    def _get_exact_now(self, exact_key: str) -> Entry | None:
        """get_exact on the calling thread, with that thread's own connection: a primary-key read takes ~20 µs,
        where a trip to aiosqlite's thread and back took ~0.2 ms."""
        local = self._local
        conn: sqlite3.Connection | None = getattr(local, "conn", None)
        if conn is None:
            with self._thread_readers_lock:
                if self._reader is None:
                    raise sqlite3.ProgrammingError("the store is closed")
                # Used by this thread only; close() closes it from the event loop's, once its user has stopped.
                conn = sqlite3.connect(self.path, timeout=READ_TIMEOUT, check_same_thread=False)
                conn.execute("PRAGMA query_only=ON")
                self._thread_readers.append(conn)
            local.conn = conn
        row = conn.execute(f"SELECT {RECORD_COLUMNS} FROM entries WHERE exact_key = ?", (exact_key,)).fetchone()
        return _entry(row) if row else None

    async def get_many(self, ids: Iterable[int]) -> dict[int, Entry]:
        ids = list(ids)
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = await self.reader.execute_fetchall(f"SELECT {RECORD_COLUMNS} FROM entries WHERE id IN ({marks})", ids)
        return {row[0]: _entry(row) for row in rows}

    async def insert_many(self, news: list[Entry], *, commit: bool = True) -> list[tuple[int, Entry | None]]:
        """Store each of `news` in one transaction, replacing entries with the same exact key; returns (id, replaced
        entry) for each. With commit=False the caller commits (or rolls back) on the writer connection."""
        done = []
        for new in news:
            old = None
            rows = await self.writer.execute_fetchall(f"SELECT {RECORD_COLUMNS} FROM entries WHERE exact_key = ?",
                                                      (new.exact_key,))
            if rows:
                old = _entry(next(iter(rows)))
                await self.writer.execute("DELETE FROM entries WHERE id = ?", (old.id,))
            vector = None if new.vector is None else np.asarray(new.vector, dtype=np.float32).tobytes()
            cur = await self.writer.execute(INSERT_SQL, (
                new.exact_key, new.partition, new.tenant, new.model, new.namespace, new.context_digest,
                new.context_text, new.question, json.dumps(new.response, separators=(",", ":")), new.embedder,
                vector, new.created_at, new.expires_at, new.created_at, new.hits))
            assert cur.lastrowid is not None
            done.append((cur.lastrowid, old))
        if commit:
            await self.writer.commit()
        return done

    async def touch(self, hits: dict[int, tuple[int, float]]) -> None:
        """Count hits and move entries to the front of the LRU order: {id: (hits, last_hit_at)}."""
        await self.writer.executemany("UPDATE entries SET hits = hits + ?, last_hit_at = MAX(last_hit_at, ?) "
                                      "WHERE id = ?", [(n, at, i) for i, (n, at) in hits.items()])
        await self.writer.commit()

    async def partitions(self, embedder: str) -> list[PartitionInfo]:
        async with self.reader.execute("SELECT partition, entries, max_id, generation FROM partition_stats "
                                       "WHERE embedder = ? AND entries > 0", (embedder,)) as cur:
            return [PartitionInfo(p, embedder, n, m, g) for p, n, m, g in await cur.fetchall()]

    async def iter_vectors(self, partition: str, embedder: str, dim: int,
                           batch: int = 10_000) -> AsyncIterator[tuple[list[int], np.ndarray]]:
        last = 0
        while True:
            async with self.reader.execute(
                    "SELECT id, vector FROM entries WHERE partition = ? AND embedder = ? AND id > ? "
                    "ORDER BY id LIMIT ?", (partition, embedder, last, batch)) as cur:
                rows = list(await cur.fetchall())
            if not rows:
                return
            ids = [r[0] for r in rows]
            yield ids, np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), dim)
            last = ids[-1]

    async def partition_info(self, partition: str, embedder: str) -> PartitionInfo:
        async with self.writer.execute("SELECT entries, max_id, generation FROM partition_stats "
                                       "WHERE partition = ? AND embedder = ?", (partition, embedder)) as cur:
            row = await cur.fetchone()
        return PartitionInfo(partition, embedder, *(row or (0, 0, 0)))

    async def partition_counts(self) -> dict[str, int]:
        async with self.reader.execute("SELECT partition, SUM(entries) FROM partition_stats GROUP BY partition "
                                       "HAVING SUM(entries) > 0") as cur:
            return {p: n for p, n in await cur.fetchall()}

    async def _remove_where(self, where: str, args: Iterable[Any]) -> list[Removed]:
        """Delete what matches in batches of DELETE_BATCH rows (keyset by id: each statement is bounded, and no
        batch reads the rows an earlier one passed)."""
        args = list(args)
        removed: list[Removed] = []
        last = 0
        while True:
            async with self.writer.execute(f"SELECT id, partition, embedder FROM entries WHERE ({where}) AND id > ? "
                                           "ORDER BY id LIMIT ?", [*args, last, DELETE_BATCH]) as cur:
                doomed = [(r[0], r[1], r[2]) for r in await cur.fetchall()]
            if not doomed:
                return removed
            await self.writer.executemany("DELETE FROM entries WHERE id = ?", [(i,) for i, _, _ in doomed])
            await self.writer.commit()
            removed += doomed
            last = doomed[-1][0]

    async def remove_lru(self, partition: str, keep: int) -> list[Removed]:
        """Delete the least recently used entries of `partition` beyond `keep`: the oldest first, straight off the
        (partition, last_hit_at) index, a bounded batch at a time."""
        removed: list[Removed] = []
        while (excess := (await self.partition_size(partition)) - keep) > 0:
            async with self.writer.execute("SELECT id, partition, embedder FROM entries WHERE partition = ? "
                                           "ORDER BY last_hit_at, id LIMIT ?",
                                           (partition, min(excess, DELETE_BATCH))) as cur:
                doomed = [(r[0], r[1], r[2]) for r in await cur.fetchall()]
            if not doomed:  # the counts promised more rows than there are: nothing left to evict
                break
            await self.writer.executemany("DELETE FROM entries WHERE id = ?", [(i,) for i, _, _ in doomed])
            await self.writer.commit()
            removed += doomed
        return removed

    async def partition_size(self, partition: str) -> int:
        async with self.writer.execute("SELECT COALESCE(SUM(entries), 0) FROM partition_stats WHERE partition = ?",
                                       (partition,)) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def remove_expired(self, now: float) -> list[Removed]:
        return await self._remove_where("expires_at <= ?", (now,))

    async def remove_ids(self, ids: Iterable[int]) -> list[Removed]:
        ids = list(ids)
        removed: list[Removed] = []
        for start in range(0, len(ids), DELETE_BATCH):
            chunk = ids[start:start + DELETE_BATCH]
            removed += await self._remove_where(f"id IN ({','.join('?' * len(chunk))})", chunk)
        return removed

    async def remove_matching(self, selection: EntryFilter) -> list[Removed]:
        where, args = _where(selection)
        return await self._remove_where(where, args)

    # -- admin: listing, export ------------------------------------------------------------------------------------

    async def count_entries(self, selection: EntryFilter) -> int:
        where, args = _where(selection)
        async with self.reader.execute(f"SELECT COUNT(*) FROM entries WHERE {where}", args) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def list_entries(self, selection: EntryFilter, limit: int, offset: int) -> list[Entry]:
        """Newest first."""
        where, args = _where(selection)
        async with self.reader.execute(f"SELECT {RECORD_COLUMNS} FROM entries WHERE {where} "
                                       "ORDER BY id DESC LIMIT ? OFFSET ?", [*args, limit, offset]) as cur:
            return [_entry(row) for row in await cur.fetchall()]

    async def iter_entries(self, selection: EntryFilter, batch: int = 500) -> AsyncIterator[list[Entry]]:
        """Every matching entry in id order, `batch` rows at a time (keyset pagination: memory stays flat)."""
        where, args = _where(selection)
        last = 0
        while True:
            async with self.reader.execute(f"SELECT {RECORD_COLUMNS} FROM entries WHERE {where} AND id > ? "
                                           "ORDER BY id LIMIT ?", [*args, last, batch]) as cur:
                rows = list(await cur.fetchall())
            if not rows:
                return
            yield [_entry(row) for row in rows]
            last = rows[-1][0]

    async def top_entries(self, limit: int) -> list[Entry]:
        async with self.reader.execute(f"SELECT {RECORD_COLUMNS} FROM entries WHERE hits > 0 "
                                       "ORDER BY hits DESC, id DESC LIMIT ?", (limit,)) as cur:
            return [_entry(row) for row in await cur.fetchall()]

    async def model_totals(self) -> list[tuple[str, int, int]]:
        """(model, entries, hits served) for every model with entries."""
        async with self.reader.execute("SELECT model, COUNT(*), COALESCE(SUM(hits), 0) FROM entries "
                                       "GROUP BY model ORDER BY COUNT(*) DESC") as cur:
            return [(m, n, h) for m, n, h in await cur.fetchall()]


class SqliteStore(RecordStore):
    """The Store of one process: SQLite rows plus an hnswlib index per partition and embedder (the default model,
    and any model in `extra`, e.g. the multilingual one: vectors of different models are never compared).

    SemanticCache calls the writing methods from its one write-back worker, so SQLite's transactions and the indexes
    change in step; index writes, saves and rebuilds run on one thread of their own (hnswlib must not add while it
    rebuilds), searches on the caller's (the embedding thread), each index behind its lock."""

    kind: StoreKind = "sqlite"
    shared = False

    def __init__(self, data_dir: Path, embedder: str, dim: int, extra: Sequence[tuple[str, int]] = ()) -> None:
        super().__init__(data_dir / "deja.sqlite3")
        self.location = str(self.path)
        self.indexes = IndexSet(data_dir / "indexes", embedder, dim)
        self.index_sets = {embedder: self.indexes,
                           **{name: IndexSet(data_dir / "indexes", name, d) for name, d in extra}}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="deja-index")
        self._counts: dict[str, int] = {}
        self._listeners: list[RemovalListener] = []

    async def open(self) -> None:
        """Load every index of the current embedding models, rebuilding from SQLite those that disagree."""
        await super().open()
        try:
            for indexes in self.index_sets.values():
                for info in await self.partitions(indexes.embedder):
                    if not indexes.try_load(info.partition, info.count, info.max_id, info.generation):
                        await self._rebuild(info.partition, indexes)
                        await self._in_executor(indexes.save, info.partition, info.count, info.max_id,
                                                info.generation)
            self._counts = await self.partition_counts()
        except BaseException:
            await self.close()
            raise

    async def _rebuild(self, partition: str, indexes: IndexSet) -> None:
        indexes.indexes.pop(partition, None)
        index = indexes.get_or_create(partition)
        async for ids, vectors in self.iter_vectors(partition, indexes.embedder, indexes.dim):
            await self._in_executor(index.add, ids, vectors)
        log.info("rebuilt index for partition %s… from the store (%d entries)", partition[:12], index.live)

    async def close(self) -> None:
        if self._writer is not None:
            await self.checkpoint()
        await super().close()
        self._executor.shutdown(wait=True)

    def listen(self, listener: RemovalListener) -> None:
        self._listeners.append(listener)

    def health(self) -> str | None:
        return None

    # -- lookup ------------------------------------------------------------------------------------------------

    def _index(self, partition: str, embedder: str | None) -> VectorIndex | None:
        indexes = self.indexes if embedder is None else self.index_sets.get(embedder)
        return None if indexes is None else indexes.get(partition)

    def searchable(self, partition: str, embedder: str | None = None) -> bool:
        index = self._index(partition, embedder)
        return index is not None and index.live > 0

    def search_now(self, partition: str, vector: np.ndarray, k: int,
                   embedder: str | None = None) -> list[tuple[int, float]] | None:
        index = self._index(partition, embedder)
        return [] if index is None else index.search(vector, k)

    async def search(self, partition: str, vector: np.ndarray, k: int,
                     embedder: str | None = None) -> list[tuple[int, float]]:
        return await asyncio.to_thread(self.search_now, partition, vector, k, embedder) or []

    # -- writes ------------------------------------------------------------------------------------------------

    async def put(self, entries: list[Entry], keep: dict[str, int]) -> list[Entry]:
        added: list[tuple[VectorIndex, list[int]]] = []
        try:
            stored = await self.insert_many(entries, commit=False)
            vectors: dict[tuple[str, str], tuple[list[int], list[np.ndarray]]] = {}
            for new, (entry_id, _) in zip(entries, stored, strict=True):
                if new.vector is not None and new.embedder in self.index_sets:
                    ids, vs = vectors.setdefault((new.embedder, new.partition), ([], []))
                    ids.append(entry_id)
                    vs.append(new.vector)
            for (embedder, partition), (ids, vs) in vectors.items():
                indexes = self.index_sets[embedder]
                index = indexes.get_or_create(partition)
                await self._in_executor(index.add, ids, np.stack(vs).astype(np.float32))
                added.append((index, ids))
                indexes.dirty.add(partition)
            await self.writer.commit()
        except BaseException:
            # SQLite hands a rolled-back id to the next insert: a vector left under it would answer for that
            # entry, in whatever partition it lands.
            for index, ids in added:
                index.remove_many(ids)
            await self.writer.rollback()
            raise
        self._forget([(old.id, old.partition, old.embedder) for _, old in stored if old is not None])
        for new in entries:
            self._counts[new.partition] = self._counts.get(new.partition, 0) + 1
        evicted: list[Removed] = []
        for partition, limit in keep.items():
            if limit and self._counts.get(partition, 0) > limit:
                evicted += await self.remove_lru(partition, limit)
        self._forget(evicted)
        gone = {entry_id for entry_id, _, _ in evicted}
        return [replace(new, id=entry_id, vector=None) for new, (entry_id, _) in zip(entries, stored, strict=True)
                if entry_id not in gone]

    async def delete_ids(self, ids: Iterable[int]) -> int:
        return self._forget(await self.remove_ids(ids))

    async def delete_matching(self, selection: EntryFilter) -> int:
        return self._forget(await self.remove_matching(selection))

    def _forget(self, removed: list[Removed]) -> int:
        """Entries left SQLite: keep the counts and the indexes in step, and tell the listeners."""
        for entry_id, partition, embedder in removed:
            self._counts[partition] = max(0, self._counts.get(partition, 1) - 1)
            indexes = self.index_sets.get(embedder) if embedder is not None else None
            index = indexes.get(partition) if indexes is not None else None
            if indexes is not None and index is not None:
                index.remove(entry_id)
                indexes.dirty.add(partition)
        if removed:
            for listener in self._listeners:
                listener([entry_id for entry_id, _, _ in removed])
        return len(removed)

    async def maintain(self, now: float) -> None:
        """Delete expired entries, then compact the indexes that hold too many deleted vectors."""
        self._forget(await self.remove_expired(now))
        for indexes in self.index_sets.values():
            for partition, index in list(indexes.indexes.items()):
                if index.deleted >= max(COMPACT_MIN, COMPACT_FRACTION * (index.live + index.deleted)):
                    await self.compact(partition, indexes)

    async def compact(self, partition: str, indexes: IndexSet | None = None) -> None:
        """Rebuild a partition's index from the vectors in SQLite, off the event loop, and swap it in whole:
        lookups use the old index until then. Runs on the writer, so no entry is added meanwhile."""
        indexes = self.indexes if indexes is None else indexes
        old = indexes.get(partition)
        fresh = VectorIndex(indexes.dim, max(INITIAL_CAPACITY, (old.live if old else 0) + 1))
        async for ids, vectors in self.iter_vectors(partition, indexes.embedder, indexes.dim):
            await self._in_executor(fresh.add, ids, vectors)
        indexes.indexes[partition] = fresh
        indexes.dirty.add(partition)
        log.info("compacted index of partition %s… (%d deleted vectors dropped, %d live)", partition[:12],
                 old.deleted if old else 0, fresh.live)

    async def checkpoint(self) -> None:
        for indexes in self.index_sets.values():
            for partition in list(indexes.dirty):
                info = await self.partition_info(partition, indexes.embedder)
                await self._in_executor(indexes.save, partition, info.count, info.max_id, info.generation)

    async def claim_flight(self, exact_key: str, lease: float) -> bool:
        return True

    async def release_flight(self, exact_key: str) -> None:
        return None

    def sizes(self) -> dict[str, tuple[int, int]]:
        sizes = {partition: (count, 0) for partition, count in self._counts.items()}
        for indexes in self.index_sets.values():
            for partition, index in indexes.indexes.items():
                count, live = sizes.get(partition, (0, 0))
                sizes[partition] = (count, live + index.live)
        return sizes

    async def _in_executor(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
