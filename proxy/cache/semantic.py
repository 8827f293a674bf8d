"""SemanticCache: the cache as the rest of Deja sees it, over one store (stores/base.py: the embedded SQLite +
hnswlib one, or PostgreSQL shared by several replicas).

It holds the parts together: the lookup (lookup.py) decides hits, the write-back worker (writer.py) stores answers
after their responses and runs maintenance (maintenance.py) between rounds, and single-flight leases (leases.py)
keep replicas from asking the upstream the same question at once. The store tells it which entries left, so the
hot records forget them.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from ..canonical import CacheRequest
from ..embedding_router import EmbedderRouter
from ..embeddings import Embedder
from ..policies import Policy
from ..stores.base import Entry, EntryFilter, Store
from .backlog import AnswerBudget
from .flights import FlightTable
from .hot import HotRecords
from .leases import FlightLeases
from .lookup import Hit, Lookup, Matcher
from .maintenance import Maintenance
from .writer import StoreJob, Writer


class SemanticCache:
    def __init__(self, store: Store, embedder: Embedder, *, queue_size: int = 1024,
                 save_interval: float = 30.0, clock: Callable[[], float] = time.time, max_batch: int = 32,
                 batch_window: float = 0.002, hot_records: int = 10_000, queue_bytes: int = 256 << 20,
                 max_answer_bytes: int = 4 << 20, guard_max_chars: int = 8000, flight_lease: float = 30.0,
                 extra_embedders: Sequence[Embedder] = ()) -> None:
        self.store = store
        self.embedder = embedder
        self.clock = clock
        self.hot = HotRecords(hot_records)
        self._lookups = 0  # in flight: how many questions the batcher may wait for
        # One lane per embedder (its batcher, its indexes in the store); the first is the default model's.
        self.router = EmbedderRouter([embedder, *extra_embedders], max_batch=max_batch, window=batch_window,
                                     expected=lambda: self._lookups)
        self.matcher = Matcher(store, self.hot, self.router, guard_max_chars)
        self.leases = FlightLeases(store, self.matcher, flight_lease)
        self.flights = FlightTable(self.leases.release)
        self.maintenance = Maintenance(store, save_interval)
        self.writer = Writer(store, self.hot, self.router, self.flights, self.maintenance, lambda: self.clock(),
                             queue_size=queue_size, queue_bytes=queue_bytes, max_answer_bytes=max_answer_bytes)

    # -- start and stop -------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the write-back worker over an opened store."""
        self.store.listen(self._removed)
        self.writer.start()

    async def close(self, *, drain: bool = True) -> None:
        """Store everything queued (unless `drain` is False), save changed indexes, stop the worker."""
        await self.writer.stop(drain=drain)
        await self.leases.close()
        await self.store.checkpoint()
        self.router.close()

    def _removed(self, ids: list[int] | None) -> None:
        if ids is None:
            self.hot.clear()
        else:
            for entry_id in ids:
                self.hot.drop(entry_id)

    # -- lookup ---------------------------------------------------------------------------------------------------

    async def lookup(self, request: CacheRequest, policy: Policy, max_age: int | None, max_stale: int = 0) -> Lookup:
        """`max_stale`: entries up to this many seconds past their TTL may answer too (served as STALE)."""
        self._lookups += 1
        try:
            return await self.matcher.lookup(request, policy, self.clock(), max_age, max_stale)
        finally:
            self._lookups -= 1

    def fresh_in_memory(self, request: CacheRequest, max_age: int | None) -> Hit | None:
        """An exact hit on a hot record within its TTL, found without awaiting (decide.decide_in_memory)."""
        return self.matcher.fresh_in_memory(request, self.clock(), max_age)

    async def record(self, exact_key: str) -> Entry | None:
        return await self.matcher.record(exact_key)

    async def wait_for_other_replica(self, request: CacheRequest, max_age: int | None) -> Hit | None:
        """Single-flight across replicas, for the process that leads a miss locally (leases.py)."""
        return await self.leases.wait(request, max_age, self.clock)

    async def embed(self, texts: list[str]) -> list[tuple[np.ndarray, str] | None]:
        return await self.router.embed(texts)

    @property
    def rejections(self) -> Counter[str]:
        return self.matcher.rejections

    @property
    def foreign_candidates(self) -> int:
        return self.matcher.foreign_candidates

    # -- write-back -----------------------------------------------------------------------------------------------

    def submit(self, request: CacheRequest, policy: Policy, response: dict[str, Any],
               vector: np.ndarray | None = None) -> bool:
        """Queue an answer for storing; False (counted in budget.dropped, and a warning) when it does not fit."""
        return self.writer.submit(request, policy, response, vector)

    def record_hit(self, entry_id: int) -> None:
        self.writer.record_hit(entry_id)

    async def drain(self) -> None:
        """Wait until everything queued so far is stored."""
        await self.writer.drain()

    @property
    def queue_depth(self) -> int:
        return self.writer.depth

    @property
    def budget(self) -> AnswerBudget:
        return self.writer.budget

    async def store_now(self, request: CacheRequest, policy: Policy, response: dict[str, Any]) -> None:
        """Store an answer and return once it is stored (and findable): the ModelCache insert."""
        await self.writer.in_writer(lambda: self.writer.store_answer(StoreJob(request, policy, response, None)))

    async def store_batch(self, records: list[Entry], keep: dict[str, int]) -> int:
        """Store records (vectors included) through the writer, in one transaction; waits until stored.
        `keep` bounds each partition as its policy's max_entries."""
        async def put() -> int:
            await self.store.put(records, keep)
            return len(records)
        return int(await self.writer.in_writer(put))

    # -- maintenance and admin: run in the writer, so the indexes stay in step with the store ------------------

    @property
    def stale_keep(self) -> int:
        return self.maintenance.stale_keep

    @stale_keep.setter
    def stale_keep(self, seconds: int) -> None:
        self.maintenance.stale_keep = seconds

    async def maintain(self, now: float | None = None) -> None:
        """Delete expired entries (kept `stale_keep` seconds longer) and tidy the store (index compaction)."""
        await self.maintenance.sweep(self.clock() if now is None else now)

    async def delete_entries(self, ids: Iterable[int]) -> int:
        """Delete entries by id, from the store and their indexes; returns how many existed."""
        wanted = list(ids)
        return int(await self.writer.in_writer(lambda: self.store.delete_ids(wanted)))

    async def purge(self, selection: EntryFilter) -> int:
        """Delete every entry `selection` matches, from the store and the indexes; returns how many."""
        return int(await self.writer.in_writer(lambda: self.store.delete_matching(selection)))

    def partition_sizes(self) -> dict[str, tuple[int, int]]:
        """(stored entries, live index vectors) per partition, from memory: cheap enough for every scrape."""
        return self.store.sizes()
