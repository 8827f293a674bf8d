"""python -m bench: Deja's speed and scale benchmark; writes bench/RESULTS.md (see bench/README.md)."""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shlex
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from . import procs, report
from .load import fixed_bodies_script, unique_misses_script, wrk
from .workload import API_KEY, chat_body, workload, write_policies

QUESTIONS = 200
BASELINE_REF = "26ab211"  # the spine: one embedding per request on a single-thread executor, no hot records


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="1 run of 2 s per point, 10k size only, no GPTCache")
    p.add_argument("--runs", type=int, default=3, help="repetitions of the latency/throughput block")
    p.add_argument("--seconds", type=float, default=5.0, help="duration of each wrk point")
    p.add_argument("--sizes", default="10000,100000,1000000", help="entry counts for cold start / RSS / latency")
    p.add_argument("--work-dir", type=Path, default=Path("/tmp/deja-bench"), help="data dirs (sizes are kept)")
    p.add_argument("--gptcache-dir", type=Path, default=procs.REPO / "bench" / "gptcache")
    p.add_argument("--no-gptcache", action="store_true")
    p.add_argument("--no-stores", action="store_true", help="skip the embedded-vs-PostgreSQL comparison")
    p.add_argument("--baseline", default=BASELINE_REF, help="git ref measured as 'before' ('' to skip)")
    p.add_argument("--out", type=Path, default=procs.REPO / "bench" / "RESULTS.md")
    args = p.parse_args()
    if args.quick:
        args.runs, args.seconds, args.sizes, args.no_gptcache = 1, 2.0, "10000", True
    return args


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work = args.work_dir
        self.models = self.work / "models"
        self.policies = self.work / "policies"
        write_policies(self.policies)
        self.items = workload(QUESTIONS)
        self.exact = [chat_body(q) for q, _, _ in self.items]
        self.semantic = [chat_body(p) for _, p, _ in self.items]
        self.upstream_port = procs.free_port()
        self.upstream_url = f"http://127.0.0.1:{self.upstream_port}/v1"

    def config(self, name: str, **embedding: object) -> Path:
        lines = [f"embedding:\n  cache_dir: {self.models}"] + [f"  {k}: {v}" for k, v in embedding.items()]
        path = self.work / f"{name}.yaml"
        path.write_text("\n".join(lines) + "\nlog_level: warning\n")
        return path

    def serve(self, data_dir: Path, config: Path, pythonpath: Path | None = None) -> tuple[procs.Proc, str]:
        port = procs.free_port()
        proc = procs.deja_serve(port, self.upstream_url, data_dir, self.policies, config, pythonpath)
        return proc, f"http://127.0.0.1:{port}/v1/chat/completions"

    def point(self, url: str, bodies: list[str] | None, connections: int) -> dict:
        # A fresh seed per run: repeating the previous run's questions would turn misses into exact hits.
        script = fixed_bodies_script(bodies) if bodies is not None else unique_misses_script(
            secrets.randbelow(1 << 30))
        run = wrk(url, script, connections=connections, seconds=self.args.seconds)
        return {"p50_ms": run.p50_ms, "p99_ms": run.p99_ms, "rps": run.rps, "errors": run.errors,
                "statuses": run.statuses}

    def warm(self, url: str, *, floor: bool = True) -> None:
        """Store the workload's questions, then wait until a paraphrase hits. no-cache: at threshold 0.8 some
        questions would otherwise be answered by a neighbour and never stored. `floor`: record a cached answer
        for the bare-Starlette floor to return."""
        with httpx.Client(trust_env=False, timeout=60, headers={"Authorization": f"Bearer {API_KEY}",
                                                               "Content-Type": "application/json"}) as c:
            for body in self.exact:
                c.post(url, content=body, headers={"Cache-Control": "no-cache"}).raise_for_status()
            deadline = time.monotonic() + 60
            while c.post(url, content=self.semantic[-1]).headers.get("x-cache-status") != "HIT":
                if time.monotonic() > deadline:
                    raise RuntimeError("the warmed entries never answered a paraphrase")
                time.sleep(0.1)
            # Write-back embeds the stored questions after their answers: measuring before it is done would
            # measure it too (it ran two seconds into the first hit point).
            health = url.rsplit("/v1/", 1)[0] + "/healthz"
            while c.get(health).json()["write_back_queue"]:
                if time.monotonic() > deadline:
                    raise RuntimeError("write-back never caught up with the warm-up")
                time.sleep(0.1)
            if not floor:
                return
            hit = c.post(url, content=self.exact[0])
            keep = ("content-type", "x-cache-status", "x-cache-match", "age", "x-cache-key")
            (self.work / "floor.json").write_text(json.dumps(
                {"body": hit.text, "headers": {k: v for k, v in hit.headers.items() if k in keep}}))

    def first_requests(self, url: str) -> None:
        with httpx.Client(trust_env=False, timeout=60, headers={"Authorization": f"Bearer {API_KEY}",
                                                               "Content-Type": "application/json"}) as c:
            for body in (self.semantic[0], self.exact[0]):
                c.post(url, content=body).raise_for_status()

    def block(self, url: str, floor_url: str, direct_url: str) -> dict:
        out = {}
        for c in (1, 8, 32):
            out[f"floor_c{c}"] = self.point(floor_url, self.exact, c)
            out[f"exact_c{c}"] = self.point(url, self.exact, c)
            out[f"semantic_c{c}"] = self.point(url, self.semantic, c)
        out["direct_c1"] = self.point(direct_url, self.exact, 1)
        out["miss_c1"] = self.point(url, None, 1)
        return out


def embedding_rates(models: Path, texts: list[str], seconds: float) -> dict:
    from proxy.embeddings import load_embedder
    from proxy.settings import EmbeddingSettings

    embedder = load_embedder(EmbeddingSettings(cache_dir=str(models)), models)
    singles = []
    for text in texts[:100]:
        t = time.perf_counter()
        embedder.embed([text])
        singles.append((time.perf_counter() - t) * 1000)
    singles.sort()
    done, t = 0, time.perf_counter()
    while time.perf_counter() - t < seconds:
        embedder.embed(texts[done % 150: done % 150 + 32])
        done += 32
    return {"single_p50_ms": singles[len(singles) // 2], "batch32_per_s": done / (time.perf_counter() - t)}


def main() -> None:
    args = parse_args()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    bench = Bench(args)
    results: dict = {"machine": procs.machine(), "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                     "command": "python -m bench " + shlex.join(sys.argv[1:]), "seconds": args.seconds,
                     "runs": [], "questions": QUESTIONS, "load_before": os.getloadavg()}
    print("embedding rates (in-process)…", flush=True)
    results["embedding"] = embedding_rates(bench.models, [p for _, p, _ in bench.items], args.seconds)
    upstream = procs.fake_upstream(bench.upstream_port)
    try:
        run_main(bench, results)
        run_sizes(bench, results)
        if not args.no_stores:
            from .stores import run_stores

            results["stores"] = run_stores(bench, args.runs)
        if not args.no_gptcache:
            from .gptcache_side import run_gptcache

            results["gptcache"] = run_gptcache(bench)
    finally:
        upstream.stop()
    results["load_after"] = os.getloadavg()
    (args.work_dir / "results.json").write_text(json.dumps(results, indent=1))
    text = report.render(results)
    if "stores" in results:
        from .stores import render, replace_section

        text = replace_section(text, render(results["stores"], results["command"]))
    args.out.write_text(report.keep_other_sections(text, args.out.read_text() if args.out.exists() else ""))
    print(f"wrote {args.out}", flush=True)


def run_main(bench: Bench, results: dict) -> None:
    data = bench.work / "main"
    shutil.rmtree(data, ignore_errors=True)
    proc, url = bench.serve(data, bench.config("deja"))
    bench.warm(url)
    floor = procs.floor(procs.free_port(), bench.work / "floor.json")
    floor_url = floor.log.strip().split()[-1] + "/v1/chat/completions"
    direct_url = f"{bench.upstream_url}/chat/completions"
    try:
        for n in range(bench.args.runs):
            print(f"run {n + 1}/{bench.args.runs}…", flush=True)
            results["runs"].append(bench.block(url, floor_url, direct_url))
    finally:
        proc.stop()
        floor.stop()
    # Before/after: the same data with batching off, and the baseline commit's code.
    print("ablation: max_batch 1…", flush=True)
    proc, url = bench.serve(data, bench.config("nobatch", max_batch=1))
    try:
        results["no_batching"] = {f"semantic_c{c}": bench.point(url, bench.semantic, c) for c in (1, 8, 32)}
    finally:
        proc.stop()
    if bench.args.baseline:
        print(f"baseline {bench.args.baseline}…", flush=True)
        old = bench.work / "baseline"
        shutil.rmtree(old, ignore_errors=True)
        old.mkdir()
        archive = subprocess.run(["git", "-C", str(procs.REPO), "archive", bench.args.baseline, "proxy"],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
        # Its own data dir, written by its own code: an older schema must not meet the current one.
        old_data = bench.work / "baseline-data"
        shutil.rmtree(old_data, ignore_errors=True)
        proc, url = bench.serve(old_data, bench.config("baseline"), pythonpath=old)
        try:
            bench.warm(url, floor=False)
            results["baseline"] = {f"{kind}_c{c}": bench.point(url, bodies, c)
                                   for kind, bodies in (("exact", bench.exact), ("semantic", bench.semantic))
                                   for c in (1, 8, 32)}
            results["baseline"]["miss_c1"] = bench.point(url, None, 1)
        finally:
            proc.stop()


def run_sizes(bench: Bench, results: dict) -> None:
    results["sizes"] = {}
    for n in [int(s) for s in bench.args.sizes.split(",") if s]:
        data = bench.work / "sizes" / str(n)
        if not (data / ".ready").exists():
            print(f"populating {n:,} entries (bench loader)…", flush=True)
            shutil.rmtree(data, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "bench.populate", str(data), str(n), "--models",
                            str(bench.models)], check=True, cwd=procs.REPO)
            (data / ".ready").touch()
        print(f"size {n:,}: cold start…", flush=True)
        proc, url = bench.serve(data, bench.config("deja"))
        try:
            # The first search and embedding after start-up pay one-time set-up (index pages, onnxruntime's
            # buffers): a second or more on a busy machine, a whole 2 s point. Cold start is measured above.
            bench.first_requests(url)
            semantic = bench.point(url, bench.semantic, 1)
            exact = bench.point(url, bench.exact, 1)
            results["sizes"][str(n)] = {"cold_start_s": proc.ready_s, "rss_mb": proc.rss_mb(),
                                        "semantic_c1": semantic, "exact_c1": exact}
        finally:
            proc.stop()


if __name__ == "__main__":
    main()
