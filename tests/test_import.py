"""Bulk import: both line shapes, keyed as the proxy keys requests; `deja import` with the real model."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from proxy.importer import import_lines
from proxy.stores.base import export_line

from .conftest import default_policies

pytestmark = pytest.mark.anyio


async def lines_of(*objects):
    for obj in objects:
        yield obj if isinstance(obj, str) else json.dumps(obj) + "\n"


async def test_imported_pairs_answer_the_tenant_that_imported_them(proxy):
    report = await import_lines(proxy.cache, default_policies(), lines_of(
        {"question": "How tall is the Eiffel Tower?", "answer": "330 metres."},
        {"messages": [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Capital of Peru?"}],
         "answer": "Lima.", "model": "gpt-4o"},
        {"question": "Which tools?", "answer": "None.", "params": {"temperature": 0}},
        "this is not json",
        {"answer": "no question"},
    ), tenant_key="sk-a", shared=False, model="gpt-4o-mini", batch=2)
    assert (report.lines, report.imported, report.failed) == (5, 3, 2)
    assert report.errors[0].startswith("line 4: not JSON")
    hit = await proxy.chat("How tall is the Eiffel Tower?")
    assert hit.headers["x-cache-status"] == "HIT" and hit.json()["choices"][0]["message"]["content"] == "330 metres."
    assert (await proxy.chat("how tall is the eiffel tower")).headers["x-cache-match"] == "semantic"
    assert (await proxy.chat("Capital of Peru?", model="gpt-4o",
                             history=[{"role": "system", "content": "Be terse."}])).headers["x-cache-status"] == "HIT"
    assert (await proxy.chat("Which tools?", temperature=0)).headers["x-cache-status"] == "HIT"
    assert (await proxy.chat("Which tools?")).headers["x-cache-status"] == "MISS"  # other params: other entry
    assert (await proxy.chat("How tall is the Eiffel Tower?", key="sk-b")).headers["x-cache-status"] == "MISS"


async def test_shared_import_answers_every_key_under_a_sharing_policy(make_proxy):
    policies = default_policies(share_across_keys=True)
    async with make_proxy(policies=policies) as proxy:
        await import_lines(proxy.cache, policies, lines_of({"question": "Speed of light?", "answer": "c"}),
                           tenant_key=None, shared=True, model="gpt-4o-mini")
        for key in ("sk-a", "sk-z"):
            assert (await proxy.chat("Speed of light?", key=key)).headers["x-cache-status"] == "HIT"


async def test_export_lines_are_restored_as_they_were(proxy):
    await proxy.chat("What is an export?")
    (record,) = (await proxy.cache.store.get_many([1])).values()
    exported = {**export_line(record), "hits": 7}  # what `deja export` writes
    expired = {**exported, "exact_key": "gone", "expires_at": 1.0}
    assert await proxy.cache.delete_entries([record.id]) == 1
    report = await import_lines(proxy.cache, default_policies(), lines_of(exported, expired), tenant_key=None,
                                shared=True)
    assert (report.imported, report.skipped) == (1, 1)
    async with proxy.cache.store.reader.execute("SELECT exact_key, created_at, hits FROM entries") as cur:
        assert await cur.fetchall() == [(exported["exact_key"], exported["created_at"], 7)]
    hit = await proxy.chat("What is an export?")
    assert hit.headers["x-cache-status"] == "HIT" and proxy.upstream.calls == 1


async def test_import_honours_max_entries(make_proxy):
    policies = default_policies(max_entries=10)
    async with make_proxy(policies=policies) as proxy:
        report = await import_lines(proxy.cache, policies, lines_of(
            *({"question": f"question {i}", "answer": str(i)} for i in range(25))), tenant_key="sk-a",
            shared=False, model="gpt-4o-mini", batch=8)
        assert report.imported == 25
        async with proxy.cache.store.reader.execute("SELECT COUNT(*) FROM entries") as cur:
            assert (await cur.fetchone())[0] == 10
        (index,) = proxy.cache.store.indexes.indexes.values()
        assert index.live == 10


@pytest.mark.model
async def test_deja_import_command_with_the_real_model(make_proxy, real_embedder, tmp_path, model_dir):
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in [
        ("What is the capital of France?", "Paris."), ("Who wrote Hamlet?", "Shakespeare.")]) + "{broken\n")
    config = tmp_path / "config.yaml"
    config.write_text(f"embedding:\n  cache_dir: {model_dir}\n")
    done = subprocess.run([sys.executable, "-m", "proxy", "import", str(data), "--config", str(config),
                           "--data-dir", str(tmp_path / "data"), "--model", "gpt-4o-mini", "--api-key-env",
                           "DEJA_TEST_KEY"], env={**os.environ, "DEJA_TEST_KEY": "sk-a"},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr  # one bad line
    assert "2 imported, 0 skipped, 1 failed of 3 lines" in done.stderr and "line 3: not JSON" in done.stderr
    async with make_proxy(embedder=real_embedder, data_dir=tmp_path / "data") as proxy:
        hit = await proxy.chat("What is the capital city of France?")
        assert hit.headers["x-cache-match"] == "semantic" and hit.json()["choices"][0]["message"]["content"] == "Paris."
