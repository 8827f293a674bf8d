"""Answers that are not answers: never stored, each skip counted by reason (`deja_not_stored`).

Empty content, refusals (the `refusal` field), `finish_reason: content_filter`, and answers cut off by
max_tokens (`finish_reason: length`) unless the policy's `cache_truncated` allows them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from .policies import Policy

if TYPE_CHECKING:
    from .metrics import Metrics

SkipReason = Literal["empty", "refusal", "content_filter", "length"]
SKIP_REASONS: tuple[SkipReason, ...] = ("empty", "refusal", "content_filter", "length")


def skip_reason(completion: dict[str, Any], *, allow_truncated: bool) -> SkipReason | None:
    """Why `completion` (a chat.completion) must not be stored, or None when it may be."""
    for choice in completion.get("choices") or []:
        finish = choice.get("finish_reason")
        if finish == "content_filter":
            return "content_filter"
        message = choice.get("message") or {}
        if message.get("refusal"):
            return "refusal"
        content = message.get("content")
        has_text = isinstance(content, str) and bool(content.strip()) or isinstance(content, list) and bool(content)
        if not (has_text or message.get("tool_calls") or message.get("function_call") or message.get("audio")):
            return "empty"
        if finish == "length" and not allow_truncated:
            return "length"
    return None


def worth_storing(completion: dict[str, Any], policy: Policy, metrics: Metrics | None) -> bool:
    """False (and counted by reason) for an answer that must not be stored."""
    reason = skip_reason(completion, allow_truncated=policy.cache_truncated)
    if reason is not None and metrics is not None:
        metrics.not_stored.labels(reason).inc()
    return reason is None
