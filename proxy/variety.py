"""Variety on request: up to `variety` answers per question for requests that ask for randomness.

A request with an explicit `temperature` > 0 or `n` > 1, under a policy with `variety: N` (N > 1), has N slots:
slot 0 is the usual exact key, slot i another key derived from it, so each slot is an ordinary entry (stored,
expired and evicted like any other). While the bucket holds fewer than N fresh answers, a share `variety_fill` of
those requests skip the cache and fill the next free slot; the others (and every request once it is full) get a
slot picked at random. An empty bucket is looked up as usual (a reworded question may still hit).

Cost: N upstream calls per question instead of one, and N entries, whatever variety_fill is; variety_fill sets
how soon the bucket is full (after about 1 + (N - 1) / variety_fill requests), and until then the hit rate of a
repeated question is 1 - variety_fill.
"""

from __future__ import annotations

import dataclasses
import random
from numbers import Real
from typing import TYPE_CHECKING

from .cache.lookup import Hit, Lookup
from .cache.semantic import SemanticCache
from .canonical import CacheRequest, sha256_hex
from .policies import Policy
from .terms import Terms, usable

if TYPE_CHECKING:
    from .metrics import Metrics


def wants_variety(chat: CacheRequest, policy: Policy) -> bool:
    """An explicit temperature > 0 or n > 1: the caller asked for different answers."""
    if policy.variety <= 1 or policy.mode == "off":
        return False  # every exact hit asks: the policy answers first, without the ABC check on Real
    temperature, n = chat.body.get("temperature"), chat.body.get("n")
    return (isinstance(temperature, Real) and not isinstance(temperature, bool) and float(temperature) > 0
            or isinstance(n, int) and not isinstance(n, bool) and n > 1)


def slot_key(exact_key: str, slot: int) -> str:
    return exact_key if slot == 0 else sha256_hex("variety", exact_key, str(slot))


async def variety_lookup(cache: SemanticCache, chat: CacheRequest, terms: Terms, metrics: Metrics | None = None,
                         rng: random.Random | None = None) -> tuple[CacheRequest, Lookup | None]:
    """(the request to serve or forward, its lookup). A None lookup: look the request up as usual. A Lookup
    without a hit: forward it uncached, and its answer fills the slot its exact key names."""
    policy = terms.policy
    if not wants_variety(chat, policy):
        return chat, None
    now = cache.clock()
    slots = [await cache.record(slot_key(chat.exact_key, i)) for i in range(policy.variety)]
    fresh = [r for r in slots if r is not None and usable(r, now, terms.max_age, terms.max_stale)]
    if not fresh:
        return chat, None
    pick = rng or random
    taken = {r.exact_key for r in fresh}
    free = next((i for i in range(policy.variety) if slot_key(chat.exact_key, i) not in taken), None)
    if free is not None and pick.random() < policy.variety_fill:
        if metrics is not None:
            metrics.variety.labels("filled").inc()
        return dataclasses.replace(chat, exact_key=slot_key(chat.exact_key, free)), Lookup(None)
    if metrics is not None:
        metrics.variety.labels("served").inc()
    return chat, Lookup(Hit(pick.choice(fresh), "exact"))
