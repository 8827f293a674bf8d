"""GPTCache semantic-hit latency over HTTP: starts server.py on a free loopback port, puts N questions, then
times M /get requests for their paraphrases, one at a time or from --concurrency clients."""

import argparse
import asyncio
import json
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from common import summarize, workload

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(client: httpx.Client, server: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"server.py exited with {server.returncode}")
        try:
            if client.get("/").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit("server.py did not become ready")


def stop(server: subprocess.Popen) -> None:
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


async def timed_gets(base_url: str, gets: list[tuple[str, str]], concurrency: int) -> tuple[list, int, int, float]:
    """Sends all gets from `concurrency` workers sharing one queue; returns latencies, hits, correct, wall s."""
    queue = list(reversed(gets))
    latencies, hits, correct = [], 0, 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal hits, correct
        while queue:
            prompt, answer = queue.pop()
            start = time.perf_counter()
            response = await client.post("/get", json={"prompt": prompt})
            response.raise_for_status()
            latencies.append((time.perf_counter() - start) * 1000)
            result = response.json()["answer"]
            hits += result is not None
            correct += result == answer

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, trust_env=False, limits=limits, timeout=60) as client:
        await client.post("/get", json={"prompt": "warm-up"})  # opens the connection before timing
        start = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        return latencies, hits, correct, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=200, help="questions to put")
    parser.add_argument("-m", type=int, default=None, help="/get requests to time (default: n, cycling otherwise)")
    parser.add_argument("--concurrency", type=int, default=1, help="clients sending /get at once")
    parser.add_argument("--threshold", type=float, default=0.8, help="GPTCache similarity_threshold")
    args = parser.parse_args()

    items = workload(args.n)
    m = args.m or args.n
    gets = [(items[i % len(items)][1], items[i % len(items)][2]) for i in range(m)]
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="gptcache-server-") as data_dir:
        command = [
            sys.executable,
            str(HERE / "server.py"),
            "--port",
            str(port),
            "--data-dir",
            data_dir,
            "--threshold",
            str(args.threshold),
        ]
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        try:
            with httpx.Client(base_url=base_url, trust_env=False, timeout=60) as client:
                wait_ready(client, server)
                for question, _, answer in items:
                    client.post("/put", json={"prompt": question, "answer": answer}).raise_for_status()
            latencies, hits, correct, wall = asyncio.run(timed_gets(base_url, gets, args.concurrency))
        finally:
            stop(server)
    result = {
        "mode": "server",
        "threshold": args.threshold,
        "concurrency": args.concurrency,
        **summarize(latencies, hits, correct),
    }
    if args.concurrency > 1:
        result["requests_per_s"] = round(m / wall, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
