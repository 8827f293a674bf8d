"""Serving from the cache: a hit, or the answer a coalesced miss's leader got, rendered for this client (its own
id and creation time, JSON or SSE as it asked: render.py), with the X-Cache headers of the exchange."""

from __future__ import annotations

import time
from typing import Any

from starlette.responses import Response

from . import render
from .cache.flights import Answer, UpstreamReply
from .exchange import Exchange


def serve_hit(exchange: Exchange) -> Response:
    assert exchange.hit is not None
    return _render(exchange, exchange.hit.record.response, exchange.cache_headers(time.time()))


def serve_coalesced(exchange: Exchange, outcome: Answer | UpstreamReply) -> Response:
    """A follower's answer: the leader's, or the upstream's error reply to the leader, passed on as it came."""
    headers = {**exchange.cache_headers(0), "X-Cache-Coalesced": "true"}
    if isinstance(outcome, UpstreamReply):
        return Response(outcome.content, status_code=outcome.status_code, headers={**outcome.headers, **headers})
    return _render(exchange, outcome.completion, headers)


def _render(exchange: Exchange, stored: dict[str, Any], headers: dict[str, str]) -> Response:
    return render.response(exchange.endpoint.shape, stored, exchange.policy.hit_usage, exchange.chat.stream,
                           exchange.chat.include_usage, headers)
