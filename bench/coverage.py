"""What the language checks add to an English semantic hit: the coverage check that picks the embedder
(`EmbedderRouter.lane_for`) and the guard's is-it-English test, per question, with their caches cold.

    python -m bench.coverage [N]   (N bench workload paraphrases, default 400; prints a markdown table)
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from proxy.embedding_router import EmbedderRouter
from proxy.embeddings import load_embedder
from proxy.guard_scripts import is_foreign
from proxy.multilingual import E5Embedder, latin_language, scripts_in
from proxy.settings import EmbeddingSettings

from .workload import workload

FOREIGN = ["如何重置我的密码？", "비밀번호를 재설정하려면 어떻게 하나요?", "Wie setze ich mein Passwort zurück?",
           "كيف أعيد تعيين كلمة المرور؟", "Как сбросить пароль?"]


def timed_us(fn, texts: list[str]) -> list[float]:
    out = []
    for text in texts:
        for cached in (scripts_in, latin_language):
            cached.cache_clear()
        started = time.perf_counter()
        fn(text)
        out.append((time.perf_counter() - started) * 1e6)
    return out


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 400
    english = [asked for _, asked, _ in workload(n)]
    with tempfile.TemporaryDirectory() as tmp:
        minilm = load_embedder(EmbeddingSettings(), Path(tmp))
        router = EmbedderRouter([minilm, E5Embedder()], max_batch=1, window=0, expected=lambda: 1)
        rows = [("coverage check (lane_for), English", timed_us(router.lane_for, english)),
                ("guard's is_foreign, English", timed_us(is_foreign, english)),
                ("coverage check (lane_for), other languages", timed_us(router.lane_for, FOREIGN * (n // 5)))]
        router.close()
    print("| step | questions | p50 µs | p99 µs |")
    print("|---|---|---|---|")
    for name, samples in rows:
        q = statistics.quantiles(samples, n=100)
        print(f"| {name} | {len(samples)} | {statistics.median(samples):.1f} | {q[98]:.1f} |")


if __name__ == "__main__":
    main()
