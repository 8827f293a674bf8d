"""Reading an incoming request: the app's shared services, a size-limited body, its JSON (OpenAI-shaped errors)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request

from . import fastjson
from .errors import BadRequestError, PayloadTooLargeError
from .limits import DEFAULT_MAX_JSON_DEPTH, deeper_than, depth_error, loads_bounded

if TYPE_CHECKING:
    from .services import Services


def services_of(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"The request body is larger than the limit of {limit} bytes.")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"The request body is larger than the limit of {limit} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(raw: bytes, max_depth: int = DEFAULT_MAX_JSON_DEPTH) -> Any:
    value = fastjson.loads(raw)
    if value is not fastjson.UNREAD:
        if deeper_than(value, max_depth):
            raise depth_error(max_depth)
        return value
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequestError(f"The request body is not valid UTF-8 (byte {exc.start}).") from exc
    try:
        return loads_bounded(text, max_depth)
    except ValueError as exc:
        raise BadRequestError(f"We could not parse the JSON body of your request: {exc}.",
                              code="invalid_json") from exc
