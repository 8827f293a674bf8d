"""Server-sent events: split a stream into events (any line ending), assemble a streamed chat answer.

Rendering cached answers as streams lives in render.py.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from .fastjson import dumps

DONE = b"data: [DONE]\n\n"
LINE_END = re.compile(rb"\r\n|\r|\n")
# One event's data held while it arrives; a longer one is passed on but never assembled (answers are smaller).
MAX_EVENT_BYTES = 4 * 1024 * 1024
# Finish reasons after which an answer is complete enough to serve again.
# content_filter and length get this far so that proxy/nonanswers.py can count why they are not stored.
STORABLE_FINISH = frozenset({"stop", "tool_calls", "function_call", "length", "content_filter"})
# Chunk fields that are not part of the answer: per-chunk padding, and the fields every hit renders anew.
CHUNK_ONLY = frozenset({"choices", "usage", "object", "obfuscation"})
# Choice fields assembled on their own; any other (Azure's content_filter_results…) is kept as last sent.
CHOICE_FIELDS = frozenset({"index", "delta", "message", "text", "logprobs", "finish_reason"})


def encode_event(obj: Any, name: str | None = None) -> bytes:
    head = f"event: {name}\n".encode() if name else b""
    return head + b"data: " + dumps(obj) + b"\n\n"


@dataclass(frozen=True)
class Event:
    name: str | None
    data: bytes

    def encode(self) -> bytes:
        head = f"event: {self.name}\n".encode() if self.name else b""
        return head + b"".join(b"data: " + line + b"\n" for line in self.data.split(b"\n")) + b"\n"


class EventReader:
    """Cuts an SSE byte stream into events as they complete, per the WHATWG parsing rules: CRLF, CR and LF all end
    a line, `:` lines are comments, `data:` lines join with LF, a blank line dispatches. At most `limit` bytes of
    one unfinished event are held: past it the reader gives up (`overflowed`) and what it held is in `spill()`."""

    def __init__(self, limit: int = MAX_EVENT_BYTES) -> None:
        self.limit = limit
        self.overflowed = False
        self._partial = b""  # the unfinished last line
        self._after_cr = False  # the last chunk ended in CR: a LF starting this one belongs to it
        self._name: str | None = None
        self._data: list[bytes] = []
        self._size = 0

    def feed(self, data: bytes) -> list[Event]:
        if self.overflowed:
            return []
        if self._after_cr and data.startswith(b"\n"):
            data = data[1:]
        if not data:
            return []
        self._after_cr = data.endswith(b"\r")
        lines = LINE_END.split(self._partial + data)
        self._partial = lines.pop()
        events = []
        for line in lines:
            if not line:
                if self._data:
                    events.append(Event(self._name, b"\n".join(self._data)))
                self._name, self._data, self._size = None, [], 0
            elif not line.startswith(b":"):
                field, _, value = line.partition(b":")
                value = value.removeprefix(b" ")
                if field == b"data":
                    self._data.append(value)
                    self._size += len(value) + 1
                elif field == b"event":
                    self._name = value.decode("utf-8", "replace")
        if self._size + len(self._partial) > self.limit:
            self.overflowed = True
        return events

    def spill(self) -> bytes:
        """The unfinished event as bytes to pass on, once the reader has given up on it."""
        head = f"event: {self._name}\n".encode() if self._name else b""
        held = head + b"".join(b"data: " + line + b"\n" for line in self._data) + self._partial
        self._name, self._data, self._size, self._partial = None, [], 0, b""
        return held


def accumulate(acc: dict[str, Any], delta: dict[str, Any]) -> dict[str, Any]:
    """Merge one delta into what came before, as the OpenAI SDKs do: strings are joined, objects merged, lists of
    indexed objects merged by index, other lists extended; `index` and `type` are replaced."""
    for key, value in delta.items():
        old = acc.get(key)
        if old is None or key in ("index", "type"):
            acc[key] = _fresh(value)
        elif isinstance(old, str) and isinstance(value, str):
            acc[key] = old + value
        elif isinstance(old, dict) and isinstance(value, dict):
            accumulate(old, value)
        elif isinstance(old, list) and isinstance(value, list):
            if value and all(isinstance(v, dict) and "index" in v for v in value):
                for entry in value:
                    slot = next((o for o in old if isinstance(o, dict) and o.get("index") == entry["index"]), None)
                    if slot is None:
                        old.append(_fresh(entry))
                    else:
                        accumulate(slot, entry)
            else:
                old.extend(value)
        elif value is not None:
            acc[key] = value
    return acc


def _fresh(value: Any) -> Any:
    """A copy that later deltas can be merged into without changing the chunk they came from."""
    if isinstance(value, dict):
        return accumulate({}, value)
    if isinstance(value, list):
        return [_fresh(v) for v in value]
    return value


class StreamAssembler:
    """Reads an upstream SSE stream as it passes to the client and rebuilds the chat.completion it amounts to,
    every field the chunks carried included (null stays null)."""

    OBJECT = "chat.completion"
    DEFAULT_ID = "chatcmpl-deja"

    def __init__(self) -> None:
        self.reader = EventReader()
        self.done = False
        self.failed = False
        self.meta: dict[str, Any] = {}
        self.usage: dict[str, Any] | None = None
        self.choices: dict[int, dict[str, Any]] = {}

    def feed(self, data: bytes) -> None:
        for event in self.reader.feed(data):
            self.feed_event(event.data)
        self.failed = self.failed or self.reader.overflowed

    def feed_event(self, payload: bytes) -> Any:
        """Take in one event's data; returns the decoded chunk (None for [DONE] or what is not JSON)."""
        if payload == b"[DONE]":
            self.done = True
            return None
        try:
            chunk = json.loads(payload)
        except ValueError:
            self.failed = True
            return None
        if not isinstance(chunk, dict) or "error" in chunk:
            self.failed = True
            return chunk
        for key, value in chunk.items():
            if key not in CHUNK_ONLY and (key not in self.meta or value is not None):
                self.meta[key] = value
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            if isinstance(choice, dict):
                self._merge(choice)
        return chunk

    def _merge(self, choice: dict[str, Any]) -> None:
        state = self.choices.setdefault(choice.get("index", 0), {"message": {}, "logprobs": None,
                                                                   "finish_reason": None, "extra": {}})
        accumulate(state["message"], choice.get("delta") or {})
        state["extra"].update({k: v for k, v in choice.items() if k not in CHOICE_FIELDS and v is not None})
        if isinstance(choice.get("logprobs"), dict):
            state["logprobs"] = accumulate(state["logprobs"] or {}, choice["logprobs"])
        if choice.get("finish_reason"):
            state["finish_reason"] = choice["finish_reason"]

    def completion(self) -> dict[str, Any] | None:
        """The assembled answer, or None unless the stream ended properly ([DONE] + finish reasons)."""
        if not self.done or self.failed or not self.choices or any(
                state["finish_reason"] not in STORABLE_FINISH for state in self.choices.values()):
            return None
        completion = {"id": self.DEFAULT_ID, "created": 0, "model": "", **self.meta, "object": self.OBJECT,
                      "choices": [self._choice(i, self.choices[i]) for i in sorted(self.choices)]}
        if self.usage:
            completion["usage"] = self.usage
        return completion

    def _choice(self, index: int, state: dict[str, Any]) -> dict[str, Any]:
        message = {"role": "assistant", "content": None, **state["message"]}
        if message.get("tool_calls"):
            message["tool_calls"] = [{"type": "function", **{k: v for k, v in call.items() if k != "index"}}
                                     for call in sorted(message["tool_calls"], key=lambda c: c.get("index", 0))]
        return {"index": index, "message": message, "logprobs": state["logprobs"],
                "finish_reason": state["finish_reason"], **state["extra"]}


def storable(completion: Any) -> bool:
    """A non-streamed upstream answer worth keeping: a complete chat.completion."""
    if not isinstance(completion, dict) or completion.get("object") != "chat.completion":
        return False
    choices = completion.get("choices")
    return isinstance(choices, list) and bool(choices) and all(
        isinstance(c, dict) and c.get("finish_reason") in STORABLE_FINISH for c in choices)
