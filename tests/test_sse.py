"""SSE: assembling a streamed answer (across any chunk boundaries) and replaying a stored one."""

from __future__ import annotations

import json

import pytest

from proxy.endpoints import ChunkTee
from proxy.render import chat_stream
from proxy.sse import EventReader, StreamAssembler, storable


def event(obj) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def chunk(delta, finish=None, index=0):
    return {"id": "c1", "object": "chat.completion.chunk", "created": 5, "model": "m",
            "choices": [{"index": index, "delta": delta, "finish_reason": finish}]}


STREAM = b"".join([
    event(chunk({"role": "assistant", "content": ""})),
    event(chunk({"content": "Hello, "})),
    event(chunk({"content": "wörld"})),
    event(chunk({}, "stop")),
    event({"id": "c1", "object": "chat.completion.chunk", "created": 5, "model": "m", "choices": [],
           "usage": {"total_tokens": 9}}),
    b"data: [DONE]\n\n",
])


@pytest.mark.parametrize("size", [1, 7, 64, len(STREAM)])
def test_assembles_across_any_chunk_boundary(size):
    assembler = StreamAssembler()
    for start in range(0, len(STREAM), size):
        assembler.feed(STREAM[start:start + size])
    completion = assembler.completion()
    assert completion is not None and storable(completion)
    assert completion["choices"][0]["message"] == {"role": "assistant", "content": "Hello, wörld"}
    assert completion["usage"] == {"total_tokens": 9} and completion["id"] == "c1"


def test_stream_without_done_or_finish_is_not_complete():
    cut = StreamAssembler()
    cut.feed(STREAM[: STREAM.index(b"data: [DONE]")])
    assert cut.completion() is None
    unfinished = StreamAssembler()
    unfinished.feed(event(chunk({"content": "x"})) + b"data: [DONE]\n\n")
    assert unfinished.completion() is None


def test_error_event_is_never_complete():
    assembler = StreamAssembler()
    assembler.feed(event(chunk({"content": "x"}, "stop")) + event({"error": {"message": "boom"}}) + b"data: [DONE]\n\n")
    assert assembler.completion() is None


def test_tool_call_arguments_are_joined():
    assembler = StreamAssembler()
    assembler.feed(event(chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                                "function": {"name": "lookup", "arguments": ""}}]})))
    for piece in ('{"q"', ': "pa', 'ris"}'):
        assembler.feed(event(chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})))
    assembler.feed(event(chunk({}, "tool_calls")) + b"data: [DONE]\n\n")
    message = assembler.completion()["choices"][0]["message"]
    assert message["tool_calls"] == [{"type": "function", "id": "call_1",
                                      "function": {"name": "lookup", "arguments": '{"q": "paris"}'}}]


def test_replay_round_trips_through_the_assembler():
    stored = {"id": "c9", "object": "chat.completion", "created": 1, "model": "m", "usage": {"total_tokens": 3},
              "choices": [
                  {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "a" * 150}},
                  {"index": 1, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": None,
                   "tool_calls": [{"id": "t", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}},
              ]}
    replayed = b"".join(chat_stream(stored, include_usage=True))
    assert replayed.endswith(b"data: [DONE]\n\n") and replayed.count(b"\n\n") > 5
    assembler = StreamAssembler()
    assembler.feed(replayed)
    again = assembler.completion()
    assert again["choices"][0]["message"]["content"] == "a" * 150
    assert again["choices"][1]["message"]["tool_calls"] == stored["choices"][1]["message"]["tool_calls"]
    assert again["usage"] == stored["usage"]
    assert b'"usage"' not in b"".join(chat_stream(stored, include_usage=False))


@pytest.mark.parametrize("completion", [
    None, {"object": "chat.completion", "choices": []},
    {"object": "chat.completion", "choices": [{"finish_reason": None}]},
    {"object": "list"},
])
def test_incomplete_answers_are_not_storable(completion):
    assert not storable(completion)


def test_choice_fields_of_other_providers_survive_a_round_trip():
    filters = {"hate": {"filtered": False, "severity": "safe"}}
    stored = {"id": "c9", "object": "chat.completion", "created": 1, "model": "m", "prompt_filter_results": [],
              "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None, "content_filter_results": filters,
                           "message": {"role": "assistant", "content": "ok", "refusal": None}}]}
    assembler = StreamAssembler()
    assembler.feed(b"".join(chat_stream(stored, include_usage=False)))
    again = assembler.completion()
    assert again["choices"] == stored["choices"] and again["prompt_filter_results"] == []


def test_event_reader_follows_the_spec_comments_fields_and_multiline_data():
    stream = (b": keep-alive\r\nevent:delta\r\ndata: line one\r\ndata:line two\rdata\rid: 7\nretry: 10\n\n"
              b"event: empty\n\n: only a comment\n\ndata:  two spaces\n\n")
    for size in (1, 3, len(stream)):
        reader = EventReader()
        events = [e for i in range(0, len(stream), size) for e in reader.feed(stream[i:i + size])]
        assert [(e.name, e.data) for e in events] == [("delta", b"line one\nline two\n"), (None, b" two spaces")]


def test_event_reader_holds_a_bounded_buffer_and_gives_up_past_it():
    reader = EventReader(limit=100)
    assert reader.feed(b"data: " + b"x" * 60 + b"\n") == []
    assert reader.feed(b"data: " + b"y" * 60) == [] and reader.overflowed
    assert reader.feed(b"\n\ndata: [DONE]\n\n") == []  # nothing more is parsed or held
    assert reader.spill() == b"data: " + b"x" * 60 + b"\n" + b"data: " + b"y" * 60


def test_a_stream_with_an_oversized_event_is_passed_on_whole_but_never_assembled():
    big = json.dumps({"choices": [{"index": 0, "delta": {"content": "z" * 300}, "finish_reason": "stop"}]})
    stream = b"data: " + big.encode() + b"\n\ndata: [DONE]\n\n"
    for strip in (True, False):
        tee = ChunkTee(StreamAssembler(), strip_usage=strip)
        tee.reader = tee.assembler.reader = EventReader(limit=200)
        passed = b"".join(tee.feed(stream[i:i + 64]) for i in range(0, len(stream), 64))
        assert passed == stream and tee.result() is None
