"""python -m bench.soak: mixed traffic against a real `deja serve` (fake upstream, real model and store) for some
minutes; per minute: requests, latency p50/p99, unexpected errors, RSS, open fds and entries. Fails (exit 1) on any
unexpected error, or when RSS or open fds grow after the first minute by more than the bounds below.

The traffic, from `--clients` concurrent clients at `--rate` requests/s in all:
  miss       a question never asked (a model whose policy matches only near-identical text: no neighbour hits)
  exact      a stored question again, plain or streamed
  semantic   a stored question reworded (the bench workload's paraphrases, threshold 0.8)
  stream     a new question, streamed
  hangup     a new question, streamed, the client gone after the first chunk; or a slow one given up after 0.3 s
  bad        invalid JSON, a body without `model`, a stricter threshold out of range: each a 400
  fault      the upstream answers 500 (passed through, not cached)
Partitions are bounded (`max_entries`) so that entries reach a steady state and eviction runs all along: growth
then means a leak, not a bigger cache. `--write bench/RESULTS.md` puts the table in its "Soak" section.

RSS counts memory glibc keeps after it was freed, too: Deja hands it back once a minute (proxy/heap.py), so a
reading holds up to a minute of churn. The bounded memos keyed by question text (RequestMemo, the guard's and the
script detector's lru_caches) fill at the rate new questions arrive, for longer than the soak at its default rate;
bench/RESULTS.md, "Soak: what grows", has the probe that told the two apart from a leak.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import secrets
import shlex
import shutil
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from . import procs
from .stores import replace_section
from .workload import API_KEY, MISS_MODEL, MODEL, THRESHOLD, workload

HEADING = "## Soak"
MAX_ENTRIES = 1000  # per partition: new questions pass it within minutes at the default rate; eviction runs
RSS_GROWTH = 0.05  # allowed growth after the first minute (issue 9)
FD_GROWTH = 16
MIX = {"miss": 25, "exact": 25, "semantic": 15, "stream": 10, "hangup": 8, "bad": 10, "fault": 7}
HEADERS = {"Authorization": f"Bearer {API_KEY}"}


@dataclass
class Minute:
    latencies: list[float] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    unexpected: list[str] = field(default_factory=list)
    hangups: int = 0


class Soak:
    def __init__(self, base: str, seeds: list[tuple[str, str, str]]) -> None:
        self.base = base
        self.seeds = seeds
        self.minutes: list[Minute] = [Minute()]

    @property
    def now(self) -> Minute:
        return self.minutes[-1]

    def body(self, text: str, model: str = MODEL, **extra: object) -> dict:
        return {"model": model, "messages": [{"role": "user", "content": text}], **extra}

    async def one(self, client: httpx.AsyncClient) -> None:
        action = random.choices(list(MIX), weights=list(MIX.values()))[0]
        fresh = f"soak question {secrets.token_hex(6)}: how many {random.choice(['apples', 'cars', 'days'])}?"
        seed, reworded, _ = random.choice(self.seeds)
        started = time.perf_counter()
        try:
            if action == "hangup":
                await self.hang_up(client, fresh)
                self.now.hangups += 1
                return
            expect, response = await self.send(client, action, fresh, seed, reworded)
        except httpx.HTTPError as exc:
            self.now.unexpected.append(f"{action}: {type(exc).__name__}: {exc}")
            return
        self.now.latencies.append(time.perf_counter() - started)
        label = " ".join([str(response.status_code), response.headers.get("x-cache-status", "-"),
                          *([response.headers["x-cache-match"]] if "x-cache-match" in response.headers else [])])
        self.now.statuses[label] = self.now.statuses.get(label, 0) + 1
        if response.status_code != expect:
            self.now.unexpected.append(f"{action}: {response.status_code} {response.text[:200]}")

    async def send(self, client: httpx.AsyncClient, action: str, fresh: str, seed: str,
                   reworded: str) -> tuple[int, httpx.Response]:
        post = client.post
        if action == "miss":
            return 200, await post("/v1/chat/completions", json=self.body(fresh, MISS_MODEL))
        if action == "exact":
            return 200, await post("/v1/chat/completions", json=self.body(seed, stream=random.random() < 0.3))
        if action == "semantic":
            return 200, await post("/v1/chat/completions", json=self.body(reworded))
        if action == "stream":
            return 200, await post("/v1/chat/completions", json=self.body(fresh, MISS_MODEL, stream=True))
        if action == "fault":
            return 500, await post("/v1/chat/completions", json=self.body(f"FAIL500 {fresh}", MISS_MODEL))
        kind = random.randrange(3)
        if kind == 0:
            return 400, await post("/v1/chat/completions", content=b"{not json", headers={
                "Content-Type": "application/json"})
        if kind == 1:
            return 400, await post("/v1/chat/completions", json={"messages": []})
        return 400, await post("/v1/chat/completions", json=self.body(seed), headers={"X-Cache-Threshold": "7"})

    async def hang_up(self, client: httpx.AsyncClient, fresh: str) -> None:
        if random.random() < 0.5:
            async with client.stream("POST", "/v1/chat/completions",
                                     json=self.body(fresh, MISS_MODEL, stream=True)) as streamed:
                async for _ in streamed.aiter_bytes():
                    break
            return
        try:  # the fake upstream answers SLOW questions after 3 s
            await client.post("/v1/chat/completions", json=self.body(f"SLOW {fresh}", MISS_MODEL), timeout=0.3)
        except httpx.TimeoutException:
            pass

    async def client_loop(self, until: float, interval: float) -> None:
        async with httpx.AsyncClient(base_url=self.base, headers=HEADERS, trust_env=False, timeout=30) as client:
            next_at = time.monotonic() + random.random() * interval
            while next_at < until:
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
                next_at += interval
                await self.one(client)


def process_facts(pid: int) -> tuple[float, int]:
    """RSS (MB) and open file descriptors of `pid`."""
    rss = next(int(line.split()[1]) / 1024 for line in Path(f"/proc/{pid}/status").read_text().splitlines()
               if line.startswith("VmRSS:"))
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def entries(base: str) -> int:
    text = httpx.get(f"{base}/metrics", trust_env=False, timeout=10).text
    found = re.search(r"^deja_entries_all (\S+)$", text, re.M)
    return int(float(found.group(1))) if found else -1


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else float("nan")


async def run(soak: Soak, pid: int, minutes: float, clients: int, rate: float) -> list[dict]:
    rows: list[dict] = []
    started = time.monotonic()
    until = started + minutes * 60
    loops = [asyncio.create_task(soak.client_loop(until, clients / rate)) for _ in range(clients)]
    for n in range(1, int(minutes + 0.999) + 1):
        await asyncio.sleep(max(0.0, min(until, started + 60 * n) - time.monotonic()))
        done, soak.minutes = soak.now, [*soak.minutes, Minute()]
        rss, fds = process_facts(pid)
        rows.append({"minute": n, "requests": len(done.latencies) + done.hangups, "hangups": done.hangups,
                     "p50_ms": statistics.median(done.latencies) * 1000 if done.latencies else float("nan"),
                     "p99_ms": percentile(done.latencies, 0.99), "unexpected": done.unexpected,
                     "statuses": done.statuses, "rss_mb": rss, "fds": fds,
                     "entries": await asyncio.to_thread(entries, soak.base), "load": os.getloadavg()[0]})
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "statuses"}), flush=True)
    await asyncio.gather(*loops)
    return rows


def verdicts(rows: list[dict]) -> list[str]:
    """Why the soak failed (empty: it passed)."""
    problems = [f"minute {r['minute']}: {len(r['unexpected'])} unexpected errors, e.g. {r['unexpected'][0]}"
                for r in rows if r["unexpected"]]
    if len(rows) >= 2:
        first, last = rows[0], rows[-1]
        if last["rss_mb"] > first["rss_mb"] * (1 + RSS_GROWTH):
            problems.append(f"RSS grew {first['rss_mb']:.0f} -> {last['rss_mb']:.0f} MB after the first minute "
                            f"(bound {RSS_GROWTH:.0%})")
        if last["fds"] > first["fds"] + FD_GROWTH:
            problems.append(f"open fds grew {first['fds']} -> {last['fds']} after the first minute")
    return problems


def render(rows: list[dict], problems: list[str], command: str, setup: str) -> str:
    lines = [HEADING, "", f"`{command}` ({setup}): misses, exact and semantic hits, streams, client hang-ups, bad "
             "input and upstream 500s against `deja serve` (fake upstream; real model, SQLite and hnswlib), "
             "per minute.", "",
             "| minute | requests | of which hang-ups | p50 ms | p99 ms | unexpected errors | RSS MB | open fds | "
             "entries | load (1 min) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['minute']} | {r['requests']} | {r['hangups']} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
                     f"{len(r['unexpected'])} | {r['rss_mb']:.0f} | {r['fds']} | {r['entries']} | {r['load']:.2f} |")
    statuses: dict[str, int] = {}
    for r in rows:
        for label, count in r["statuses"].items():
            statuses[label] = statuses.get(label, 0) + count
    lines += ["", "Answers (status, X-Cache-Status): " + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items())),
              "", f"Bounds after the first minute: RSS +{RSS_GROWTH:.0%}, open fds +{FD_GROWTH}; 0 unexpected errors. "
              + ("**Passed.**" if not problems else "**Failed:** " + "; ".join(problems)), ""]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--rate", type=float, default=40.0, help="requests per second, all clients together")
    p.add_argument("--work-dir", type=Path, default=Path("/tmp/deja-soak"))
    p.add_argument("--write", type=Path, help="put the result in this Markdown file's Soak section")
    args = p.parse_args()
    shutil.rmtree(args.work_dir / "data", ignore_errors=True)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    policies = args.work_dir / "policies"
    policies.mkdir(exist_ok=True)
    (policies / "default.yaml").write_text(f"match: '*'\nthreshold: {THRESHOLD}\nlong_threshold: {THRESHOLD}\n"
                                           f"max_entries: {MAX_ENTRIES}\nttl: 0\n")
    (policies / "miss.yaml").write_text(f"match: '{MISS_MODEL}*'\nthreshold: 0.999\nlong_threshold: 0.999\n"
                                        f"max_entries: {MAX_ENTRIES}\nttl: 0\n")
    config = args.work_dir / "config.yaml"
    config.write_text(f"embedding:\n  cache_dir: {args.work_dir / 'models'}\nlog_level: warning\n")
    upstream_port, port = procs.free_port(), procs.free_port()
    upstream = procs.fake_upstream(upstream_port)
    deja = procs.deja_serve(port, f"http://127.0.0.1:{upstream_port}/v1", args.work_dir / "data", policies, config)
    base = f"http://127.0.0.1:{port}"
    try:
        seeds = workload(100)
        with httpx.Client(base_url=base, headers=HEADERS, trust_env=False, timeout=60) as c:
            for question, _, _ in seeds:
                c.post("/v1/chat/completions", json={"model": MODEL, "messages": [
                    {"role": "user", "content": question}]}).raise_for_status()
        rows = asyncio.run(run(Soak(base, seeds), deja.proc.pid, args.minutes, args.clients, args.rate))
    finally:
        deja.stop()
        upstream.stop()
    problems = verdicts(rows)
    command = "python -m bench.soak " + shlex.join(sys.argv[1:])
    text = render(rows, problems, command, f"{args.clients} clients at {args.rate:g} requests/s, "
                  f"{os.cpu_count()} cores, 100 stored questions, max_entries {MAX_ENTRIES}")
    if args.write is not None:
        args.write.write_text(replace_section(args.write.read_text() if args.write.exists() else "", text, HEADING))
        print(f"wrote {args.write}")
    else:
        print(text)
    if problems:
        sys.exit(1)


if __name__ == "__main__":
    main()
