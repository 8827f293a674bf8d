"""X-Cache-Status: what the cache did with a request, on every answer Deja gives (the contract's values)."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """X-Cache-Status: what the cache did with the request (a hit's match type is X-Cache-Match)."""
    HIT = "HIT"  # answered from the cache, exactly or by meaning
    MISS = "MISS"  # looked up, not found: forwarded, and the answer stored
    BYPASS = "BYPASS"  # neither looked up nor stored (`Exchange.bypass_reason` says why)
    REFRESH = "REFRESH"  # Cache-Control: no-cache: not looked up, forwarded, the answer replaces the entry
    STALE = "STALE"  # answered from an entry past its TTL (stale-while-revalidate, max-stale)
    ERROR = "ERROR"  # Deja's own error response (app.py, access.py)
