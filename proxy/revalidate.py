"""Stale-while-revalidate: a stale hit is served at once while one background request refreshes its entry.

Single-flight per stale entry: concurrent stale hits on it start one refresh. The refresh asks the endpoint's
upstream target the request that found the entry (as the client sent it, but never streamed: outgoing.py), and
when the upstream answers 200 with a storable answer, stores it (replacing the entry with the same exact key) and
deletes the stale entry if it was another wording's.
The flight stays open until write-back has stored the answer, so no second refresh starts in between.
Outcomes are counted in `deja_stale_refreshes{outcome}`: started, joined, replaced, failed.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from prometheus_client import Counter

from .cache.semantic import SemanticCache
from .canonical import CacheRequest
from .nonanswers import skip_reason
from .outgoing import UpstreamCall
from .policies import Policy
from .stores.base import Entry
from .upstream import UpstreamClient, read_all

log = logging.getLogger("deja.revalidate")


class Revalidator:
    def __init__(self, upstream: UpstreamClient, cache: SemanticCache, outcomes: Counter) -> None:
        self.upstream = upstream
        self.cache = cache
        self.outcomes = outcomes
        self._flights: dict[int, asyncio.Task[None]] = {}

    def __len__(self) -> int:
        return len(self._flights)

    def refresh(self, stale: Entry, call: UpstreamCall, chat: CacheRequest, policy: Policy,
                storable: Callable[[Any], bool]) -> bool:
        """Start refreshing `stale` with `call` unless a refresh of it is already under way; True when this call
        started it. The answer is stored as `chat`'s if `storable` says it is a complete answer."""
        if stale.id in self._flights:
            self.outcomes.labels("joined").inc()
            return False
        self.outcomes.labels("started").inc()
        task = asyncio.create_task(self._refresh(stale, call, chat, policy, storable), name=f"deja-refresh-{stale.id}")
        self._flights[stale.id] = task
        task.add_done_callback(lambda _: self._flights.pop(stale.id, None))
        return True

    async def _refresh(self, stale: Entry, call: UpstreamCall, chat: CacheRequest, policy: Policy,
                       storable: Callable[[Any], bool]) -> None:
        try:
            upstream = await call.send(self.upstream)
            content = await read_all(upstream)
            completion = json.loads(content) if upstream.status_code == 200 else None
        except Exception as exc:  # a failed refresh leaves the stale entry to expire; the client was served
            log.warning("background refresh of entry %d failed: %s", stale.id, exc)
            self.outcomes.labels("failed").inc()
            return
        if completion is None or not storable(completion) or skip_reason(
                completion, allow_truncated=policy.cache_truncated):
            self.outcomes.labels("failed").inc()
            return
        try:
            if not self.cache.submit(chat, policy, completion):
                self.outcomes.labels("failed").inc()
                return
            await self.cache.drain()
            if stale.exact_key != chat.exact_key:
                await self.cache.delete_entries([stale.id])
        except Exception:  # nobody awaits this task: say what went wrong here
            log.exception("storing the refresh of entry %d failed", stale.id)
            self.outcomes.labels("failed").inc()
            return
        self.outcomes.labels("replaced").inc()

    async def wait(self) -> None:
        """Until the refreshes under way have finished (their answers stored); at shutdown, before the store closes."""
        if self._flights:  # asyncio.wait: a deadline cancelling this wait leaves them running, for cancel()
            await asyncio.wait(list(self._flights.values()))

    async def cancel(self) -> None:
        """Give up the refreshes under way (shutdown's deadline passed: their upstream may never answer)."""
        tasks = list(self._flights.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
