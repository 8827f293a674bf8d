"""`python -m bench.hotpath`: the Python a request costs inside the app, without sockets or a load generator.

The ASGI app is called directly, one request after another, in one process: exact hits on Deja against the bench
floor's bare Starlette app (the same bytes), and misses against an in-process upstream (httpx MockTransport, so
only Deja's side of forwarding is counted). The figures are CPU microseconds per request (`time.process_time`,
every thread of the process: the write-back and embedding threads included), which other processes on the
machine barely move; wrk's ratios in `python -m bench` are the targets, this is the A/B tool between them.
`--profile DIR` also writes cProfile's heaviest functions per workload (DIR/hotpath-<workload>.txt).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import pstats
import secrets
import statistics
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx

from .floor import build as floor_app
from .workload import API_KEY, MISS_MODEL, chat_body, workload, write_policies

ASGIApp = Callable[[dict[str, Any], Any, Any], Coroutine[Any, Any, None]]
COMPLETION = {"id": "chatcmpl-bench", "object": "chat.completion", "created": 1700000000, "model": "gpt-4o-mini",
              "choices": [{"index": 0, "message": {"role": "assistant", "content": "Open Settings, then Billing."},
                           "finish_reason": "stop"}],
              "usage": {"prompt_tokens": 20, "completion_tokens": 9, "total_tokens": 29}}
HEADERS = [(b"host", b"127.0.0.1:8080"), (b"content-type", b"application/json"),
           (b"authorization", f"Bearer {API_KEY}".encode())]


async def call(app: ASGIApp, body: bytes, extra: list[tuple[bytes, bytes]] = ()) -> dict[str, Any]:
    """One POST /v1/chat/completions through the ASGI app; the response's status and headers."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions", "query_string": b"",
             "root_path": "", "headers": [*HEADERS, (b"content-length", str(len(body)).encode()), *extra],
             "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8080)}
    sent = False
    out: dict[str, Any] = {}

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            out["status"] = message["status"]
            out["headers"] = {k.decode().lower(): v.decode() for k, v in message["headers"]}

    await app(scope, receive, send)
    return out


def fake_upstream(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=json.dumps(COMPLETION).encode(), headers={"content-type": "application/json"})


def measure(label: str, n: int, one: Callable[[int], Coroutine[Any, Any, Any]], profile: Path | None) -> dict:
    """n requests, one after another; CPU and wall microseconds per request (median of 5 rounds)."""

    async def rounds() -> list[tuple[float, float]]:
        out = []
        for _ in range(5):
            cpu, wall = time.process_time(), time.perf_counter()
            for i in range(n):
                await one(i)
            out.append(((time.process_time() - cpu) / n * 1e6, (time.perf_counter() - wall) / n * 1e6))
        return out

    loop = asyncio.get_event_loop()
    found = loop.run_until_complete(rounds())
    if profile is not None:
        profiler = cProfile.Profile()
        profiler.enable()
        loop.run_until_complete(rounds())
        profiler.disable()
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(40)
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(60)
        (profile / f"hotpath-{label}.txt").write_text(f"# cProfile, in-process {label}, 5 x {n} requests\n\n"
                                                      + text.getvalue())
    return {"cpu_us": statistics.median(c for c, _ in found), "wall_us": statistics.median(w for _, w in found)}


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.hotpath", description=__doc__)
    p.add_argument("-n", type=int, default=400, help="requests per round (5 rounds per workload)")
    p.add_argument("--misses", type=int, default=40, help="misses per round")
    p.add_argument("--models", type=Path, default=Path("/tmp/deja-bench/models"))
    p.add_argument("--profile", type=Path, help="write cProfile summaries here")
    args = p.parse_args()
    from proxy.app import create_app
    from proxy.policies import load_policies
    from proxy.settings import EmbeddingSettings, Settings

    work = Path(tempfile.mkdtemp(prefix="deja-hotpath-"))
    write_policies(work / "policies")
    settings = Settings(data_dir=str(work / "data"), upstream="http://upstream.test/v1", log_level="warning",
                        embedding=EmbeddingSettings(cache_dir=str(args.models)))
    app = create_app(settings, policies=load_policies(work / "policies"),
                     transport=httpx.MockTransport(fake_upstream))
    questions = [q for q, _, _ in workload(200)]
    exact = [chat_body(q).encode() for q in questions]
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    lifespan = app.router.lifespan_context(app)
    loop.run_until_complete(lifespan.__aenter__())
    results = {}
    try:
        cache = app.state.services.cache

        async def warm() -> bytes:
            for body in exact:
                await call(app, body, [(b"cache-control", b"no-cache")])
            await cache.drain()
            hit = await call(app, exact[0])
            assert hit["headers"]["x-cache-status"] == "HIT", hit
            return json.dumps(hit["headers"]).encode()

        loop.run_until_complete(warm())
        stored = COMPLETION
        floor = floor_app(json.dumps(stored).encode(), {"x-cache-status": "HIT", "x-cache-match": "exact"})
        results["floor"] = measure("floor", args.n, lambda i: call(floor, exact[i % len(exact)]), args.profile)
        results["exact"] = measure("exact", args.n, lambda i: call(app, exact[i % len(exact)]), args.profile)
        seed = secrets.randbelow(1 << 30)

        async def miss(i: int) -> None:
            # Digits only: letters among hex digits read as Portuguese function words ("e", "da") to the router.
            body = chat_body(f"zebra quartz lantern {seed} {i} {secrets.randbelow(1 << 40)}", MISS_MODEL).encode()
            await call(app, body)
            await cache.drain()

        results["miss+writeback"] = measure("miss", args.misses, miss, args.profile)
    finally:
        loop.run_until_complete(lifespan.__aexit__(None, None, None))
    for name, r in results.items():
        print(f"{name:15} {r['cpu_us']:8.0f} µs CPU  {r['wall_us']:8.0f} µs wall per request")
    print(f"exact - floor  {results['exact']['cpu_us'] - results['floor']['cpu_us']:8.0f} µs CPU")


if __name__ == "__main__":
    main()
