"""Property tests (Hypothesis): what must hold for every request, every way a stream is cut, every pair of texts.

Canonicalisation: what may not change an entry (key order, bookkeeping fields, line endings) never does; what
must (tenant, organisation, project, namespace, model, parameters, earlier turns) always does. SSE: however the
bytes are split into chunks, and with LF or CRLF line ends, the stream assembles into the answer it carried. Guard:
it never raises, and a question never conflicts with itself."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.canonical import build_chat_request, owner_of, validate_body
from proxy.guard import find_conflict
from proxy.render import chat_stream
from proxy.sse import StreamAssembler

settings.register_profile("deja", max_examples=100, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("deja")

text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=80)
param_values = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(0, 2, allow_nan=False),
                         st.text(max_size=8))
params = st.dictionaries(st.sampled_from(["temperature", "top_p", "seed", "n", "tool_choice", "max_tokens"]),
                         param_values, max_size=4)
identity = st.fixed_dictionaries({"key": st.sampled_from(["sk-a", "sk-b"]), "org": st.sampled_from(["", "o1"]),
                                  "project": st.sampled_from(["", "p1"]), "namespace": st.sampled_from(["", "n1"]),
                                  "model": st.sampled_from(["m1", "m2"])})


def chat(who: dict[str, str], question: str, extra: dict[str, Any], history: list[dict[str, Any]] | None = None):
    headers = {"authorization": f"Bearer {who['key']}"}
    for header, name in (("openai-organization", "org"), ("openai-project", "project"),
                         ("x-cache-namespace", "namespace")):
        if who[name]:
            headers[header] = who[name]
    body = {**extra, "model": who["model"], "messages": [*(history or []), {"role": "user", "content": question}]}
    return build_chat_request(validate_body(body), owner_of(headers, fallback_key=None, share_across_keys=False))


@given(identity, text, params)
def test_key_order_bookkeeping_and_line_endings_never_change_the_entry(who, question, extra):
    plain = chat(who, question, extra)
    reordered = chat(who, question.replace("\n", "\r\n") + "  ", dict(reversed(list(extra.items()))))
    bookkept = chat(who, question, {**extra, "stream": True, "user": "u-1", "metadata": {"a": "b"}})
    assert plain.exact_key == reordered.exact_key == bookkept.exact_key
    assert plain.partition == reordered.partition == bookkept.partition


@given(identity, identity, text, params, params)
def test_a_different_partition_input_always_means_a_different_partition(a, b, question, extra_a, extra_b):
    first, second = chat(a, question, extra_a), chat(b, question, extra_b)
    same_inputs = a == b and json.dumps(extra_a, sort_keys=True) == json.dumps(extra_b, sort_keys=True)
    assert (first.partition == second.partition) == same_inputs
    assert (first.exact_key == second.exact_key) == same_inputs


@given(identity, text, text)
def test_earlier_turns_separate_the_context(who, question, earlier):
    alone = chat(who, question, {})
    after = chat(who, question, {}, history=[{"role": "user", "content": earlier + "x"},
                                             {"role": "assistant", "content": "ok"}])
    assert alone.context_digest != after.context_digest and alone.exact_key != after.exact_key


def completion_of(content: str, finish: str) -> dict[str, Any]:
    return {"id": "chatcmpl-p", "object": "chat.completion", "created": 1, "model": "m",
            "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "logprobs": None,
                         "finish_reason": finish}]}


@given(text.filter(bool), st.sampled_from(["stop", "length"]), st.lists(st.integers(1, 64), max_size=30),
       st.booleans())
def test_any_chunking_and_line_ending_assembles_the_same_answer(content, finish, cuts, crlf):
    original = completion_of(content, finish)
    stream = b"".join(chat_stream(original, include_usage=True))
    if crlf:
        stream = stream.replace(b"\n", b"\r\n")
    assembler = StreamAssembler()
    position = 0
    for size in cuts:
        assembler.feed(stream[position:position + size])
        position += size
    assembler.feed(stream[position:])
    assembled = assembler.completion()
    assert assembled is not None
    assert assembled["choices"][0]["message"]["content"] == content
    assert assembled["choices"][0]["finish_reason"] == finish and assembled["usage"] == original["usage"]


@given(st.binary(max_size=300))
def test_garbage_streams_never_raise_or_assemble(noise):
    assembler = StreamAssembler()
    assembler.feed(noise)
    assert assembler.completion() is None or assembler.done


@given(text, text)
def test_the_guard_never_raises(cached, incoming):
    result = find_conflict(cached, incoming)
    assert result is None or isinstance(result, str)


@given(text)
def test_a_question_never_conflicts_with_itself(question):
    assert find_conflict(question, question) is None
