"""What /healthz reports as degraded: the latest failure of each of Deja's own parts, until it is HEALTH_WINDOW old
or the same operation has succeeded since.

A failure is kept per part and operation: the store's writes (the write-back worker) and its reads (lookups) fail
apart — with the disk full, lookups go on succeeding while every write fails, so only a committed write clears a
write failure, and only a lookup that succeeded clears a read failure. Writes are seen through `writes`, a count of
committed write-backs read when asked (the cache keeps it), so nothing on the write path calls in here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

HEALTH_WINDOW = 60.0
Operation = Literal["read", "write"]


class RecentErrors:
    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.writes: Callable[[], int] = lambda: 0
        # (part, operation) -> (when, what, committed writes then)
        self._failed: dict[tuple[str, Operation], tuple[float, str, int]] = {}

    def failed(self, kind: str, what: str, operation: Operation = "read") -> None:
        self._failed[kind, operation] = (self.clock(), what, self.writes())

    def succeeded(self, kind: str, operation: Operation = "read") -> None:
        self._failed.pop((kind, operation), None)

    def reasons(self, kinds: tuple[str, ...]) -> list[str]:
        now, writes = self.clock(), self.writes()
        for key, (_, _, writes_then) in list(self._failed.items()):
            if key[1] == "write" and writes > writes_then:
                del self._failed[key]  # a write-back committed since: the store takes writes again
        return [f"{kind} failing ({what}; {int(now - at)} s ago)"
                for (kind, _), (at, what, _) in sorted(self._failed.items())
                if kind in kinds and now - at < HEALTH_WINDOW]
