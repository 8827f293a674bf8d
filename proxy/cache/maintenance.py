"""Keeping the store tidy, from the write-back worker between rounds: expired entries swept every minute, index
files saved every `index_save_interval` seconds, freed memory handed back to the OS every minute (heap.py). LRU
eviction happens as entries are written (each partition is bounded by its policy's max_entries, stores/base.py
`put`)."""

from __future__ import annotations

import asyncio
import logging

from ..heap import release_free_memory
from ..stores.base import Store

log = logging.getLogger("deja.cache")

EXPIRY_SWEEP_SECONDS = 60.0
TRIM_SECONDS = 60.0


class Maintenance:
    def __init__(self, store: Store, save_interval: float) -> None:
        self.store = store
        self.save_interval = save_interval
        # Seconds expired entries are kept for stale-while-revalidate: the longest window of any policy.
        self.stale_keep = 0
        self.last_sweep = self.last_save = self.last_trim = 0.0

    def start(self, now: float) -> None:
        """The first sweep, save and trim are one interval after the worker starts."""
        self.last_sweep = self.last_save = self.last_trim = now

    async def tick(self, now: float) -> None:
        """Sweep and save when they are due; a failure is logged and retried on the next interval."""
        try:
            if now - self.last_sweep >= EXPIRY_SWEEP_SECONDS:
                self.last_sweep = now
                await self.sweep(now)
            if now - self.last_save >= self.save_interval:
                self.last_save = now
                await self.store.checkpoint()
            if now - self.last_trim >= TRIM_SECONDS:
                self.last_trim = now
                await asyncio.to_thread(release_free_memory)  # off the loop: it walks every heap
        except Exception:
            log.exception("index maintenance failed; it is retried on the next interval")

    async def sweep(self, now: float) -> None:
        """Delete expired entries (kept `stale_keep` seconds longer) and tidy the store (index compaction)."""
        await self.store.maintain(now - self.stale_keep)
