"""What one request may be served and what its answer is stored with: the policy, made stricter per request.

- `X-Cache-Threshold: F` raises the similarity bar for this request (a value below the policy's is ignored).
- `Cache-Control: max-age=N` caps the age of what may answer; `max-stale=N` accepts an entry up to N seconds past
  its TTL (without it, the policy's `stale_while_revalidate` window applies).
- A time-sensitive question (proxy/freshness.py) is stored with the policy's `volatile_ttl` and is only answered
  by entries younger than that; `volatile_ttl: 0` leaves it uncached. It is never served stale unless the request
  asks with max-stale.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass

from .canonical import CacheControl, CacheRequest
from .errors import BadRequestError
from .freshness import time_sensitivity
from .policies import Policy
from .stores.base import Entry

THRESHOLD_HEADER = "x-cache-threshold"
# `max-stale` without a value: any staleness the store still keeps.
ANY_STALENESS = 10 * 365 * 24 * 3600


@dataclass(frozen=True)
class Terms:
    policy: Policy  # with this request's thresholds and the TTL a stored answer gets
    max_age: int | None
    max_stale: int
    volatile: str | None  # why the question is time-sensitive, or None
    cacheable: bool  # False: a time-sensitive question under volatile_ttl 0


def parse_threshold(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        threshold = float(value)
    except ValueError:
        threshold = math.nan
    if not 0.0 < threshold <= 1.0:
        raise BadRequestError(f"X-Cache-Threshold must be a number in (0, 1], got {value!r}",
                              code="invalid_cache_threshold")
    return threshold


def parse_max_stale(value: str | None) -> int | None:
    """RFC 9111 `max-stale[=N]`; a malformed value is ignored, as HTTP caches do."""
    for directive in (value or "").lower().split(","):
        name, eq, arg = directive.strip().partition("=")
        if name == "max-stale":
            arg = arg.strip().strip('"')
            if not eq:
                return ANY_STALENESS
            if arg.isdigit():
                return int(arg)
    return None


def request_terms(chat: CacheRequest, policy: Policy, headers: Mapping[str, str], control: CacheControl) -> Terms:
    threshold = parse_threshold(headers.get(THRESHOLD_HEADER))
    if threshold is not None:
        policy = dataclasses.replace(policy, threshold=max(policy.threshold, threshold),
                                     long_threshold=max(policy.long_threshold, threshold),
                                     multilingual_threshold=max(policy.multilingual_threshold, threshold),
                                     second_opinion_from=max(policy.second_opinion_from, threshold),
                                     long_second_opinion_from=max(policy.long_second_opinion_from, threshold))
    max_age = control.max_age
    requested_stale = parse_max_stale(headers.get("cache-control"))
    max_stale = policy.stale_while_revalidate if requested_stale is None else requested_stale
    volatile = time_sensitivity(chat.question) if chat.question else None
    if volatile is not None and policy.volatile_ttl:
        policy = dataclasses.replace(policy, ttl=min(policy.ttl or policy.volatile_ttl, policy.volatile_ttl))
        max_age = policy.ttl if max_age is None else min(max_age, policy.ttl)
        max_stale = requested_stale or 0
    return Terms(policy, max_age, max_stale, volatile, volatile is None or policy.volatile_ttl > 0)


def usable(record: Entry, now: float, max_age: int | None, max_stale: int) -> bool:
    """Young enough for the request's max-age, and not past its TTL by more than max_stale seconds."""
    if record.expires_at is not None and now >= record.expires_at + max_stale:
        return False
    return max_age is None or now - record.created_at <= max_age


def is_stale(record: Entry, now: float) -> bool:
    return record.expires_at is not None and now >= record.expires_at


def terms_headers(terms: Terms, status: str, record: Entry | None, now: float) -> dict[str, str]:
    """X-Cache-TTL: on a MISS/REFRESH the TTL the stored answer gets, on a hit what remains (0 once stale); absent
    for entries kept until evicted (ttl 0). X-Cache-Volatile: why the question counts as time-sensitive."""
    headers = {"X-Cache-Volatile": terms.volatile} if terms.volatile else {}
    if record is not None:
        if record.expires_at is not None:
            headers["X-Cache-TTL"] = str(max(0, math.ceil(record.expires_at - now)))
    elif status in ("MISS", "REFRESH") and terms.policy.ttl:
        headers["X-Cache-TTL"] = str(terms.policy.ttl)
    return headers
