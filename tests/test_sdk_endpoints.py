"""Every cached endpoint through openai-python against a real `deja serve` (real model, SQLite, hnswlib) and a fake
upstream answering in the real API's shapes: each call made twice, MISS then HIT, compared as the SDK parses them.
A hit must differ from the miss only in its id and creation time."""

from __future__ import annotations

import base64
import re
import struct
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from pydantic import BaseModel

from proxy.embeddings_api import split_tokens

from .fakes import RealisticUpstream, ThreadedServer
from .test_serve import Serve, wait_for

pytestmark = pytest.mark.model

KEY = "sk-sdk-test"
WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


class Deja:
    def __init__(self, serve: Serve, upstream: RealisticUpstream) -> None:
        self.serve = serve
        self.upstream = upstream
        self.client = openai.OpenAI(base_url=f"{serve.base}/v1", api_key=KEY, max_retries=0)

    def entries(self) -> int:
        found = re.search(r"^deja_entries_all (\S+)$", self.serve.client.get("/metrics").text, re.M)
        assert found is not None
        return int(float(found.group(1)))

    def stored(self, before: int, added: int = 1) -> None:
        """Write-back runs after the answer in the server process: wait (bounded) until it landed."""
        assert wait_for(lambda: self.entries() >= before + added), "the answer was never stored"

    def settled(self) -> int:
        """The entry count once earlier tests' write-backs are done (nothing queued, the count unchanged)."""
        seen: list[int] = []

        def quiet() -> bool:
            seen.append(self.entries())
            idle = self.serve.client.get("/healthz").json()["write_back_queue"] == 0
            return idle and len(seen) > 2 and seen[-1] == seen[-3]
        assert wait_for(quiet), "write-back never settled"
        return seen[-1]


@pytest.fixture(scope="module")
def deja(tmp_path_factory: pytest.TempPathFactory, model_dir) -> Iterator[Deja]:
    upstream = RealisticUpstream()
    policies = tmp_path_factory.mktemp("policies")
    (policies / "zero.yaml").write_text("match: 'zero-*'\nmode: exact\nhit_usage: zero\n")
    with ThreadedServer(upstream.app) as url:
        serve = Serve(url, tmp_path_factory.mktemp("sdk") / "data", model_dir, "--policies", str(policies))
        try:
            yield Deja(serve, upstream)
        finally:
            assert serve.stop()[0] == 0


def twice(deja: Deja, call: Any, added: int = 1) -> tuple[Any, Any]:
    """The raw responses of a call made twice, the second after the first was stored."""
    before = deja.settled()
    first = call()
    assert first.headers["x-cache-status"] == "MISS"
    deja.stored(before, added)
    second = call()
    assert second.headers["x-cache-status"] == "HIT", second.headers
    return first, second


def without(dump: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in dump.items() if k not in keys}


# -- chat completions: fidelity -------------------------------------------------------------------------------------

def test_chat_hit_is_the_miss_with_its_own_id_and_created(deja):
    def call():
        return deja.client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "REASON: why is the sky blue?"}])
    miss_raw, hit_raw = twice(deja, call)
    miss, hit = miss_raw.parse(), hit_raw.parse()
    assert hit.id != miss.id and hit.id.startswith("chatcmpl-")
    assert hit_raw.headers["x-cache-original-id"] == miss.id
    assert without(hit.model_dump(), "id", "created") == without(miss.model_dump(), "id", "created")
    assert hit.service_tier == "default" and hit.system_fingerprint == "fp_fake123"
    assert hit.choices[0].message.refusal is None and hit.choices[0].message.annotations == []
    assert hit.choices[0].message.model_extra == {"reasoning_content": "Let me think about this."}
    assert hit.usage is not None and hit.usage.completion_tokens_details.reasoning_tokens == 0


def test_two_hits_get_two_ids(deja):
    def call():
        return deja.client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Name a prime number."}])
    _, first_hit = twice(deja, call)
    second_hit = call()
    assert second_hit.headers["x-cache-status"] == "HIT"
    assert first_hit.parse().id != second_hit.parse().id
    assert first_hit.headers["x-cache-original-id"] == second_hit.headers["x-cache-original-id"]


def stream_final(deja: Deja, **params: Any) -> tuple[str, Any]:
    with deja.client.chat.completions.stream(model="gpt-4o-mini", **params) as stream:
        final = stream.get_final_completion()
        return stream._response.headers["x-cache-status"], final


def test_streamed_tool_call_hit_parses_as_the_miss_did(deja):
    params = {"messages": [{"role": "user", "content": "CALL_TOOL weather in Paris"}], "tools": [WEATHER_TOOL]}
    before = deja.settled()
    status, miss = stream_final(deja, **params)
    assert status == "MISS"
    deja.stored(before)
    status, hit = stream_final(deja, **params)
    assert status == "HIT"
    assert hit.choices[0].message.content is None and hit.choices[0].message.tool_calls[0].function.name == \
        "get_weather"
    assert without(hit.model_dump(), "id", "created") == without(miss.model_dump(), "id", "created")
    assert hit.service_tier == "default"


def test_streamed_miss_asks_for_usage_hides_it_and_hits_report_it(deja):
    question = [{"role": "user", "content": "Stream me a haiku about caching."}]
    before = deja.settled()
    raw = deja.serve.client.post("/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"},
                                 json={"model": "gpt-4o-mini", "messages": question, "stream": True})
    assert raw.headers["x-cache-status"] == "MISS"
    assert deja.upstream.seen[-1]["body"]["stream_options"] == {"include_usage": True}
    assert '"usage"' not in raw.text and raw.text.rstrip().endswith("data: [DONE]")
    deja.stored(before)
    plain = deja.client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=question)
    assert plain.headers["x-cache-status"] == "HIT"
    assert plain.parse().usage.total_tokens == 18
    with_usage = list(deja.client.chat.completions.create(model="gpt-4o-mini", messages=question, stream=True,
                                                           stream_options={"include_usage": True}))
    assert with_usage[-1].choices == [] and with_usage[-1].usage.prompt_tokens == 11
    assert all(chunk.usage is None for chunk in with_usage[:-1])


def test_include_usage_stream_hit_equals_miss(deja):
    def chunks() -> tuple[str, list[Any]]:
        raw = deja.client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "REASON count to three"}], stream=True,
            stream_options={"include_usage": True})
        return raw.headers["x-cache-status"], list(raw.parse())
    before = deja.settled()
    status, miss = chunks()
    assert status == "MISS"
    deja.stored(before)
    status, hit = chunks()
    assert status == "HIT"
    assert hit[-1].usage == miss[-1].usage and hit[-1].usage.completion_tokens_details is not None
    text = "".join(c.choices[0].delta.content or "" for c in hit if c.choices)
    assert text == "".join(c.choices[0].delta.content or "" for c in miss if c.choices)
    reasoning = "".join((c.choices[0].delta.model_extra or {}).get("reasoning_content") or "" for c in hit if c.choices)
    assert reasoning == "Let me think about this."
    assert {c.service_tier for c in hit} == {"default"} and {c.system_fingerprint for c in hit} == {"fp_fake123"}


def test_policy_can_report_zero_usage_on_hits(deja):
    def call():
        return deja.client.chat.completions.with_raw_response.create(
            model="zero-model", messages=[{"role": "user", "content": "What does zero usage mean?"}])
    miss, hit = twice(deja, call)
    assert miss.parse().usage.total_tokens == 18
    usage = hit.parse().usage
    assert usage.total_tokens == 0 and usage.prompt_tokens_details.cached_tokens == 0
    assert usage.completion_tokens_details.reasoning_tokens == 0
    streamed = list(deja.client.chat.completions.create(
        model="zero-model", messages=[{"role": "user", "content": "What does zero usage mean?"}], stream=True,
        stream_options={"include_usage": True}))
    assert streamed[-1].usage.prompt_tokens == streamed[-1].usage.completion_tokens == 0


# -- Responses API --------------------------------------------------------------------------------------------------

def test_responses_create_hits(deja):
    def call():
        return deja.client.responses.with_raw_response.create(
            model="gpt-4o-mini", instructions="Be brief.", input="What is the tallest mountain?")
    miss_raw, hit_raw = twice(deja, call)
    miss, hit = miss_raw.parse(), hit_raw.parse()
    assert hit.id.startswith("resp_") and hit.id != miss.id and hit_raw.headers["x-cache-original-id"] == miss.id
    assert hit.output_text == miss.output_text and "tallest mountain" in hit.output_text
    assert without(hit.model_dump(), "id", "created_at") == without(miss.model_dump(), "id", "created_at")
    assert hit.usage.total_tokens == 21


def test_responses_rewording_is_a_semantic_hit(deja):
    before = deja.settled()
    first = deja.client.responses.with_raw_response.create(model="gpt-4o-mini", input="What is the capital of France?")
    deja.stored(before)
    again = deja.client.responses.with_raw_response.create(model="gpt-4o-mini",
                                                           input="What is the capital city of France?")
    assert again.headers["x-cache-match"] == "semantic"
    assert again.parse().output_text == first.parse().output_text


def response_stream(deja: Deja, **params: Any) -> tuple[str, list[Any], Any]:
    with deja.client.responses.stream(model="gpt-4o-mini", **params) as stream:
        events = list(stream)
        return stream._response.headers["x-cache-status"], events, stream.get_final_response()


def test_responses_stream_hit_is_the_typed_event_stream(deja):
    params = {"input": [{"role": "user", "content": "Describe a cache in one line."}]}
    before = deja.settled()
    status, miss_events, miss = response_stream(deja, **params)
    assert status == "MISS"
    deja.stored(before)
    status, hit_events, hit = response_stream(deja, **params)
    assert status == "HIT"
    kinds = [e.type for e in hit_events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert "response.output_text.delta" in kinds and "response.output_item.done" in kinds
    assert "".join(e.delta for e in hit_events if e.type == "response.output_text.delta") == miss.output_text
    assert [e.sequence_number for e in hit_events] == list(range(len(hit_events)))
    assert without(hit.model_dump(), "id", "created_at") == without(miss.model_dump(), "id", "created_at")


def test_streamed_responses_miss_serves_a_plain_hit(deja):
    before = deja.settled()
    status, _, streamed = response_stream(deja, input="REASON: what is a haiku?")
    assert status == "MISS"
    deja.stored(before)
    plain = deja.client.responses.with_raw_response.create(model="gpt-4o-mini", input="REASON: what is a haiku?")
    assert plain.headers["x-cache-status"] == "HIT"
    assert plain.parse().output[0].type == "reasoning" and plain.parse().output_text == streamed.output_text


def test_responses_function_call_streams_back(deja):
    tools = [{"type": "function", "name": "get_weather", "parameters": WEATHER_TOOL["function"]["parameters"],
              "strict": False}]
    before = deja.settled()
    status, _, miss = response_stream(deja, input="CALL_TOOL weather in Oslo", tools=tools)
    deja.stored(before)
    status, events, hit = response_stream(deja, input="CALL_TOOL weather in Oslo", tools=tools)
    assert status == "HIT" and hit.output[0].type == "function_call"
    assert hit.output[0].arguments == miss.output[0].arguments
    assert any(e.type == "response.function_call_arguments.delta" for e in events)


class Capital(BaseModel):
    city: str
    population: int


def test_responses_parse_hits_with_the_same_parsed_output(deja):
    def call():
        return deja.client.responses.with_raw_response.parse(model="gpt-4o-mini", input="Biggest city of Norway?",
                                                             text_format=Capital)
    miss, hit = twice(deja, call)
    assert hit.parse().output_parsed == miss.parse().output_parsed == Capital(city="value", population=42)


def test_previous_response_id_is_bypassed(deja):
    calls = deja.upstream.calls_to.get("/v1/responses", 0)
    for _ in range(2):
        raw = deja.client.responses.with_raw_response.create(model="gpt-4o-mini", input="and then?",
                                                             previous_response_id="resp_earlier")
        assert raw.headers["x-cache-status"] == "BYPASS"
    assert deja.upstream.calls_to["/v1/responses"] == calls + 2


# -- embeddings -----------------------------------------------------------------------------------------------------

def test_embeddings_float_hit_and_partial_batch(deja):
    def call(items: list[str]):
        return deja.client.embeddings.with_raw_response.create(model="text-embedding-3-small", input=items,
                                                               encoding_format="float")
    miss, hit = twice(deja, lambda: call(["alpha text", "beta", "gamma words here"]), added=3)
    assert [d.embedding for d in hit.parse().data] == [d.embedding for d in miss.parse().data]
    assert hit.parse().usage == miss.parse().usage and hit.parse().usage.prompt_tokens > 0
    assert [d.index for d in hit.parse().data] == [0, 1, 2]
    deja.upstream.embedded.clear()
    mixed = call(["gamma words here", "delta is new", "alpha text"])
    assert mixed.headers["x-cache-status"] == "MISS" and mixed.headers["x-cache-items"] == "2/3"
    assert deja.upstream.embedded == ["delta is new"]
    vectors = {d.index: d.embedding for d in mixed.parse().data}
    assert vectors[0] == miss.parse().data[2].embedding and vectors[2] == miss.parse().data[0].embedding
    single = deja.client.embeddings.create(model="text-embedding-3-small", input="delta is new",
                                           encoding_format="float")
    assert single.data[0].embedding == vectors[1]
    # forwarded: what the upstream counted (the fake: len // 4 + 1); cached: each item's share of its batch's total
    alpha, _, gamma = split_tokens(miss.parse().usage.prompt_tokens, ["alpha text", "beta", "gamma words here"])
    assert mixed.parse().usage.prompt_tokens == gamma + 4 + alpha


def test_embeddings_base64_is_cached_in_its_own_encoding(deja):
    def call():
        # the SDK asks for base64 by default and decodes it to floats
        return deja.client.embeddings.with_raw_response.create(model="text-embedding-3-small", input="base64 text")
    miss, hit = twice(deja, call)
    assert hit.parse().data[0].embedding == miss.parse().data[0].embedding
    raw = deja.serve.client.post("/v1/embeddings", headers={"Authorization": f"Bearer {KEY}"}, json={
        "model": "text-embedding-3-small", "input": "base64 text", "encoding_format": "base64"}).json()
    decoded = struct.unpack("<8f", base64.b64decode(raw["data"][0]["embedding"]))
    assert list(decoded) == pytest.approx(miss.parse().data[0].embedding)
    as_float = deja.client.embeddings.with_raw_response.create(model="text-embedding-3-small", input="base64 text",
                                                               encoding_format="float")
    assert as_float.headers["x-cache-status"] == "MISS"


# -- legacy completions ---------------------------------------------------------------------------------------------

def test_legacy_completions_hit_plain_and_streamed(deja):
    def call():
        return deja.client.completions.with_raw_response.create(model="gpt-3.5-turbo-instruct", prompt="Once upon")
    miss, hit = twice(deja, call)
    assert without(hit.parse().model_dump(), "id", "created") == without(miss.parse().model_dump(), "id", "created")
    assert hit.parse().id.startswith("cmpl-") and hit.parse().usage.total_tokens == 10
    streamed = deja.client.completions.with_raw_response.create(model="gpt-3.5-turbo-instruct", prompt="Once upon",
                                                                stream=True, stream_options={"include_usage": True})
    assert streamed.headers["x-cache-status"] == "HIT"
    chunks = list(streamed.parse())
    assert "".join(c.choices[0].text for c in chunks if c.choices) == miss.parse().choices[0].text
    assert chunks[-1].usage.total_tokens == 10


def test_legacy_streamed_miss_is_stored(deja):
    before = deja.settled()
    chunks = list(deja.client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Twice upon", stream=True))
    assert all(c.usage is None for c in chunks)
    deja.stored(before)
    hit = deja.client.completions.with_raw_response.create(model="gpt-3.5-turbo-instruct", prompt="Twice upon")
    assert hit.headers["x-cache-status"] == "HIT"
    assert hit.parse().choices[0].text == "".join(c.choices[0].text for c in chunks)


# -- Azure OpenAI ---------------------------------------------------------------------------------------------------

@pytest.fixture
def azure(deja) -> openai.AzureOpenAI:
    return openai.AzureOpenAI(azure_endpoint=deja.serve.base, api_key="azure-key", api_version="2024-10-21",
                              max_retries=0)


def test_azure_chat_is_forwarded_with_api_key_and_cached_per_deployment(deja, azure):
    def call():
        return azure.chat.completions.with_raw_response.create(
            model="my-gpt4o", messages=[{"role": "user", "content": "Azure hello"}])
    miss, hit = twice(deja, call)
    seen = next(s for s in reversed(deja.upstream.seen) if "deployments" in s["path"])
    assert seen["path"] == "/openai/deployments/my-gpt4o/chat/completions"
    assert seen["query"] == "api-version=2024-10-21" and seen["headers"]["api-key"] == "azure-key"
    assert hit.parse().choices[0].message.content == miss.parse().choices[0].message.content
    other = azure.chat.completions.with_raw_response.create(
        model="other-deployment", messages=[{"role": "user", "content": "Azure hello"}])
    assert other.headers["x-cache-status"] == "MISS"


def test_azure_embeddings_and_responses_hit(deja, azure):
    miss, hit = twice(deja, lambda: azure.embeddings.with_raw_response.create(model="my-embed", input="azure text"))
    assert hit.parse().data[0].embedding == miss.parse().data[0].embedding
    miss, hit = twice(deja, lambda: azure.responses.with_raw_response.create(model="my-gpt4o", input="Azure resp"))
    assert hit.parse().output_text == miss.parse().output_text
    assert deja.upstream.seen[-1]["path"] == "/openai/responses"


def test_unknown_azure_route_is_an_openai_error(deja, azure):
    with pytest.raises(openai.NotFoundError) as caught:
        azure.images.generate(model="dall-e", prompt="a cat")
    assert caught.value.body["code"] == "unknown_url"


# -- pass-through ---------------------------------------------------------------------------------------------------

def test_pass_through_says_bypass_and_is_counted(deja):
    raw = deja.client.models.with_raw_response.list()
    assert raw.headers["x-cache-status"] == "BYPASS"
    metrics = deja.serve.client.get("/metrics").text
    assert re.search(r'deja_route_requests_total\{code="200",route="v1/models",status="BYPASS"\} [1-9]', metrics)
    assert re.search(r'deja_route_requests_total\{code="200",route="responses",status="HIT"\} [1-9]', metrics)
