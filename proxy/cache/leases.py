"""Single-flight across replicas: concurrent identical misses on processes sharing one store make one upstream call.

The process that leads a miss locally (flights.py) takes a lease on the exact key in the store; another process
holding it means waiting for the entry it stores. The lease is released when the local flight is over, or runs out.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from ..canonical import CacheRequest
from ..stores.base import Store
from .lookup import Hit, Matcher

log = logging.getLogger("deja.cache")

# How often a waiting replica looks for the lease holder's entry.
FLIGHT_POLL_SECONDS = 0.05


class FlightLeases:
    def __init__(self, store: Store, matcher: Matcher, lease: float) -> None:
        self.store = store
        self.matcher = matcher
        self.lease = lease
        # Keys whose lease this process holds, and the tasks releasing them.
        self._held: set[str] = set()
        self._releases: set[asyncio.Task[None]] = set()

    async def wait(self, request: CacheRequest, max_age: int | None, clock: Callable[[], float]) -> Hit | None:
        """None when this process should call the upstream (it took the lease, or the other replica's lease was
        released or ran out without an entry); else the hit the lease holder stored meanwhile."""
        if not self.store.shared:
            return None
        key = request.exact_key
        try:
            while not await self.store.claim_flight(key, self.lease):
                await asyncio.sleep(FLIGHT_POLL_SECONDS)
                entry = await self.store.get_exact(key)
                if entry is not None and entry.fresh(clock(), max_age) and self.matcher.own(request, entry):
                    return Hit(entry, "exact")
        except Exception as exc:  # the store is unreachable: forward, as every lookup does then
            log.warning("cross-replica single-flight unavailable (%s); forwarding", exc)
            return None
        self._held.add(key)
        return None

    def release(self, key: str) -> None:
        """The local flight for `key` is over: let the other replicas call the upstream again."""
        if key in self._held:
            self._held.discard(key)
            task = asyncio.get_running_loop().create_task(self._release(key))
            self._releases.add(task)
            task.add_done_callback(self._releases.discard)

    async def _release(self, key: str) -> None:
        try:
            await self.store.release_flight(key)
        except Exception as exc:  # the lease runs out by itself
            log.warning("could not release a single-flight lease (%s)", exc)

    async def close(self) -> None:
        await asyncio.gather(*self._releases, return_exceptions=True)
