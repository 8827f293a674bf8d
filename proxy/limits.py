"""Bounds on what one client can make Deja hold or compute. Each bound is a setting (proxy/settings.py) and the
error it raises names that setting, so an operator who meets it knows what to raise."""

from __future__ import annotations

import json
import re
from typing import Any

from .errors import BadRequestError
from .fastjson import dumps

# The defaults of the settings below; also the bound where no settings reach (admin bodies, import lines).
DEFAULT_MAX_JSON_DEPTH = 100
DEFAULT_MAX_MESSAGES = 2048
ASCII_DIGITS = re.compile(r"[0-9]+")


def deeper_than(value: Any, limit: int) -> bool:
    """Whether `value` nests lists/objects more than `limit` levels deep; iterative, so no RecursionError."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def depth_error(limit: int) -> BadRequestError:
    return BadRequestError(f"The JSON body nests deeper than max_json_depth ({limit} levels).",
                           code="max_json_depth")


def loads_bounded(text: str, max_depth: int) -> Any:
    """json.loads that refuses documents nested deeper than `max_depth` with a 400, never a RecursionError."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise depth_error(max_depth) from None
    if deeper_than(value, max_depth):
        raise depth_error(max_depth)
    return value


def check_messages(body: dict[str, Any], limit: int) -> None:
    messages = body.get("messages")
    if isinstance(messages, list) and len(messages) > limit:
        raise BadRequestError(f"'messages' has {len(messages)} items, more than max_messages ({limit}).",
                              param="messages", code="max_messages")


def ascii_int(text: str) -> int | None:
    """An unsigned decimal integer in ASCII digits only (`str.isdigit` accepts '²', which `int` refuses)."""
    return int(text) if ASCII_DIGITS.fullmatch(text) else None


def answer_size(request_text: str, response: dict[str, Any]) -> int:
    """Bytes an answer holds while queued for write-back (question, context and the serialised answer)."""
    return len(request_text.encode()) + len(dumps(response))  # orjson: this runs on the event loop for each miss
