"""One request to a cached endpoint, carried from parsing to response.

An Exchange holds what was asked (the client's body, its canonical form: partition and exact key), the terms it is
served under (policy, Cache-Control), what the cache decided (a Status, the hit, or why it was bypassed) and how
long the upstream took. Each step fills in its part, in this order (flow.py runs them):

  parse (here) -> decide.py (bypass, refresh, or look up) -> serve.py (a hit, rendered by render.py)
                                                          -> coalesce.py -> forward.py (a miss; then write-back)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np
from starlette.requests import Request

from . import render
from .cache.flights import Flight
from .cache.lookup import Hit
from .canonical import CacheControl, CacheRequest, parse_cache_control
from .endpoints import Endpoint, Keying, Target
from .errors import DejaError
from .incoming import read_body, services_of
from .policies import Policy
from .request_memo import ParsedRequest, parse_request
from .services import Services
from .status import Status
from .terms import Terms, terms_headers

E = TypeVar("E", bound=Keying)


@dataclass(slots=True, eq=False)
class Exchange(Generic[E]):
    request: Request
    services: Services
    endpoint: E  # an Endpoint; embeddings (one entry per input item, embeddings_api.py) bring their Keying only
    target: Target
    raw: bytes  # the body as the client sent it: forwarded unchanged unless usage must be asked for
    client_body: Any
    body: dict[str, Any]  # validated, as the cache keys it (Target.keyed)
    control: CacheControl
    chat: CacheRequest  # the canonical request: partition, context, question, exact key
    terms: Terms  # the policy, made stricter by this request's headers
    status: Status = Status.MISS
    bypass_reason: str | None = None  # "policy off", "no-store", "lookup failed", an endpoint's reason…
    hit: Hit | None = None
    vector: np.ndarray | None = None  # the question's embedding made by the lookup, reused at write-back
    skipped: str | None = None  # why no semantic lookup ran although the policy wanted one
    debug: str | None = None  # X-Cache-Debug's value on a miss, when asked for
    flight: Flight | None = None  # set when this exchange leads a miss that others wait for
    upstream_seconds: float = 0.0

    @property
    def policy(self) -> Policy:
        return self.terms.policy

    @property
    def partition(self) -> str:
        return self.chat.partition

    @property
    def key(self) -> str:
        return self.chat.exact_key

    @property
    def stores(self) -> bool:
        """Whether the upstream's answer is written back."""
        return self.status is Status.MISS or self.status is Status.REFRESH

    def bypass(self, reason: str) -> None:
        self.status = Status.BYPASS
        self.bypass_reason = reason

    def cache_headers(self, now: float) -> dict[str, str]:
        """X-Cache-Status and what goes with it: the hit's match, age, key and similarity, and the TTL."""
        record = self.hit.record if self.hit is not None else None
        return {**render.cache_headers(self.status, self.hit, now),
                **terms_headers(self.terms, self.status, record, now)}


async def parse(request: Request, endpoint: E, target: Target) -> Exchange[E]:
    """The request's body, checked and put in canonical form, with the terms it is served under."""
    services = services_of(request)
    raw = await read_body(request, services.settings.max_body_bytes)
    parsed = parse_request(services, raw, request.headers, endpoint, target)
    return exchange_for(request, services, endpoint, target, raw, parsed)


def remembered(request: Request, services: Services, endpoint: Endpoint, target: Target,
               raw: bytes) -> Exchange[Endpoint] | None:
    """The exchange `parse` would build, when the request memo knows the body; None (nothing parsed, nothing
    raised) otherwise: the request then takes the usual path, which raises any error itself."""
    parsed = services.request_memo.known(endpoint, target, raw, request.headers)
    if parsed is None:
        return None
    try:
        return exchange_for(request, services, endpoint, target, raw, parsed)
    except DejaError:
        return None


def exchange_for(request: Request, services: Services, endpoint: E, target: Target, raw: bytes,
                 parsed: ParsedRequest) -> Exchange[E]:
    policy = services.policies.policy_for(parsed.body["model"])
    control = parse_cache_control(request.headers.get("cache-control"))
    terms = endpoint.terms(parsed.chat, policy, request.headers, control)
    return Exchange(request, services, endpoint, target, raw, parsed.client_body, parsed.body, control, parsed.chat,
                    terms)
