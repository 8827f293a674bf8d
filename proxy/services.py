"""Services: what the app shares across requests, opened and closed by its lifespan."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from .cache.semantic import SemanticCache
from .embeddings import Embedder, load_embedder
from .metrics import Metrics, TimedEmbedder, WriteBackErrorCounter
from .multilingual import load_multilingual
from .policies import PolicySet, load_policies
from .request_memo import RequestMemo
from .revalidate import Revalidator
from .settings import Settings
from .stores import UnavailableStore, make_store, mask_url, store_kind
from .stores.base import Store, StoreStartError
from .upstream import UpstreamClient

log = logging.getLogger("deja")
# Of `shutdown_timeout`: in-flight requests get the first half (cli.py), storing what they left queued this much;
# the rest is for saving indexes and closing the store, before the process exits regardless.
REQUEST_SHARE = 0.5
DRAIN_SHARE = 0.3


@dataclass
class Services:
    settings: Settings
    policies: PolicySet
    cache: SemanticCache
    upstream: UpstreamClient
    revalidator: Revalidator
    metrics: Metrics = field(default_factory=Metrics)
    # Counts the write-back worker's logged failures as `store` errors while these services are open.
    error_counter: logging.Handler | None = None
    # DEJA_ADMIN_TOKEN as it was at start-up: /admin and /dashboard exist only when it is set.
    admin_token: str | None = None
    # Bodies seen recently, parsed and keyed (exchange.parse).
    request_memo: RequestMemo = field(default_factory=RequestMemo)

    @classmethod
    async def open(cls, settings: Settings, *, policies: PolicySet | None = None, embedder: Embedder | None = None,
                   transport: httpx.AsyncBaseTransport | None = None) -> Services:
        data_dir = Path(settings.data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        policies = policies or load_policies(settings.policies_dir)
        extra: list[Embedder] = []
        if embedder is None:
            embedder = await asyncio.to_thread(load_embedder, settings.embedding, data_dir)
            extra = await asyncio.to_thread(load_multilingual, settings.embedding)
        metrics = Metrics(settings.prices)
        metrics.max_label_chars = settings.max_model_label_chars
        metrics.label_globs = [p.match for p in policies.policies if p.match != "*"]
        embedder = TimedEmbedder(embedder, metrics)
        extra = [TimedEmbedder(e, metrics) for e in extra]
        store = await open_store(settings, data_dir, embedder, extra)
        cache = SemanticCache(store, embedder, queue_size=settings.writeback_queue_size,
                              save_interval=settings.index_save_interval, max_batch=settings.embedding.max_batch,
                              batch_window=settings.embedding.batch_window_ms / 1000, extra_embedders=extra,
                              queue_bytes=settings.writeback_queue_bytes, max_answer_bytes=settings.max_answer_bytes,
                              guard_max_chars=settings.guard_max_chars, flight_lease=settings.store.flight_lease)
        cache.stale_keep = max(p.stale_while_revalidate for p in policies.policies)
        try:
            await cache.start()
        except BaseException:
            await store.close()
            raise
        metrics.bind(cache)
        counter = WriteBackErrorCounter(metrics)
        logging.getLogger("deja.cache").addHandler(counter)
        upstream = UpstreamClient(settings, transport)
        return cls(settings, policies, cache, upstream, Revalidator(upstream, cache, metrics.stale_refreshes), metrics,
                   counter, settings.admin_token)

    async def close(self) -> None:
        """Drain write-back first: answers already sent must be stored before the store closes. The drain has a
        deadline (a share of `shutdown_timeout`): a refresh whose upstream never answers, or a store that stopped
        taking writes, would otherwise keep the process alive; what is left then is given up, and logged."""
        drained = False
        try:
            async with asyncio.timeout(self.settings.shutdown_timeout * DRAIN_SHARE):
                await self.revalidator.wait()
                await self.cache.drain()
            drained = True
        except TimeoutError:
            log.error("shutdown: giving up %d background refreshes and %d queued write-backs after %.0f s",
                      len(self.revalidator), self.cache.budget.answers,
                      self.settings.shutdown_timeout * DRAIN_SHARE)
            await self.revalidator.cancel()
        try:
            await self.cache.close(drain=drained)
        finally:
            if self.error_counter is not None:
                logging.getLogger("deja.cache").removeHandler(self.error_counter)
            await self.cache.store.close()
            await self.upstream.close()


async def open_store(settings: Settings, data_dir: Path, embedder: Embedder,
                     extra: Sequence[Embedder] = ()) -> Store:
    """The configured store, opened; with `store.fail_open`, a store that cannot be opened is replaced by one that
    caches nothing (Deja then forwards every request and /healthz says why)."""
    store = make_store(settings.store, data_dir, embedder.name, embedder.dim, [(e.name, e.dim) for e in extra])
    try:
        await store.open()
    except StoreStartError as exc:
        if not settings.store.fail_open:
            raise
        log.error("%s; serving uncached (store.fail_open)", exc)
        return UnavailableStore(store.kind, store.location, str(exc))
    return store


def describe_store(settings: Settings) -> str:
    """The store as the start-up line names it (a URL's password masked)."""
    url = settings.store.url
    if store_kind(url) == "sqlite":
        return f"sqlite {Path(settings.data_dir) / 'deja.sqlite3'}"
    assert url is not None
    return f"postgresql {mask_url(url)}"
