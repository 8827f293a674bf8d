"""`max_header_bytes` for every HTTP parser: the request line and headers of a request, counted from the ASGI
scope, over the bound get a 431 in the OpenAI error shape.

uvicorn's h11 parser refuses such a request while reading it (h11_max_incomplete_event_size); httptools, which
`deja serve` runs by default, has no such bound of its own, so the headers have been read into memory by the time
this check sees them. What it bounds is what Deja does with them: no handler runs, nothing is forwarded upstream.
"""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import openai_error_body

# "GET /path?query HTTP/1.1\r\n" around the method, target and version; ": " and "\r\n" around each header.
REQUEST_LINE_EXTRA = len("  HTTP/1.1\r\n")
HEADER_EXTRA = len(": \r\n")


def header_bytes(scope: Scope) -> int:
    target = len(scope.get("raw_path") or scope["path"].encode()) + (
        len(scope["query_string"]) + 1 if scope.get("query_string") else 0)
    return (len(scope["method"]) + target + REQUEST_LINE_EXTRA
            + sum(len(name) + len(value) + HEADER_EXTRA for name, value in scope["headers"]))


class HeaderLimit:
    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (size := header_bytes(scope)) > self.limit:
            body = openai_error_body(f"The request line and headers take {size} bytes; this proxy accepts at most "
                                     f"{self.limit} (max_header_bytes).", "invalid_request_error",
                                     "request_headers_too_large", "max_header_bytes")
            await JSONResponse(body, status_code=431, headers={"X-Cache-Status": "ERROR"})(scope, receive, send)
            return
        await self.app(scope, receive, send)
