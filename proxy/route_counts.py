"""Counts every answer of the proxy routes per route, X-Cache-Status and HTTP status (`deja_route_requests`).

Passed-through paths are labelled by their first segment when it is an OpenAI API resource, else `other`: clients
choose paths, and labels must stay few.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from .errors import DejaError

Handler = Callable[[Request], Awaitable[Response]]
API_RESOURCES = frozenset({
    "assistants", "audio", "batches", "chat", "chatkit", "completions", "containers", "conversations", "embeddings",
    "evals", "files", "fine_tuning", "images", "models", "moderations", "realtime", "responses", "threads",
    "uploads", "vector_stores", "videos",
})


def passthrough_route(request: Request) -> str:
    first = request.url.path.removeprefix("/v1/").split("/", 1)[0]
    return f"v1/{first}" if first in API_RESOURCES else "other"


def counted(route: str | Callable[[Request], str], handler: Handler) -> CountedRoute:
    """`handler`, with each answer (or error Deja raised) counted under `route`."""
    return CountedRoute(route, handler)


class CountedRoute:
    """A handler as its route's ASGI app, rather than a request function: Starlette then skips its per-request
    wrapper (a second exception-handling layer and two closures, ~8% of an exact hit); errors reach the same
    handlers through ExceptionMiddleware."""

    def __init__(self, route: str | Callable[[Request], str], handler: Handler) -> None:
        self.route = route
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)
        try:
            response = await self.handler(request)
        except DejaError as exc:
            request.app.state.services.metrics.observe_route(self.label(request), "ERROR", exc.status_code)
            raise
        await self.respond(request, response, send)

    def label(self, request: Request) -> str:
        return self.route if isinstance(self.route, str) else self.route(request)

    async def respond(self, request: Request, response: Response, send: Send) -> None:
        """Count `response` under this route, and send it (also for answers given before routing: shortcut.py)."""
        request.app.state.services.metrics.observe_route(self.label(request), cache_status(response),
                                                         response.status_code)
        await response(request.scope, request.receive, send)


def cache_status(response: Response) -> str:
    """X-Cache-Status, read off the raw headers (a Headers view costs more than the scan)."""
    return next((v.decode("latin-1") for k, v in response.raw_headers if k == b"x-cache-status"), "NONE")
