"""GPTCache semantic-hit latency in-process: put N questions, then time get() of a paraphrase of each."""

import argparse
import atexit
import json
import shutil
import tempfile
import time
from pathlib import Path

from common import init_gptcache, summarize, workload
from gptcache import cache
from gptcache.adapter.api import get, put
from gptcache.report import Report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=200, help="questions to put (and paraphrases to get)")
    parser.add_argument("--threshold", type=float, default=0.8, help="GPTCache similarity_threshold")
    args = parser.parse_args()

    data_dir = tempfile.mkdtemp(prefix="gptcache-bench-")
    # Registered before GPTCache's own atexit close (which writes faiss.index), so it runs after it.
    atexit.register(shutil.rmtree, data_dir, True)
    init_gptcache(Path(data_dir), args.threshold)
    items = workload(args.n)
    for question, _, answer in items:
        put(question, answer)
    cache.report = Report()  # GPTCache's per-stage timers, counting the gets only
    latencies, hits, correct = [], 0, 0
    for _, paraphrase, answer in items:
        start = time.perf_counter()
        result = get(paraphrase)
        latencies.append((time.perf_counter() - start) * 1000)
        hits += result is not None
        correct += result == answer
    stages = {
        name: round(op.total_time / op.count * 1000, 3)
        for name, op in (
            ("embedding", cache.report.op_embedding),
            ("search", cache.report.op_search),
            ("get_data", cache.report.op_data),
            ("evaluation", cache.report.op_evaluation),
        )
        if op.count
    }
    result = {"mode": "in-process", "threshold": args.threshold, **summarize(latencies, hits, correct)}
    print(json.dumps({**result, "stage_mean_ms": stages}))


if __name__ == "__main__":
    main()
