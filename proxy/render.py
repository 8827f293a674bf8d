"""Cached answers as the client receives them, JSON or SSE, for every cached endpoint: the only place that builds them.

A hit (or a coalesced follower) is rendered from the stored answer with its own `id` and creation time — tracing
tools key on ids, and two calls are two answers — while the stored id goes to the `X-Cache-Original-Id` header.
`usage` is always present: the stored one, or zero counts when the policy says so (`hit_usage: zero`). Every other
field is replayed as the upstream sent it, `null` included.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.responses import Response, StreamingResponse

from .fastjson import JSONBytesResponse
from .policies import HitUsage
from .sse import DONE, encode_event

if TYPE_CHECKING:
    from .cache.lookup import Hit

REPLAY_PIECE = 64  # characters of text per replayed chunk or delta event
# Message fields a chat replay sends in their own way; any other field goes out as the upstream sent it.
MESSAGE_STREAMED = frozenset({"role", "content", "tool_calls", "function_call"})
# Top-level fields every chunk of a chat or legacy completion stream repeats as they are (model, service_tier…).
RENDERED = frozenset({"id", "object", "created", "choices", "usage"})
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@dataclass(frozen=True)
class Shape:
    """How one endpoint's answers look: id prefix, creation-time field, usage when none was stored, SSE form."""
    id_prefix: str
    created_key: str
    empty_usage: dict[str, int]
    stream: Callable[[dict[str, Any], bool], Iterator[bytes]]


def fresh_id(original: Any, prefix: str) -> str:
    """A new id in the stored one's family: `chatcmpl-…` stays `chatcmpl-…`, `resp_…` stays `resp_…`."""
    if isinstance(original, str):
        cuts = [i for i in (original.find("-"), original.find("_")) if i > 0]
        if cuts:
            prefix = original[:min(cuts) + 1]
    # Unique, not secret: the module's generator (seeded from os.urandom, reseeded in forked workers) costs a
    # third of secrets' system call on every hit.
    return prefix + (f"{random.getrandbits(128):032x}" if prefix.endswith("-") else f"{random.getrandbits(192):048x}")


def zero_counts(value: Any) -> Any:
    """The same usage object with every count at zero (nested details too)."""
    if isinstance(value, dict):
        return {k: zero_counts(v) for k, v in value.items()}
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return 0
    return value


def hit_usage(stored: Any, mode: HitUsage, empty: dict[str, int]) -> dict[str, Any]:
    usage = stored if isinstance(stored, dict) else dict(empty)
    return zero_counts(usage) if mode == "zero" else usage


def fresh(shape: Shape, stored: dict[str, Any], mode: HitUsage, now: float | None = None) -> dict[str, Any]:
    """The stored answer as a new one: its own id and creation time, usage as the policy says."""
    created = int(time.time() if now is None else now)
    answer = {**stored, "id": fresh_id(stored.get("id"), shape.id_prefix), shape.created_key: created,
              "usage": hit_usage(stored.get("usage"), mode, shape.empty_usage)}
    old_created, completed = stored.get(shape.created_key), stored.get("completed_at")
    if isinstance(old_created, int) and isinstance(completed, int):
        answer["completed_at"] = created + (completed - old_created)
    return answer


def pieces(text: str) -> Iterator[str]:
    for start in range(0, len(text), REPLAY_PIECE):
        yield text[start:start + REPLAY_PIECE]


# -- chat completions ---------------------------------------------------------------------------------------------

def chat_stream(completion: dict[str, Any], include_usage: bool) -> Iterator[bytes]:
    """A chat.completion as the chunk stream the upstream sends; the SDKs accumulate it into the same message."""
    base = {"id": completion.get("id"), "object": "chat.completion.chunk", "created": completion.get("created"),
            **{k: v for k, v in completion.items() if k not in RENDERED}}
    if include_usage:
        base["usage"] = None  # as the real API does on every chunk but the last

    def chunk(index: int, delta: dict[str, Any], finish: str | None = None, logprobs: Any = None,
              extra: dict[str, Any] | None = None) -> bytes:
        return encode_event({**base, "choices": [{"index": index, "delta": delta, "logprobs": logprobs,
                                                  "finish_reason": finish, **(extra or {})}]})

    for choice in completion.get("choices") or []:
        index = choice.get("index", 0)
        message = choice.get("message") or {}
        content = message.get("content")
        others = {k: v for k, v in message.items() if k not in MESSAGE_STREAMED and k != "parsed"}
        first: dict[str, Any] = {"role": message.get("role", "assistant"),
                                 "content": "" if isinstance(content, str) else content}
        first.update({k: v for k, v in others.items() if v is None})
        yield chunk(index, first)
        for key, value in others.items():  # reasoning_content, refusal…: text fields come as deltas
            if isinstance(value, str):
                for piece in pieces(value):
                    yield chunk(index, {key: piece})
        if isinstance(content, str):
            for piece in pieces(content):
                yield chunk(index, {"content": piece})
        for key, value in others.items():  # annotations, audio…: whole
            if value is not None and not isinstance(value, str):
                yield chunk(index, {key: value})
        for n, call in enumerate(message.get("tool_calls") or []):
            yield chunk(index, {"tool_calls": [{"index": n, **call}]})
        if message.get("function_call"):
            yield chunk(index, {"function_call": message["function_call"]})
        extra = {k: v for k, v in choice.items() if k not in ("index", "message", "logprobs", "finish_reason")}
        yield chunk(index, {}, choice.get("finish_reason"), choice.get("logprobs"), extra)
    if include_usage:
        yield encode_event({**base, "choices": [], "usage": completion.get("usage")})
    yield DONE


CHAT = Shape("chatcmpl-", "created", {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}, chat_stream)


# -- legacy completions -------------------------------------------------------------------------------------------

def completion_stream(completion: dict[str, Any], include_usage: bool) -> Iterator[bytes]:
    """A text_completion as its stream: text pieces, then each choice's finish reason, usage, [DONE]."""
    base = {"id": completion.get("id"), "object": "text_completion", "created": completion.get("created"),
            **{k: v for k, v in completion.items() if k not in RENDERED}}
    if include_usage:
        base["usage"] = None

    def chunk(index: int, text: str, finish: str | None = None, logprobs: Any = None) -> bytes:
        return encode_event({**base, "choices": [{"text": text, "index": index, "logprobs": logprobs,
                                                  "finish_reason": finish}]})

    for choice in completion.get("choices") or []:
        index = choice.get("index", 0)
        for piece in pieces(choice.get("text") or ""):
            yield chunk(index, piece)
        yield chunk(index, "", choice.get("finish_reason"), choice.get("logprobs"))
    if include_usage:
        yield encode_event({**base, "choices": [], "usage": completion.get("usage")})
    yield DONE


COMPLETION = Shape("cmpl-", "created", {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
                   completion_stream)


# -- Responses API ------------------------------------------------------------------------------------------------

def _started(item: dict[str, Any]) -> dict[str, Any]:
    """An output item as `response.output_item.added` announces it: in progress, before its content."""
    started = {**item, "status": "in_progress"} if "status" in item else dict(item)
    if item.get("type") == "message":
        started["content"] = []
    elif item.get("type") in ("function_call", "custom_tool_call"):
        started["arguments" if "arguments" in item else "input"] = ""
    elif item.get("type") == "reasoning" and "summary" in item:
        started["summary"] = []
    return started


def _item_events(index: int, item: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    where = {"item_id": item.get("id"), "output_index": index}
    yield "response.output_item.added", {"output_index": index, "item": _started(item)}
    if item.get("type") == "message":
        for n, part in enumerate(item.get("content") or []):
            at = {**where, "content_index": n}
            kind = "output_text" if part.get("type") == "output_text" else "refusal" \
                if part.get("type") == "refusal" else None
            field = "text" if kind == "output_text" else "refusal"
            empty = {**part, field: ""} if kind else part
            if kind == "output_text" and "annotations" in part:
                empty["annotations"] = []
            yield "response.content_part.added", {**at, "part": empty}
            if kind is not None:
                text = part.get(field) or ""
                extra: dict[str, Any] = {"logprobs": []} if kind == "output_text" else {}
                for piece in pieces(text):
                    yield f"response.{kind}.delta", {**at, "delta": piece, **extra}
                yield f"response.{kind}.done", {**at, field: text, **extra}
            yield "response.content_part.done", {**at, "part": part}
    elif item.get("type") == "function_call":
        arguments = item.get("arguments") or ""
        for piece in pieces(arguments):
            yield "response.function_call_arguments.delta", {**where, "delta": piece}
        yield "response.function_call_arguments.done", {**where, "arguments": arguments}
    yield "response.output_item.done", {"output_index": index, "item": item}


def response_stream(response: dict[str, Any], include_usage: bool) -> Iterator[bytes]:
    """A Response as the typed event stream: created, in_progress, each output item (added, its content or
    arguments as deltas, done), completed; the SDK's responses.stream() rebuilds the same Response."""
    pending = {**response, "status": "in_progress", "output": [], "usage": None}
    events: list[tuple[str, dict[str, Any]]] = [("response.created", {"response": pending}),
                                                ("response.in_progress", {"response": pending})]
    for index, item in enumerate(response.get("output") or []):
        events.extend(_item_events(index, item))
    events.append(("response.completed", {"response": response}))
    for number, (name, data) in enumerate(events):
        yield encode_event({"type": name, "sequence_number": number, **data}, name)


RESPONSE = Shape("resp_", "created_at", {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0},
                 response_stream)


def cache_headers(status: str, hit: Hit | None = None, now: float | None = None) -> dict[str, str]:
    headers = {"X-Cache-Status": status}
    if hit is not None and now is not None:
        headers["X-Cache-Match"] = hit.match
        headers["Age"] = str(max(0, int(now - hit.record.created_at)))
        headers["X-Cache-Key"] = str(hit.record.id)
        if hit.similarity is not None:
            headers["X-Cache-Similarity"] = f"{hit.similarity:.4f}"
    return headers


def response(shape: Shape, stored: dict[str, Any], mode: HitUsage, stream: bool, include_usage: bool,
             headers: dict[str, str]) -> Response:
    """A stored answer as a new one (own id and created time), as JSON or, for `stream`, as SSE."""
    answer = fresh(shape, stored, mode)
    if isinstance(stored.get("id"), str):
        headers = {**headers, "X-Cache-Original-Id": stored["id"]}
    if stream:
        return StreamingResponse(shape.stream(answer, include_usage), media_type="text/event-stream",
                                 headers={**SSE_HEADERS, **headers})
    return JSONBytesResponse(answer, headers=headers)


def text_completion(text: str, model: str, *, answer_id: str, created: int) -> dict[str, Any]:
    """A chat.completion for an answer that came as text (ModelCache inserts, `deja import`, `deja eval`), shaped
    as the API sends one. No `usage`: nobody counted its tokens, so hits on it report none saved."""
    return {"id": answer_id, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                         "finish_reason": "stop"}]}


def answer_text(response: dict[str, Any]) -> str:
    try:
        message = response["choices"][0]["message"]
    except (KeyError, IndexError, TypeError):
        return ""
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, str):
        return content
    if isinstance(message, dict) and message.get("tool_calls"):
        return json.dumps(message["tool_calls"], ensure_ascii=False)
    return ""
