"""The cached endpoints in-process (ASGI app, real SQLite + hnswlib, hash embedder, realistic fake upstream):
bad input, tenancy, controls, what is never stored, Azure forwarding, and the SSE plumbing underneath."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from proxy.embeddings_api import split_tokens
from proxy.endpoints import ChunkTee
from proxy.errors import ConfigError
from proxy.policies import parse_policy
from proxy.render import fresh_id, zero_counts
from proxy.sse import EventReader, StreamAssembler

pytestmark = pytest.mark.anyio


async def post(deja, path: str, body: Any, key: str = "sk-a", **headers: str) -> httpx.Response:
    response = await deja.client.post(path, json=body, headers={"Authorization": f"Bearer {key}", **headers})
    await deja.cache.drain()
    return response


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/responses", {"input": "hi"}),
    ("/v1/responses", {"model": "m", "input": 5}),
    ("/v1/responses", {"model": "m", "input": "hi", "stream": "yes"}),
    ("/v1/completions", {"model": "m"}),
    ("/v1/completions", {"model": "m", "prompt": {"text": "x"}}),
    ("/v1/embeddings", {"model": "m", "input": ""}),
    ("/v1/embeddings", {"model": "m", "input": [1, "a"]}),
    ("/v1/embeddings", {"model": "m", "input": "x", "encoding_format": "int8"}),
    ("/v1/embeddings", {"model": "m", "input": "x", "dimensions": "256"}),
    ("/v1/embeddings", ["not", "an", "object"]),
    ("/openai/deployments/dep/chat/completions", {"messages": "nope"}),
])
async def test_bad_bodies_get_an_openai_error(deja, path, body):
    got = await post(deja, path, body)
    assert got.status_code == 400, got.text
    assert set(got.json()["error"]) == {"message", "type", "param", "code"}


async def test_invalid_azure_deployment_name_is_refused(deja):
    got = await post(deja, "/openai/deployments/..%2F..%2Fv1/chat/completions",
                     {"messages": [{"role": "user", "content": "hi"}]})
    assert got.status_code in (400, 404) and "error" in got.json()


async def test_embeddings_of_another_key_never_hit(deja, realistic):
    body = {"model": "e", "input": ["tenant text"], "encoding_format": "float"}
    assert (await post(deja, "/v1/embeddings", body)).headers["x-cache-status"] == "MISS"
    assert (await post(deja, "/v1/embeddings", body)).headers["x-cache-status"] == "HIT"
    assert (await post(deja, "/v1/embeddings", body, key="sk-b")).headers["x-cache-status"] == "MISS"
    assert realistic.embedded == ["tenant text", "tenant text"]


async def test_embeddings_controls_and_errors_store_nothing(deja, realistic):
    body = {"model": "e", "input": ["kept out"], "encoding_format": "float"}
    got = await post(deja, "/v1/embeddings", body, **{"Cache-Control": "no-store"})
    assert got.headers["x-cache-status"] == "BYPASS"
    assert (await post(deja, "/v1/embeddings", body)).headers["x-cache-status"] == "MISS"
    refreshed = await post(deja, "/v1/embeddings", body, **{"Cache-Control": "no-cache"})
    assert refreshed.headers["x-cache-status"] == "REFRESH"
    assert (await post(deja, "/v1/embeddings", body)).headers["x-cache-status"] == "HIT"
    failing = {"model": "e", "input": ["kept out", "FAIL400 please"], "encoding_format": "float"}
    got = await post(deja, "/v1/embeddings", failing)
    assert got.status_code == 400 and got.json()["error"]["code"] == "invalid_value"
    assert (await post(deja, "/v1/embeddings", failing)).status_code == 400
    assert realistic.calls_to["/v1/embeddings"] == 5


async def test_embeddings_are_exact_only_whatever_the_threshold_header_says(deja, realistic):
    body = {"model": "e", "input": "What is the weather today?", "encoding_format": "float"}
    assert (await post(deja, "/v1/embeddings", body)).headers["x-cache-status"] == "MISS"
    hit = await post(deja, "/v1/embeddings", body, **{"X-Cache-Threshold": "2"})  # a chat request gets 400
    assert hit.status_code == 200 and hit.headers["x-cache-status"] == "HIT"
    assert "deja_time_sensitive_total{" not in (await deja.client.get("/metrics")).text


@pytest.mark.embedded_only
async def test_embeddings_forward_uncached_when_the_store_fails(deja, realistic):
    await deja.cache.store.reader.close()
    got = await post(deja, "/v1/embeddings", {"model": "e", "input": ["a", "b"], "encoding_format": "float"})
    assert got.status_code == 200 and got.headers["x-cache-status"] == "BYPASS"
    assert len(got.json()["data"]) == 2 and realistic.calls_to["/v1/embeddings"] == 1
    metrics = (await deja.client.get("/metrics")).text
    assert 'deja_requests_total{match="none",model="e",status="BYPASS"} 1.0' in metrics
    assert 'deja_errors_total{kind="store"} 1.0' in metrics


async def test_token_array_inputs_are_items_of_their_own(deja, realistic):
    body = {"model": "e", "input": [[1, 2, 3], [4, 5]], "encoding_format": "float"}
    first = (await post(deja, "/v1/embeddings", body)).json()
    again = await post(deja, "/v1/embeddings", {**body, "input": [[4, 5]]})
    assert again.headers["x-cache-status"] == "HIT"
    assert again.json()["data"][0]["embedding"] == first["data"][1]["embedding"]
    assert again.json()["usage"]["prompt_tokens"] == 2  # token arrays count exactly their length
    metrics = (await deja.client.get("/metrics")).text
    assert 'deja_tokens_saved_total{kind="prompt",model="e"} 2.0' in metrics


async def test_failed_responses_stream_is_not_stored(deja, realistic):
    body = {"model": "m", "input": "FAILSTREAM now", "stream": True}
    got = await post(deja, "/v1/responses", body)
    assert got.headers["x-cache-status"] == "MISS" and "response.failed" in got.text
    assert (await post(deja, "/v1/responses", body)).headers["x-cache-status"] == "MISS"
    assert realistic.calls_to["/v1/responses"] == 2


@pytest.mark.parametrize("extra", [{"conversation": "conv_1"}, {"background": True},
                                   {"prompt": {"id": "pmpt_1"}}, {"previous_response_id": "resp_1"}])
async def test_state_held_upstream_bypasses_the_cache(deja, realistic, extra):
    body = {"model": "m", "input": "stateful", **extra}
    for _ in range(2):
        assert (await post(deja, "/v1/responses", body)).headers["x-cache-status"] == "BYPASS"
    assert realistic.calls_to["/v1/responses"] == 2


async def test_endpoints_and_parameters_never_share_entries(deja, realistic):
    await post(deja, "/v1/responses", {"model": "m", "input": "hello there"})
    other = await post(deja, "/v1/responses", {"model": "m", "input": "hello there", "instructions": "Be terse."})
    assert other.headers["x-cache-status"] == "MISS"
    chat = await post(deja, "/v1/chat/completions", {"model": "m", "messages": [
        {"role": "user", "content": "hello there"}]})
    legacy = await post(deja, "/v1/completions", {"model": "m", "prompt": "hello there"})
    assert chat.headers["x-cache-status"] == legacy.headers["x-cache-status"] == "MISS"
    ignored = await post(deja, "/v1/responses", {"model": "m", "input": "hello there", "store": False,
                                                 "metadata": {"run": "2"}, "user": "u"})
    assert ignored.headers["x-cache-status"] == "HIT"


async def test_responses_input_spellings_of_one_question_are_one_entry(deja, realistic):
    spellings = ["Which ocean is largest?", [{"role": "user", "content": "Which ocean is largest?"}],
                 [{"type": "message", "role": "user", "content": [{"type": "input_text",
                                                                   "text": "Which ocean is largest?"}]}]]
    statuses = [(await post(deja, "/v1/responses", {"model": "m", "input": given})).headers["x-cache-status"]
                for given in spellings]
    assert statuses == ["MISS", "HIT", "HIT"] and realistic.calls_to["/v1/responses"] == 1


async def test_configured_key_goes_to_azure_as_api_key(make_proxy, realistic, monkeypatch):
    monkeypatch.setenv("DEJA_UPSTREAM_API_KEY", "sk-azure-configured")
    async with make_proxy(transport=httpx.ASGITransport(app=realistic.app)) as deja:
        got = await deja.client.post("/openai/deployments/dep/chat/completions?api-version=2024-10-21",
                                     json={"messages": [{"role": "user", "content": "hi"}]})
        assert got.status_code == 200 and got.headers["x-cache-status"] == "MISS"
        seen = realistic.seen[-1]
        assert seen["headers"]["api-key"] == "sk-azure-configured" and "authorization" not in seen["headers"]
        assert seen["body"] == {"messages": [{"role": "user", "content": "hi"}]}  # forwarded as the client sent it


async def test_api_version_is_part_of_the_azure_key(deja):
    body = {"messages": [{"role": "user", "content": "versioned"}]}
    path = "/openai/deployments/dep/chat/completions?api-version="
    assert (await post(deja, path + "2024-10-21", body)).headers["x-cache-status"] == "MISS"
    assert (await post(deja, path + "2024-10-21", body)).headers["x-cache-status"] == "HIT"
    assert (await post(deja, path + "2025-04-01", body)).headers["x-cache-status"] == "MISS"


async def test_upstream_without_stream_options_is_asked_again_as_the_client_did(deja, realistic):
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "OLD_SERVER story"}]}
    got = await post(deja, "/v1/chat/completions", body)
    assert got.status_code == 200 and got.text.rstrip().endswith("data: [DONE]")
    assert "stream_options" not in realistic.seen[-1]["body"] and realistic.calls_to["/v1/chat/completions"] == 2
    assert (await post(deja, "/v1/chat/completions", body)).headers["x-cache-status"] == "HIT"
    failing = {**body, "messages": [{"role": "user", "content": "FAIL400 story"}]}
    assert (await post(deja, "/v1/chat/completions", failing)).status_code == 400
    assert realistic.calls_to["/v1/chat/completions"] == 3  # other 400s are not asked twice


async def test_old_azure_api_versions_are_not_sent_stream_options(deja, realistic):
    body = {"stream": True, "messages": [{"role": "user", "content": "old version"}]}
    await post(deja, "/openai/deployments/dep/chat/completions?api-version=2024-02-01", body)
    assert "stream_options" not in realistic.seen[-1]["body"]
    await post(deja, "/openai/deployments/dep/chat/completions?api-version=2024-10-21", body)
    assert realistic.seen[-1]["body"]["stream_options"] == {"include_usage": True}


async def test_azure_v1_api_is_cached_with_the_model_from_the_body(deja, realistic):
    body = {"model": "dep-v1", "messages": [{"role": "user", "content": "v1 hello"}]}
    assert (await post(deja, "/openai/v1/chat/completions", body)).headers["x-cache-status"] == "MISS"
    assert realistic.seen[-1]["path"] == "/openai/v1/chat/completions"
    assert (await post(deja, "/openai/v1/chat/completions", body)).headers["x-cache-status"] == "HIT"
    other_route = await post(deja, "/openai/deployments/dep-v1/chat/completions", body)
    assert other_route.headers["x-cache-status"] == "MISS"


def test_hit_usage_must_be_original_or_zero():
    assert parse_policy({"hit_usage": "zero"}, "p.yaml").hit_usage == "zero"
    with pytest.raises(ConfigError, match="hit_usage"):
        parse_policy({"hit_usage": "half"}, "p.yaml")


# -- the pieces underneath -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("total", [0, 1, 7, 10, 1001])
def test_split_tokens_adds_up(total):
    items = ["a", "bbbb", "cc", [1, 2, 3]]
    parts = split_tokens(total, items)
    assert sum(parts) == total and all(p >= 0 for p in parts)
    assert split_tokens(total, ["", ""]) in ([total // 2 + total % 2, total // 2], [total // 2, total // 2 +
                                                                                     total % 2])


def test_fresh_ids_keep_the_family_and_zero_counts_keep_the_shape():
    assert fresh_id("chatcmpl-abc", "x-").startswith("chatcmpl-") and fresh_id("resp_1", "x-").startswith("resp_")
    assert fresh_id(None, "cmpl-") != fresh_id(None, "cmpl-")
    assert zero_counts({"a": 3, "b": {"c": 1.5}, "d": None, "e": True}) == {"a": 0, "b": {"c": 0}, "d": None,
                                                                          "e": True}


@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b"\r"])
def test_event_reader_takes_any_line_ending_across_chunks(ending):
    stream = (b"event: a" + ending + b"data: {\"x\": 1}" + ending + ending + b"data: [DONE]" + ending + ending)
    reader = EventReader()
    events = [e for i in range(len(stream)) for e in reader.feed(stream[i:i + 1])]
    assert [(e.name, e.data) for e in events] == [("a", b'{"x": 1}'), (None, b"[DONE]")]


def test_chunk_tee_takes_out_the_usage_deja_asked_for():
    chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m", "usage": None}
    stream = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in [
        {**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "hi"}, "finish_reason": None}]},
        {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {**chunk, "choices": [], "usage": {"total_tokens": 3}},
    ]) + b"data: [DONE]\n\n"
    tee = ChunkTee(StreamAssembler(), strip_usage=True)
    passed = tee.feed(stream[:50]) + tee.feed(stream[50:])
    assert b"usage" not in passed and passed.endswith(b"data: [DONE]\n\n") and passed.count(b"data: ") == 3
    assert tee.done and tee.result()["usage"] == {"total_tokens": 3}


async def test_export_and_import_keep_every_endpoints_entries(make_proxy, realistic, monkeypatch):
    monkeypatch.setenv("DEJA_ADMIN_TOKEN", "admin-secret")
    auth = {"Authorization": "Bearer admin-secret"}
    async with make_proxy(transport=httpx.ASGITransport(app=realistic.app)) as deja:
        calls = [("/v1/responses", {"model": "m", "input": "exported question"}),
                 ("/v1/completions", {"model": "m", "prompt": "exported prompt"}),
                 ("/v1/embeddings", {"model": "e", "input": "exported text", "encoding_format": "float"})]
        first = [(await post(deja, path, body)).json() for path, body in calls]
        exported = (await deja.client.get("/admin/export", headers=auth)).content
        assert (await deja.client.post("/admin/purge", json={"all": True}, headers=auth)).json()["purged"] == 3
        report = (await deja.client.post("/admin/import", content=exported, headers=auth)).json()
        assert report["imported"] == 3, report
        upstream_calls = realistic.calls
        again = [await post(deja, path, body) for path, body in calls]
        assert [r.headers["x-cache-status"] for r in again] == ["HIT"] * 3 and realistic.calls == upstream_calls
        assert again[0].json()["output"] == first[0]["output"]
        assert again[2].json()["data"][0]["embedding"] == first[2]["data"][0]["embedding"]


async def test_upstream_cookies_never_reach_another_tenants_requests(make_proxy):
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    cookies_seen: list[str | None] = []

    async def models(request: Request) -> JSONResponse:
        cookies_seen.append(request.headers.get("cookie"))
        response = JSONResponse({"object": "list", "data": []})
        response.set_cookie("session", "tenant-a-secret")
        return response

    app = Starlette(routes=[Route("/v1/models", models)])
    async with make_proxy(transport=httpx.ASGITransport(app=app)) as deja:
        first = await deja.client.get("/v1/models", headers={"Authorization": "Bearer sk-a"})
        assert "tenant-a-secret" in first.headers["set-cookie"]  # the client that was sent it still gets it
        deja.client.cookies.clear()
        await deja.client.get("/v1/models", headers={"Authorization": "Bearer sk-b"})
        assert cookies_seen == [None, None]
