"""The Docker image for real: build it, start it, a MISS then a HIT, `docker stop` exits 0, and the entries are in
the volume (a new container on it serves them). Skipped, with the reason, where no Docker engine runs; on these
machines `bash ../shared/docker/standin-images.sh` provides the base image (no registry is reachable)."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .fakes import FakeUpstream, ThreadedServer
from .test_serve import free_port

pytestmark = [pytest.mark.docker, pytest.mark.model]

ROOT = Path(__file__).resolve().parent.parent
IMAGE = "deja:test"


def docker(*args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=check)


def engine_problem() -> str | None:
    if shutil.which("docker") is None:
        return "no docker client installed"
    try:
        info = docker("info", timeout=20, check=False)
    except subprocess.TimeoutExpired:
        return "the docker engine does not answer"
    if info.returncode != 0:
        return f"no docker engine runs here ({info.stderr.strip().splitlines()[-1] if info.stderr else 'docker info'})"
    if docker("image", "inspect", "python:3.11-slim", check=False).returncode != 0:
        return "no python:3.11-slim base image (bash ../shared/docker/standin-images.sh provides one)"
    return None


@pytest.fixture(scope="module")
def image() -> str:
    problem = engine_problem()
    if problem:
        pytest.skip(problem)
    built = docker("build", "--network", "host", "-f", "docker/Dockerfile", "-t", IMAGE, str(ROOT), timeout=1500,
                   check=False)
    assert built.returncode == 0, built.stderr[-4000:]
    return IMAGE


class Container:
    def __init__(self, image: str, data: Path, upstream: str) -> None:
        self.port = free_port()
        self.id = docker("run", "-d", "--network", "host", "-v", f"{data}:/data", image, "--port", str(self.port),
                         "--upstream", upstream).stdout.strip()
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", trust_env=False, timeout=30)
        deadline = time.time() + 120
        while not self.ready():
            running = docker("inspect", "-f", "{{.State.Running}}", self.id).stdout.strip() == "true"
            if not running or time.time() > deadline:
                logs = docker("logs", self.id, check=False)
                self.remove()
                raise AssertionError(f"the container {'is not ready' if running else 'exited'}:\n"
                                     f"{logs.stdout[-3000:]}{logs.stderr[-3000:]}")
            time.sleep(0.5)

    def ready(self) -> bool:
        try:
            return self.client.get("/healthz").status_code == 200
        except httpx.TransportError:
            return False

    def chat(self, text: str) -> httpx.Response:
        return self.client.post("/v1/chat/completions", headers={"Authorization": "Bearer sk-docker"},
                                json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]})

    def stop(self) -> int:
        self.client.close()
        docker("stop", "-t", "40", self.id, timeout=60)
        return int(docker("inspect", "-f", "{{.State.ExitCode}}", self.id).stdout.strip())

    def remove(self) -> None:
        docker("rm", "-f", self.id, check=False)


@pytest.fixture
def upstream_url() -> Iterator[str]:
    with ThreadedServer(FakeUpstream().app) as url:
        yield url


def test_image_serves_a_hit_stops_cleanly_and_keeps_its_entries(image, upstream_url, tmp_path):
    data = tmp_path / "volume"
    data.mkdir()
    data.chmod(0o777)  # the image runs as uid 10001
    first = Container(image, data, upstream_url)
    try:
        assert first.chat("What is the capital of France?").headers["x-cache-status"] == "MISS"
        deadline = time.time() + 15
        while first.chat("What is the capital of France?").headers["x-cache-status"] != "HIT":
            assert time.time() < deadline, "no hit after the miss"
            time.sleep(0.2)
        paraphrase = first.chat("What is the capital city of France?")
        assert paraphrase.headers["x-cache-status"] == "HIT" and paraphrase.headers["x-cache-match"] == "semantic"
        assert first.stop() == 0
    finally:
        first.remove()
    with sqlite3.connect(data / "deja.sqlite3") as db:
        assert db.execute("SELECT count(*) FROM entries").fetchone() == (1,)
    second = Container(image, data, upstream_url)
    try:
        assert second.chat("What is the capital of France?").headers["x-cache-status"] == "HIT"
        assert second.stop() == 0
    finally:
        second.remove()
