"""Processes the bench starts (fake upstream, deja serve, the floor) and facts it reads about them and the machine."""

from __future__ import annotations

import os
import platform
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("DEJA_SHARED", REPO.parent / "shared"))
# Loopback only: never through a proxy from the environment.
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    """A child process that prints a ready line; `ready_s` is the time from spawn to that line."""

    def __init__(self, argv: list[str], ready: str, *, env: dict[str, str] | None = None, cwd: Path | None = None,
                 timeout: float = 120.0) -> None:
        started = time.monotonic()
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env={**os.environ, **(env or {})}, cwd=cwd)
        self.log = ""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.log += line
            if line.startswith(ready):
                break
            if time.monotonic() - started > timeout:
                break
        else:
            raise RuntimeError(f"{argv[:4]} exited before it was ready:\n{self.log}")
        self.ready_s = time.monotonic() - started
        # Keep draining its output so a chatty child never blocks on a full pipe.
        self._drain = subprocess.Popen(["cat"], stdin=self.proc.stdout, stdout=subprocess.DEVNULL)

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._drain.wait(timeout=10)


def fake_upstream(port: int) -> Proc:
    script = SHARED / "acceptance" / "fake_upstream.py"
    if not script.is_file():
        raise SystemExit(f"{script} not found: set DEJA_SHARED to the folder holding acceptance/fake_upstream.py")
    proc = Proc([sys.executable, "-u", str(script), str(port)], "", timeout=10)
    wait_http(f"http://127.0.0.1:{port}/_stats")
    return proc


def deja_serve(port: int, upstream: str, data_dir: Path, policies: Path, config: Path,
               pythonpath: Path | None = None, *extra: str) -> Proc:
    env = {"PYTHONPATH": str(pythonpath)} if pythonpath else None
    return Proc([sys.executable, "-m", "proxy", "serve", "--config", str(config), "--port", str(port),
                 "--upstream", upstream, "--data-dir", str(data_dir), "--policies", str(policies), *extra],
                "deja listening on", env=env, cwd=pythonpath)


def floor(port: int, saved: Path) -> Proc:
    proc = Proc([sys.executable, "-m", "bench.floor", str(port), str(saved)], "floor listening", cwd=REPO)
    wait_http(f"http://127.0.0.1:{port}/v1/chat/completions")
    return proc


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, trust_env=False, timeout=2).status_code < 500:
                return
        except httpx.TransportError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer")


def machine() -> dict[str, str]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal"))
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
    return {"nproc": str(os.cpu_count()), "cpu": cpu, "ram": f"{mem_kb / 1024 / 1024:.1f} GiB",
            "python": platform.python_version(), "kernel": platform.release(),
            "wrk": (wrk.stdout or wrk.stderr).split("\n")[0].strip()}
