"""RecordStore: cache entries in SQLite (WAL), one row per entry, the vector included.

Keeping each vector beside its record makes SQLite the single source of truth: a missing or stale index file is
rebuilt from here without re-embedding anything.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite
import numpy as np

SCHEMA_VERSION = 1
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
-- Entries and highest id per (partition, embedder), kept by triggers: start-up reads this instead of counting
-- a million rows. embedder '' stands for NULL (exact-only entries).
CREATE TABLE IF NOT EXISTS partition_stats (
    partition TEXT NOT NULL,
    embedder TEXT NOT NULL,
    entries INTEGER NOT NULL,
    max_id INTEGER NOT NULL,
    PRIMARY KEY (partition, embedder)
);
CREATE TRIGGER IF NOT EXISTS entries_counted AFTER INSERT ON entries BEGIN
    INSERT INTO partition_stats VALUES (NEW.partition, COALESCE(NEW.embedder, ''), 1, NEW.id)
    ON CONFLICT (partition, embedder) DO UPDATE SET entries = entries + 1, max_id = MAX(max_id, NEW.id);
END;
CREATE TRIGGER IF NOT EXISTS entries_uncounted AFTER DELETE ON entries BEGIN
    UPDATE partition_stats SET entries = entries - 1
    WHERE partition = OLD.partition AND embedder = COALESCE(OLD.embedder, '');
END;
"""
# A store made before partition_stats existed (or loaded in bulk without the triggers) is counted once.
BACKFILL_STATS = """
INSERT INTO partition_stats SELECT partition, COALESCE(embedder, ''), COUNT(*), MAX(id) FROM entries
WHERE NOT EXISTS (SELECT 1 FROM partition_stats) GROUP BY 1, 2
"""
INSERT_SQL = ("INSERT INTO entries (exact_key, partition, tenant, model, namespace, context_digest, context_text, "
              "question, response, embedder, vector, created_at, expires_at, last_hit_at, hits) "
              "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
RECORD_COLUMNS = ("id, exact_key, partition, tenant, model, namespace, context_digest, context_text, question, "
                  "response, embedder, created_at, expires_at, hits")


@dataclass(frozen=True)
class Record:
    id: int
    exact_key: str
    partition: str
    tenant: str
    model: str
    namespace: str
    context_digest: str
    context_text: str
    question: str
    response: dict[str, Any]
    embedder: str | None
    created_at: float
    expires_at: float | None
    hits: int = 0

    def fresh(self, now: float, max_age: int | None) -> bool:
        if self.expires_at is not None and now >= self.expires_at:
            return False
        return max_age is None or now - self.created_at <= max_age


@dataclass(frozen=True)
class NewRecord:
    exact_key: str
    partition: str
    tenant: str
    model: str
    namespace: str
    context_digest: str
    context_text: str
    question: str
    response: dict[str, Any]
    embedder: str | None
    vector: np.ndarray | None
    created_at: float
    expires_at: float | None
    hits: int = 0

    def record(self, entry_id: int) -> Record:
        return Record(entry_id, self.exact_key, self.partition, self.tenant, self.model, self.namespace,
                      self.context_digest, self.context_text, self.question, self.response, self.embedder,
                      self.created_at, self.expires_at, self.hits)


@dataclass(frozen=True)
class PartitionInfo:
    partition: str
    embedder: str
    count: int
    max_id: int


def _record(row: Any) -> Record:
    return Record(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8], json.loads(row[9]),
                  row[10], row[11], row[12], row[13])


class RecordStore:
    """One writer connection and one reader connection: WAL lets lookups run while write-back commits."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = await aiosqlite.connect(self.path)
        await self._writer.execute("PRAGMA journal_mode=WAL")
        await self._writer.execute("PRAGMA synchronous=NORMAL")
        await self._writer.executescript(SCHEMA)
        await self._writer.execute(BACKFILL_STATS)
        await self._writer.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        await self._writer.commit()
        self._reader = await aiosqlite.connect(self.path)
        await self._reader.execute("PRAGMA query_only=ON")

    async def close(self) -> None:
        for conn in (self._reader, self._writer):
            if conn is not None:
                await conn.close()
        self._reader = self._writer = None

    @property
    def reader(self) -> aiosqlite.Connection:
        assert self._reader is not None, "RecordStore.open() first"
        return self._reader

    @property
    def writer(self) -> aiosqlite.Connection:
        assert self._writer is not None, "RecordStore.open() first"
        return self._writer

    async def get_exact(self, exact_key: str) -> Record | None:
        async with self.reader.execute(f"SELECT {RECORD_COLUMNS} FROM entries WHERE exact_key = ?",
                                       (exact_key,)) as cur:
            row = await cur.fetchone()
        return _record(row) if row else None

    async def get_many(self, ids: Iterable[int]) -> dict[int, Record]:
        ids = list(ids)
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        async with self.reader.execute(f"SELECT {RECORD_COLUMNS} FROM entries WHERE id IN ({marks})", ids) as cur:
            return {row[0]: _record(row) for row in await cur.fetchall()}

    async def insert(self, new: NewRecord, *, commit: bool = True) -> tuple[int, Record | None]:
        """Store `new`, replacing an entry with the same exact key; returns (id, the replaced record)."""
        return (await self.insert_many([new], commit=commit))[0]

    async def insert_many(self, news: list[NewRecord], *, commit: bool = True) -> list[tuple[int, Record | None]]:
        """Store each of `news` in one transaction, replacing entries with the same exact key; returns (id, replaced
        record) for each. With commit=False the caller commits (or rolls back) on the writer connection."""
        done = []
        for new in news:
            old = None
            async with self.writer.execute(f"SELECT {RECORD_COLUMNS} FROM entries WHERE exact_key = ?",
                                           (new.exact_key,)) as cur:
                row = await cur.fetchone()
            if row:
                old = _record(row)
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
        async with self.reader.execute("SELECT partition, entries, max_id FROM partition_stats WHERE embedder = ? "
                                       "AND entries > 0", (embedder,)) as cur:
            return [PartitionInfo(p, embedder, n, m) for p, n, m in await cur.fetchall()]

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
        async with self.writer.execute("SELECT entries, max_id FROM partition_stats WHERE partition = ? "
                                       "AND embedder = ?", (partition, embedder)) as cur:
            row = await cur.fetchone()
        return PartitionInfo(partition, embedder, *(row or (0, 0)))

    async def partition_counts(self) -> dict[str, int]:
        async with self.reader.execute("SELECT partition, SUM(entries) FROM partition_stats GROUP BY partition "
                                       "HAVING SUM(entries) > 0") as cur:
            return {p: n for p, n in await cur.fetchall()}

    async def evict_lru(self, partition: str, keep: int) -> list[tuple[int, str | None]]:
        """Delete the least recently used entries of `partition` beyond `keep`; returns (id, embedder) of each."""
        async with self.writer.execute(
                "SELECT id, embedder FROM entries WHERE partition = ? ORDER BY last_hit_at DESC, id DESC "
                "LIMIT -1 OFFSET ?", (partition, keep)) as cur:
            doomed = [(r[0], r[1]) for r in await cur.fetchall()]
        await self._delete([i for i, _ in doomed])
        return doomed

    async def delete_expired(self, now: float) -> list[tuple[int, str, str | None]]:
        """Delete entries whose TTL has run out; returns (id, partition, embedder) of each."""
        async with self.writer.execute("SELECT id, partition, embedder FROM entries WHERE expires_at <= ?",
                                       (now,)) as cur:
            doomed = [(r[0], r[1], r[2]) for r in await cur.fetchall()]
        await self._delete([i for i, _, _ in doomed])
        return doomed

    async def _delete(self, ids: list[int]) -> None:
        if ids:
            await self.writer.executemany("DELETE FROM entries WHERE id = ?", [(i,) for i in ids])
            await self.writer.commit()


    # -- admin: listing, export, deletion (the writer connection only through SemanticCache's worker) -------------

    async def count_entries(self, selection: EntryFilter) -> int:
        where, args = selection.where()
        async with self.reader.execute(f"SELECT COUNT(*) FROM entries WHERE {where}", args) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def list_entries(self, selection: EntryFilter, limit: int, offset: int) -> list[Record]:
        """Newest first."""
        where, args = selection.where()
        async with self.reader.execute(f"SELECT {RECORD_COLUMNS} FROM entries WHERE {where} "
                                       "ORDER BY id DESC LIMIT ? OFFSET ?", [*args, limit, offset]) as cur:
            return [_record(row) for row in await cur.fetchall()]

    async def iter_entries(self, selection: EntryFilter, batch: int = 500) -> AsyncIterator[list[Record]]:
        """Every matching entry in id order, `batch` rows at a time (keyset pagination: memory stays flat)."""
        where, args = selection.where()
        last = 0
        while True:
            async with self.reader.execute(f"SELECT {RECORD_COLUMNS} FROM entries WHERE {where} AND id > ? "
                                           "ORDER BY id LIMIT ?", [*args, last, batch]) as cur:
                rows = list(await cur.fetchall())
            if not rows:
                return
            yield [_record(row) for row in rows]
            last = rows[-1][0]

    async def top_entries(self, limit: int) -> list[Record]:
        async with self.reader.execute(f"SELECT {RECORD_COLUMNS} FROM entries WHERE hits > 0 "
                                       "ORDER BY hits DESC, id DESC LIMIT ?", (limit,)) as cur:
            return [_record(row) for row in await cur.fetchall()]

    async def model_totals(self) -> list[tuple[str, int, int]]:
        """(model, entries, hits served) for every model with entries."""
        async with self.reader.execute("SELECT model, COUNT(*), COALESCE(SUM(hits), 0) FROM entries "
                                       "GROUP BY model ORDER BY COUNT(*) DESC") as cur:
            return [(m, n, h) for m, n, h in await cur.fetchall()]

    async def delete_ids(self, ids: Iterable[int]) -> list[tuple[int, str, str | None]]:
        """Delete these entries; returns (id, partition, embedder) of those that existed."""
        ids = list(ids)
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        async with self.writer.execute(f"SELECT id, partition, embedder FROM entries WHERE id IN ({marks})",
                                       ids) as cur:
            doomed = [(r[0], r[1], r[2]) for r in await cur.fetchall()]
        await self._delete([i for i, _, _ in doomed])
        return doomed

    async def delete_matching(self, selection: EntryFilter) -> list[tuple[int, str, str | None]]:
        """Delete every entry `selection` matches; returns (id, partition, embedder) of each."""
        where, args = selection.where()
        async with self.writer.execute(f"SELECT id, partition, embedder FROM entries WHERE {where}", args) as cur:
            doomed = [(r[0], r[1], r[2]) for r in await cur.fetchall()]
        await self._delete([i for i, _, _ in doomed])
        return doomed


@dataclass(frozen=True)
class EntryFilter:
    """Which entries an admin call means; None matches anything. `namespace=""` is the default namespace."""

    model: str | None = None
    namespace: str | None = None
    tenant: str | None = None
    partition: str | None = None
    # Substring of the question or of the earlier turns, case-insensitive for ASCII.
    text: str | None = None
    # Entries stored before this time (seconds since the epoch).
    created_before: float | None = None

    @property
    def empty(self) -> bool:
        return all(getattr(self, f) is None for f in ("model", "namespace", "tenant", "partition", "text",
                                                      "created_before"))

    def where(self) -> tuple[str, list[Any]]:
        clauses, args = ["1=1"], []
        for column in ("model", "namespace", "tenant", "partition"):
            value = getattr(self, column)
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        if self.text:
            pattern = "%" + self.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            clauses.append("(question LIKE ? ESCAPE '\\' OR context_text LIKE ? ESCAPE '\\')")
            args += [pattern, pattern]
        if self.created_before is not None:
            clauses.append("created_at < ?")
            args.append(self.created_before)
        return " AND ".join(clauses), args


def export_line(record: Record) -> dict[str, Any]:
    """One entry as `deja export` writes it and the importer reads it: everything but the vector."""
    return {"id": record.id, "model": record.model, "namespace": record.namespace, "tenant": record.tenant,
            "partition": record.partition, "exact_key": record.exact_key, "context_digest": record.context_digest,
            "context_text": record.context_text, "question": record.question, "response": record.response,
            "created_at": record.created_at, "expires_at": record.expires_at, "hits": record.hits}
