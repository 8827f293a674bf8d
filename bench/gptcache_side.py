"""GPTCache 0.1.44 beside Deja: bench/gptcache/ builds its venv and runs its server and in-process timings with
Deja's embedding; here its server also gets the very same wrk client and paraphrases as Deja."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from typing import TYPE_CHECKING

import httpx

from . import procs
from .load import fixed_bodies_script, wrk

if TYPE_CHECKING:
    from .__main__ import Bench

VENV = os.environ.get("GPTCACHE_VENV", "/tmp/deja-bench-gptcache-venv")


def _last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def run_gptcache(bench: Bench) -> dict:
    here = bench.args.gptcache_dir
    if not (here / "setup.sh").is_file():
        return {"skipped": f"{here}/setup.sh not found"}
    print("GPTCache: venv…", flush=True)
    subprocess.run(["bash", str(here / "setup.sh")], check=True, env={**os.environ, "GPTCACHE_VENV": VENV})
    python = f"{VENV}/bin/python"
    n = str(len(bench.items))
    out: dict = {}
    print("GPTCache: in-process…", flush=True)
    out["inprocess"] = _last_json(subprocess.run([python, str(here / "inprocess.py"), "-n", n], check=True,
                                                 capture_output=True, text=True, cwd=here).stdout)
    print("GPTCache: its own server benchmark…", flush=True)
    out["server_own_client"] = _last_json(subprocess.run(
        [python, str(here / "bench_server.py"), "-n", n], check=True, capture_output=True, text=True,
        cwd=here).stdout)
    print("GPTCache: server under wrk…", flush=True)
    data = bench.work / "gptcache-data"
    shutil.rmtree(data, ignore_errors=True)
    port = procs.free_port()
    server = procs.Proc([python, str(here / "server.py"), "--port", str(port), "--data-dir", str(data),
                         "--threshold", "0.8"], "INFO:     Uvicorn running", cwd=here)
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, trust_env=False, timeout=60) as client:
            for question, _, answer in bench.items:
                client.post("/put", json={"prompt": question, "answer": answer}).raise_for_status()
            hits = sum(client.post("/get", json={"prompt": p}).json()["answer"] == a for _, p, a in bench.items)
        bodies = [json.dumps({"prompt": p}) for _, p, _ in bench.items]
        out["server_wrk"] = {"correct_hits": hits, "of": len(bench.items)}
        for c in (1, 8, 32):
            run = wrk(f"{base}/get", fixed_bodies_script(bodies), connections=c, seconds=bench.args.seconds)
            out["server_wrk"][f"semantic_c{c}"] = {"p50_ms": run.p50_ms, "p99_ms": run.p99_ms, "rps": run.rps,
                                                    "errors": run.errors}
    finally:
        server.stop()
    return out
