"""One request to a cached endpoint, step by step (chat, Responses API, legacy completions, and their Azure twins;
embeddings share its parse and decide steps, then serve and forward per item in embeddings_api.py). Cache failures
never fail a request."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from .coalesce import coalesce
from .decide import decide, look_up
from .endpoints import Endpoint, Target
from .exchange import parse
from .forward import forward
from .serve import serve_hit
from .status import Status


async def cached_call(request: Request, endpoint: Endpoint, target: Target) -> Response:
    exchange = await parse(request, endpoint, target)
    await decide(exchange, look_up)
    if exchange.hit is not None:
        return serve_hit(exchange)
    if exchange.status is Status.MISS:
        follower = await coalesce(exchange)
        if follower is not None:
            return follower
    return await forward(exchange)
