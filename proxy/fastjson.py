"""JSON as bytes for hits and replayed streams, and request bodies read: orjson (~20× faster than the stdlib on a
cached answer, see bench/RESULTS.md), and the stdlib for the few values orjson refuses or reads otherwise (integers
beyond 64 bits, NaN, numbers out of float range)."""

from __future__ import annotations

import json
import re
from typing import Any

import orjson
from starlette.responses import Response

# orjson reads integers beyond 64 bits as floats, where the stdlib keeps them exact: such documents go to the stdlib.
LONG_DIGITS = re.compile(rb"[0-9]{20}")
UNREAD = object()


def dumps(obj: Any) -> bytes:
    try:
        return orjson.dumps(obj)
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def loads(raw: bytes) -> Any:
    """`raw` parsed as the stdlib's json.loads(raw.decode()) parses it, or UNREAD where orjson cannot say the same:
    invalid JSON (the stdlib then says why), NaN and infinities, integers beyond 64 bits, very deep nesting."""
    if LONG_DIGITS.search(raw):
        return UNREAD
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return UNREAD


class JSONBytesResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return dumps(content)
