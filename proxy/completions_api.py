"""Legacy `/v1/completions`: cached like chat, the prompt being the question (there is no earlier context).

The prompt is kept as sent, whitespace included: a completion continues the exact text, so "A:" and "A: " are
different requests. Token-array and multi-prompt requests are cached exactly only.
"""

from __future__ import annotations

from typing import Any

from . import render
from .canonical import BOOKKEEPING_FIELDS, CacheRequest, Owner, build_cache_request, canonical_json, require_model
from .endpoints import ChunkTee, Endpoint
from .errors import BadRequestError
from .sse import STORABLE_FINISH, StreamAssembler, accumulate

OBJECT = "text_completion"


def validate(body: Any) -> dict[str, Any]:
    require_model(body)
    prompt = body.get("prompt")
    if not (isinstance(prompt, str) or (isinstance(prompt, list) and prompt and all(
            isinstance(p, (str, int, list)) and not isinstance(p, bool) for p in prompt))):
        raise BadRequestError("'prompt' must be a string, an array of strings or an array of tokens", param="prompt")
    return body


def build(body: dict[str, Any], owner: Owner) -> CacheRequest:
    params = {k: v for k, v in body.items() if k not in BOOKKEEPING_FIELDS and k != "prompt"}
    prompt = body["prompt"]
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    text = prompt if isinstance(prompt, str) else None
    return build_cache_request(
        body, owner, params={**params, "deja_endpoint": "completions"}, context=[], context_text="",
        question=text if text is not None else canonical_json(prompt), semantic_ok=bool(text and text.strip()))


def storable(answer: Any) -> bool:
    if not isinstance(answer, dict) or answer.get("object") != OBJECT:
        return False
    choices = answer.get("choices")
    return isinstance(choices, list) and bool(choices) and all(
        isinstance(c, dict) and isinstance(c.get("text"), str) and c.get("finish_reason") in STORABLE_FINISH
        for c in choices)


class CompletionAssembler(StreamAssembler):
    """A legacy completion stream (choices carry `text`, not `delta`) rebuilt into its text_completion."""

    OBJECT = OBJECT
    DEFAULT_ID = "cmpl-deja"

    def _merge(self, choice: dict[str, Any]) -> None:
        state = self.choices.setdefault(choice.get("index", 0), {"text": "", "logprobs": None,
                                                                   "finish_reason": None})
        if isinstance(choice.get("text"), str):
            state["text"] += choice["text"]
        if isinstance(choice.get("logprobs"), dict):
            state["logprobs"] = accumulate(state["logprobs"] or {}, choice["logprobs"])
        if choice.get("finish_reason"):
            state["finish_reason"] = choice["finish_reason"]

    def _choice(self, index: int, state: dict[str, Any]) -> dict[str, Any]:
        return {"text": state["text"], "index": index, "logprobs": state["logprobs"],
                "finish_reason": state["finish_reason"]}


COMPLETIONS = Endpoint(
    name="completions", path="/completions", shape=render.COMPLETION, validate=validate, build=build,
    storable=storable, tee=lambda strip: ChunkTee(CompletionAssembler(), strip))
