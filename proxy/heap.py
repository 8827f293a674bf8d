"""Handing freed memory back to the operating system.

glibc keeps the pages of freed allocations for reuse, and a server's churn (request bodies, answers, vectors,
SQLite pages, from several threads) leaves its heaps full of free chunks between live ones that it rarely returns
by itself. In the soak (bench/soak.py) live memory stayed flat while RSS rose by about 30 MB in the first
minutes and a few MB a minute after; one malloc_trim(0) then gave back 120 MB (bench/RESULTS.md, "Soak").
Where the C library has no malloc_trim (musl, macOS) there is nothing to do.
"""

from __future__ import annotations

import ctypes
import logging
import time
from collections.abc import Callable

log = logging.getLogger("deja.heap")


def _find_malloc_trim() -> Callable[[int], int] | None:
    try:
        trim = ctypes.CDLL(None).malloc_trim  # the process's own symbols: the C library's included
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_MALLOC_TRIM = _find_malloc_trim()


def release_free_memory() -> bool:
    """Return the free pages of every malloc arena to the OS; False where the C library cannot."""
    if _MALLOC_TRIM is None:
        return False
    started = time.perf_counter()
    _MALLOC_TRIM(0)
    log.debug("malloc_trim took %.1f ms", (time.perf_counter() - started) * 1000)
    return True
