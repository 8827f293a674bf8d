"""The admin API (/admin/*) and the admin CLI, in-process over real SQLite and hnswlib."""

from __future__ import annotations

import json
import time

import pytest

from proxy.canonical import Owner, build_chat_request, tenant_of
from proxy.policies import Policy
from proxy.stores.base import EntryFilter

pytestmark = pytest.mark.anyio

TOKEN = "admin-secret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# Distinct words: the hash embedder never makes two of these questions semantic matches of each other.
WORDS = ["aster", "birch", "cedar", "dahlia", "elm", "fern", "ginkgo", "hazel", "iris", "juniper", "kale", "lilac"]
EXPORT_FIELDS = {"id", "model", "namespace", "tenant", "partition", "exact_key", "context_digest", "context_text",
                 "question", "response", "created_at", "expires_at", "hits"}


@pytest.fixture
def admin_token(monkeypatch):
    monkeypatch.setenv("DEJA_ADMIN_TOKEN", TOKEN)
    return TOKEN


@pytest.fixture
async def admin(admin_token, make_proxy):
    async with make_proxy() as proxy:
        yield proxy


async def seed(proxy) -> None:
    await proxy.chat("How do I reset my password?", key="sk-a")
    await proxy.chat("What is the capital of France?", key="sk-a")
    await proxy.chat("What is the capital of France?", key="sk-b", model="gpt-4o")
    await proxy.chat("Summarise the news", key="sk-a", headers={"X-Cache-Namespace": "news"})


async def entry_id_for(proxy, question: str, **params) -> int:
    page = (await proxy.client.get("/admin/entries", params={"q": question, **params}, headers=AUTH)).json()
    assert page["total"] == 1, page
    return page["entries"][0]["id"]


# -- auth -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path, method", [("/admin/stats", "GET"), ("/admin/entries", "GET"),
                                          ("/admin/entries/1", "GET"), ("/admin/entries/1", "DELETE"),
                                          ("/admin/purge", "POST"), ("/admin/export", "GET"),
                                          ("/admin/import", "POST")])
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-token"}, {"Authorization": TOKEN},
                                     {"Authorization": f"Basic {TOKEN}"}])
async def test_every_admin_endpoint_refuses_a_missing_or_wrong_token(admin, path, method, headers):
    response = await admin.client.request(method, path, headers=headers, json={"all": True})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["error"]["code"] == "invalid_admin_token"


async def test_admin_api_and_dashboard_do_not_exist_without_a_token(make_proxy, monkeypatch):
    monkeypatch.delenv("DEJA_ADMIN_TOKEN", raising=False)
    async with make_proxy() as proxy:
        monkeypatch.setenv("DEJA_ADMIN_TOKEN", TOKEN)  # read once at start-up: setting it later changes nothing
        for path in ("/admin/stats", "/dashboard"):
            response = await proxy.client.get(path, headers=AUTH)
            assert response.status_code == 404
            assert "DEJA_ADMIN_TOKEN" in response.json()["error"]["message"]


async def test_the_token_never_reaches_the_log(admin, caplog):
    caplog.set_level("DEBUG")
    await admin.client.get("/admin/stats", headers=AUTH)
    await admin.client.get("/admin/stats", headers={"Authorization": "Bearer wrong-token"})
    assert TOKEN not in caplog.text and "wrong-token" not in caplog.text


# -- stats ------------------------------------------------------------------------------------------------------


async def test_stats_counts_requests_hits_savings_and_entries(admin):
    await seed(admin)
    await admin.chat("How do I reset my password?", key="sk-a")  # exact hit
    await admin.chat("what is the capital of france", key="sk-a")  # semantic hit
    await admin.chat("Hello", model="my-local-llama")
    await admin.chat("Hello", model="my-local-llama")  # hit on an unpriced model
    stats = (await admin.client.get("/admin/stats", headers=AUTH)).json()
    assert stats["requests"]["total"] == 8 and stats["requests"]["HIT"] == 3 and stats["requests"]["MISS"] == 5
    assert stats["matches"] == {"exact": 2, "semantic": 1}
    assert stats["hit_rate"] == round(3 / 8, 4)
    assert stats["tokens_saved"] == {"prompt": 30, "completion": 15, "total": 45}
    assert stats["cost_saved_usd"] == pytest.approx((20 * 0.15 + 10 * 0.60) / 1e6, abs=1e-6)
    assert stats["unpriced_tokens_saved"] == 15 and stats["unpriced_models"] == ["my-local-llama"]
    assert stats["entries"] == 5 and stats["entry_hits"] == 3 and stats["partitions"] == 4
    assert stats["index_vectors"] == 5 and stats["writeback_queue"] == 0
    assert stats["latency_ms"]["lookup"]["count"] == 8 and stats["latency_ms"]["upstream"]["count"] == 5
    recent = stats["recent_hits"][0]
    assert recent["asked"] == "Hello" and recent["matched"] == "Hello" and recent["match"] == "exact"
    semantic = next(h for h in stats["recent_hits"] if h["match"] == "semantic")
    assert semantic["asked"] == "what is the capital of france"
    assert semantic["matched"] == "What is the capital of France?" and semantic["similarity"] == 1.0
    assert {e["question"] for e in stats["top_entries"]} == {"How do I reset my password?",
                                                            "What is the capital of France?", "Hello"}
    assert sum(b["hits"] for b in stats["series"]) == 3


# -- entries ----------------------------------------------------------------------------------------------------


async def test_entries_filter_by_model_namespace_tenant_and_text(admin):
    await seed(admin)

    async def questions(**params) -> list[str]:
        response = await admin.client.get("/admin/entries", params=params, headers=AUTH)
        assert response.status_code == 200, response.text
        return sorted(e["question"] for e in response.json()["entries"])

    assert await questions(model="gpt-4o") == ["What is the capital of France?"]
    assert await questions(namespace="news") == ["Summarise the news"]
    assert len(await questions(namespace="")) == 3
    assert await questions(q="CAPITAL") == ["What is the capital of France?", "What is the capital of France?"]
    assert await questions(q="100%_") == []  # LIKE wildcards are literal
    tenant = (await admin.client.get("/admin/entries", params={"model": "gpt-4o"}, headers=AUTH)).json()
    other = tenant["entries"][0]["tenant"]
    assert await questions(tenant=other) == ["What is the capital of France?"]


async def test_entries_are_paginated_newest_first(admin):
    for word in WORDS[:5]:
        await admin.chat(f"tell me about {word}")
    first = (await admin.client.get("/admin/entries", params={"limit": 2}, headers=AUTH)).json()
    assert first["total"] == 5 and first["next_offset"] == 2
    assert [e["question"] for e in first["entries"]] == ["tell me about elm", "tell me about dahlia"]
    last = (await admin.client.get("/admin/entries", params={"limit": 2, "offset": 4}, headers=AUTH)).json()
    assert [e["question"] for e in last["entries"]] == ["tell me about aster"] and last["next_offset"] is None


@pytest.mark.parametrize("params, param", [
    ({"limit": "abc"}, "limit"), ({"limit": "0"}, "limit"), ({"limit": "100000"}, "limit"),
    ({"offset": "-1"}, "offset"), ({"older_than": "soon"}, "older_than"), ({"older_than": "-5"}, "older_than"),
    ({"older_than": "nan"}, "older_than"), ({"modle": "gpt-4o"}, "modle"),
])
async def test_bad_entry_filters_are_a_400_naming_the_filter(admin, params, param):
    response = await admin.client.get("/admin/entries", params=params, headers=AUTH)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


async def test_show_an_entry_with_its_full_response(admin):
    await seed(admin)
    entry_id = await entry_id_for(admin, "reset my password")
    entry = (await admin.client.get(f"/admin/entries/{entry_id}", headers=AUTH)).json()
    assert entry["question"] == "How do I reset my password?"
    assert entry["response"]["object"] == "chat.completion"
    assert entry["answer"] == "answer #1 to: How do I reset my password?"


@pytest.mark.parametrize("method", ["GET", "DELETE"])
async def test_unknown_or_malformed_entry_ids(admin, method):
    unknown = await admin.client.request(method, "/admin/entries/999999", headers=AUTH)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
    malformed = await admin.client.request(method, "/admin/entries/abc", headers=AUTH)
    assert malformed.status_code == 400


async def test_deleting_an_entry_makes_its_question_miss_even_by_meaning(admin):
    await admin.chat("what is the capital of france")
    entry_id = await entry_id_for(admin, "capital")
    response = await admin.client.delete(f"/admin/entries/{entry_id}", headers=AUTH)
    assert response.json() == {"deleted": 1, "id": entry_id}
    assert [v for _, v in admin.cache.partition_sizes().values()] == [0]
    exact = await admin.chat("what is the capital of france")
    assert exact.headers["x-cache-status"] == "MISS"
    assert (await admin.client.delete(f"/admin/entries/{entry_id}", headers=AUTH)).status_code == 404


# -- purge ------------------------------------------------------------------------------------------------------


async def test_purge_by_model_removes_only_that_model_and_its_vectors(admin):
    await seed(admin)
    response = await admin.client.post("/admin/purge", json={"model": "gpt-4o-mini"}, headers=AUTH)
    assert response.json() == {"purged": 3}
    assert (await admin.chat("How do I reset my password?", key="sk-a")).headers["x-cache-status"] == "MISS"
    kept = await admin.chat("What is the capital of France?", key="sk-b", model="gpt-4o")
    assert kept.headers["x-cache-status"] == "HIT"
    sizes = admin.cache.partition_sizes()
    assert sum(n for n, _ in sizes.values()) == sum(v for _, v in sizes.values()) == 2


async def test_purge_by_namespace_tenant_and_age(admin):
    await seed(admin)
    assert (await admin.client.post("/admin/purge", json={"namespace": "news"}, headers=AUTH)).json()["purged"] == 1
    tenant = (await admin.client.get("/admin/entries", params={"model": "gpt-4o"}, headers=AUTH)).json()
    other = tenant["entries"][0]["tenant"]
    assert (await admin.client.post("/admin/purge", json={"tenant": other}, headers=AUTH)).json()["purged"] == 1
    assert (await admin.client.post("/admin/purge", json={"older_than": 3600}, headers=AUTH)).json()["purged"] == 0
    assert (await admin.client.post("/admin/purge", json={"older_than": 0}, headers=AUTH)).json()["purged"] == 2
    assert await admin.cache.store.count_entries(EntryFilter()) == 0


@pytest.mark.parametrize("body, status", [
    ({}, 400), ({"all": "yes"}, 400), ({"model": 5}, 400), ({"older_than": -1}, 400), ({"older_than": True}, 400),
    ({"modle": "gpt-4o"}, 400), ({"all": True, "model": "gpt-4o"}, 400), ([], 400), ("purge", 400),
])
async def test_purge_refuses_bad_or_missing_filters(admin, body, status):
    await seed(admin)
    response = await admin.client.post("/admin/purge", json=body, headers=AUTH)
    assert response.status_code == status, response.text
    assert await admin.cache.store.count_entries(EntryFilter()) == 4


async def test_purge_all_needs_saying_so(admin):
    await seed(admin)
    response = await admin.client.post("/admin/purge", json={"all": True}, headers=AUTH)
    assert response.json() == {"purged": 4}


async def test_purge_body_that_is_not_json_is_a_400(admin):
    response = await admin.client.post("/admin/purge", content=b"{not json", headers=AUTH)
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_json"


async def test_huge_purge_body_is_a_413(admin):
    response = await admin.client.post("/admin/purge", content=b'{"model": "' + b"x" * 100_000 + b'"}',
                                       headers=AUTH)
    assert response.status_code == 413


# -- export -----------------------------------------------------------------------------------------------------


async def test_export_streams_one_json_line_per_entry_in_the_import_format(admin):
    await seed(admin)
    response = await admin.client.get("/admin/export", headers=AUTH)
    assert response.status_code == 200 and response.headers["content-type"] == "application/x-ndjson"
    assert response.headers["x-total-count"] == "4"
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert len(lines) == 4 and all(set(line) == EXPORT_FIELDS for line in lines)
    assert [line["id"] for line in lines] == sorted(line["id"] for line in lines)
    assert lines[0]["response"]["choices"][0]["message"]["content"] == "answer #1 to: How do I reset my password?"


async def test_export_in_batches_keeps_every_entry_once(admin):
    for word in WORDS[:7]:
        await admin.chat(f"tell me about {word}")
    batches = [b async for b in admin.cache.store.iter_entries(EntryFilter(), batch=3)]
    assert [len(b) for b in batches] == [3, 3, 1]
    assert len({r.id for b in batches for r in b}) == 7


async def test_export_filters_like_entries(admin):
    await seed(admin)
    response = await admin.client.get("/admin/export", params={"namespace": "news"}, headers=AUTH)
    assert [json.loads(line)["question"] for line in response.text.splitlines()] == ["Summarise the news"]
    bad = await admin.client.get("/admin/export", params={"older_than": "x"}, headers=AUTH)
    assert bad.status_code == 400


async def test_deletions_queued_behind_write_backs_keep_index_and_store_in_step(admin):
    """A deletion runs in the write-back worker after what was queued before it: no vector outlives its row."""
    policy = Policy()
    for word in WORDS:  # submit() is synchronous: no worker turn can run between these and the purge below
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"about {word}"}]}
        chat = build_chat_request(body, Owner(tenant_of("Bearer sk-a")))
        assert admin.cache.submit(chat, policy, {"object": "chat.completion", "choices": [
            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": word}}]})
    assert admin.cache.queue_depth == len(WORDS)
    purged = await admin.cache.purge(EntryFilter(model="gpt-4o-mini", created_before=time.time() + 60))
    assert purged == len(WORDS)  # every write-back queued before the purge was stored first, then purged
    assert await admin.cache.store.count_entries(EntryFilter()) == 0
    assert all(v == 0 for _, v in admin.cache.partition_sizes().values())


# -- import -----------------------------------------------------------------------------------------------------


async def test_export_purge_import_round_trip_serves_the_same_answers(admin):
    await seed(admin)
    exported = (await admin.client.get("/admin/export", headers=AUTH)).content
    assert (await admin.client.post("/admin/purge", json={"all": True}, headers=AUTH)).json()["purged"] == 4
    assert (await admin.chat("How do I reset my password?", headers={"Cache-Control": "no-store"})).headers[
        "x-cache-status"] == "BYPASS"
    report = (await admin.client.post("/admin/import", content=exported, headers=AUTH)).json()
    assert report == {"lines": 4, "imported": 4, "skipped": 0, "failed": 0, "errors": []}
    calls = admin.upstream.calls
    hit = await admin.chat("How do I reset my password?")
    assert hit.headers["x-cache-status"] == "HIT" and admin.upstream.calls == calls
    assert hit.json()["choices"][0]["message"]["content"] == "answer #1 to: How do I reset my password?"


async def test_question_answer_lines_go_to_the_tenant_of_the_import_key(admin):
    lines = (json.dumps({"model": "gpt-4o-mini", "question": "What are your opening hours?",
                         "answer": "9 to 5, Monday to Friday."}) + "\n").encode()
    report = (await admin.client.post("/admin/import", content=lines,
                                      headers={**AUTH, "X-Import-Api-Key": "sk-a"})).json()
    assert report["imported"] == 1
    hit = await admin.chat("What are your opening hours?", key="sk-a")
    assert hit.headers["x-cache-status"] == "HIT"
    assert hit.json()["choices"][0]["message"]["content"] == "9 to 5, Monday to Friday."
    assert (await admin.chat("What are your opening hours?", key="sk-b")).headers["x-cache-status"] == "MISS"


async def test_import_counts_bad_and_huge_lines_and_keeps_going(admin):
    good = json.dumps({"model": "gpt-4o-mini", "question": "Where is the office?", "answer": "Leeds."})
    body = b"\n".join([b"{not json", b"\xff\xfe", b'{"question": "no answer"}', b"x" * (2 << 20),
                        good.encode(), b""])
    report = (await admin.client.post("/admin/import", content=body,
                                      headers={**AUTH, "X-Import-Api-Key": "sk-a"})).json()
    assert (report["lines"], report["imported"], report["failed"]) == (5, 1, 4)
    assert any("longer than" in e for e in report["errors"]) and any("not UTF-8" in e for e in report["errors"])
    assert (await admin.chat("Where is the office?")).headers["x-cache-status"] == "HIT"


async def test_question_answer_lines_without_a_tenant_are_refused_line_by_line(admin):
    line = json.dumps({"model": "gpt-4o-mini", "question": "q?", "answer": "a"}).encode()
    report = (await admin.client.post("/admin/import", content=line, headers=AUTH)).json()
    assert report["failed"] == 1 and "needs the tenant's API key" in report["errors"][0]
    bad = await admin.client.post("/admin/import", content=line, params={"shared": "yes"}, headers=AUTH)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "shared"
