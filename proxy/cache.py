"""SemanticCache: the one place that decides a hit, and the write-back that stores answers after responses.

lookup: exact key (in memory, then SQLite; no embedding) -> embed the question (micro-batched with concurrent
        lookups) and search the partition's index on the embedding thread -> records (in memory, then SQLite) ->
        the first candidate that passes every check is the hit.
store:  through a bounded queue, after the response has gone out; one worker owns every write, so SQLite and the
        indexes change in step, and shutdown drains it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .embedding_router import EmbedderRouter, Lane
from .embeddings import Embedder
from .flights import FlightTable
from .guard import find_conflict
from .hot import HotRecords
from .index import INITIAL_CAPACITY, IndexSet, VectorIndex
from .policies import Policy
from .requests import ChatRequest
from .store import EntryFilter, NewRecord, Record, RecordStore

log = logging.getLogger("deja.cache")

MatchType = Literal["exact", "semantic"]
# Neighbours examined per lookup: the nearest one can fail a check (context, freshness) while the next passes.
CANDIDATES = 8
EXPIRY_SWEEP_SECONDS = 60.0
# An index is rebuilt from SQLite once this share of its slots holds deleted vectors (and at least COMPACT_MIN):
# hnswlib only marks deletions, so evicted entries would otherwise cost memory and search time forever.
COMPACT_FRACTION = 0.3
COMPACT_MIN = 1000


@dataclass(frozen=True)
class Hit:
    record: Record
    match: MatchType
    similarity: float | None = None


@dataclass(frozen=True)
class Lookup:
    hit: Hit | None
    # The question's embedding, when the lookup made one: a miss reuses it when its answer is stored.
    vector: np.ndarray | None = None
    # Why no semantic lookup ran although the policy wanted one: "unreadable" = no embedder covers the text.
    skipped: str | None = None


@dataclass(frozen=True)
class StoreJob:
    request: ChatRequest
    policy: Policy
    response: dict[str, Any]
    vector: np.ndarray | None


@dataclass
class WriterJob:
    """Work that must run in the write-back worker (admin deletions, ModelCache inserts); `result` gets its outcome."""
    work: Callable[[], Awaitable[Any]]
    result: asyncio.Future[Any]

    async def run(self) -> None:
        try:
            value = await self.work()
        except Exception as exc:  # the caller gets it; the worker carries on
            if not self.result.done():
                self.result.set_exception(exc)
        else:
            if not self.result.done():
                self.result.set_result(value)


class SemanticCache:
    def __init__(self, store: RecordStore, embedder: Embedder, index_dir: Path, *, queue_size: int = 1024,
                 save_interval: float = 30.0, clock: Callable[[], float] = time.time, max_batch: int = 32,
                 batch_window: float = 0.002, hot_records: int = 10_000,
                 extra_embedders: Sequence[Embedder] = ()) -> None:
        self.store = store
        self.embedder = embedder
        self.clock = clock
        self.save_interval = save_interval
        self.hot = HotRecords(hot_records)
        self.flights = FlightTable()
        self._lookups = 0  # in flight: how many questions the batcher may wait for
        # One lane per embedder (own indexes and batcher); the first is the default model's.
        self.router = EmbedderRouter([embedder, *extra_embedders], index_dir, max_batch=max_batch,
                                     window=batch_window, expected=lambda: self._lookups)
        self.indexes: IndexSet = self.router.lanes[0].indexes
        self.batcher = self.router.lanes[0].batcher
        # Index writes, saves and compaction: one writer thread (hnswlib must not add while it rebuilds).
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="deja-index")
        self._queue: asyncio.Queue[StoreJob | int | WriterJob] = asyncio.Queue(maxsize=queue_size)
        self._worker: asyncio.Task[None] | None = None
        self._counts: dict[str, int] = {}

    # -- start and stop -------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Load every index of the current embedding models, rebuilding from SQLite those that disagree."""
        for indexes in self._index_sets():
            for info in await self.store.partitions(indexes.embedder):
                if not indexes.try_load(info.partition, info.count, info.max_id):
                    await self._rebuild(info.partition, indexes)
                    indexes.save(info.partition, info.count, info.max_id)
        self._counts = await self.store.partition_counts()
        self._worker = asyncio.create_task(self._run_writer(), name="deja-writeback")

    def _index_sets(self) -> list[IndexSet]:
        return [lane.indexes for lane in self.router.lanes]

    async def _rebuild(self, partition: str, indexes: IndexSet) -> None:
        indexes.indexes.pop(partition, None)
        index = indexes.get_or_create(partition)
        async for ids, vectors in self.store.iter_vectors(partition, indexes.embedder, indexes.dim):
            await self._in_executor(index.add, ids, vectors)
        log.info("rebuilt index for partition %s… from the store (%d entries)", partition[:12], index.live)

    async def close(self) -> None:
        """Store everything queued, save changed indexes, stop the worker."""
        if self._worker is not None:
            await self.drain()
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            self._worker = None
        await self._save_dirty()
        self._executor.shutdown(wait=True)
        self.router.close()

    # -- lookup ---------------------------------------------------------------------------------------------------

    async def embed(self, texts: list[str]) -> list[tuple[np.ndarray, str] | None]:
        """Each text's (vector, embedder name) from the lane that reads it; None where no model can."""
        out: list[tuple[np.ndarray, str] | None] = [None] * len(texts)
        groups: dict[int, list[int]] = {}
        lanes = self.router.lanes
        for n, text in enumerate(texts):
            lane = self.router.lane_for(text)
            if lane is not None:
                groups.setdefault(lanes.index(lane), []).append(n)
        for number, positions in groups.items():
            lane = lanes[number]
            vectors = await lane.batcher.embed_many([texts[n] for n in positions])
            for n, vector in zip(positions, vectors, strict=True):
                out[n] = (vector, lane.embedder.name)
        return out

    async def lookup(self, request: ChatRequest, policy: Policy, max_age: int | None) -> Lookup:
        self._lookups += 1
        try:
            return await self._lookup(request, policy, max_age)
        finally:
            self._lookups -= 1

    async def _lookup(self, request: ChatRequest, policy: Policy, max_age: int | None) -> Lookup:
        now = self.clock()
        record = self.hot.by_key(request.exact_key)
        if record is None:
            epoch = self.hot.epoch
            record = await self.store.get_exact(request.exact_key)
            if record is not None:
                self.hot.put(record, epoch)
        if record is not None and record.fresh(now, max_age):
            return Lookup(Hit(record, "exact"))
        if policy.mode != "semantic" or not request.semantic_ok:
            return Lookup(None)
        lane = self.router.lane_for(request.question)
        if lane is None:
            return Lookup(None, skipped="unreadable")  # never judge what no model can read
        index = lane.indexes.get(request.partition)
        if index is None or index.live == 0:
            return Lookup(None)  # nothing to compare with: the question is embedded at write-back instead
        vector, candidates = await lane.batcher.embed(request.question,
                                                      lambda v: (v, index.search(v, CANDIDATES)))
        threshold = lane.threshold(policy, request.question)
        candidates = [(i, s) for i, s in candidates if s >= threshold]
        records = await self._records(i for i, _ in candidates)
        for entry_id, similarity in candidates:
            candidate = records.get(entry_id)
            if candidate is not None and self.accepts(request, candidate, now, max_age):
                if candidate.exact_key == request.exact_key:
                    # Stored while this lookup was embedding: it is the identical request, so say so.
                    return Lookup(Hit(candidate, "exact"), vector)
                return Lookup(Hit(candidate, "semantic", min(similarity, 1.0)), vector)
        return Lookup(None, vector)

    async def _records(self, ids: Any) -> dict[int, Record]:
        found: dict[int, Record] = {}
        missing = []
        for entry_id in ids:
            record = self.hot.by_id(entry_id)
            if record is None:
                missing.append(entry_id)
            else:
                found[entry_id] = record
        if missing:
            epoch = self.hot.epoch
            for entry_id, record in (await self.store.get_many(missing)).items():
                found[entry_id] = record
                self.hot.put(record, epoch)
        return found

    @staticmethod
    def accepts(request: ChatRequest, candidate: Record, now: float, max_age: int | None) -> bool:
        """Every check a similar-enough candidate must pass besides its similarity: the same conversation, still
        fresh, and no difference the guard sees as answer-changing (numbers, negation, entities…)."""
        return (candidate.context_digest == request.context_digest and candidate.fresh(now, max_age)
                and find_conflict(candidate.question, request.question) is None)

    # -- write-back -----------------------------------------------------------------------------------------------

    def submit(self, request: ChatRequest, policy: Policy, response: dict[str, Any],
               vector: np.ndarray | None = None) -> bool:
        """Queue an answer for storing; False (and a warning) when the queue is full."""
        return self._put(StoreJob(request, policy, response, vector))

    def record_hit(self, entry_id: int) -> None:
        self._put(entry_id)

    async def store_batch(self, records: list[NewRecord], keep: dict[str, int]) -> int:
        """Store records (vectors included) through the writer, in one transaction; waits until stored.
        `keep` bounds each partition as its policy's max_entries."""
        return int(await self.in_writer(lambda: self._store_batch(records, keep)))

    def _put(self, job: StoreJob | int | WriterJob) -> bool:
        try:
            self._queue.put_nowait(job)
            return True
        except asyncio.QueueFull:
            log.warning("write-back queue full (%d): dropping a job", self._queue.maxsize)
            return False

    async def drain(self) -> None:
        """Wait until everything queued so far is stored."""
        await self._queue.join()

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    async def _run_writer(self) -> None:
        last_save = last_sweep = self.clock()
        while True:
            try:
                job = await asyncio.wait_for(self._queue.get(), timeout=self.save_interval)
            except TimeoutError:
                job = None
            if job is not None:
                hits: dict[int, tuple[int, float]] = {}
                try:
                    await self._apply(job, hits)
                    # Hits arrive in bursts: count all those already queued in one transaction.
                    while not self._queue.empty():
                        more = self._queue.get_nowait()
                        try:
                            await self._apply(more, hits)
                        finally:
                            self._queue.task_done()
                    if hits:
                        await self.store.touch(hits)
                except Exception:
                    log.exception("write-back failed; the answer stays uncached")
                finally:
                    self._queue.task_done()
            now = self.clock()
            try:
                if now - last_sweep >= EXPIRY_SWEEP_SECONDS:
                    last_sweep = now
                    await self.maintain(now)
                if now - last_save >= self.save_interval:
                    last_save = now
                    await self._save_dirty()
            except Exception:
                log.exception("index maintenance failed; it is retried on the next interval")

    async def _apply(self, job: StoreJob | int | WriterJob, hits: dict[int, tuple[int, float]]) -> None:
        if isinstance(job, WriterJob):
            await job.run()
            return
        if isinstance(job, int):
            n, _ = hits.get(job, (0, 0.0))
            hits[job] = (n + 1, self.clock())
            return
        try:
            await self._store(job)
        finally:
            self.flights.stored(job.request.exact_key)

    async def _store(self, job: StoreJob) -> None:
        request, policy = job.request, job.policy
        vector = job.vector
        lane = self.router.lane_for(request.question) if policy.mode == "semantic" and request.semantic_ok else None
        if lane is None:
            vector = None  # stored for exact matching only
        elif vector is None:
            vector = (await lane.batcher.embed_many([request.question]))[0]
        now = self.clock()
        new = NewRecord(
            exact_key=request.exact_key, partition=request.partition, tenant=request.tenant, model=request.model,
            namespace=request.namespace, context_digest=request.context_digest, context_text=request.context_text,
            question=request.question, response=job.response,
            embedder=lane.indexes.embedder if lane is not None else None, vector=vector,
            created_at=now, expires_at=now + policy.ttl if policy.ttl else None,
        )
        # The row is committed only once its vector is indexed: an entry becomes findable exactly and by meaning
        # at the same moment.
        entry_id, replaced = await self.store.insert(new, commit=False)
        try:
            if lane is not None and vector is not None:
                index = lane.indexes.get_or_create(request.partition)
                await self._in_executor(index.add, [entry_id], vector.reshape(1, -1))
                lane.indexes.dirty.add(request.partition)
        except BaseException:
            await self.store.writer.rollback()
            raise
        await self.store.writer.commit()
        if replaced is not None:
            self._forget(replaced.id, replaced.partition, replaced.embedder)
        self.hot.put(new.record(entry_id))
        self._counts[request.partition] = self._counts.get(request.partition, 0) + 1
        if policy.max_entries and self._counts[request.partition] > policy.max_entries:
            for doomed, embedder in await self.store.evict_lru(request.partition, policy.max_entries):
                self._forget(doomed, request.partition, embedder)

    async def _store_batch(self, records: list[NewRecord], keep: dict[str, int]) -> int:
        stored = await self.store.insert_many(records)
        vectors: dict[tuple[str, Lane], tuple[list[int], list[np.ndarray]]] = {}
        for new, (entry_id, replaced) in zip(records, stored, strict=True):
            if replaced is not None:
                self._forget(replaced.id, replaced.partition, replaced.embedder)
            self._counts[new.partition] = self._counts.get(new.partition, 0) + 1
            lane = self.router.by_name(new.embedder)
            if new.vector is not None and lane is not None:
                ids, vs = vectors.setdefault((new.partition, lane), ([], []))
                ids.append(entry_id)
                vs.append(new.vector)
        for (partition, lane), (ids, vs) in vectors.items():
            index = lane.indexes.get_or_create(partition)
            await self._in_executor(index.add, ids, np.stack(vs).astype(np.float32))
            lane.indexes.dirty.add(partition)
        for partition, limit in keep.items():
            if limit and self._counts.get(partition, 0) > limit:
                for doomed, embedder in await self.store.evict_lru(partition, limit):
                    self._forget(doomed, partition, embedder)
        return len(stored)

    def _forget(self, entry_id: int, partition: str, embedder: str | None) -> None:
        """An entry left the store: keep the in-memory count, the hot records and the index in step."""
        self.hot.drop(entry_id)
        self._counts[partition] = max(0, self._counts.get(partition, 1) - 1)
        lane = self.router.by_name(embedder)
        index = lane.indexes.get(partition) if lane is not None else None
        if lane is not None and index is not None:
            index.remove(entry_id)
            lane.indexes.dirty.add(partition)

    async def maintain(self, now: float | None = None) -> None:
        """Delete expired entries, then compact the indexes that hold too many deleted vectors."""
        await self._expire(self.clock() if now is None else now)
        for indexes in self._index_sets():
            for partition, index in list(indexes.indexes.items()):
                if index.deleted >= max(COMPACT_MIN, COMPACT_FRACTION * (index.live + index.deleted)):
                    await self.compact(partition, indexes)

    async def _expire(self, now: float) -> None:
        for entry_id, partition, embedder in await self.store.delete_expired(now):
            self._forget(entry_id, partition, embedder)

    async def compact(self, partition: str, indexes: IndexSet | None = None) -> None:
        """Rebuild a partition's index from the vectors in SQLite, off the event loop, and swap it in whole:
        lookups use the old index until then. Runs on the writer, so no entry is added meanwhile."""
        indexes = self.indexes if indexes is None else indexes
        old = indexes.get(partition)
        fresh = VectorIndex(indexes.dim, max(INITIAL_CAPACITY, (old.live if old else 0) + 1))
        async for ids, vectors in self.store.iter_vectors(partition, indexes.embedder, indexes.dim):
            await self._in_executor(fresh.add, ids, vectors)
        indexes.indexes[partition] = fresh
        indexes.dirty.add(partition)
        log.info("compacted index of partition %s… (%d deleted vectors dropped, %d live)", partition[:12],
                 old.deleted if old else 0, fresh.live)

    async def _save_dirty(self) -> None:
        for indexes in self._index_sets():
            for partition in list(indexes.dirty):
                info = await self.store.partition_info(partition, indexes.embedder)
                await self._in_executor(indexes.save, partition, info.count, info.max_id)

    async def _in_executor(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # -- admin: deletions, direct inserts, sizes ------------------------------------------------------------------
    # Deletions and ModelCache inserts run *in* the write-back worker, queued behind what is already waiting: one
    # writer keeps SQLite's transactions and the indexes in step (a deletion racing a write-back could otherwise
    # leave a vector without its record, or commit half of the worker's transaction). They wait for room in the
    # queue instead of being dropped.

    async def in_writer(self, work: Callable[[], Awaitable[Any]]) -> Any:
        if self._worker is None or self._worker.done():
            raise RuntimeError("the write-back worker is not running")
        job = WriterJob(work, asyncio.get_running_loop().create_future())
        await self._queue.put(job)
        return await job.result

    async def delete_entries(self, ids: Iterable[int]) -> int:
        """Delete entries by id, from the store and their indexes; returns how many existed."""
        wanted = list(ids)
        return await self._delete_in_writer(lambda: self.store.delete_ids(wanted))

    async def purge(self, selection: EntryFilter) -> int:
        """Delete every entry `selection` matches, from the store and the indexes; returns how many."""
        return await self._delete_in_writer(lambda: self.store.delete_matching(selection))

    async def _delete_in_writer(self, delete: Callable[[], Awaitable[list[tuple[int, str, str | None]]]]) -> int:
        async def work() -> int:
            doomed = await delete()
            for entry_id, partition, embedder in doomed:
                self._forget(entry_id, partition, embedder)
            return len(doomed)

        return int(await self.in_writer(work))

    async def store_now(self, request: ChatRequest, policy: Policy, response: dict[str, Any]) -> None:
        """Store an answer and return once it is stored (and findable): the ModelCache insert."""
        await self.in_writer(lambda: self._store(StoreJob(request, policy, response, None)))

    def partition_sizes(self) -> dict[str, tuple[int, int]]:
        """(stored entries, live index vectors) per partition, from memory: cheap enough for every scrape."""
        sizes = {partition: (count, 0) for partition, count in self._counts.items()}
        for indexes in self._index_sets():
            for partition, index in indexes.indexes.items():
                count, live = sizes.get(partition, (0, 0))
                sizes[partition] = (count, live + index.live)
        return sizes
