"""POST /modelcache: ModelCache's request and answer shapes over the proxy's own entries."""

from __future__ import annotations

import json

import pytest

from .conftest import default_policies

pytestmark = pytest.mark.anyio

MODEL = "gpt-4o-mini"
SYSTEM = {"role": "system", "content": "You are a helpful assistant."}


def ask(text: str) -> list[dict[str, str]]:
    return [SYSTEM, {"role": "user", "content": text}]


async def call(proxy, body, *, key: str = "sk-a", as_string: bool = False) -> dict:
    payload = json.dumps(body) if as_string else body
    response = await proxy.client.post("/modelcache", json=payload, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.text
    return response.json()


async def insert(proxy, text: str, answer: str, **kw) -> dict:
    return await call(proxy, {"type": "insert", "scope": {"model": MODEL},
                              "chat_info": [{"query": ask(text), "answer": answer}]}, **kw)


async def query(proxy, text: str, **kw) -> dict:
    return await call(proxy, {"type": "query", "scope": {"model": MODEL}, "query": ask(text)}, **kw)


async def test_insert_then_query_hits_with_modelcache_shapes(proxy):
    written = await insert(proxy, "How do I reset my password?", "Use the reset link.")
    assert written == {"errorCode": 0, "errorDesc": "", "writeStatus": "success"}
    found = await query(proxy, "How do I reset my password?")
    assert set(found) == {"errorCode", "errorDesc", "cacheHit", "delta_time", "hit_query", "answer"}
    assert found["errorCode"] == 0 and found["cacheHit"] is True
    assert found["hit_query"] == "How do I reset my password?" and found["answer"] == "Use the reset link."
    assert found["delta_time"].endswith("s")


async def test_body_sent_as_a_json_encoded_string_is_accepted(proxy):
    assert (await insert(proxy, "What is 2 + 2?", "4", as_string=True))["writeStatus"] == "success"
    assert (await query(proxy, "What is 2 + 2?", as_string=True))["answer"] == "4"


async def test_query_miss(proxy):
    found = await query(proxy, "Never asked before")
    assert found == {"errorCode": 0, "errorDesc": "", "cacheHit": False, "delta_time": found["delta_time"],
                     "hit_query": "", "answer": ""}


async def test_query_matches_by_meaning_through_the_same_lookup(proxy):
    await insert(proxy, "what is the capital of france", "Paris")
    found = await query(proxy, "What is the capital of France?")
    assert found["cacheHit"] is True and found["hit_query"] == "what is the capital of france"


async def test_an_inserted_answer_is_served_to_the_proxy_with_the_same_key(proxy):
    await insert(proxy, "How do I reset my password?", "Use the reset link.")
    response = await proxy.client.post("/v1/chat/completions", headers={"Authorization": "Bearer sk-a"},
                                       json={"model": MODEL, "messages": ask("How do I reset my password?")})
    assert response.headers["x-cache-status"] == "HIT"
    assert response.json()["choices"][0]["message"]["content"] == "Use the reset link."
    assert proxy.upstream.calls == 0


async def test_a_proxy_answer_is_found_by_a_modelcache_query(proxy):
    await proxy.chat("Tell me a joke", history=[SYSTEM])
    found = await query(proxy, "Tell me a joke")
    assert found["cacheHit"] is True and found["answer"] == "answer #1 to: Tell me a joke"


async def test_other_api_key_never_hits_an_inserted_entry(proxy):
    await insert(proxy, "How do I reset my password?", "Use the reset link.", key="sk-a")
    assert (await query(proxy, "How do I reset my password?", key="sk-b"))["cacheHit"] is False


async def test_a_different_system_prompt_never_hits(proxy):
    await insert(proxy, "Summarise the news", "Nothing happened.")
    other = await call(proxy, {"type": "query", "scope": {"model": MODEL},
                               "query": [{"role": "system", "content": "Answer in French."},
                                         {"role": "user", "content": "Summarise the news"}]})
    assert other["cacheHit"] is False


async def test_remove_by_id_deletes_only_the_callers_entries(proxy):
    await insert(proxy, "How do I reset my password?", "mine", key="sk-a")
    await insert(proxy, "How do I reset my password?", "theirs", key="sk-b")
    ids = sorted(r.id for batch in [await proxy.cache.store.get_many(range(1, 10))] for r in batch.values())
    removed = await call(proxy, {"type": "remove", "scope": {"model": MODEL}, "remove_type": "delete_by_id",
                                 "id_list": ids}, key="sk-a")
    assert removed["errorCode"] == 0 and removed["writeStatus"] == "success"
    assert removed["response"] == {"status": "success", "delete_count": 1}
    assert (await query(proxy, "How do I reset my password?", key="sk-a"))["cacheHit"] is False
    assert (await query(proxy, "How do I reset my password?", key="sk-b"))["answer"] == "theirs"


async def test_truncate_by_model_clears_the_callers_model(proxy):
    await insert(proxy, "first question", "one")
    await insert(proxy, "second question", "two")
    removed = await call(proxy, {"type": "remove", "scope": {"model": MODEL}, "remove_type": "truncate_by_model"})
    assert removed["response"]["delete_count"] == 2
    assert (await query(proxy, "first question"))["cacheHit"] is False


async def test_register_is_a_successful_no_op(proxy):
    registered = await call(proxy, {"type": "register", "scope": {"model": MODEL}})
    assert registered["errorCode"] == 0 and registered["writeStatus"] == "success"


@pytest.mark.parametrize("kind", ["detox", None, 5])
async def test_unknown_type_is_error_102(proxy, kind):
    result = await call(proxy, {"type": kind, "scope": {"model": MODEL}})
    assert result["errorCode"] == 102
    assert result["errorDesc"] == "type exception, should one of ['query', 'insert', 'remove', 'register']"


@pytest.mark.parametrize("raw", [b"{not json", b'"not an object"', b"[1, 2]", b"\xff\xfe"])
async def test_unreadable_body_is_error_101(proxy, raw):
    response = await proxy.client.post("/modelcache", content=raw)
    assert response.status_code == 200 and response.json()["errorCode"] == 101


@pytest.mark.parametrize("body", [
    {"type": "query", "query": ask("hi")},  # no scope
    {"type": "query", "scope": {"model": MODEL}, "query": "hi"},  # not messages
    {"type": "query", "scope": {"model": MODEL}, "query": [{"role": "wizard", "content": "hi"}]},
    {"type": "insert", "scope": {"model": MODEL}, "chat_info": []},
    {"type": "insert", "scope": {"model": MODEL}, "chat_info": [{"query": ask("hi")}]},  # no answer
    {"type": "remove", "scope": {"model": MODEL}, "remove_type": "everything"},
    {"type": "remove", "scope": {"model": MODEL}, "remove_type": "delete_by_id", "id_list": "1,2"},
])
async def test_bad_parameters_are_error_103_and_change_nothing(proxy, body):
    await insert(proxy, "keep me", "kept")
    result = await call(proxy, body)
    assert result["errorCode"] == 103 and result["errorDesc"]
    assert (await query(proxy, "keep me"))["cacheHit"] is True


async def test_insert_is_refused_when_the_policy_turns_caching_off(make_proxy):
    async with make_proxy(policies=default_policies(mode="off")) as proxy:
        result = await insert(proxy, "anything", "x")
        assert result["errorCode"] == 301 and result["writeStatus"] == "exception"
        assert (await query(proxy, "anything"))["cacheHit"] is False
        metrics = (await proxy.client.get("/metrics")).text
        assert 'deja_requests_total{match="none",model="gpt-4o-mini",status="BYPASS"} 1.0' in metrics


async def test_huge_body_is_refused_with_413(make_proxy):
    async with make_proxy(max_body_bytes=1000) as proxy:
        response = await proxy.client.post("/modelcache", json={"type": "insert", "x": "y" * 2000})
        assert response.status_code == 413


async def test_queries_show_up_in_stats_as_lookups(make_proxy, monkeypatch):
    monkeypatch.setenv("DEJA_ADMIN_TOKEN", "t")
    async with make_proxy() as proxy:
        await queries_then_stats(proxy)


async def queries_then_stats(proxy):
    await insert(proxy, "How do I reset my password?", "Use the reset link.")
    await query(proxy, "How do I reset my password?")
    await query(proxy, "Something else entirely")
    stats = (await proxy.client.get("/admin/stats", headers={"Authorization": "Bearer t"})).json()
    assert stats["requests"]["HIT"] == 1 and stats["requests"]["MISS"] == 1
    assert stats["recent_hits"][0]["matched"] == "How do I reset my password?"
    assert stats["tokens_saved"]["total"] == 0  # inserted answers carry no usage: nothing is claimed
