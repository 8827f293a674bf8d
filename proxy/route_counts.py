"""Counts every answer of the proxy routes per route, X-Cache-Status and HTTP status (`deja_route_requests`).

Passed-through paths are labelled by their first segment when it is an OpenAI API resource, else `other`: clients
choose paths, and labels must stay few.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

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


def counted(route: str | Callable[[Request], str], handler: Handler) -> Handler:
    """`handler`, with each answer (or error Deja raised) counted under `route`."""

    async def run(request: Request) -> Response:
        label = route if isinstance(route, str) else route(request)
        metrics = request.app.state.services.metrics
        try:
            response = await handler(request)
        except DejaError as exc:
            metrics.observe_route(label, "ERROR", exc.status_code)
            raise
        metrics.observe_route(label, response.headers.get("x-cache-status", "NONE"), response.status_code)
        return response

    return run
