"""Stale-while-revalidate: a stale hit is served at once while one background request refreshes its entry.

Single-flight per stale entry: concurrent stale hits on it start one refresh. The refresh asks the endpoint's
upstream target the request that found the entry (as the client sent it, but never streamed), and when the
upstream answers 200 with a storable answer, stores it (replacing the entry with the same exact key) and deletes
the stale entry if it was another wording's.
The flight stays open until write-back has stored the answer, so no second refresh starts in between.
Outcomes are counted in `deja_stale_refreshes{outcome}`: started, joined, replaced, failed.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .canonical import CacheRequest
from .nonanswers import skip_reason
from .policies import Policy
from .stores.base import Entry

if TYPE_CHECKING:
    from .endpoints import Endpoint, Target
    from .services import Services

log = logging.getLogger("deja.revalidate")


class Revalidator:
    def __init__(self) -> None:
        self._flights: dict[int, asyncio.Task[None]] = {}

    def __len__(self) -> int:
        return len(self._flights)

    def refresh(self, services: Services, stale: Entry, chat: CacheRequest, policy: Policy,
                headers: Mapping[str, str], endpoint: Endpoint, target: Target, client_body: Any) -> bool:
        """Start refreshing `stale` unless a refresh of it is already under way; True when this call started it."""
        counter = services.metrics.stale_refreshes
        if stale.id in self._flights:
            counter.labels("joined").inc()
            return False
        counter.labels("started").inc()
        body = {k: v for k, v in client_body.items() if k not in ("stream", "stream_options")}
        task = asyncio.create_task(self._refresh(services, stale, chat, policy, dict(target.headers or headers),
                                                 endpoint, target, body), name=f"deja-refresh-{stale.id}")
        self._flights[stale.id] = task
        task.add_done_callback(lambda _: self._flights.pop(stale.id, None))
        return True

    async def _refresh(self, services: Services, stale: Entry, chat: CacheRequest, policy: Policy,
                       headers: dict[str, str], endpoint: Endpoint, target: Target, body: dict[str, Any]) -> None:
        counter = services.metrics.stale_refreshes
        try:
            upstream = await services.upstream.send("POST", target.path, "", headers, json.dumps(body).encode(),
                                                    decoded=True, base=target.base)
            try:
                content = await upstream.aread()
            finally:
                await upstream.aclose()
            completion = json.loads(content) if upstream.status_code == 200 else None
        except Exception as exc:  # a failed refresh leaves the stale entry to expire; the client was served
            log.warning("background refresh of entry %d failed: %s", stale.id, exc)
            counter.labels("failed").inc()
            return
        if completion is None or not endpoint.storable(completion) or skip_reason(
                completion, allow_truncated=policy.cache_truncated):
            counter.labels("failed").inc()
            return
        try:
            if not services.cache.submit(chat, policy, completion):
                counter.labels("failed").inc()
                return
            await services.cache.drain()
            if stale.exact_key != chat.exact_key:
                await services.cache.delete_entries([stale.id])
        except Exception:  # nobody awaits this task: say what went wrong here
            log.exception("storing the refresh of entry %d failed", stale.id)
            counter.labels("failed").inc()
            return
        counter.labels("replaced").inc()

    async def wait(self) -> None:
        """Until the refreshes under way have finished (their answers stored); at shutdown, before the store closes."""
        if self._flights:
            await asyncio.gather(*self._flights.values(), return_exceptions=True)
