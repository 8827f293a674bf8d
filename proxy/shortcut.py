"""HitShortcut: a repeated request that is a fresh exact hit is answered before Starlette's routing.

Most exact hits are the same bytes again from the same client. For those, routing, the exception layers and
parsing cost more than the answer (bench/RESULTS.md, "speed work"), so this middleware, the innermost one (after
the header limit and the key gate have done their checks), reads a cached route's body and asks:
  - is this body, under the same key headers, in the request memo (request_memo.py)? Nothing is parsed here;
  - does `decide` come to a fresh exact hit on a hot record (decide.decide_in_memory): no bypass, no
    Cache-Control: no-cache, no variety, within the TTL and the request's max-age?
Then the hit is taken, rendered (serve.py) and counted (route_counts.py) as on the usual path, the same functions
doing the same work. Anything else, a request carrying X-Cache-Debug included, goes on to the app with the body it
sent, replayed: the usual path decides, and nothing was counted twice.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .decide import decide_in_memory
from .endpoints import Endpoint, Target
from .exchange import remembered
from .route_counts import CountedRoute
from .serve import serve_hit
from .services import Services

DEBUG_HEADER = b"x-cache-debug"


class HitShortcut:
    def __init__(self, app: ASGIApp, routes: Sequence[tuple[Endpoint, CountedRoute]]) -> None:
        self.app = app
        self.routes = {f"/v1{endpoint.path}": (endpoint, Target(endpoint.path), route) for endpoint, route in routes}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = self.routes.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if found is None or scope.get("root_path"):
            await self.app(scope, receive, send)
            return
        services: Services = scope["app"].state.services
        limit = min(services.request_memo.max_body, services.settings.max_body_bytes)
        length = wanted_length(scope, limit)
        if length is None:
            await self.app(scope, receive, send)
            return
        read: list[Message] = []
        raw = await read_body(receive, read, limit)
        replay = Replay(read, receive)
        if raw is not None:
            endpoint, target, route = found
            request = Request(scope, replay)
            exchange = remembered(request, services, endpoint, target, raw)
            if exchange is not None and decide_in_memory(exchange):
                services.metrics.tally.add(services.metrics.shortcut_hits)
                await route.respond(request, serve_hit(exchange), send)
                return
        await self.app(scope, replay, send)


def wanted_length(scope: Scope, limit: int) -> int | None:
    """The declared body length when the shortcut may read it: small enough for the memo, no X-Cache-Debug."""
    length = None
    for name, value in scope["headers"]:
        if name == b"content-length":
            length = int(value) if value.isdigit() and int(value) <= limit else None
            if length is None:
                return None
        elif name == DEBUG_HEADER:
            return None
    return length


async def read_body(receive: Receive, read: list[Message], limit: int) -> bytes | None:
    """The whole body, or None when it turns out larger than `limit` or the client left; every message taken from
    `receive` is kept in `read`, for the app to get them again."""
    size = 0
    while True:
        message = await receive()
        read.append(message)
        if message["type"] != "http.request":
            return None
        size += len(message.get("body", b""))
        if size > limit:
            return None
        if not message.get("more_body", False):
            return b"".join(m.get("body", b"") for m in read)


class Replay:
    """A receive that gives the messages the shortcut read first, then the client's own."""

    def __init__(self, read: list[Message], receive: Receive) -> None:
        self.read = read
        self.receive = receive

    async def __call__(self) -> Message:
        if self.read:
            return self.read.pop(0)
        return await self.receive()
