"""Services: what the app shares across requests, opened and closed by its lifespan."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from .cache import SemanticCache
from .embeddings import Embedder, load_embedder
from .metrics import Metrics, TimedEmbedder, WriteBackErrorCounter
from .policies import PolicySet, load_policies
from .settings import Settings
from .store import RecordStore
from .upstream import UpstreamClient

log = logging.getLogger("deja")


@dataclass
class Services:
    settings: Settings
    policies: PolicySet
    cache: SemanticCache
    upstream: UpstreamClient
    metrics: Metrics = field(default_factory=Metrics)
    # Counts the write-back worker's logged failures as `store` errors while these services are open.
    error_counter: logging.Handler | None = None
    # DEJA_ADMIN_TOKEN as it was at start-up: /admin and /dashboard exist only when it is set.
    admin_token: str | None = None

    @classmethod
    async def open(cls, settings: Settings, *, policies: PolicySet | None = None, embedder: Embedder | None = None,
                   transport: httpx.AsyncBaseTransport | None = None) -> Services:
        data_dir = Path(settings.data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        policies = policies or load_policies(settings.policies_dir)
        if embedder is None:
            embedder = await asyncio.to_thread(load_embedder, settings.embedding, data_dir)
        metrics = Metrics(settings.prices)
        metrics.max_label_chars = settings.max_model_label_chars
        metrics.label_globs = [p.match for p in policies.policies if p.match != "*"]
        embedder = TimedEmbedder(embedder, metrics)
        store = RecordStore(data_dir / "deja.sqlite3")
        await store.open()
        cache = SemanticCache(store, embedder, data_dir / "indexes", queue_size=settings.writeback_queue_size,
                              save_interval=settings.index_save_interval, max_batch=settings.embedding.max_batch,
                              batch_window=settings.embedding.batch_window_ms / 1000,
                              queue_bytes=settings.writeback_queue_bytes, max_answer_bytes=settings.max_answer_bytes,
                              guard_max_chars=settings.guard_max_chars)
        await cache.start()
        metrics.bind(cache)
        counter = WriteBackErrorCounter(metrics)
        logging.getLogger("deja.cache").addHandler(counter)
        return cls(settings, policies, cache, UpstreamClient(settings, transport), metrics, counter,
                   settings.admin_token)

    async def close(self) -> None:
        """Drain write-back first: answers already sent must be stored before the store closes."""
        try:
            await self.cache.close()
        finally:
            if self.error_counter is not None:
                logging.getLogger("deja.cache").removeHandler(self.error_counter)
            await self.cache.store.close()
            await self.upstream.close()
