"""SemanticCache: the one place that decides a hit, and the write-back that stores answers after responses.

lookup: exact key (in memory, then SQLite; no embedding) -> embed the question (micro-batched with concurrent
        lookups) and search the partition's index on the embedding thread -> records (in memory, then SQLite) ->
        the first candidate that passes every check is the hit.
store:  through a bounded queue, after the response has gone out; one worker owns every write, so SQLite and the
        indexes change in step, and shutdown drains it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .batcher import EmbeddingBatcher
from .embeddings import Embedder
from .flights import FlightTable
from .guard import find_conflict
from .hot import HotRecords
from .index import INITIAL_CAPACITY, IndexSet, VectorIndex
from .limits import answer_size
from .policies import Policy
from .requests import ChatRequest
from .store import EntryFilter, NewRecord, Record, RecordStore
from .writeback import AnswerBudget, PendingHits

log = logging.getLogger("deja.cache")

MatchType = Literal["exact", "semantic"]
# Neighbours examined per lookup: the nearest one can fail a check (context, freshness) while the next passes.
CANDIDATES = 8
EXPIRY_SWEEP_SECONDS = 60.0
# An index is rebuilt from SQLite once this share of its slots holds deleted vectors (and at least COMPACT_MIN):
# hnswlib only marks deletions, so evicted entries would otherwise cost memory and search time forever.
COMPACT_FRACTION = 0.3
COMPACT_MIN = 1000
# Jobs the write-back worker takes per round (their questions are embedded together).
WRITE_ROUND = 256
# Below this many characters (both questions) the guard runs inline: a thread hop would cost more.
GUARD_INLINE_CHARS = 2000
# The one token a burst of hits puts in the queue: the worker then writes PendingHits in one transaction.
FLUSH_HITS = object()


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


@dataclass(frozen=True)
class StoreJob:
    request: ChatRequest
    policy: Policy
    response: dict[str, Any]
    vector: np.ndarray | None
    size: int = 0  # bytes held while queued (AnswerBudget)


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
                 batch_window: float = 0.002, hot_records: int = 10_000, queue_bytes: int = 256 << 20,
                 max_answer_bytes: int = 4 << 20, guard_max_chars: int = 8000) -> None:
        self.store = store
        self.embedder = embedder
        self.indexes = IndexSet(index_dir, embedder.name, embedder.dim)
        self.clock = clock
        self.save_interval = save_interval
        self.hot = HotRecords(hot_records)
        self.flights = FlightTable()
        self._lookups = 0  # in flight: how many questions the batcher may wait for
        self.batcher = EmbeddingBatcher(embedder, max_batch=max_batch, window=batch_window,
                                        expected=lambda: self._lookups)
        # Index writes, saves and compaction: one writer thread (hnswlib must not add while it rebuilds).
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="deja-index")
        # Unbounded itself: answers are bounded by `budget`, hits merged in `pending_hits` (writeback.py).
        self._queue: asyncio.Queue[StoreJob | object | WriterJob] = asyncio.Queue()
        self.budget = AnswerBudget(queue_size, queue_bytes, max_answer_bytes)
        self.pending_hits = PendingHits()
        self.guard_max_chars = guard_max_chars
        self._worker: asyncio.Task[None] | None = None
        self._counts: dict[str, int] = {}

    # -- start and stop -------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Load every index of the current embedding model, rebuilding from SQLite those that disagree."""
        for info in await self.store.partitions(self.indexes.embedder):
            if not self.indexes.try_load(info.partition, info.count, info.max_id):
                await self._rebuild(info.partition)
                self.indexes.save(info.partition, info.count, info.max_id)
        self._counts = await self.store.partition_counts()
        self._worker = asyncio.create_task(self._run_writer(), name="deja-writeback")

    async def _rebuild(self, partition: str) -> None:
        self.indexes.indexes.pop(partition, None)
        index = self.indexes.get_or_create(partition)
        async for ids, vectors in self.store.iter_vectors(partition, self.indexes.embedder, self.indexes.dim):
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
        self.batcher.close()

    # -- lookup ---------------------------------------------------------------------------------------------------

    async def embed(self, texts: list[str]) -> np.ndarray:
        return await self.batcher.embed_many(texts)

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
        if policy.mode != "semantic" or not request.semantic_ok or len(request.question) > self.guard_max_chars:
            return Lookup(None)
        index = self.indexes.get(request.partition)
        if index is None or index.live == 0:
            return Lookup(None)  # nothing to compare with: the question is embedded at write-back instead
        vector, candidates = await self.batcher.embed(request.question,
                                                      lambda v: (v, index.search(v, CANDIDATES)))
        threshold = policy.threshold_for(request.question)
        candidates = [(i, s) for i, s in candidates if s >= threshold]
        records = await self._records(i for i, _ in candidates)
        for entry_id, similarity in candidates:
            candidate = records.get(entry_id)
            if candidate is not None and await self._accepts_off_loop(request, candidate, now, max_age):
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

    async def _accepts_off_loop(self, request: ChatRequest, candidate: Record, now: float,
                                max_age: int | None) -> bool:
        """The guard's cost grows with the texts: long pairs are vetted on a thread, so the loop keeps serving."""
        if len(candidate.question) + len(request.question) <= GUARD_INLINE_CHARS:
            return self.accepts(request, candidate, now, max_age)
        return await asyncio.to_thread(self.accepts, request, candidate, now, max_age)

    # -- write-back -----------------------------------------------------------------------------------------------

    def submit(self, request: ChatRequest, policy: Policy, response: dict[str, Any],
               vector: np.ndarray | None = None) -> bool:
        """Queue an answer for storing; False (counted in budget.dropped, and a warning) when it does not fit."""
        size = answer_size(request.question + request.context_text, response)
        reason = self.budget.admit(size)
        if reason is not None:
            log.warning("write-back: answer not cached (%s; %d queued, %d bytes)", reason, self.budget.answers,
                        self.budget.bytes)
            return False
        return self._put(StoreJob(request, policy, response, vector, size))

    def record_hit(self, entry_id: int) -> None:
        if self.pending_hits.add(entry_id, self.clock()):
            self._put(FLUSH_HITS)

    async def store_batch(self, records: list[NewRecord], keep: dict[str, int]) -> int:
        """Store records (vectors included) through the writer, in one transaction; waits until stored.
        `keep` bounds each partition as its policy's max_entries."""
        return int(await self.in_writer(lambda: self._store_batch(records, keep)))

    def _put(self, job: StoreJob | object | WriterJob) -> bool:
        self._queue.put_nowait(job)
        return True

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
                # Whatever else is waiting goes in the same round: its questions are embedded in one batch.
                jobs = [job]
                while not self._queue.empty() and len(jobs) < WRITE_ROUND:
                    jobs.append(self._queue.get_nowait())
                hits: dict[int, tuple[int, float]] = {}
                try:
                    jobs = await self._embed_round(jobs)
                    for one in jobs:
                        try:
                            await self._apply(one, hits)
                        except Exception:
                            log.exception("write-back failed; the answer stays uncached")
                    if hits:
                        await self.store.touch(hits)
                except Exception:
                    log.exception("write-back failed; the answer stays uncached")
                finally:
                    for _ in jobs:
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

    async def _embed_round(self, jobs: list[Any]) -> list[Any]:
        """Embed the questions of every answer in the round that has no vector yet (new partitions), in one batch
        across partitions. A failure leaves them without: each answer then embeds (and fails) on its own."""
        wanted = [i for i, job in enumerate(jobs) if isinstance(job, StoreJob) and job.vector is None
                  and job.policy.mode == "semantic" and job.request.semantic_ok]
        if len(wanted) < 2:
            return jobs
        try:
            vectors = await self.embed([jobs[i].request.question for i in wanted])
        except Exception:
            log.warning("write-back: batch embedding failed; embedding one answer at a time", exc_info=True)
            return jobs
        jobs = list(jobs)
        for i, vector in zip(wanted, vectors, strict=True):
            jobs[i] = dataclasses.replace(jobs[i], vector=vector)
        return jobs

    async def _apply(self, job: StoreJob | object | WriterJob, hits: dict[int, tuple[int, float]]) -> None:
        if isinstance(job, WriterJob):
            await job.run()
            return
        if not isinstance(job, StoreJob):  # FLUSH_HITS
            for entry_id, (n, at) in self.pending_hits.take().items():
                before, _ = hits.get(entry_id, (0, 0.0))
                hits[entry_id] = (before + n, at)
            return
        try:
            await self._store(job)
        finally:
            self.budget.release(job.size)
            self.flights.stored(job.request.exact_key)

    async def _store(self, job: StoreJob) -> None:
        request, policy = job.request, job.policy
        vector = job.vector
        if policy.mode == "semantic" and request.semantic_ok and vector is None:
            vector = (await self.embed([request.question]))[0]
        now = self.clock()
        new = NewRecord(
            exact_key=request.exact_key, partition=request.partition, tenant=request.tenant, model=request.model,
            namespace=request.namespace, context_digest=request.context_digest, context_text=request.context_text,
            question=request.question, response=job.response,
            embedder=self.indexes.embedder if vector is not None else None, vector=vector,
            created_at=now, expires_at=now + policy.ttl if policy.ttl else None,
        )
        # The row is committed only once its vector is indexed: an entry becomes findable exactly and by meaning
        # at the same moment.
        entry_id, replaced = await self.store.insert(new, commit=False)
        try:
            if vector is not None:
                index = self.indexes.get_or_create(request.partition)
                await self._in_executor(index.add, [entry_id], vector.reshape(1, -1))
                self.indexes.dirty.add(request.partition)
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
        vectors: dict[str, tuple[list[int], list[np.ndarray]]] = {}
        for new, (entry_id, replaced) in zip(records, stored, strict=True):
            if replaced is not None:
                self._forget(replaced.id, replaced.partition, replaced.embedder)
            self._counts[new.partition] = self._counts.get(new.partition, 0) + 1
            if new.vector is not None:
                ids, vs = vectors.setdefault(new.partition, ([], []))
                ids.append(entry_id)
                vs.append(new.vector)
        for partition, (ids, vs) in vectors.items():
            index = self.indexes.get_or_create(partition)
            await self._in_executor(index.add, ids, np.stack(vs).astype(np.float32))
            self.indexes.dirty.add(partition)
        for partition, limit in keep.items():
            if limit and self._counts.get(partition, 0) > limit:
                for doomed, embedder in await self.store.evict_lru(partition, limit):
                    self._forget(doomed, partition, embedder)
        return len(stored)

    def _forget(self, entry_id: int, partition: str, embedder: str | None) -> None:
        """An entry left the store: keep the in-memory count, the hot records and the index in step."""
        self.hot.drop(entry_id)
        self._counts[partition] = max(0, self._counts.get(partition, 1) - 1)
        index = self.indexes.get(partition)
        if embedder == self.indexes.embedder and index is not None:
            index.remove(entry_id)
            self.indexes.dirty.add(partition)

    async def maintain(self, now: float | None = None) -> None:
        """Delete expired entries, then compact the indexes that hold too many deleted vectors."""
        await self._expire(self.clock() if now is None else now)
        for partition, index in list(self.indexes.indexes.items()):
            if index.deleted >= max(COMPACT_MIN, COMPACT_FRACTION * (index.live + index.deleted)):
                await self.compact(partition)

    async def _expire(self, now: float) -> None:
        for entry_id, partition, embedder in await self.store.delete_expired(now):
            self._forget(entry_id, partition, embedder)

    async def compact(self, partition: str) -> None:
        """Rebuild a partition's index from the vectors in SQLite, off the event loop, and swap it in whole:
        lookups use the old index until then. Runs on the writer, so no entry is added meanwhile."""
        old = self.indexes.get(partition)
        fresh = VectorIndex(self.indexes.dim, max(INITIAL_CAPACITY, (old.live if old else 0) + 1))
        async for ids, vectors in self.store.iter_vectors(partition, self.indexes.embedder, self.indexes.dim):
            await self._in_executor(fresh.add, ids, vectors)
        self.indexes.indexes[partition] = fresh
        self.indexes.dirty.add(partition)
        log.info("compacted index of partition %s… (%d deleted vectors dropped, %d live)", partition[:12],
                 old.deleted if old else 0, fresh.live)

    async def _save_dirty(self) -> None:
        for partition in list(self.indexes.dirty):
            info = await self.store.partition_info(partition, self.indexes.embedder)
            await self._in_executor(self.indexes.save, partition, info.count, info.max_id)

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
        for partition, index in self.indexes.indexes.items():
            sizes[partition] = (sizes.get(partition, (0, 0))[0], index.live)
        return sizes
