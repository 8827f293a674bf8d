"""The write-back worker: answers are stored after their responses went out, through one bounded queue.

One worker owns every write, so the store changes one transaction at a time; shutdown drains it. Admin deletions
and ModelCache inserts run in it too (`in_writer`), queued behind what is already waiting: a deletion racing a
write-back could otherwise leave a vector without its record, or commit half of the worker's transaction. They
wait for room in the queue instead of being dropped. Between rounds the worker runs the store's maintenance.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..canonical import CacheRequest
from ..embedding_router import EmbedderRouter
from ..limits import answer_size
from ..policies import Policy
from ..stores.base import Entry, Store
from .backlog import AnswerBudget, PendingHits
from .flights import FlightTable
from .hot import HotRecords
from .maintenance import Maintenance

log = logging.getLogger("deja.cache")

# Jobs the worker takes per round (their questions are embedded together).
WRITE_ROUND = 256
# The one token a burst of hits puts in the queue: the worker then writes PendingHits in one transaction.
FLUSH_HITS = object()


@dataclass(frozen=True)
class StoreJob:
    request: CacheRequest
    policy: Policy
    response: dict[str, Any]
    vector: np.ndarray | None
    size: int = 0  # bytes held while queued (AnswerBudget)


@dataclass
class WriterJob:
    """Work that must run in the worker (admin deletions, ModelCache inserts); `result` gets its outcome."""
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


class Writer:
    def __init__(self, store: Store, hot: HotRecords, router: EmbedderRouter, flights: FlightTable,
                 maintenance: Maintenance, clock: Callable[[], float], *, queue_size: int, queue_bytes: int,
                 max_answer_bytes: int) -> None:
        self.store = store
        self.hot = hot
        self.router = router
        self.flights = flights
        self.maintenance = maintenance
        self.clock = clock
        # Unbounded itself: answers are bounded by `budget`, hits merged in `pending_hits` (backlog.py).
        self._queue: asyncio.Queue[StoreJob | object | WriterJob] = asyncio.Queue()
        self.budget = AnswerBudget(queue_size, queue_bytes, max_answer_bytes)
        self.pending_hits = PendingHits()
        self._flush_timer: asyncio.TimerHandle | None = None
        self._worker: asyncio.Task[None] | None = None
        # Answers committed: /healthz sees the store take writes again after a failure (health.py).
        self.committed = 0

    def start(self) -> None:
        self._worker = asyncio.create_task(self._run(), name="deja-writeback")

    async def stop(self, *, drain: bool = True) -> None:
        """Store everything queued (unless `drain` is False: shutdown's deadline passed), then stop the worker."""
        if self._worker is not None:
            if drain:
                await self.drain()
            if self._flush_timer is not None:
                self._flush_timer.cancel()
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            self._worker = None

    def submit(self, request: CacheRequest, policy: Policy, response: dict[str, Any],
               vector: np.ndarray | None = None) -> bool:
        """Queue an answer for storing; False (counted in budget.dropped, and a warning) when it does not fit."""
        size = answer_size(request.question + request.context_text, response)
        reason = self.budget.admit(size)
        if reason is not None:
            log.warning("write-back: answer not cached (%s; %d queued, %d bytes)", reason, self.budget.answers,
                        self.budget.bytes)
            return False
        self._queue.put_nowait(StoreJob(request, policy, response, vector, size))
        return True

    def record_hit(self, entry_id: int) -> None:
        if self.pending_hits.add(entry_id, self.clock()):
            self._queue.put_nowait(FLUSH_HITS)
        elif self._flush_timer is None and self.pending_hits.waiting:
            # Held back by the flush interval: flushed then, even if no further hit brings a token.
            self._flush_timer = asyncio.get_running_loop().call_later(self.pending_hits.interval, self._flush_held)

    def _flush_held(self) -> None:
        self._flush_timer = None
        if self.pending_hits.due(now=True):
            self._queue.put_nowait(FLUSH_HITS)

    async def in_writer(self, work: Callable[[], Awaitable[Any]]) -> Any:
        """Run `work` in the worker, after what is queued already; returns its result."""
        if self._worker is None or self._worker.done():
            raise RuntimeError("the write-back worker is not running")
        job = WriterJob(work, asyncio.get_running_loop().create_future())
        await self._queue.put(job)
        return await job.result

    async def drain(self) -> None:
        """Wait until everything queued so far is stored, hits counted so far included."""
        if self.pending_hits.due(now=True):
            self._queue.put_nowait(FLUSH_HITS)
        await self._queue.join()

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    async def _run(self) -> None:
        self.maintenance.start(self.clock())
        while True:
            try:
                job = await asyncio.wait_for(self._queue.get(), timeout=self.maintenance.save_interval)
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
            await self.maintenance.tick(self.clock())

    async def _embed_round(self, jobs: list[Any]) -> list[Any]:
        """Embed the questions of every answer in the round that has no vector yet (new partitions), in one batch
        across partitions. A failure leaves them without: each answer then embeds (and fails) on its own."""
        wanted = [i for i, job in enumerate(jobs) if isinstance(job, StoreJob) and job.vector is None
                  and job.policy.mode == "semantic" and job.request.semantic_ok]
        if len(wanted) < 2:
            return jobs
        try:
            found = await self.router.embed([jobs[i].request.question for i in wanted])
        except Exception:
            log.warning("write-back: batch embedding failed; embedding one answer at a time", exc_info=True)
            return jobs
        jobs = list(jobs)
        for i, embedded in zip(wanted, found, strict=True):
            if embedded is not None:  # the same lane `store` picks for the question (router.lane_for)
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
            await self.store_answer(job)
        finally:
            self.budget.release(job.size)
            self.flights.stored(job.request.exact_key)

    async def store_answer(self, job: StoreJob) -> None:
        """One answer as an entry: embedded by the lane that reads its question (none: exact matching only)."""
        request, policy = job.request, job.policy
        vector = job.vector
        lane = self.router.lane_for(request.question) if policy.mode == "semantic" and request.semantic_ok else None
        if lane is None:
            vector = None
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
        self.committed += 1
