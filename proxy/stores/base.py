"""The Store protocol: what SemanticCache needs from wherever entries live, and Entry, the one row layout.

SemanticCache decides hits (exact first, threshold, context, freshness, guard); a store only keeps entries and
finds them: by exact key, by id, and by nearest vector within one partition. Two stores implement it: the embedded
one (SQLite + hnswlib files in the data dir, stores/sqlite.py) and the shared one (PostgreSQL + pgvector, which
several replicas use at once, stores/postgres.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

StoreKind = Literal["sqlite", "postgresql"]
# Called with the ids of entries that left the store (replaced, evicted, expired, deleted), here or, for a
# shared store, on another replica; None: any entry may have gone (after a reconnect, notifications were missed).
RemovalListener = Callable[[list[int] | None], None]


class StoreError(Exception):
    """The store cannot serve this call (database gone, file unreadable); the request goes on uncached."""


class StoreStartError(StoreError):
    """The store cannot be opened at start-up; the message is one line meant for the operator."""


@dataclass(frozen=True)
class Entry:
    """One cached answer. `id` is 0 until stored; `vector` is set on the way in and not read back."""

    exact_key: str
    partition: str
    tenant: str
    model: str
    namespace: str
    context_digest: str
    context_text: str
    question: str
    response: dict[str, Any]
    embedder: str | None  # the model that made `vector`; None: exact matches only
    created_at: float
    expires_at: float | None  # None: until evicted
    hits: int = 0
    id: int = 0
    vector: np.ndarray | None = None

    def fresh(self, now: float, max_age: int | None) -> bool:
        if self.expires_at is not None and now >= self.expires_at:
            return False
        return max_age is None or now - self.created_at <= max_age


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

    def conditions(self, mark: Callable[[int], str], like: str = "LIKE") -> tuple[str, list[Any]]:
        """A WHERE clause and its arguments; `mark(n)` spells the n-th placeholder (`?` or `$n`), `like` the
        operator that matches text regardless of ASCII case (SQLite's LIKE, PostgreSQL's ILIKE)."""
        clauses, args = ["1=1"], []
        for column in ("model", "namespace", "tenant", "partition"):
            value = getattr(self, column)
            if value is not None:
                args.append(value)
                clauses.append(f"{column} = {mark(len(args))}")
        if self.text:
            pattern = "%" + self.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            args += [pattern, pattern]
            clauses.append(f"(question {like} {mark(len(args) - 1)} ESCAPE '\\' "
                           f"OR context_text {like} {mark(len(args))} ESCAPE '\\')")
        if self.created_before is not None:
            args.append(self.created_before)
            clauses.append(f"created_at < {mark(len(args))}")
        return " AND ".join(clauses), args


def export_line(entry: Entry) -> dict[str, Any]:
    """One entry as `deja export` writes it and the importer reads it: everything but the vector."""
    return {"id": entry.id, "model": entry.model, "namespace": entry.namespace, "tenant": entry.tenant,
            "partition": entry.partition, "exact_key": entry.exact_key, "context_digest": entry.context_digest,
            "context_text": entry.context_text, "question": entry.question, "response": entry.response,
            "created_at": entry.created_at, "expires_at": entry.expires_at, "hits": entry.hits}


ExactReader = Callable[[str], Entry | None]


class Store(Protocol):
    kind: StoreKind
    # Where it is, for the start-up line, /admin/stats and /metrics (a URL's password masked).
    location: str
    # True when other processes share it: replicas, `deja serve --workers N`.
    shared: bool

    async def open(self) -> None:
        """Connect, migrate, load indexes. Raises StoreStartError with one line for the operator."""

    async def close(self) -> None: ...

    def listen(self, listener: RemovalListener) -> None:
        """Call `listener` whenever entries leave the store (hot caches must forget them)."""

    def health(self) -> str | None:
        """None when working, else why not (for /healthz)."""

    # -- lookup ----------------------------------------------------------------------------------------------

    async def get_exact(self, exact_key: str) -> Entry | None: ...

    def exact_reader(self) -> ExactReader | None:
        """`get_exact` as a function that reads right away on the calling (embedding) thread, or None when this store
        reads only asynchronously: a lookup that will embed then reads the exact key in the same trip."""

    async def get_many(self, ids: Iterable[int]) -> dict[int, Entry]: ...

    # `embedder` names the model whose vectors to search (None: the store's main one); each model has its own.
    def searchable(self, partition: str, embedder: str | None = None) -> bool:
        """False when the partition certainly holds no vector: the lookup need not embed the question."""

    def search_now(self, partition: str, vector: np.ndarray, k: int,
                   embedder: str | None = None) -> list[tuple[int, float]] | None:
        """The nearest entries (id, cosine), best first, searched right away on the calling (embedding) thread;
        None when this store searches asynchronously (`search`)."""

    async def search(self, partition: str, vector: np.ndarray, k: int,
                     embedder: str | None = None) -> list[tuple[int, float]]:
        """Up to k nearest entries of `partition` (id, cosine), best first; never another partition's."""

    # -- writes (SemanticCache calls these from its one write-back worker) -----------------------------------

    async def put(self, entries: list[Entry], keep: dict[str, int]) -> list[Entry]:
        """Store `entries` (replacing those with the same exact key) in one transaction: each is findable exactly
        and by meaning once this returns, or not at all if it raises. `keep` bounds partitions (0: unbounded),
        the least recently used going first. Returns the entries as stored (ids set, vectors dropped)."""

    async def touch(self, hits: dict[int, tuple[int, float]]) -> None:
        """Count hits and move entries to the front of the LRU order: {id: (hits, last_hit_at)}."""

    async def delete_ids(self, ids: Iterable[int]) -> int: ...

    async def delete_matching(self, selection: EntryFilter) -> int: ...

    async def maintain(self, now: float) -> None:
        """Delete expired entries; tidy what the store keeps beside them (index compaction)."""

    async def checkpoint(self) -> None:
        """Save what lives in memory (index files); also done by close()."""

    # -- single-flight across processes (a store that is not shared has no one to wait for) ----------------

    async def claim_flight(self, exact_key: str, lease: float) -> bool:
        """Take the lease on `exact_key`: True when this process should call the upstream, False while another
        process holds an unexpired lease."""

    async def release_flight(self, exact_key: str) -> None: ...

    # -- sizes and admin queries ----------------------------------------------------------------------------

    def sizes(self) -> dict[str, tuple[int, int]]:
        """(entries, searchable vectors) per partition, from memory: cheap enough for every scrape."""

    async def count_entries(self, selection: EntryFilter) -> int: ...

    async def list_entries(self, selection: EntryFilter, limit: int, offset: int) -> list[Entry]:
        """Newest first."""

    def iter_entries(self, selection: EntryFilter, batch: int = 500) -> AsyncIterator[list[Entry]]:
        """Every matching entry in id order, `batch` at a time (memory stays flat)."""

    async def top_entries(self, limit: int) -> list[Entry]: ...

    async def model_totals(self) -> list[tuple[str, int, int]]:
        """(model, entries, hits served) for every model with entries."""

    async def partition_counts(self) -> dict[str, int]: ...
