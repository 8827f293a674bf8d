"""docker/compose.yaml's `replicas` profile for real: the image built from docker/Dockerfile, PostgreSQL from
pgvector/pgvector:pg18, two Deja replicas. Host networking keeps all traffic on loopback (no registry or bridge
needed), so the test runs a copy of the compose file with only ports and addresses changed."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from .fakes import FakeUpstream, ThreadedServer
from .test_serve import free_port, wait_for

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ("python:3.11-slim", "pgvector/pgvector:pg18")
TOKEN = "compose-admin-token"
pytestmark = pytest.mark.docker


def docker_problem() -> str | None:
    if shutil.which("docker") is None or shutil.which("docker-compose") is None:
        return "docker and docker-compose are not installed (bash ../shared/docker/standin-images.sh)"
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        return "the Docker daemon is not running"
    for image in IMAGES:
        if subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode != 0:
            return f"image {image} is missing (bash ../shared/docker/standin-images.sh)"
    return None


def compose_file(tmp_path: Path, db_port: int, ports: dict[str, int]) -> Path:
    spec = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
    services = spec["services"]
    services["postgres"].update(network_mode="host", command=["-p", str(db_port)])
    for name, port in ports.items():
        replica = services[name]
        replica.pop("ports")
        replica["network_mode"] = "host"
        replica["build"]["context"] = str(ROOT)
        replica["command"] = [*replica["command"], "--port", str(port), "--host", "127.0.0.1"]
    path = tmp_path / "compose.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.fixture
def stack(tmp_path) -> Iterator[tuple[dict[str, httpx.Client], FakeUpstream]]:
    problem = docker_problem()
    if problem:
        pytest.skip(problem)
    upstream = FakeUpstream()
    ports = {"deja-1": free_port(), "deja-2": free_port()}
    with ThreadedServer(upstream.app) as url:
        path = compose_file(tmp_path, free_port(), ports)
        db_port = yaml.safe_load(path.read_text())["services"]["postgres"]["command"][1]
        env = {**os.environ, "POSTGRES_PASSWORD": "pw-test", "DEJA_ADMIN_TOKEN": TOKEN, "DEJA_UPSTREAM": url,
               "DEJA_DB_HOST": "127.0.0.1", "DEJA_DB_PORT": db_port}
        compose = ["docker-compose", "-p", f"deja-test-{ports['deja-1']}", "-f", str(path), "--profile", "replicas"]
        services = ["postgres", "deja-1", "deja-2"]
        subprocess.run([*compose, "build", "deja-1"], env=env, check=True, capture_output=True, timeout=1800)
        try:
            subprocess.run([*compose, "up", "-d", *services], env=env, check=True, capture_output=True, timeout=300)
            clients = {name: httpx.Client(base_url=f"http://127.0.0.1:{port}", trust_env=False, timeout=30)
                       for name, port in ports.items()}

            def healthy(client: httpx.Client) -> bool:
                try:
                    return client.get("/healthz").json()["status"] == "ok"
                except httpx.HTTPError:
                    return False

            assert wait_for(lambda: all(healthy(c) for c in clients.values()), 180)
            yield clients, upstream
            stopped = subprocess.run([*compose, "stop", "-t", "40", "deja-1", "deja-2"], env=env,
                                     capture_output=True, timeout=120)
            assert stopped.returncode == 0
            ids = [subprocess.run([*compose, "ps", "-q", name], env=env, capture_output=True, text=True).stdout.strip()
                   for name in ports]
            codes = subprocess.run(["docker", "inspect", "-f", "{{.State.ExitCode}}", *ids],
                                   capture_output=True, text=True).stdout.split()
            assert codes == ["0", "0"]
        finally:
            subprocess.run([*compose, "down", "-v"], env=env, capture_output=True, timeout=120)


def ask(client: httpx.Client, text: str) -> httpx.Response:
    return client.post("/v1/chat/completions", headers={"Authorization": "Bearer sk-compose"},
                       json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]})


def test_two_replicas_from_compose_share_answers_and_deletions(stack):
    clients, upstream = stack
    one, two = clients["deja-1"], clients["deja-2"]
    assert ask(one, "What is the capital of France?").headers["x-cache-status"] == "MISS"
    assert wait_for(lambda: ask(two, "What is the capital of France?").headers["x-cache-status"] == "HIT")
    assert ask(two, "What is the capital city of France?").headers["x-cache-match"] == "semantic"
    assert upstream.calls == 1
    auth = {"Authorization": f"Bearer {TOKEN}"}
    (entry,) = two.get("/admin/entries", headers=auth).json()["entries"]
    assert ask(one, "What is the capital of France?").headers["x-cache-status"] == "HIT"
    deleted = time.monotonic()
    assert two.delete(f"/admin/entries/{entry['id']}", headers=auth).status_code == 200
    while ask(one, "What is the capital of France?").headers["x-cache-status"] == "HIT":
        assert time.monotonic() - deleted < 1.0
        time.sleep(0.01)
