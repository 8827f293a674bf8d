"""What comparing two conversations costs one candidate (proxy/conversation.py `turns_rejection`), with the real
model: the embeddings it asks for and the comparison itself (alignment, facts, guard on counterparts), for
conversations of 2 to 40 earlier turns. Built from the bench workload's questions and their rewordings:

- aligned: the assistant turns identical, the user turns reworded (only those are embedded);
- told twice: both roles reworded (every distinct turn is embedded);
- changed detail: told twice with one number changed (refused after the same embeddings).

Each run starts with an empty turn-vector cache (the first comparison: at most MAX_NEW_EMBEDDINGS new texts,
else refused as context-too-long); "repeated" is the same comparison again, its turns' vectors cached.

    python -m bench.conversation_cost [REPEATS]   (default 5; fastest run per case kept; prints a markdown table)
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import numpy as np

from proxy.conversation import TURN_VECTORS, turns_rejection
from proxy.embeddings import load_embedder
from proxy.guard import features
from proxy.guard.features import edits, tokens
from proxy.settings import EmbeddingSettings

from .workload import workload

MODELS = Path("/tmp/deja-guard-models")
LENGTHS = (2, 6, 12, 40)


def conversations(turns: int) -> dict[str, tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]]:
    rows = workload(turns // 2)
    cached, aligned, told, changed = [], [], [], []
    for n, (question, reworded, _) in enumerate(rows):
        task = question.removeprefix("How do I ").rstrip("?")
        answer = f"You can {task} from the settings page; it takes about {n + 2} minutes."
        answer_reworded = f"From the settings page you can {task} in roughly {n + 2} minutes."
        cached += [("user", question), ("assistant", answer)]
        aligned += [("user", reworded), ("assistant", answer)]
        told += [("user", reworded), ("assistant", answer_reworded)]
        changed += [("user", reworded), ("assistant", answer_reworded.replace(f"{n + 2} minutes", f"{n + 9} minutes")
                                         if n == len(rows) - 1 else answer_reworded)]
    return {"aligned": (tuple(cached), tuple(aligned)), "told twice": (tuple(cached), tuple(told)),
            "changed detail": (tuple(cached), tuple(changed))}


async def timed(cached, incoming, embedder, repeats: int) -> tuple[float, float, int, str | None, float]:
    """Fastest total and embedding milliseconds over `repeats` runs, texts embedded, the decision, and the
    fastest total of the same comparison repeated."""
    best_total, best_embed, embedded, reason, best_again = float("inf"), 0.0, 0, None, float("inf")
    for _ in range(repeats):
        for memo in (features, tokens, edits):
            memo.cache_clear()
        TURN_VECTORS.clear()
        spent: list[float] = [0.0, 0]

        async def embed(texts: list[str], spent: list[float] = spent) -> np.ndarray:
            started = time.perf_counter()
            vectors = np.asarray(embedder.embed(texts))
            spent[0] += time.perf_counter() - started
            spent[1] += len(texts)
            return vectors

        started = time.perf_counter()
        reason = await turns_rejection(cached, incoming, embed)
        total = time.perf_counter() - started
        if total < best_total:
            best_total, best_embed, embedded = total, spent[0], int(spent[1])
        started = time.perf_counter()
        await turns_rejection(cached, incoming, embed)
        best_again = min(best_again, time.perf_counter() - started)
    return best_total * 1e3, best_embed * 1e3, embedded, reason, best_again * 1e3


async def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    embedder = load_embedder(EmbeddingSettings(cache_dir=str(MODELS)), MODELS)
    print("| earlier turns | case | decision | texts embedded | total ms | of which embedding ms | rest ms | "
          "repeated ms |")
    print("|---|---|---|---|---|---|---|---|")
    for turns in LENGTHS:
        for case, (cached, incoming) in conversations(turns).items():
            total, embedding, embedded, reason, again = await timed(cached, incoming, embedder, repeats)
            print(f"| {turns} | {case} | {reason or 'agree'} | {embedded} | {total:.1f} | {embedding:.1f} | "
                  f"{total - embedding:.1f} | {again:.1f} |")


if __name__ == "__main__":
    asyncio.run(main())
