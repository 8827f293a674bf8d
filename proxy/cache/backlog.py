"""What waits for the write-back worker, bounded: answers by count and by memory, hits merged per entry.

Answers are admitted against a budget (writeback_queue_size answers, writeback_queue_bytes bytes, each at most
max_answer_bytes); every answer turned away is counted by reason (deja_writeback_dropped_total). Hits never take
an answer's place: they are merged into one table that the worker flushes in a single transaction, at most one
flush token waits in the queue at a time, and a stream of hits is flushed once per HIT_FLUSH_SECONDS (drain()
flushes at once).
"""

from __future__ import annotations

import math
import time
from typing import Literal

DropReason = Literal["queue_full", "too_large"]
DROP_REASONS: tuple[DropReason, ...] = ("queue_full", "too_large")
# Distinct entries whose hits may wait for a flush; hits counts are statistics, so past this they are not counted.
MAX_PENDING_HITS = 100_000
# Hits are statistics (counts, LRU order): one flush per worker round made every exact hit at 32 clients pay for a
# commit's thread hops on the event loop (bench/RESULTS.md, "speed work"); one per second costs nothing.
HIT_FLUSH_SECONDS = 1.0


class AnswerBudget:
    def __init__(self, max_answers: int, max_bytes: int, max_answer_bytes: int) -> None:
        self.max_answers, self.max_bytes, self.max_answer_bytes = max_answers, max_bytes, max_answer_bytes
        self.answers = 0
        self.bytes = 0
        self.dropped: dict[DropReason, int] = dict.fromkeys(DROP_REASONS, 0)

    def admit(self, size: int) -> DropReason | None:
        """Take room for an answer of `size` bytes, or say why not (and count it)."""
        reason: DropReason | None = None
        if size > self.max_answer_bytes:
            reason = "too_large"
        elif self.answers >= self.max_answers or self.bytes + size > self.max_bytes:
            reason = "queue_full"
        if reason is not None:
            self.dropped[reason] += 1
            return reason
        self.answers += 1
        self.bytes += size
        return None

    def release(self, size: int) -> None:
        self.answers -= 1
        self.bytes -= size


class PendingHits:
    def __init__(self, interval: float = HIT_FLUSH_SECONDS) -> None:
        self._hits: dict[int, tuple[int, float]] = {}
        self.token_queued = False
        self.interval = interval
        self._flushed_at = -math.inf  # time.monotonic() of the last take

    def add(self, entry_id: int, at: float) -> bool:
        """Count a hit; True when the caller must queue a flush token (see `due`)."""
        n, _ = self._hits.get(entry_id, (0, 0.0))
        if n or len(self._hits) < MAX_PENDING_HITS:
            self._hits[entry_id] = (n + 1, at)
        return self.due()

    def due(self, *, now: bool = False) -> bool:
        """True (and a token counts as queued from then on) when hits wait, no token is queued yet, and the last
        flush is `interval` old; `now`: whatever the interval (drain)."""
        if self.token_queued or not self._hits:
            return False
        if not now and time.monotonic() - self._flushed_at < self.interval:
            return False
        self.token_queued = True
        return True

    @property
    def waiting(self) -> bool:
        """Hits are counted that no queued token will flush yet."""
        return bool(self._hits) and not self.token_queued

    def take(self) -> dict[int, tuple[int, float]]:
        taken, self._hits = self._hits, {}
        self.token_queued = False
        self._flushed_at = time.monotonic()
        return taken
