"""EmbeddingBatcher: one worker thread that embeds the questions of concurrent requests together.

onnxruntime already spreads one batch over both cores, and a batch of 32 costs far less than 32 single calls, so
concurrent lookups are gathered into one call: the thread takes what is queued, waits up to `window` seconds for
the other lookups it knows are in flight (never when it is alone), embeds at most `max_batch` texts at once, then
runs each job's follow-up (the index search) on the same thread so a lookup costs one hop off the event loop. A job
may also bring a step to run before (the exact-key read of a store that reads on the calling thread): when that
answers, the text is not embedded.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .embeddings import Embedder

log = logging.getLogger("deja.batcher")

FollowUp = Callable[[np.ndarray], Any]
# Run on the worker thread before embedding; a result other than None answers the job instead.
Before = Callable[[], Any]


@dataclass
class _Job:
    texts: list[str]
    single: bool
    then: FollowUp | None
    before: Before | None
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop


class EmbeddingBatcher:
    def __init__(self, embedder: Embedder, *, max_batch: int = 32, window: float = 0.002,
                 expected: Callable[[], int] = lambda: 1) -> None:
        self.embedder = embedder
        self.max_batch = max(1, max_batch)
        self.window = window
        # How many jobs are likely to arrive soon (lookups in flight): the wait ends once that many are in.
        self.expected = expected
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="deja-embed", daemon=True)
        self._thread.start()

    async def embed(self, text: str, then: FollowUp | None = None, before: Before | None = None) -> Any:
        """The embedding of `text`, or `then(embedding)` computed on the worker thread; with `before`, its result
        when that is not None (computed on the worker thread, and `text` then not embedded)."""
        return await self._submit([text], True, then, before)

    async def embed_many(self, texts: list[str]) -> np.ndarray:
        """Embeddings of `texts` (write-back, import), in batches of up to max(max_batch, len(texts))."""
        if not texts:
            return np.zeros((0, self.embedder.dim), dtype=np.float32)
        result: np.ndarray = await self._submit(texts, False, None, None)
        return result

    async def _submit(self, texts: list[str], single: bool, then: FollowUp | None, before: Before | None) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._jobs.put(_Job(texts, single, then, before, future, loop))
        return await future

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join()

    def _gather(self, first: _Job) -> tuple[list[_Job], bool]:
        batch, stop = [first], False
        size = len(first.texts)
        deadline = time.monotonic() + self.window
        while size < self.max_batch:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                wanted = min(self.max_batch, self.expected())
                left = deadline - time.monotonic()
                if size >= wanted or left <= 0:
                    break
                try:
                    job = self._jobs.get(timeout=left)
                except queue.Empty:
                    break
            if job is None:
                stop = True
                break
            batch.append(job)
            size += len(job.texts)
        return batch, stop

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._jobs.get()
            if first is None:
                return
            batch, stop = self._gather(first)
            batch = [job for job in batch if not _answered_before(job)]
            if not batch:
                continue
            try:
                vectors = self.embedder.embed([text for job in batch for text in job.texts])
            except Exception as exc:
                for job in batch:
                    _post(job, None, exc)
                continue
            start = 0
            for job in batch:
                result: Any = vectors[start] if job.single else vectors[start:start + len(job.texts)]
                start += len(job.texts)
                error: BaseException | None = None
                if job.then is not None:
                    try:
                        result = job.then(result)
                    except Exception as exc:
                        error = exc
                _post(job, result, error)


def _answered_before(job: _Job) -> bool:
    """Run the job's step before embedding; True when that answered it (or failed: the error is its answer)."""
    if job.before is None:
        return False
    try:
        result = job.before()
    except Exception as exc:
        _post(job, None, exc)
        return True
    if result is None:
        return False
    _post(job, result, None)
    return True


def _post(job: _Job, result: Any, error: BaseException | None) -> None:
    try:
        job.loop.call_soon_threadsafe(_settle, job.future, result, error)
    except RuntimeError:  # that event loop has closed: nobody is waiting any more
        pass


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the awaiting request was cancelled
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
