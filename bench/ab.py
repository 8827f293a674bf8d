"""`python -m bench.ab`: this tree against a git ref, point by point in the same minutes, on a busy machine.

Both `deja serve`s (this tree, and REF's proxy/ extracted as `python -m bench` does for its baseline) run at once
on their own data, warmed with the same workload; each round measures every point on both, alternating which goes
first. It prints the median per point, the server's CPU time per request (user + system, from /proc: other
processes on the machine barely move it, unlike requests/s) and the ratios of issue 13's targets for both sides.
Absolute rates on a shared machine move by 2× between runs; CPU per request and the A/B difference are what to read.

    python -m bench.ab --ref main --rounds 3 --seconds 2 --points floor:32,exact:32,direct:1,miss:1,semantic:32
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
from pathlib import Path

from . import procs
from .__main__ import Bench, embedding_rates

DEFAULT_POINTS = "floor:1,exact:1,floor:32,exact:32,direct:1,miss:1,semantic:1,semantic:32"


def extract(ref: str, into: Path) -> Path:
    shutil.rmtree(into, ignore_errors=True)
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(procs.REPO), "archive", ref, "proxy"], capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured(bench: Bench, pid: int, url: str, bodies: list[str] | None, clients: int) -> dict:
    """One point, with the CPU time the server and wrk spent per request (µs)."""
    before, wrk_before = cpu_seconds(pid), resource.getrusage(resource.RUSAGE_CHILDREN)
    point = bench.point(url, bodies, clients)
    after, wrk_after = cpu_seconds(pid), resource.getrusage(resource.RUSAGE_CHILDREN)
    requests = max(1.0, point["rps"] * bench.args.seconds)
    wrk_cpu = wrk_after.ru_utime + wrk_after.ru_stime - wrk_before.ru_utime - wrk_before.ru_stime
    return {**point, "cpu_us": (after - before) / requests * 1e6, "wrk_cpu_us": wrk_cpu / requests * 1e6}


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ref", default="main", help="git ref measured as B")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--points", default=DEFAULT_POINTS, help="kind:clients,… (floor, exact, semantic, direct, miss)")
    p.add_argument("--work-dir", type=Path, default=Path("/tmp/deja-bench-ab"))
    args = p.parse_args()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    bench = Bench(argparse.Namespace(work_dir=args.work_dir, seconds=args.seconds))
    points = [(kind, int(c)) for kind, c in (p.split(":") for p in args.points.split(","))]
    load_before = os.getloadavg()
    embedding = embedding_rates(bench.models, [q for _, q, _ in bench.items], args.seconds)
    upstream = procs.fake_upstream(bench.upstream_port)
    servers: dict[str, tuple[procs.Proc, str]] = {}
    floor = None
    try:
        old = extract(args.ref, args.work_dir / "ref")
        for side, pythonpath in (("A", None), ("B", old)):
            data = args.work_dir / f"data-{side}"
            shutil.rmtree(data, ignore_errors=True)
            servers[side] = bench.serve(data, bench.config(f"ab-{side}"), pythonpath)
            bench.warm(servers[side][1], floor=side == "A")
        floor = procs.floor(procs.free_port(), bench.work / "floor.json")
        floor_url = floor.log.strip().split()[-1] + "/v1/chat/completions"
        urls = {"floor": floor_url, "direct": f"{bench.upstream_url}/chat/completions"}
        pids = {"floor": floor.proc.pid, "direct": upstream.proc.pid}
        bodies = {"floor": bench.exact, "exact": bench.exact, "semantic": bench.semantic, "direct": bench.exact,
                  "miss": None}
        found: dict[tuple[str, str, int], list[dict]] = {}
        for n in range(args.rounds):
            order = ("A", "B") if n % 2 == 0 else ("B", "A")
            for kind, clients in points:
                for side in order if kind not in urls else ("A",):
                    url = urls.get(kind, servers[side][1])
                    pid = pids.get(kind, servers[side][0].proc.pid)
                    found.setdefault((side, kind, clients), []).append(
                        measured(bench, pid, url, bodies[kind], clients))
            print(f"round {n + 1}/{args.rounds} done (load {os.getloadavg()[0]:.1f})", flush=True)
    finally:
        for proc, _ in servers.values():
            proc.stop()
        if floor is not None:
            floor.stop()
        upstream.stop()

    def med(side: str, kind: str, clients: int, field: str) -> float | None:
        runs = found.get((side, kind, clients)) or found.get(("A", kind, clients))
        return statistics.median(r[field] for r in runs) if runs else None

    print(f"\nload average {load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after; {args.rounds} rounds × "
          f"{args.seconds:g} s; A = this tree, B = {args.ref}")
    print(f"embedding in-process: one text {embedding['single_p50_ms']:.2f} ms p50, batches of 32 "
          f"{embedding['batch32_per_s']:.0f} texts/s")
    print("| point | clients | A p50 ms | A req/s | A server CPU µs/req | B p50 ms | B req/s | B server CPU µs/req | "
          "wrk CPU µs/req |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for kind, clients in points:
        row = [f"{med(s, kind, clients, f):.2f}" if f == "p50_ms" else f"{med(s, kind, clients, f):.0f}"
               for s in ("A", "B") for f in ("p50_ms", "rps", "cpu_us")]
        print(f"| {kind} | {clients} | " + " | ".join(row) + f" | {med('A', kind, clients, 'wrk_cpu_us'):.0f} |")
    print()
    for side in ("A", "B"):
        out = []
        miss, direct = med(side, "miss", 1, "p50_ms"), med(side, "direct", 1, "p50_ms")
        if miss is not None and direct is not None:
            out.append(f"miss overhead {miss - direct:.2f} ms vs {embedding['single_p50_ms'] + 1:.2f}")
        exact, fl = med(side, "exact", 32, "rps"), med(side, "floor", 32, "rps")
        if exact is not None and fl:
            out.append(f"exact/floor at 32: {100 * exact / fl:.0f}%")
            # The two cores are saturated at 32 clients: the rates go as the inverse of the CPU per request.
            cost = [med(side, k, 32, "cpu_us") + med(side, k, 32, "wrk_cpu_us") for k in ("floor", "exact")]
            out.append(f"by CPU per request (server + wrk): {100 * cost[0] / cost[1]:.0f}%")
        semantic = med(side, "semantic", 32, "rps")
        if semantic is not None:
            out.append(f"semantic at 32 / batched embedding: {100 * semantic / embedding['batch32_per_s']:.0f}%")
        print(f"{side}: " + "; ".join(out))


if __name__ == "__main__":
    main()
