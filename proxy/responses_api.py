"""The Responses API (`/v1/responses`): keyed like chat, answered as a Response object or its typed event stream.

  partition = tenant, model, instructions, tools, text.format, reasoning, include… (bookkeeping left out)
  context   = the input items before the last one, and the last one's non-text parts
  question  = the text of the last input item when it is a user message (a plain string input is one)

Bypassed (forwarded, never stored): `previous_response_id` and `conversation` — the answer depends on state held
upstream that Deja cannot see, a conversation changes under the same id, and a hit's fresh id is unknown upstream;
also `background` jobs, stored `prompt` templates (their version can change upstream) and requests without input.
"""

from __future__ import annotations

import json
from typing import Any

from . import render
from .canonical import BOOKKEEPING_FIELDS, CacheRequest, Owner, build_cache_request, normalise_text, require_model
from .endpoints import Endpoint
from .errors import BadRequestError
from .sse import EventReader

TEXT_PARTS = frozenset({"input_text", "output_text", "text"})
# Fields whose presence means the answer depends on something held upstream, or is not an answer yet.
STATEFUL = ("previous_response_id", "conversation", "prompt")
FAILED_EVENTS = frozenset({"error", "response.failed", "response.incomplete"})


def validate(body: Any) -> dict[str, Any]:
    require_model(body)
    items = body.get("input")
    if items is not None and not isinstance(items, str) and not (
            isinstance(items, list) and all(isinstance(i, (dict, str)) for i in items)):
        raise BadRequestError("'input' must be a string or an array of input items", param="input")
    return body


def bypass(body: dict[str, Any]) -> str | None:
    for key in STATEFUL:
        if body.get(key):
            return key
    if body.get("background"):
        return "background"
    if not body.get("input"):
        return "no input"
    return None


def text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p["text"] for p in content if isinstance(p, dict) and p.get("type") in TEXT_PARTS
                         and isinstance(p.get("text"), str))
    return ""


def _normalised(item: Any) -> dict[str, Any]:
    """An input item in one spelling: a string is a user message, and `type: message` is the default type."""
    item = {"role": "user", "content": item} if isinstance(item, str) else dict(item)
    if item.get("type") == "message":
        del item["type"]
    content = item.get("content")
    if isinstance(content, str):
        item["content"] = normalise_text(content)
    elif isinstance(content, list):
        item["content"] = [{**p, "text": normalise_text(p["text"])} if isinstance(p, dict) and p.get("type")
                           in TEXT_PARTS and isinstance(p.get("text"), str) else p for p in content]
    return item


def build(body: dict[str, Any], owner: Owner) -> CacheRequest:
    params = {k: v for k, v in body.items() if k not in BOOKKEEPING_FIELDS and k not in ("input", "background")}
    raw = body.get("input")
    items = [_normalised(i) for i in ([raw] if isinstance(raw, str) else raw or [])]
    *earlier, final = items or [{}]
    is_user = final.get("role") == "user" and "type" not in final
    question = normalise_text(text_of(final.get("content"))) if is_user else ""
    content = final.get("content")
    non_text = [p for p in content if not (isinstance(p, dict) and p.get("type") in TEXT_PARTS)] \
        if isinstance(content, list) else []
    rest = {k: v for k, v in final.items() if k != "content"} if is_user else final
    context = [*earlier, {**rest, "non_text": non_text}]
    context_text = "\n".join(f"{i.get('role', i.get('type', 'item'))}: {text_of(i.get('content'))}" for i in earlier)
    return build_cache_request(
        body, owner, params={**params, "deja_endpoint": "responses"}, context=context, context_text=context_text,
        question=question, semantic_ok=is_user and bool(question))


def storable(answer: Any) -> bool:
    return isinstance(answer, dict) and answer.get("object") == "response" and answer.get("status") == "completed" \
        and isinstance(answer.get("output"), list)


class ResponseTee:
    """Passes the typed event stream on unchanged; the answer is the Response in `response.completed`."""

    def __init__(self) -> None:
        self.reader = EventReader()
        self.done = False
        self.failed = False
        self.response: dict[str, Any] | None = None

    def feed(self, data: bytes) -> bytes:
        for event in self.reader.feed(data):
            if event.data == b"[DONE]":  # some compatible servers end with it; the API itself does not
                continue
            try:
                payload = json.loads(event.data)
            except ValueError:
                self.failed = True
                continue
            kind = payload.get("type") if isinstance(payload, dict) else None
            if kind in FAILED_EVENTS or kind is None:
                self.failed = True
            elif kind == "response.completed":
                self.response = payload.get("response")
                self.done = True
        self.failed = self.failed or self.reader.overflowed
        return data

    def result(self) -> dict[str, Any] | None:
        return self.response if self.done and not self.failed and storable(self.response) else None


RESPONSES = Endpoint(
    name="responses", path="/responses", shape=render.RESPONSE, validate=validate, build=build, storable=storable,
    tee=lambda strip: ResponseTee(), asks_usage=False, bypass=bypass)
