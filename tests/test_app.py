"""The proxy in-process: routes, statuses, isolation, controls, and failures, over real SQLite and hnswlib."""

from __future__ import annotations

import json

import httpx
import pytest

from proxy.policies import Policy, PolicySet

from .conftest import default_policies
from .fakes import BrokenEmbedder

pytestmark = pytest.mark.anyio


def content(response: httpx.Response) -> str:
    return response.json()["choices"][0]["message"]["content"]


async def test_miss_then_exact_hit_with_headers(proxy):
    first = await proxy.chat("How do I reset my password?")
    assert first.status_code == 200 and first.headers["x-cache-status"] == "MISS"
    second = await proxy.chat("How do I reset my password?")
    assert second.headers["x-cache-status"] == "HIT"
    assert second.headers["x-cache-match"] == "exact"
    assert second.headers["x-cache-key"].isdigit() and int(second.headers["age"]) >= 0
    assert "x-cache-similarity" not in second.headers
    assert content(second) == content(first)
    assert proxy.upstream.calls == 1


async def test_reworded_question_is_a_semantic_hit(proxy):
    await proxy.chat("what is the capital of france")
    hit = await proxy.chat("What is the capital of France?")
    assert hit.headers["x-cache-status"] == "HIT" and hit.headers["x-cache-match"] == "semantic"
    assert hit.headers["x-cache-similarity"] == "1.0000"
    assert content(hit) == "answer #1 to: what is the capital of france"


async def test_whitespace_at_the_ends_is_an_exact_hit(proxy):
    await proxy.chat("Tell me a joke")
    hit = await proxy.chat("  Tell me a joke \r\n")
    assert hit.headers["x-cache-match"] == "exact"


async def test_other_api_key_never_hits(proxy):
    await proxy.chat("How do I reset my password?", key="sk-a")
    other = await proxy.chat("How do I reset my password?", key="sk-b")
    assert other.headers["x-cache-status"] == "MISS"
    assert proxy.upstream.requests[-1]["headers"]["authorization"] == "Bearer sk-b"


async def test_shared_policy_serves_across_keys(make_proxy):
    async with make_proxy(policies=default_policies(share_across_keys=True)) as proxy:
        await proxy.chat("What is 2 + 2?", key="sk-a")
        other = await proxy.chat("What is 2 + 2?", key="sk-b")
        assert other.headers["x-cache-status"] == "HIT"


@pytest.mark.parametrize("change", [
    {"model": "gpt-4o"},
    {"temperature": 0.2},
    {"seed": 7},
    {"response_format": {"type": "json_object"}},
    {"n": 2},
    {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]},
])
async def test_answer_changing_parameters_separate_entries(proxy, change):
    await proxy.chat("Summarise the news")
    other = await proxy.chat("Summarise the news", **change)
    assert other.headers["x-cache-status"] == "MISS"


async def test_bookkeeping_parameters_do_not_separate_entries(proxy):
    await proxy.chat("Summarise the news", user="alice")
    same = await proxy.chat("Summarise the news", user="bob", metadata={"trace": "1"}, store=False)
    assert same.headers["x-cache-status"] == "HIT"


async def test_namespace_is_a_partition(proxy):
    await proxy.chat("What is our refund policy?", headers={"X-Cache-Namespace": "shop-a"})
    other = await proxy.chat("What is our refund policy?", headers={"X-Cache-Namespace": "shop-b"})
    same = await proxy.chat("What is our refund policy?", headers={"X-Cache-Namespace": "shop-a"})
    assert other.headers["x-cache-status"] == "MISS" and same.headers["x-cache-status"] == "HIT"


async def test_context_must_match(proxy):
    france = [{"role": "user", "content": "Tell me about France."}, {"role": "assistant", "content": "A country."}]
    japan = [{"role": "user", "content": "Tell me about Japan."}, {"role": "assistant", "content": "A country."}]
    pirate = [{"role": "system", "content": "You are a pirate."}]
    await proxy.chat("What is its population?", history=france)
    assert (await proxy.chat("What is its population?", history=japan)).headers["x-cache-status"] == "MISS"
    assert (await proxy.chat("What is its population?", history=pirate)).headers["x-cache-status"] == "MISS"
    assert (await proxy.chat("what is ITS population", history=france)).headers["x-cache-status"] == "HIT"


async def test_no_store_bypasses_and_stores_nothing(proxy):
    bypass = await proxy.chat("Fun fact?", headers={"Cache-Control": "no-store"})
    assert bypass.headers["x-cache-status"] == "BYPASS"
    assert (await proxy.chat("Fun fact?")).headers["x-cache-status"] == "MISS"


async def test_no_cache_refreshes_the_entry(proxy):
    await proxy.chat("Weather?")
    refresh = await proxy.chat("Weather?", headers={"Cache-Control": "no-cache"})
    assert refresh.headers["x-cache-status"] == "REFRESH" and proxy.upstream.calls == 2
    hit = await proxy.chat("Weather?")
    assert content(hit) == "answer #2 to: Weather?"


async def test_max_age_refuses_older_entries(make_proxy):
    async with make_proxy() as proxy:
        await proxy.chat("Stock price?")
        proxy.cache.clock = lambda: __import__("time").time() + 120
        old = await proxy.chat("Stock price?", headers={"Cache-Control": "max-age=60"})
        assert old.headers["x-cache-status"] == "MISS"
        young = await proxy.chat("Stock price?", headers={"Cache-Control": "max-age=600"})
        assert young.headers["x-cache-status"] == "HIT"


async def test_expired_entries_do_not_answer(make_proxy):
    async with make_proxy(policies=default_policies(ttl=60)) as proxy:
        await proxy.chat("Stock price?")
        proxy.cache.clock = lambda: __import__("time").time() + 61
        assert (await proxy.chat("Stock price?")).headers["x-cache-status"] == "MISS"


async def test_mode_off_is_bypass_and_exact_mode_skips_embedding(make_proxy, upstream):
    policies = PolicySet([Policy(match="*", mode="off"), Policy(match="exact-*", mode="exact", name="exact")])
    async with make_proxy(policies=policies) as proxy:
        await proxy.chat("Hello")
        assert (await proxy.chat("Hello")).headers["x-cache-status"] == "BYPASS"
        await proxy.chat("what is the capital of france", model="exact-1")
        assert (await proxy.chat("What is the capital of France?", model="exact-1")).headers[
            "x-cache-status"] == "MISS"
        assert (await proxy.chat("what is the capital of france", model="exact-1")).headers[
            "x-cache-match"] == "exact"


async def test_upstream_errors_pass_through_and_are_never_cached(proxy):
    for _ in range(2):
        failed = await proxy.chat("FAIL500 now")
        assert failed.status_code == 500 and failed.json()["error"]["message"] == "upstream exploded"
        assert failed.headers["x-cache-status"] == "MISS"
    assert proxy.upstream.calls == 2


async def test_tool_calls_are_cached_with_their_calls(proxy):
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    first = await proxy.chat("CALL_TOOL weather", tools=tools)
    hit = await proxy.chat("CALL_TOOL weather", tools=tools)
    assert hit.headers["x-cache-status"] == "HIT"
    assert hit.json()["choices"][0]["message"]["tool_calls"] == first.json()["choices"][0]["message"]["tool_calls"]
    assert hit.json()["choices"][0]["finish_reason"] == "tool_calls"


async def test_streamed_miss_is_written_back_and_hits_in_both_shapes(proxy):
    miss = await proxy.chat("Stream me", stream=True, stream_options={"include_usage": True})
    assert miss.headers["x-cache-status"] == "MISS" and miss.text.endswith("data: [DONE]\n\n")
    hit = await proxy.chat("Stream me")
    assert content(hit) == "answer #1 to: Stream me"
    streamed = await proxy.chat("Stream me", stream=True, stream_options={"include_usage": True})
    assert streamed.headers["x-cache-status"] == "HIT"
    assert streamed.headers["content-type"].startswith("text/event-stream")
    events = [json.loads(line[6:]) for line in streamed.text.split("\n\n") if line.startswith("data: {")]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in events if c["choices"])
    assert text == "answer #1 to: Stream me"
    assert events[-1]["usage"]["total_tokens"] == 15


class DroppedStream(httpx.AsyncByteStream):
    """An SSE body that loses its connection before [DONE], as a network drop looks to httpx."""

    async def __aiter__(self):
        chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
                 "choices": [{"index": 0, "delta": {"content": "partial"}, "finish_reason": None}]}
        yield b"data: " + json.dumps(chunk).encode() + b"\n\n"
        raise httpx.ReadError("connection reset by peer")


async def test_aborted_stream_is_never_stored(make_proxy, upstream):
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if json.loads(request.content).get("stream"):
            return httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=DroppedStream())
        return httpx.Response(200, json={"id": "c2", "object": "chat.completion", "created": 1, "model": "m",
                                         "choices": [{"index": 0, "finish_reason": "stop",
                                                      "message": {"role": "assistant", "content": "full"}}]})

    async with make_proxy(transport=httpx.MockTransport(handler)) as proxy:
        broken = await proxy.chat("Tell me a story", stream=True)
        assert broken.status_code == 200 and "[DONE]" not in broken.text
        assert json.loads(broken.text.split("\n\n")[-2][6:])["error"]["type"] == "upstream_error"
        assert (await proxy.chat("Tell me a story")).headers["x-cache-status"] == "MISS"
        assert len(calls) == 2


async def test_upstream_key_is_used_when_client_sends_none(make_proxy, monkeypatch):
    monkeypatch.setenv("DEJA_UPSTREAM_API_KEY", "sk-configured")
    async with make_proxy() as proxy:
        await proxy.client.post("/v1/chat/completions", json={"model": "m", "messages": [
            {"role": "user", "content": "hi"}]})
        assert proxy.upstream.requests[-1]["headers"]["authorization"] == "Bearer sk-configured"
        await proxy.chat("hi", key="sk-client")
        assert proxy.upstream.requests[-1]["headers"]["authorization"] == "Bearer sk-client"


async def test_other_v1_paths_are_forwarded_unchanged(proxy):
    got = await proxy.client.post("/v1/moderations?x=1", content=b"12345", headers={"Authorization": "Bearer k"})
    assert got.json() == {"method": "POST", "path": "/v1/moderations", "query": "x=1", "body_bytes": 5,
                          "authorization": "Bearer k"}
    assert got.headers["x-cache-status"] == "BYPASS"
    assert (await proxy.client.get("/v1/stream")).text == "0\n1\n2\n3\n4\n"
    assert (await proxy.client.delete("/v1/files/f1")).json()["method"] == "DELETE"


async def test_healthz(proxy):
    got = await proxy.client.get("/healthz")
    assert got.status_code == 200 and got.json()["status"] == "ok"


# -- bad input: an OpenAI-shaped 4xx, never a 500 -------------------------------------------------------------------

def assert_openai_error(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert isinstance(error["message"], str) and error["message"]
    assert set(error) == {"message", "type", "param", "code"}


@pytest.mark.parametrize("raw", [
    b"{not json",
    b"\xff\xfe\x00garbage",
    json.dumps({"messages": [{"role": "user", "content": "hi"}]}).encode(),
    json.dumps({"model": "m"}).encode(),
    json.dumps({"model": "m", "messages": "nope"}).encode(),
    json.dumps({"model": "m", "messages": []}).encode(),
    json.dumps({"model": "m", "messages": [{"role": "wizard", "content": "hi"}]}).encode(),
    json.dumps({"model": "m", "messages": [{"role": "user", "content": 42}]}).encode(),
    json.dumps({"model": "m", "messages": [{"role": "user", "content": ["text"]}]}).encode(),
    json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": "yes"}).encode(),
    json.dumps(["model", "messages"]).encode(),
])
async def test_bad_input_gets_a_400(proxy, raw):
    response = await proxy.client.post("/v1/chat/completions", content=raw,
                                       headers={"Content-Type": "application/json"})
    assert_openai_error(response, 400)
    assert proxy.upstream.calls == 0


async def test_body_over_the_limit_gets_a_413(make_proxy):
    async with make_proxy(max_body_bytes=1000) as proxy:
        big = {"model": "m", "messages": [{"role": "user", "content": "x" * 2000}]}
        assert_openai_error(await proxy.client.post("/v1/chat/completions", json=big), 413)

        async def chunks():
            yield b'{"model": "m", "messages": [{"role": "user", "content": "'
            yield b"y" * 2000
            yield b'"}]}'
        assert_openai_error(await proxy.client.post("/v1/chat/completions", content=chunks()), 413)
        assert (await proxy.chat("still alive")).status_code == 200


async def test_content_parts_are_proxied_and_keyed_by_full_content(proxy):
    def parts(url: str) -> list[dict]:
        return [{"type": "text", "text": "What is in this image?"}, {"type": "image_url", "image_url": {"url": url}}]
    first = await proxy.chat(parts("https://example.test/cat.png"))
    assert first.status_code == 200
    assert proxy.upstream.requests[-1]["body"]["messages"][-1]["content"] == parts("https://example.test/cat.png")
    assert (await proxy.chat(parts("https://example.test/dog.png"))).headers["x-cache-status"] == "MISS"
    assert (await proxy.chat(parts("https://example.test/cat.png"))).headers["x-cache-status"] == "HIT"


async def test_broken_embedder_forwards_uncached(make_proxy, tmp_path):
    async with make_proxy(data_dir=tmp_path / "d") as proxy:
        await proxy.chat("seed an index")
    async with make_proxy(data_dir=tmp_path / "d", embedder=BrokenEmbedder()) as proxy:
        got = await proxy.chat("a new question")
        assert got.status_code == 200 and got.headers["x-cache-status"] == "BYPASS"
        assert (await proxy.chat("seed an index")).headers["x-cache-status"] == "HIT"  # exact needs no model


async def test_broken_store_forwards_uncached(proxy):
    await proxy.cache.store.reader.close()
    got = await proxy.chat("anything")
    assert got.status_code == 200 and got.headers["x-cache-status"] == "BYPASS"


async def test_upstream_unreachable_is_502_and_timeout_is_504(make_proxy, tmp_path):
    from proxy.app import create_app
    from proxy.settings import Settings

    from .fakes import HashEmbedder

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    def stall(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out")

    for handler, status in ((refuse, 502), (stall, 504)):
        app = create_app(Settings(data_dir=str(tmp_path / status.__str__())), policies=default_policies(),
                         embedder=HashEmbedder(), transport=httpx.MockTransport(handler))
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://d") as client:
                got = await client.post("/v1/chat/completions",
                                        json={"model": "m", "messages": [{"role": "user", "content": "hi"}]})
                assert_openai_error(got, status)
                assert (await client.get("/v1/models")).status_code == status
