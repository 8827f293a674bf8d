"""What the guard adds to a semantic hit: `find_conflict` per candidate pair, its caches cold (features and diffs
computed for both texts), on the bench workload's paraphrases and on one-word swaps of them. Each pair is timed
REPEATS times and its fastest run kept, so a shared machine's preemptions do not count as guard time.

    python -m bench.guard_cost [N]   (N pairs of each kind, default 400; prints a markdown table)
"""

from __future__ import annotations

import statistics
import sys
import time

from proxy.guard import features, find_conflict
from proxy.guard.features import _numbers, edits, rewrite, tokens

from .workload import workload

# A similarity above rules.SWAP_SIMILARITY takes the longest path through the substitution rule.
NEAR_IDENTICAL = 0.95
REPEATS = 3


def timed_us(pairs: list[tuple[str, str]], similarity: float | None) -> list[float]:
    out = []
    for cached, incoming in pairs:
        runs = []
        for _ in range(REPEATS):
            for memo in (features, tokens, edits, rewrite, _numbers):
                memo.cache_clear()
            started = time.perf_counter()
            find_conflict(cached, incoming, similarity)
            runs.append((time.perf_counter() - started) * 1e6)
        out.append(min(runs))
    return out


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 400
    rows = workload(n)
    paraphrases = [(stored, asked) for stored, asked, _ in rows]
    swaps = [(stored, stored.replace("How do I", "How do I quickly", 1).replace(" in ", " on ", 1))
             for stored, _, _ in rows]
    print("| pairs | n | p50 µs | p99 µs |")
    print("|---|---|---|---|")
    for name, pairs, similarity in (("paraphrase (workload)", paraphrases, None),
                                    ("paraphrase, similarity given", paraphrases, NEAR_IDENTICAL),
                                    ("one-word swap, similarity given", swaps, NEAR_IDENTICAL)):
        samples = timed_us(pairs, similarity)
        q = statistics.quantiles(samples, n=100)
        print(f"| {name} | {len(samples)} | {statistics.median(samples):.1f} | {q[98]:.1f} |")


if __name__ == "__main__":
    main()
