"""SemanticCache: the one place that decides a hit, and the write-back that stores answers after responses.

lookup: exact key (in memory, then SQLite; no embedding) -> embed the question (micro-batched with concurrent
        lookups) and search the partition's index on the embedding thread -> records (in memory, then SQLite) ->
        the first candidate that passes every check is the hit.
store:  through a bounded queue, after the response has gone out; one worker owns every write, so the store
        changes one transaction at a time, and shutdown drains it.
The cache does not know which store it talks to (stores/base.py: the embedded SQLite + hnswlib one, or PostgreSQL
shared by several replicas); the store tells it which entries left, so the hot records forget them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from .canonical import CacheRequest
from .conversation import context_rejection
from .embedding_router import EmbedderRouter
from .embeddings import Embedder
from .flights import FlightTable
from .guard import find_conflict
from .hot import HotRecords
from .limits import answer_size
from .policies import Policy
from .stores.base import Entry, EntryFilter, Store
from .terms import usable
from .writeback import AnswerBudget, PendingHits

log = logging.getLogger("deja.cache")

MatchType = Literal["exact", "semantic"]
# Neighbours examined per lookup: the nearest one can fail a check (context, freshness) while the next passes.
CANDIDATES = 8
EXPIRY_SWEEP_SECONDS = 60.0
# Single-flight across replicas: how often a waiting replica looks for the lease holder's entry.
FLIGHT_POLL_SECONDS = 0.05
# Jobs the write-back worker takes per round (their questions are embedded together).
WRITE_ROUND = 256
# Below this many characters (both questions) the guard runs inline: a thread hop would cost more.
GUARD_INLINE_CHARS = 2000
# The one token a burst of hits puts in the queue: the worker then writes PendingHits in one transaction.
FLUSH_HITS = object()


@dataclass(frozen=True)
class Hit:
    record: Entry
    match: MatchType
    similarity: float | None = None


@dataclass(frozen=True)
class Rejection:
    """Why the nearest candidate did not answer: a guard rule, "context", "stale" or "threshold"."""

    entry_id: int
    similarity: float
    reason: str


@dataclass(frozen=True)
class Lookup:
    hit: Hit | None
    # The question's embedding, when the lookup made one: a miss reuses it when its answer is stored.
    vector: np.ndarray | None = None
    # On a semantic miss: the nearest candidate and what kept it out (X-Cache-Debug, deja eval --explain).
    nearest: Rejection | None = None
    # Why no semantic lookup ran although the policy wanted one: "unreadable" = no embedder covers the text.
    skipped: str | None = None


@dataclass(frozen=True)
class StoreJob:
    request: CacheRequest
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
    def __init__(self, store: Store, embedder: Embedder, *, queue_size: int = 1024,
                 save_interval: float = 30.0, clock: Callable[[], float] = time.time, max_batch: int = 32,
                 batch_window: float = 0.002, hot_records: int = 10_000, queue_bytes: int = 256 << 20,
                 max_answer_bytes: int = 4 << 20, guard_max_chars: int = 8000, flight_lease: float = 30.0,
                 extra_embedders: Sequence[Embedder] = ()) -> None:
        self.store = store
        self.embedder = embedder
        self.clock = clock
        self.save_interval = save_interval
        self.hot = HotRecords(hot_records)
        self.flights = FlightTable(self._release_flight)
        self.flight_lease = flight_lease
        # Keys whose cross-replica lease this process holds (shared stores only), and their release tasks.
        self._leases: set[str] = set()
        self._releases: set[asyncio.Task[None]] = set()
        # Candidates above the threshold turned away, by reason (guard rule, "context", "stale"): /metrics.
        self.rejections: Counter[str] = Counter()
        self._lookups = 0  # in flight: how many questions the batcher may wait for
        # One lane per embedder (its batcher, its indexes in the store); the first is the default model's.
        self.router = EmbedderRouter([embedder, *extra_embedders], max_batch=max_batch, window=batch_window,
                                     expected=lambda: self._lookups)
        self.batcher = self.router.lanes[0].batcher
        # Candidates that belonged to another partition than the request's (never served): should stay 0.
        self.foreign_candidates = 0
        # Unbounded itself: answers are bounded by `budget`, hits merged in `pending_hits` (writeback.py).
        self._queue: asyncio.Queue[StoreJob | object | WriterJob] = asyncio.Queue()
        self.budget = AnswerBudget(queue_size, queue_bytes, max_answer_bytes)
        self.pending_hits = PendingHits()
        self.guard_max_chars = guard_max_chars
        self._worker: asyncio.Task[None] | None = None
        # Seconds expired entries are kept for stale-while-revalidate: the longest window of any policy.
        self.stale_keep = 0

    # -- start and stop -------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the write-back worker over an opened store."""
        self.store.listen(self._removed)
        self._worker = asyncio.create_task(self._run_writer(), name="deja-writeback")

    async def close(self) -> None:
        """Store everything queued, save changed indexes, stop the worker."""
        if self._worker is not None:
            await self.drain()
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            self._worker = None
        await asyncio.gather(*self._releases, return_exceptions=True)
        await self.store.checkpoint()
        self.router.close()

    def _removed(self, ids: list[int] | None) -> None:
        if ids is None:
            self.hot.clear()
        else:
            for entry_id in ids:
                self.hot.drop(entry_id)

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

    async def lookup(self, request: CacheRequest, policy: Policy, max_age: int | None, max_stale: int = 0) -> Lookup:
        """`max_stale`: entries up to this many seconds past their TTL may answer too (served as STALE)."""
        self._lookups += 1
        try:
            return await self._lookup(request, policy, max_age, max_stale)
        finally:
            self._lookups -= 1

    async def _lookup(self, request: CacheRequest, policy: Policy, max_age: int | None, max_stale: int) -> Lookup:
        now = self.clock()
        record = self.hot.by_key(request.exact_key)
        if record is None:
            epoch = self.hot.epoch
            record = await self.store.get_exact(request.exact_key)
            if record is not None:
                self.hot.put(record, epoch)
        if record is not None and usable(record, now, max_age, max_stale) and self._own(request, record):
            return Lookup(Hit(record, "exact"))
        if policy.mode != "semantic" or not request.semantic_ok or len(request.question) > self.guard_max_chars:
            return Lookup(None)
        partition = request.partition
        lane = self.router.lane_for(request.question)
        if lane is None:
            return Lookup(None, skipped="unreadable")  # never judge what no model can read
        name = lane.embedder.name
        if not self.store.searchable(partition, name):
            return Lookup(None)  # nothing to compare with: the question is embedded at write-back instead
        vector, found = await lane.batcher.embed(
            request.question, lambda v: (v, self.store.search_now(partition, v, CANDIDATES, name)))
        candidates = found if found is not None else await self.store.search(partition, vector, CANDIDATES, name)
        threshold = lane.threshold(policy, request.question)
        nearest = Rejection(candidates[0][0], min(candidates[0][1], 1.0), "threshold") if candidates else None
        candidates = [(i, s) for i, s in candidates if s >= threshold]
        records = await self._records(i for i, _ in candidates)
        for entry_id, similarity in candidates:
            candidate = records.get(entry_id)
            if candidate is None or not self._own(request, candidate):
                continue
            reason = await self._rejection_off_loop(request, candidate, now, max_age, max_stale)
            if reason == "context" and policy.conversations == "meaning":
                reason = (await context_rejection(request, candidate, lane.batcher.embed_many)
                          or await self._rejection_off_loop(request, candidate, now, max_age, max_stale, True))
            if reason is None:
                if candidate.exact_key == request.exact_key:
                    # Stored while this lookup was embedding: it is the identical request, so say so.
                    return Lookup(Hit(candidate, "exact"), vector)
                return Lookup(Hit(candidate, "semantic", min(similarity, 1.0)), vector)
            self.rejections[reason] += 1
            if nearest is not None and nearest.entry_id == entry_id:
                nearest = Rejection(entry_id, nearest.similarity, reason)
        return Lookup(None, vector, nearest)

    async def _records(self, ids: Any) -> dict[int, Entry]:
        found: dict[int, Entry] = {}
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

    def _own(self, request: CacheRequest, candidate: Entry) -> bool:
        """Defence in depth: a store or index fault must never serve another partition's answer."""
        if candidate.partition == request.partition:
            return True
        self.foreign_candidates += 1
        log.error("entry %d of another partition came up for a lookup; not served", candidate.id)
        return False

    async def wait_for_other_replica(self, request: CacheRequest, max_age: int | None) -> Hit | None:
        """Single-flight across replicas, for the process that leads a miss locally: None when it should call the
        upstream (it took the lease, or the other replica's lease was released or ran out without an entry);
        else the hit the lease holder stored meanwhile."""
        if not self.store.shared:
            return None
        key = request.exact_key
        try:
            while not await self.store.claim_flight(key, self.flight_lease):
                await asyncio.sleep(FLIGHT_POLL_SECONDS)
                entry = await self.store.get_exact(key)
                if entry is not None and entry.fresh(self.clock(), max_age) and self._own(request, entry):
                    return Hit(entry, "exact")
        except Exception as exc:  # the store is unreachable: forward, as every lookup does then
            log.warning("cross-replica single-flight unavailable (%s); forwarding", exc)
            return None
        self._leases.add(key)
        return None

    def _release_flight(self, key: str) -> None:
        if key in self._leases:
            self._leases.discard(key)
            task = asyncio.get_running_loop().create_task(self._release_lease(key))
            self._releases.add(task)
            task.add_done_callback(self._releases.discard)

    async def _release_lease(self, key: str) -> None:
        try:
            await self.store.release_flight(key)
        except Exception as exc:  # the lease runs out by itself
            log.warning("could not release a single-flight lease (%s)", exc)

    @staticmethod
    def rejection(request: CacheRequest, candidate: Entry, now: float, max_age: int | None,
                  max_stale: int = 0, context_agreed: bool = False) -> str | None:
        """The check a similar-enough candidate fails, or None when it may answer: the same conversation
        ("context"), still fresh ("stale"; `max_stale` seconds past its TTL still count), and no difference the
        guard sees as answer-changing (the rule's name)."""
        if candidate.context_digest != request.context_digest and not context_agreed:
            return "context"
        if not usable(candidate, now, max_age, max_stale):
            return "stale"
        return find_conflict(candidate.question, request.question)

    async def _rejection_off_loop(self, request: CacheRequest, candidate: Entry, now: float, max_age: int | None,
                                  max_stale: int, context_agreed: bool = False) -> str | None:
        """The guard's cost grows with the texts: long pairs are vetted on a thread, so the loop keeps serving."""
        if len(candidate.question) + len(request.question) <= GUARD_INLINE_CHARS:
            return self.rejection(request, candidate, now, max_age, max_stale, context_agreed)
        return await asyncio.to_thread(self.rejection, request, candidate, now, max_age, max_stale, context_agreed)

    # -- write-back -----------------------------------------------------------------------------------------------

    def submit(self, request: CacheRequest, policy: Policy, response: dict[str, Any],
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

    async def store_batch(self, records: list[Entry], keep: dict[str, int]) -> int:
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
                    await self.store.checkpoint()
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
            found = await self.embed([jobs[i].request.question for i in wanted])
        except Exception:
            log.warning("write-back: batch embedding failed; embedding one answer at a time", exc_info=True)
            return jobs
        jobs = list(jobs)
        for i, embedded in zip(wanted, found, strict=True):
            if embedded is not None:  # the same lane _store picks for the question (router.lane_for)
                jobs[i] = dataclasses.replace(jobs[i], vector=embedded[0])
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
        lane = self.router.lane_for(request.question) if policy.mode == "semantic" and request.semantic_ok else None
        if lane is None:
            vector = None  # stored for exact matching only
        elif vector is None:
            vector = (await lane.batcher.embed_many([request.question]))[0]
        now = self.clock()
        new = Entry(
            exact_key=request.exact_key, partition=request.partition, tenant=request.tenant, model=request.model,
            namespace=request.namespace, context_digest=request.context_digest, context_text=request.context_text,
            question=request.question, response=job.response,
            embedder=lane.embedder.name if lane is not None else None, vector=vector,
            created_at=now, expires_at=now + policy.ttl if policy.ttl else None,
        )
        # Findable exactly and by meaning at the same moment, once committed; remembered here only then.
        for stored in await self.store.put([new], {request.partition: policy.max_entries}):
            self.hot.put(stored)

    async def _store_batch(self, records: list[Entry], keep: dict[str, int]) -> int:
        await self.store.put(records, keep)
        return len(records)

    async def maintain(self, now: float | None = None) -> None:
        """Delete expired entries (kept `stale_keep` seconds longer) and tidy the store (index compaction)."""
        await self.store.maintain((self.clock() if now is None else now) - self.stale_keep)

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
        return int(await self.in_writer(lambda: self.store.delete_ids(wanted)))

    async def purge(self, selection: EntryFilter) -> int:
        """Delete every entry `selection` matches, from the store and the indexes; returns how many."""
        return int(await self.in_writer(lambda: self.store.delete_matching(selection)))

    async def store_now(self, request: CacheRequest, policy: Policy, response: dict[str, Any]) -> None:
        """Store an answer and return once it is stored (and findable): the ModelCache insert."""
        await self.in_writer(lambda: self._store(StoreJob(request, policy, response, None)))

    def partition_sizes(self) -> dict[str, tuple[int, int]]:
        """(stored entries, live index vectors) per partition, from memory: cheap enough for every scrape."""
        return self.store.sizes()
