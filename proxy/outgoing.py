"""What Deja sends upstream: every forwarded request is built here as one UpstreamCall.

  - a miss or refresh: the client's bytes, to the endpoint's target (the OpenAI upstream, or an Azure resource);
    a streamed answer that is to be stored is asked with `stream_options.include_usage`, so every hit can report
    usage (forward.py takes the usage out of the client's stream again when it did not ask);
  - a stale entry's background refresh: the request that found it, never streamed;
  - an embeddings batch: only its uncached items;
  - a pass-through call: method, path, query, headers and a streamed body, unchanged.
UpstreamClient (upstream.py) owns the connection pool and the headers' clean-up.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from starlette.requests import Request

from .endpoints import Endpoint, Target
from .upstream import UpstreamClient, upstream_path


@dataclass(frozen=True, slots=True)
class UpstreamCall:
    method: str
    path: str  # under `base`
    query: str
    headers: Mapping[str, str]  # the client's (UpstreamClient drops hop-by-hop and Deja's own)
    body: bytes | AsyncIterator[bytes]
    # True: Deja reads the body itself (httpx undoes the content encoding); False: relayed as sent.
    decoded: bool = True
    base: str | None = None  # None: the configured upstream

    async def send(self, upstream: UpstreamClient) -> httpx.Response:
        """Returns once the response headers are in; the caller reads (or streams) and closes it."""
        return await upstream.send(self.method, self.path, self.query, self.headers, self.body,
                                   decoded=self.decoded, base=self.base)


def to_target(request: Request, target: Target, body: bytes) -> UpstreamCall:
    """`body` sent to where the endpoint's misses go, with the client's method, query and headers."""
    return UpstreamCall(request.method, target.path, request.url.query, target.headers or request.headers, body,
                        base=target.base)


def items_call(request: Request, target: Target, client_body: dict[str, Any], items: list[Any]) -> UpstreamCall:
    """An embeddings batch asking for `items` only (those not cached), the rest of the client's body unchanged."""
    return to_target(request, target, json.dumps({**client_body, "input": items}).encode())


def with_usage(endpoint: Endpoint, target: Target, client_body: Any) -> bytes | None:
    """The body asking for a streamed answer's usage, or None when the client's bytes go as they are (not
    streamed, usage already asked, or an endpoint or API version that does not know stream_options)."""
    if not (endpoint.asks_usage and target.asks_usage and isinstance(client_body, dict)
            and client_body.get("stream") is True):
        return None
    options = client_body.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage"):
        return None
    options = options if isinstance(options, dict) else {}
    return json.dumps({**client_body, "stream_options": {**options, "include_usage": True}}).encode()


def refresh_call(request: Request, target: Target, client_body: dict[str, Any]) -> UpstreamCall:
    """The request that found a stale entry, asked again in the background, as one plain (unstreamed) answer, with
    the client's query (Azure's `api-version` is in it)."""
    body = {k: v for k, v in client_body.items() if k not in ("stream", "stream_options")}
    return UpstreamCall("POST", target.path, request.url.query, dict(target.headers or request.headers),
                        json.dumps(body).encode(), base=target.base)


def passthrough_call(request: Request) -> UpstreamCall:
    """Any other /v1/* call, forwarded unchanged: both bodies streamed, to a normalised path under the base."""
    path = upstream_path(request.scope["path"].removeprefix("/v1"))  # decoded, before any URL parsing
    has_body = "content-length" in request.headers or "transfer-encoding" in request.headers
    return UpstreamCall(request.method, path, request.url.query, request.headers,
                        request.stream() if has_body else b"", decoded=False)
