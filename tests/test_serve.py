"""`deja serve` as a user runs it: a real process on loopback, the real embedding model, a fake upstream."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx
import pytest

from proxy.cli import ready_lines
from proxy.settings import Settings

pytestmark = pytest.mark.model


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Serve:
    def __init__(self, upstream_url: str, data_dir: Path, model_dir: Path, *extra: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        config = data_dir.parent / "config.yaml"
        config.write_text(f"embedding:\n  cache_dir: {model_dir}\n")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "proxy", "serve", "--config", str(config), "--port", str(self.port),
             "--upstream", upstream_url, "--data-dir", str(data_dir), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert self.proc.stdout is not None
        self.ready_line = ""
        self.startup_log = ""
        for line in self.proc.stdout:  # blocks until the ready line: no polling needed
            self.startup_log += line
            if line.startswith("deja listening on"):
                self.ready_line = line.strip()
                break
        assert self.ready_line, "deja serve exited before it was ready"
        self.client = httpx.Client(base_url=self.base, trust_env=False, timeout=30)

    def chat(self, text: str, **params) -> httpx.Response:
        return self.client.post("/v1/chat/completions", headers={"Authorization": "Bearer sk-test"},
                                json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}],
                                      **params})

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str]:
        self.client.close()
        self.proc.send_signal(sig)
        out, _ = self.proc.communicate(timeout=30)
        return self.proc.returncode, out


def wait_for(predicate, seconds: float = 10.0) -> bool:
    """Write-back runs after the response in another process: poll its visible effect, bounded."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_serve_prints_address_and_answers_health(fake, tmp_path, model_dir):
    _, url = fake
    deja = Serve(url, tmp_path / "data", model_dir)
    assert deja.ready_line == f"deja listening on {deja.base}"
    assert deja.client.get("/healthz").json()["embedding_model"] == "deja/all-MiniLM-L6-v2-int8@384"
    assert deja.stop()[0] == 0


def test_serve_prints_once_where_it_listens_and_a_dashboard_link_with_the_token(fake, tmp_path, model_dir,
                                                                                 monkeypatch):
    token = "t%k n&x#1"  # every character a raw fragment would break on
    monkeypatch.setenv("DEJA_ADMIN_TOKEN", token)
    _, url = fake
    deja = Serve(url, tmp_path / "data", model_dir)
    upstream, store, dashboard = (deja.proc.stdout.readline().rstrip("\n") for _ in range(3))
    assert upstream == f"  upstream   {url}"
    assert store == f"  store      sqlite {tmp_path / 'data' / 'deja.sqlite3'}"
    link = dashboard.removeprefix("  dashboard  ")
    assert link.startswith(f"{deja.base}/dashboard#token=") and " " not in link
    fragment = urlsplit(link).fragment
    assert unquote(fragment.removeprefix("token=")) == token  # what the page's decodeURIComponent reads
    assert deja.client.get(urlsplit(link).path).status_code == 200
    assert deja.client.get("/admin/stats", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    code, rest = deja.stop()
    assert code == 0 and "deja listening on" not in rest and "#token=" not in rest  # printed once


def test_ready_lines_give_a_link_a_browser_here_opens_or_say_how_to_get_one(monkeypatch):
    settings = Settings(upstream="http://up/v1", data_dir="/d")
    monkeypatch.delenv("DEJA_ADMIN_TOKEN", raising=False)
    lines = ready_lines(settings, "0.0.0.0", 8080).splitlines()
    assert lines[0] == "deja listening on http://0.0.0.0:8080"
    assert lines[3] == "  dashboard  off (set DEJA_ADMIN_TOKEN to enable /admin and http://127.0.0.1:8080/dashboard)"
    monkeypatch.setenv("DEJA_ADMIN_TOKEN", "tok")
    assert ready_lines(settings, "::", 8080).splitlines()[::3] == [
        "deja listening on http://[::]:8080", "  dashboard  http://[::1]:8080/dashboard#token=tok"]
    assert ready_lines(settings, "::1", 8080, workers=2).startswith("deja listening on http://[::1]:8080 (2 workers)")


def test_paraphrase_hits_streams_replay_and_sigterm_drains(fake, tmp_path, model_dir):
    upstream, url = fake
    deja = Serve(url, tmp_path / "data", model_dir)
    try:
        with deja.client.stream("POST", "/v1/chat/completions", headers={"Authorization": "Bearer sk-test"},
                                json={"model": "gpt-4o-mini", "stream": True,
                                      "messages": [{"role": "user", "content": "What is the capital of France?"}]}
                                ) as streamed:
            assert streamed.headers["x-cache-status"] == "MISS"
            events = [line for line in streamed.iter_lines() if line.startswith("data: ")]
        assert events[-1] == "data: [DONE]" and len(events) > 5  # passed through chunk by chunk
        assert wait_for(lambda: deja.chat("What is the capital of France?").headers["x-cache-status"] == "HIT")
        hit = deja.chat("What is the capital city of France?", stream=True)
        assert hit.headers["x-cache-status"] == "HIT" and hit.headers["x-cache-match"] == "semantic"
        assert float(hit.headers["x-cache-similarity"]) >= 0.96
        assert " to: What is the capital of France?" in "".join(
            json.loads(e[6:])["choices"][0]["delta"].get("content") or ""
            for e in hit.text.split("\n\n") if e.startswith("data: {"))
        assert deja.chat("What is the boiling point of water?").headers["x-cache-status"] == "MISS"
        # A slow answer in flight and its write-back must both finish after SIGTERM.
        pending = subprocess.Popen([sys.executable, "-c", (
            "import httpx,sys; r=httpx.post(sys.argv[1], json={'model':'gpt-4o-mini','messages':"
            "[{'role':'user','content':'SLOW question'}]}, headers={'Authorization':'Bearer sk-test'},"
            " timeout=30, trust_env=False); print(r.status_code, r.headers['x-cache-status'])"),
            deja.base + "/v1/chat/completions"], stdout=subprocess.PIPE, text=True)
        assert wait_for(lambda: any("SLOW" in json.dumps(r["body"]) for r in upstream.requests))
    finally:
        code, log = deja.stop()
    assert code == 0, log
    assert pending.communicate(timeout=30)[0].strip() == "200 MISS"
    restarted = Serve(url, tmp_path / "data", model_dir)
    try:
        assert restarted.chat("SLOW question").headers["x-cache-status"] == "HIT"
        assert restarted.chat("What is the capital city of France?").headers["x-cache-match"] == "semantic"
    finally:
        assert restarted.stop(signal.SIGINT)[0] == 0


def test_client_hanging_up_mid_stream_stores_nothing(fake, tmp_path, model_dir):
    upstream, url = fake
    deja = Serve(url, tmp_path / "data", model_dir)
    try:
        with deja.client.stream("POST", "/v1/chat/completions", headers={"Authorization": "Bearer sk-test"},
                                json={"model": "gpt-4o-mini", "stream": True, "messages": [
                                    {"role": "user", "content": "DRIP story, interrupted"}]}) as streamed:
            assert streamed.headers["x-cache-status"] == "MISS"
            assert next(streamed.iter_lines()).startswith("data: {")
        # the client hung up after one chunk: the proxy stops reading upstream and stores nothing
        deja.chat("barrier question")
        assert wait_for(lambda: deja.chat("barrier question").headers["x-cache-status"] == "HIT")
        assert deja.chat("DRIP story, interrupted").headers["x-cache-status"] == "MISS"
    finally:
        assert deja.stop()[0] == 0


def test_index_is_rebuilt_when_its_file_is_lost(fake, tmp_path, model_dir):
    _, url = fake
    data = tmp_path / "data"
    deja = Serve(url, data, model_dir)
    deja.chat("What is the capital of France?")
    assert wait_for(lambda: deja.chat("What is the capital of France?").headers["x-cache-status"] == "HIT")
    assert deja.stop()[0] == 0
    files = list((data / "indexes").glob("*.hnsw"))
    assert len(files) == 1
    files[0].unlink()
    deja = Serve(url, data, model_dir)
    try:
        assert "rebuilt index" in deja.startup_log
        assert deja.chat("What is the capital city of France?").headers["x-cache-match"] == "semantic"
    finally:
        assert deja.stop()[0] == 0


def test_bad_policy_stops_start_up_naming_file_and_key(tmp_path):
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "default.yaml").write_text("match: '*'\nmode: semantic\nthreshhold: 0.9\n")
    result = subprocess.run([sys.executable, "-m", "proxy", "serve", "--policies", str(policies),
                             "--data-dir", str(tmp_path / "d")], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert result.returncode == 2
    assert "default.yaml" in result.stderr and "'threshhold'" in result.stderr
