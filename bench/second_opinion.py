"""What the second opinion (multilingual-e5 in MiniLM's grey zone, proxy/cache/lookup.py) costs a lookup, in
process: SemanticCache over SQLite with both real models, the bench workload's questions stored, each lookup timed
end to end (embedding, search, guard, and e5 when it runs). Three kinds, interleaved so that load hits them alike:
  confident: the workload's paraphrase at the default policy (one candidate clears the threshold: no e5);
  grey:      a question MiniLM scores in the grey band against a stored one (e5 embeds it and the candidate);
  miss:      a question nothing stored is near (no e5).

    python -m bench.second_opinion [N]   (N lookups of each kind, default 200; prints a markdown table)
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from proxy.cache.semantic import SemanticCache
from proxy.canonical import Owner, build_chat_request, tenant_of, validate_body
from proxy.embeddings import load_embedder
from proxy.multilingual import E5Embedder
from proxy.policies import Policy
from proxy.render import text_completion
from proxy.settings import EmbeddingSettings
from proxy.stores.sqlite import SqliteStore

from .workload import workload

POLICY = Policy()
# Stored question, then a rewording MiniLM scores 0.57-0.58 (grey band) and e5 >= 0.92.
GREY = [("How do I contact support?", "How can I get in touch with your help team?"),
        ("How do I get a refund?", "Can I have my money back?")]
MISSES = ["What is the boiling point of mercury?", "Who painted the ceiling of the Sistine Chapel?"]


def request(text: str):  # type: ignore[no-untyped-def]
    body = validate_body({"model": "m", "messages": [{"role": "user", "content": text}]})
    return build_chat_request(body, Owner(tenant_of("Bearer bench")))


async def measure(n: int, models: Path) -> dict[str, list[float]]:
    minilm = load_embedder(EmbeddingSettings(cache_dir=str(models)), models)
    e5 = E5Embedder()
    rows = workload(200)
    with tempfile.TemporaryDirectory(prefix="deja-second-") as tmp:
        store = SqliteStore(Path(tmp), minilm.name, minilm.dim, [(e5.name, e5.dim)])
        await store.open()
        cache = SemanticCache(store, minilm, save_interval=3600, extra_embedders=[e5])
        await cache.start()
        try:
            for text in [q for q, _, _ in rows] + [stored for stored, _ in GREY]:
                cache.submit(request(text), POLICY, text_completion(text, "m", answer_id="a", created=0))
            await cache.drain()
            kinds = {"confident": [p for _, p, _ in rows], "grey": [a for _, a in GREY], "miss": MISSES}
            times: dict[str, list[float]] = {k: [] for k in kinds}
            expect = {"confident": True, "grey": True, "miss": False}
            for i in range(n):
                for kind, questions in kinds.items():
                    started = time.perf_counter()
                    hit = (await cache.lookup(request(questions[i % len(questions)]), POLICY, None)).hit
                    times[kind].append((time.perf_counter() - started) * 1e3)
                    if (hit is not None) != expect[kind]:
                        raise SystemExit(f"{kind}: {questions[i % len(questions)]!r} hit={hit is not None}")
            return times
        finally:
            await cache.close()
            await store.close()


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    models = Path(os.environ.get("DEJA_MODELS", "/tmp/deja-guard-models"))
    times = asyncio.run(measure(n, models))
    load = os.getloadavg()
    print(f"{n} lookups of each kind, in process, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}:")
    print()
    print("| lookup | p50 ms | p90 ms | what runs |")
    print("|---|---|---|---|")
    what = {"confident": "MiniLM, search, guard", "grey": "MiniLM, search, guard, e5 on 2 texts",
            "miss": "MiniLM, search"}
    for kind, values in times.items():
        values.sort()
        print(f"| {kind} | {statistics.median(values):.2f} | {values[int(0.9 * (len(values) - 1))]:.2f} | "
              f"{what[kind]} |")


if __name__ == "__main__":
    main()
