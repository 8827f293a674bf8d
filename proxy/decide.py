"""The cache decision for one exchange: bypass it, refresh it, or look it up (exact, then by meaning).

A lookup that fails (store or embedder down) bypasses the cache: the request is forwarded uncached. A hit past its
TTL but inside the policy's stale-while-revalidate window is served STALE while one background request refreshes
it (revalidate.py). Every decision is counted once here (deja_requests_total), a hit with its match type.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .cache.lookup import Hit
from .debug import debug_wanted, describe_miss
from .endpoints import Endpoint
from .exchange import E, Exchange
from .outgoing import refresh_call
from .status import Status
from .terms import is_stale
from .variety import variety_lookup, wants_variety

log = logging.getLogger("deja.decide")


def bypass_reason(exchange: Exchange[Any]) -> str | None:
    """Why this request must neither be looked up nor stored, or None."""
    if exchange.policy.mode == "off":
        return "policy off"
    if exchange.control.no_store:
        return "no-store"
    reason = exchange.endpoint.bypass(exchange.body)
    if reason is not None:
        return reason
    if not exchange.terms.cacheable:
        return "time-sensitive"
    return None


def count_terms(exchange: Exchange[Any]) -> None:
    if exchange.terms.volatile:
        exchange.services.metrics.time_sensitive.labels(exchange.terms.volatile).inc()


async def decide(exchange: Exchange[E], find: Callable[[Exchange[E]], Awaitable[None]]) -> None:
    """Set the exchange's status, and its hit when the cache answers. `find`: the endpoint's look-up (chat-like:
    `look_up` below; embeddings: one per item), which sets the hit, or bypasses through `lookup_failed`."""
    count_terms(exchange)
    reason = bypass_reason(exchange)
    if reason is not None:
        exchange.bypass(reason)
        log.debug("%s bypasses the cache: %s", exchange.request.url.path, reason)
    elif exchange.control.no_cache:
        exchange.status = Status.REFRESH
    else:
        await find(exchange)
        if exchange.hit is not None:
            return  # counted with its match type
    exchange.services.metrics.observe_request(exchange.chat.model, exchange.status)


def lookup_failed(exchange: Exchange[Any], exc: Exception) -> None:
    """The store or the embedder failed: the request is forwarded uncached (called in the `except` block)."""
    log.exception("cache lookup failed; forwarding uncached")
    exchange.services.metrics.count_error("store", exc)  # skipped when the embedder counted it already
    exchange.bypass("lookup failed")


async def look_up(exchange: Exchange[Endpoint]) -> None:
    """One canonical request: exact key, then by meaning (cache/lookup.py); a stale hit starts a refresh."""
    services, cache, terms = exchange.services, exchange.services.cache, exchange.terms
    started = time.perf_counter()
    try:
        exchange.chat, found = await variety_lookup(cache, exchange.chat, terms, services.metrics)
        lookup = found or await cache.lookup(exchange.chat, terms.policy, terms.max_age, terms.max_stale)
    except Exception as exc:
        lookup_failed(exchange, exc)
        return
    services.metrics.observe_lookup(time.perf_counter() - started)
    if lookup.hit is not None:
        take_hit(exchange, lookup.hit)
        return
    exchange.vector = lookup.vector
    if lookup.skipped is not None:
        services.metrics.semantic_skipped.labels(lookup.skipped).inc()
        exchange.skipped = lookup.skipped
    if debug_wanted(exchange.request.headers, services.settings.debug_header, services.admin_token):
        exchange.debug = describe_miss(lookup)


def decide_in_memory(exchange: Exchange[Endpoint]) -> bool:
    """What `decide` would decide, when that is a fresh exact hit on a hot record for a request that asks for
    nothing else (the shortcut of shortcut.py): decided without awaiting, and then counted as `decide` counts it.
    False: nothing was done or counted, and `decide` decides as usual."""
    if (bypass_reason(exchange) is not None or exchange.control.no_cache
            or wants_variety(exchange.chat, exchange.policy)):
        return False
    started = time.perf_counter()
    hit = exchange.services.cache.fresh_in_memory(exchange.chat, exchange.terms.max_age)
    if hit is None:
        return False
    count_terms(exchange)
    exchange.services.metrics.observe_lookup(time.perf_counter() - started)
    take_hit(exchange, hit)
    return True


def take_hit(exchange: Exchange[Endpoint], hit: Hit) -> None:
    """Serve `hit`: counted, stale ones (max-stale, stale-while-revalidate) refreshed in the background."""
    services, cache = exchange.services, exchange.services.cache
    cache.record_hit(hit.record.id)
    stale = is_stale(hit.record, cache.clock())
    if stale and exchange.policy.stale_while_revalidate:
        services.revalidator.refresh(hit.record, refresh_call(exchange.request, exchange.target, exchange.client_body),
                                     exchange.chat, exchange.policy, exchange.endpoint.storable)
    exchange.status = Status.STALE if stale else Status.HIT
    exchange.hit = hit
    services.metrics.observe_hit(exchange.chat.model, hit, exchange.chat.question, exchange.status)
