"""Server-sent events for chat completions: replay a cached answer as chunks, assemble a streamed one."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

DONE = b"data: [DONE]\n\n"
# Finish reasons after which an answer is complete enough to serve again.
STORABLE_FINISH = frozenset({"stop", "tool_calls", "function_call", "length"})
REPLAY_PIECE = 64  # characters of content per replayed chunk


def encode_event(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"


def replay_stream(completion: dict[str, Any], include_usage: bool) -> Iterator[bytes]:
    """A stored chat.completion as the chunk stream the upstream would have sent."""
    base = {"id": completion.get("id", "chatcmpl-deja"), "object": "chat.completion.chunk",
            "created": completion.get("created", 0), "model": completion.get("model", "")}
    if completion.get("system_fingerprint"):
        base["system_fingerprint"] = completion["system_fingerprint"]

    def chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> bytes:
        return encode_event({**base, "choices": [{"index": index, "delta": delta, "logprobs": None,
                                                  "finish_reason": finish}]})

    for choice in completion.get("choices", []):
        index = choice.get("index", 0)
        message = choice.get("message") or {}
        first: dict[str, Any] = {"role": message.get("role", "assistant"), "content": ""}
        if message.get("refusal") is not None:
            first["refusal"] = message["refusal"]
        yield chunk(index, first)
        content = message.get("content") or ""
        for start in range(0, len(content), REPLAY_PIECE):
            yield chunk(index, {"content": content[start:start + REPLAY_PIECE]})
        for n, call in enumerate(message.get("tool_calls") or []):
            yield chunk(index, {"tool_calls": [{"index": n, **call}]})
        if message.get("function_call"):
            yield chunk(index, {"function_call": message["function_call"]})
        yield chunk(index, {}, choice.get("finish_reason"))
    if include_usage and completion.get("usage"):
        yield encode_event({**base, "choices": [], "usage": completion["usage"]})
    yield DONE


class StreamAssembler:
    """Reads an upstream SSE stream as it passes to the client and rebuilds the chat.completion it amounts to."""

    def __init__(self) -> None:
        self._buffer = b""
        self.done = False
        self.failed = False
        self.meta: dict[str, Any] = {}
        self.usage: dict[str, Any] | None = None
        self.choices: dict[int, dict[str, Any]] = {}

    def feed(self, data: bytes) -> None:
        # SSE lines end in CRLF, LF or CR: make them all LF. A trailing CR may be half of a CRLF, so it waits.
        buffer = self._buffer + data
        held = buffer.endswith(b"\r")
        self._buffer = (buffer[:-1] if held else buffer).replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if held:
            self._buffer += b"\r"
        while True:
            cut = self._buffer.find(b"\n\n")
            if cut < 0:
                return
            event, self._buffer = self._buffer[:cut], self._buffer[cut + 2:]
            payload = b"".join(line[5:].lstrip() for line in event.replace(b"\r", b"").split(b"\n")
                               if line.startswith(b"data:"))
            if payload:
                self._event(payload)

    def _event(self, payload: bytes) -> None:
        if payload == b"[DONE]":
            self.done = True
            return
        try:
            chunk = json.loads(payload)
        except ValueError:
            self.failed = True
            return
        if not isinstance(chunk, dict) or "error" in chunk:
            self.failed = True
            return
        for key in ("id", "created", "model", "system_fingerprint", "service_tier"):
            if chunk.get(key) is not None:
                self.meta[key] = chunk[key]
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            self._merge(choice)

    def _merge(self, choice: dict[str, Any]) -> None:
        state = self.choices.setdefault(choice.get("index", 0), {"role": "assistant", "content": None,
                                                                   "tool_calls": {}, "finish_reason": None})
        delta = choice.get("delta") or {}
        if delta.get("role"):
            state["role"] = delta["role"]
        for key in ("content", "refusal"):
            if delta.get(key):
                state[key] = (state.get(key) or "") + delta[key]
        for call in delta.get("tool_calls") or []:
            slot = state["tool_calls"].setdefault(call.get("index", 0), {"function": {"arguments": ""}})
            for key in ("id", "type"):
                if call.get(key):
                    slot[key] = call[key]
            function = call.get("function") or {}
            if function.get("name"):
                slot["function"]["name"] = function["name"]
            slot["function"]["arguments"] += function.get("arguments") or ""
        if choice.get("finish_reason"):
            state["finish_reason"] = choice["finish_reason"]

    def completion(self) -> dict[str, Any] | None:
        """The assembled chat.completion, or None unless the stream ended properly ([DONE] + finish reasons)."""
        if not self.done or self.failed or not self.choices:
            return None
        choices = []
        for index in sorted(self.choices):
            state = self.choices[index]
            if state["finish_reason"] not in STORABLE_FINISH:
                return None
            message: dict[str, Any] = {"role": state["role"], "content": state["content"]}
            if state.get("refusal"):
                message["refusal"] = state["refusal"]
            if state["tool_calls"]:
                message["tool_calls"] = [{"type": "function", **state["tool_calls"][i]}
                                         for i in sorted(state["tool_calls"])]
            choices.append({"index": index, "message": message, "logprobs": None,
                            "finish_reason": state["finish_reason"]})
        completion = {"id": self.meta.get("id", "chatcmpl-deja"), "object": "chat.completion",
                      "created": self.meta.get("created", 0), "model": self.meta.get("model", ""),
                      "choices": choices}
        for key in ("system_fingerprint", "service_tier"):
            if key in self.meta:
                completion[key] = self.meta[key]
        if self.usage:
            completion["usage"] = self.usage
        return completion


def storable(completion: Any) -> bool:
    """A non-streamed upstream answer worth keeping: a complete chat.completion."""
    if not isinstance(completion, dict) or completion.get("object") != "chat.completion":
        return False
    choices = completion.get("choices")
    return isinstance(choices, list) and bool(choices) and all(
        isinstance(c, dict) and c.get("finish_reason") in STORABLE_FINISH for c in choices)
