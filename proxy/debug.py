"""X-Cache-Debug: on a MISS, the nearest stored candidate, its similarity and what kept it out.

Off by default. A request turns it on by sending its admin token (`X-Cache-Debug: <DEJA_ADMIN_TOKEN>`); the
`debug_header` setting turns it on for every MISS (only where every client may see other entries' ids).
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from .cache.lookup import Lookup

DEBUG_HEADER = "X-Cache-Debug"


def debug_wanted(headers: Mapping[str, str], always: bool, admin_token: str | None) -> bool:
    if always:
        return True
    presented = headers.get("x-cache-debug")
    return bool(presented and admin_token and hmac.compare_digest(presented.strip().encode(), admin_token.encode()))


def describe_miss(lookup: Lookup) -> str:
    """`nearest=<entry id>; similarity=<0..1>; reason=<guard rule | threshold | context | stale>`, or
    `nearest=none` when nothing in the partition could be compared."""
    near = lookup.nearest
    if near is None:
        return "nearest=none"
    return f"nearest={near.entry_id}; similarity={near.similarity:.4f}; reason={near.reason}"
