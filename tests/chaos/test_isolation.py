"""Many concurrent requests over keys, organisations, projects, namespaces, models and parameters against a real
`deja serve`: no answer ever crosses a partition. And secrets never land in data files, logs or /metrics."""

from __future__ import annotations

import itertools
import json
import random
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from .harness import Deja, fill, tmpfs

pytestmark = pytest.mark.model

REQUESTS = 1500
# Rewordings the real model serves as semantic hits, so the fuzz exercises the vector path too.
QUESTIONS = [
    ("What is the capital of France?", "What is the capital city of France?"),
    ("How do I reset my password?", "How can I reset my password?"),
    ("What is the boiling point of water?", "What's the boiling point of water?"),
    ("Who wrote Pride and Prejudice?", "Who is the author of Pride and Prejudice?"),
    ("How many legs does a spider have?", "How many legs do spiders have?"),
]
IDENTITIES = list(itertools.product(["sk-a", "sk-b", "sk-c"], ["", "org-1"], ["", "proj-1"], ["", "ns-1"],
                                    ["gpt-4o-mini", "gpt-4o"], [None, 0.5]))


def send(client: httpx.Client, identity: tuple[Any, ...], text: str) -> tuple[tuple[Any, ...], str, str]:
    key, org, project, namespace, model, temperature = identity
    headers = {"Authorization": f"Bearer {key}"}
    for name, value in (("OpenAI-Organization", org), ("OpenAI-Project", project), ("X-Cache-Namespace", namespace)):
        if value:
            headers[name] = value
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": text}]}
    if temperature is not None:
        body["temperature"] = temperature
    response = client.post("/v1/chat/completions", headers=headers, json=body)
    assert response.status_code == 200, response.text
    status = "COALESCED" if response.headers.get("x-cache-coalesced") else response.headers["x-cache-status"]
    if status == "HIT":
        status = f"HIT {response.headers['x-cache-match']}"
    return identity, status, response.json()["choices"][0]["message"]["content"]


def test_thousands_of_concurrent_requests_cross_no_partition(unique_upstream, tmp_path, model_dir):
    """In three phases; during the middle one the data dir's disk is full (where a tmpfs can be mounted), so
    write-backs fail while other tenants keep asking and storing."""
    rng = random.Random(9)
    # A few identities get most of the traffic, so hits (exact and semantic) are frequent.
    plan = [(rng.choice(IDENTITIES[:12]) if rng.random() < 0.7 else rng.choice(IDENTITIES),
             rng.choice(rng.choice(QUESTIONS))) for _ in range(REQUESTS)]
    phases = [plan[i::3] for i in range(3)]
    results = []
    with tmpfs(tmp_path / "mnt", "64m", required=False) as mnt:
        deja = Deja(tmp_path, unique_upstream, model_dir,
                    data_dir=(mnt or tmp_path) / "data").wait_ready()
        try:
            with ThreadPoolExecutor(16) as pool:
                for phase, jobs in enumerate(phases):
                    filler = fill(mnt) if phase == 1 and mnt is not None else None
                    results += pool.map(lambda job: send(deja.client, *job), jobs)
                    if filler is not None:
                        filler.unlink()
        finally:
            assert deja.stop() == 0
    owner = {content: identity for identity, status, content in results if status == "MISS"}
    served = [(identity, owner.get(content)) for identity, status, content in results
              if status in ("HIT exact", "HIT semantic", "COALESCED")]
    crossed = [(asked, by) for asked, by in served if asked != by]
    statuses = {status for _, status, _ in results}
    assert {"HIT exact", "HIT semantic"} <= statuses and len(served) > REQUESTS // 3, "too few hits to mean anything"
    assert crossed == []


def test_secrets_never_land_in_data_files_logs_or_metrics(fake, tmp_path, model_dir):
    _, url = fake
    secrets = {"upstream": "sk-upstream-SECRET-4242", "admin": "admin-SECRET-1717", "client": "sk-client-SECRET-99"}
    deja = Deja(tmp_path, url, model_dir, settings={"log_level": "debug"},
                env={"DEJA_UPSTREAM_API_KEY": secrets["upstream"], "DEJA_ADMIN_TOKEN": secrets["admin"]}).wait_ready()
    admin = {"Authorization": f"Bearer {secrets['admin']}"}
    try:
        for _ in range(2):
            deja.chat("What is the capital of France?", key=secrets["client"])
            deja.client.post("/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": [
                {"role": "user", "content": "asked without a key"}]})
        deja.chat("FAIL500 please", key=secrets["client"])
        deja.client.get("/v1/models", headers={"Authorization": f"Bearer {secrets['client']}"})
        deja.client.get("/admin/stats", headers={"Authorization": "Bearer wrong-token"})
        scraped = deja.client.get("/metrics").text + deja.client.get("/admin/stats", headers=admin).text \
            + deja.client.get("/admin/export", headers=admin).text + json.dumps(deja.client.get("/healthz").json())
    finally:
        assert deja.stop() == 0
    files = {p: p.read_bytes() for p in deja.data_dir.rglob("*") if p.is_file() and "models" not in p.parts}
    assert any(p.suffix == ".sqlite3" for p in files) and any(p.suffix == ".hnsw" for p in files)
    # The contract's one exception: the start-up banner hands the operator the dashboard link, token in its fragment.
    banner = f"  dashboard  http://127.0.0.1:{deja.port}/dashboard#token={secrets['admin']}\n"
    assert deja.log.count(banner) == 1
    log = deja.log.replace(banner, "")
    for name, secret in secrets.items():
        assert secret not in log, f"{name} secret in the log"
        assert secret not in scraped, f"{name} secret in /metrics or the admin API"
        for path, data in files.items():
            assert secret.encode() not in data, f"{name} secret in {path}"
