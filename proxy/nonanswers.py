"""Answers that are not answers: never stored, each skip counted by reason (`deja_not_stored`).

Empty content, refusals (the `refusal` field, or a Responses API refusal part), `finish_reason: content_filter`,
and answers cut off by max_tokens (`finish_reason: length`) unless the policy's `cache_truncated` allows them.
Responses API answers that are not `completed` (cut off, filtered) are never storable in the first place.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from .policies import Policy

if TYPE_CHECKING:
    from .metrics import Metrics

SkipReason = Literal["empty", "refusal", "content_filter", "length"]


def skip_reason(answer: dict[str, Any], *, allow_truncated: bool) -> SkipReason | None:
    """Why `answer` (a chat.completion, text_completion or Responses API response) must not be stored, or None."""
    if answer.get("object") == "response":
        return _response_skip(answer)
    for choice in answer.get("choices") or []:
        finish = choice.get("finish_reason")
        if finish == "content_filter":
            return "content_filter"
        message = choice.get("message") or {}
        if message.get("refusal"):
            return "refusal"
        content = message.get("content", choice.get("text"))
        has_text = isinstance(content, str) and bool(content.strip()) or isinstance(content, list) and bool(content)
        if not (has_text or message.get("tool_calls") or message.get("function_call") or message.get("audio")):
            return "empty"
        if finish == "length" and not allow_truncated:
            return "length"
    return None


def _response_skip(response: dict[str, Any]) -> SkipReason | None:
    """A completed Responses API answer (incomplete ones are never storable): refusal parts, or nothing said."""
    said = False
    for item in response.get("output") or []:
        if not isinstance(item, dict):
            continue
        if item.get("type") != "message":
            said = said or item.get("type") != "reasoning"  # a tool call is an answer
            continue
        for part in item.get("content") or []:
            if isinstance(part, dict) and part.get("type") == "refusal":
                return "refusal"
            if isinstance(part, dict) and isinstance(part.get("text"), str) and part["text"].strip():
                said = True
    return None if said else "empty"


def worth_storing(completion: dict[str, Any], policy: Policy, metrics: Metrics | None) -> bool:
    """False (and counted by reason) for an answer that must not be stored."""
    reason = skip_reason(completion, allow_truncated=policy.cache_truncated)
    if reason is not None and metrics is not None:
        metrics.not_stored.labels(reason).inc()
    return reason is None
