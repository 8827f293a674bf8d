"""The chaos suite's harness: real `deja serve` processes on loopback (real SQLite, hnswlib and embedding model;
only the upstream is the fake, served on a real socket), started with any settings and environment, stopped by
SIGTERM or killed with SIGKILL. Logs go to a file: a test reads them, and a chatty process never blocks on a pipe."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from ..test_serve import free_port, wait_for

__all__ = ["Deja", "fill", "tmpfs", "wait_for"]

START_SECONDS = 90.0


class Deja:
    def __init__(self, workdir: Path, upstream_url: str, model_dir: Path, *, data_dir: Path | None = None,
                 settings: dict[str, Any] | None = None, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.data_dir = data_dir or workdir / "data"
        workdir.mkdir(parents=True, exist_ok=True)
        config = {"host": "127.0.0.1", "port": self.port, "upstream": upstream_url, "data_dir": str(self.data_dir),
                  "embedding": {"cache_dir": str(model_dir)}, **(settings or {})}
        config_path = workdir / f"config-{self.port}.yaml"
        config_path.write_text(yaml.safe_dump(config))
        self.log_path = workdir / f"deja-{self.port}.log"
        with self.log_path.open("w") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "proxy", "serve", "--config", str(config_path)],
                                         stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        self.client = httpx.Client(base_url=self.base, trust_env=False, timeout=30)

    def wait_ready(self) -> Deja:
        deadline = time.time() + START_SECONDS
        while "deja listening on" not in self.log:
            if self.proc.poll() is not None:
                raise AssertionError(f"deja serve exited with {self.proc.returncode}:\n{self.log}")
            if time.time() > deadline:
                raise AssertionError(f"deja serve not ready after {START_SECONDS} s:\n{self.log}")
            time.sleep(0.05)
        return self

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def chat(self, text: str, *, key: str = "sk-chaos", headers: dict[str, str] | None = None,
             **params: Any) -> httpx.Response:
        return self.client.post("/v1/chat/completions", headers={"Authorization": f"Bearer {key}", **(headers or {})},
                                json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}],
                                      **params})

    def exit_code(self, seconds: float) -> int | None:
        """The exit status once the process ends by itself within `seconds`, else None (it is then killed)."""
        try:
            return self.proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def stop(self) -> int:
        self.client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)

    def kill(self) -> None:
        self.client.close()
        self.proc.kill()
        self.proc.wait(timeout=30)


@contextlib.contextmanager
def tmpfs(where: Path, size: str, *, required: bool = True) -> Iterator[Path | None]:
    """A small filesystem of its own at `where` (for full or read-only disks). Where mounting is not allowed: skip
    the test with the reason, or (not `required`) yield None."""
    where.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        if required:
            pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip() or 'mount failed'}): needs root or "
                        "CAP_SYS_ADMIN")
        yield None
        return
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(directory: Path) -> Path:
    """Write zeros into `directory` until its filesystem is full; returns the file to delete to free it."""
    filler = directory / "filler"
    with filler.open("wb") as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 65536)
            f.flush()
            os.fsync(f.fileno())
    return filler
