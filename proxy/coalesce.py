"""Single-flight for a miss: of concurrent identical misses, the first (the leader) asks the upstream and the
others (followers) wait for its outcome, each served in its own shape (cache/flights.py says what followers receive).
Across replicas sharing a store, the leader first waits for another process that already asks (cache/leases.py).
"""

from __future__ import annotations

from starlette.responses import Response

from .cache.flights import Answer, Failure
from .endpoints import Endpoint
from .exchange import Exchange
from .serve import serve_coalesced


async def coalesce(exchange: Exchange[Endpoint]) -> Response | None:
    """A follower's response; None when this exchange must forward: it leads (`exchange.flight` is then set, to be
    landed by forward.py), or its leader ended without an answer."""
    flights = exchange.services.cache.flights
    flight, leads = flights.join(exchange.key)
    if not leads:
        outcome = await flight.wait()
        if isinstance(outcome, Failure):
            raise outcome.raised()
        if outcome is None:
            return None  # the leader got no answer: ask the upstream ourselves
        flights.coalesced += 1
        return serve_coalesced(exchange, outcome)
    shared = await exchange.services.cache.wait_for_other_replica(exchange.chat, exchange.control.max_age)
    if shared is not None:
        answer = Answer(shared.record.response)  # another replica asked the upstream: a coalesced miss
        flight.land(answer)
        flights.coalesced += 1
        return serve_coalesced(exchange, answer)
    exchange.flight = flight
    return None

