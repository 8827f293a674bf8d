"""`python -m bench.profile`: py-spy samples of `deja serve` under wrk, one exact-hit and one miss load, written
as bench/profile-exact.txt and bench/profile-miss.txt (the heaviest stacks, own and total time per function).

Needs py-spy (`pip install -e '.[bench]'`) and wrk; root or ptrace rights to sample the server.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from . import procs
from .__main__ import Bench, parse_args
from .load import fixed_bodies_script, unique_misses_script, wrk
from .workload import API_KEY

TOP = 30


def record(pid: int, seconds: float, out: Path) -> None:
    subprocess.run(["py-spy", "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "250",
                    "--format", "raw", "--output", str(out), "--nonblocking"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def summarise(raw: Path, title: str, command: str) -> str:
    """Collapsed stacks → the functions with the most samples, on the stack (total) and on top (own)."""
    total: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        frames = [f.split(" (")[0] + " (" + f.split(" (")[1].split(":")[0].rsplit("/", 1)[-1] + ")"
                  if " (" in f else f for f in stack.split(";")]
        samples += n
        for frame in set(frames):
            total[frame] += n
        own[frames[-1]] += n
    lines = [f"# {title}", "", f"command: `{command}`; {samples} samples of the server's threads", "",
             "## total (on the stack)", ""]
    lines += [f"{100 * n / samples:5.1f}%  {frame}" for frame, n in total.most_common(TOP)]
    lines += ["", "## own (top of the stack)", ""]
    lines += [f"{100 * n / samples:5.1f}%  {frame}" for frame, n in own.most_common(TOP)]
    return "\n".join(lines) + "\n"


def settle(url: str, bodies: list[str]) -> None:
    """Until every stored question hits: warm() returns once a paraphrase hits, write-back may still be busy."""
    with httpx.Client(trust_env=False, timeout=60, headers={"Authorization": f"Bearer {API_KEY}",
                                                           "Content-Type": "application/json"}) as c:
        for _ in range(30):
            if all(c.post(url, content=b).headers.get("x-cache-status") == "HIT" for b in bodies):
                return
            time.sleep(1)
    raise RuntimeError("the stored questions never all hit")


def main() -> None:
    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--profile-seconds", type=float, default=8.0)
    extra.add_argument("--connections", type=int, default=8)
    known, rest = extra.parse_known_args()
    sys.argv[1:] = rest
    args = parse_args()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    bench = Bench(args)
    upstream = procs.fake_upstream(bench.upstream_port)
    data = bench.work / "profile"
    shutil.rmtree(data, ignore_errors=True)
    proc, url = bench.serve(data, bench.config("deja"))
    command = f"python -m bench.profile --profile-seconds {known.profile_seconds} --connections {known.connections}"
    try:
        bench.warm(url, floor=False)
        settle(url, bench.exact)
        for name, script in (("exact", fixed_bodies_script(bench.exact)), ("miss", unique_misses_script(7))):
            raw = bench.work / f"profile-{name}.raw"
            sampler = threading.Thread(target=record, args=(proc.proc.pid, known.profile_seconds, raw))
            sampler.start()
            run = wrk(url, script, connections=known.connections, seconds=known.profile_seconds)
            sampler.join()
            title = (f"{name}: {known.connections} clients, {run.rps:.0f} requests/s, p50 {run.p50_ms:.2f} ms, "
                     f"statuses {run.statuses}")
            (procs.REPO / "bench" / f"profile-{name}.txt").write_text(summarise(raw, title, command))
            print(title, flush=True)
    finally:
        proc.stop()
        upstream.stop()


if __name__ == "__main__":
    main()
