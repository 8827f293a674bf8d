"""Forwarding: a miss, refresh or bypass goes to the upstream and its answer to the client, exactly as it came.

A plain answer is read whole, passed on, and (when the exchange stores and it is a complete answer worth storing)
queued for write-back while the response goes out. A streamed answer is passed on chunk by chunk while the
endpoint's tee assembles it; the assembled answer is queued the moment the stream is complete, before the last
chunk is yielded (a client hanging up after [DONE] cancels the generator). A leader of coalesced misses hands
its outcome to the followers (cache/flights.py) in every case: an answer, the upstream's error reply, its failure, or
nothing; its upstream call runs in a task of its own, so its own client hanging up does not end it (leaders.py).
Pass-through calls are relayed unchanged, both bodies streamed.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import httpx
from starlette.responses import Response, StreamingResponse

from .cache.flights import Answer, UpstreamReply
from .debug import DEBUG_HEADER
from .endpoints import Endpoint
from .errors import UpstreamUnreachableError, openai_error_body
from .exchange import Exchange
from .leaders import FlightStreamingResponse, Relay, lead
from .nonanswers import worth_storing
from .outgoing import UpstreamCall, to_target, with_usage
from .services import Services
from .sse import encode_event
from .status import Status
from .upstream import read_all, response_headers, translate_error

log = logging.getLogger("deja.forward")


async def forward(exchange: Exchange[Endpoint]) -> Response:
    forwarding = _forward(exchange)
    # A leader forwards for its followers too: its own client hanging up must not end their flight (leaders.py).
    response = await (forwarding if exchange.flight is None else lead(exchange.flight, forwarding))
    if exchange.skipped is not None:
        response.headers["X-Cache-Semantic"] = f"skipped-{exchange.skipped}"
    if exchange.debug is not None:
        response.headers[DEBUG_HEADER] = exchange.debug
    return response


async def send(services: Services, call: UpstreamCall) -> httpx.Response:
    """One upstream call; a failure to get its response headers is counted (deja_errors_total, upstream)."""
    try:
        return await call.send(services.upstream)
    except Exception:
        services.metrics.count_error("upstream")
        raise


async def _forward(exchange: Exchange[Endpoint]) -> Response:
    services, chat, request, target = exchange.services, exchange.chat, exchange.request, exchange.target
    # Answers to be stored are asked with usage, so every hit can report it; the client gets what it asked for.
    rewritten = with_usage(exchange.endpoint, target, exchange.client_body) if exchange.stores else None
    started = time.perf_counter()
    upstream = await send(services, to_target(request, target, exchange.raw if rewritten is None else rewritten))
    if rewritten is not None and upstream.status_code == 400 and b"stream_options" in await read_all(upstream):
        # An upstream that does not know stream_options: ask again exactly as the client did.
        rewritten = None
        upstream = await send(services, to_target(request, target, exchange.raw))
    exchange.upstream_seconds = time.perf_counter() - started
    services.metrics.observe_upstream(chat.model, exchange.upstream_seconds)
    if upstream.status_code >= 500:
        services.metrics.count_error("upstream")
    headers = {**response_headers(upstream, decoded=True), **exchange.cache_headers(time.time())}
    is_sse = upstream.headers.get("content-type", "").startswith("text/event-stream")
    if upstream.status_code == 200 and chat.stream and is_sse:
        body = tee_stream(exchange, upstream, rewrites=rewritten is not None)
        if exchange.flight is not None:
            return FlightStreamingResponse(Relay(body, exchange.flight), status_code=200, headers=headers)
        return StreamingResponse(body, status_code=200, headers=headers)
    content = await read_all(upstream)
    if upstream.status_code == 200 and not chat.stream:
        try:
            completion = json.loads(content)
        except ValueError:
            completion = None
        if exchange.endpoint.storable(completion):
            write_back(exchange, completion)
    elif upstream.status_code != 200 and exchange.flight is not None:
        exchange.flight.land(UpstreamReply(upstream.status_code, {
            k: v for k, v in headers.items() if k.lower() not in ("content-length", "x-cache-status")}, content))
    headers.pop("content-length", None)
    return Response(content, status_code=upstream.status_code, headers=headers)


def write_back(exchange: Exchange[Endpoint], completion: dict[str, Any]) -> None:
    """A complete answer: queued for storing when the exchange stores and it is worth it (only queued: the worker
    stores it while the response goes out), and handed to the followers waiting for it."""
    cache = exchange.services.cache
    queued = (exchange.stores and worth_storing(completion, exchange.policy, exchange.services.metrics)
              and cache.submit(exchange.chat, exchange.policy, completion, exchange.vector))
    if exchange.flight is not None:
        exchange.flight.land(Answer(completion), keep=queued)


async def tee_stream(exchange: Exchange[Endpoint], upstream: httpx.Response, *,
                     rewrites: bool) -> AsyncGenerator[bytes, None]:
    """Pass upstream chunks through as they come (rewritten by the endpoint's tee when `rewrites`: the usage Deja
    asked for taken out again); write back the assembled answer as soon as the stream is complete."""
    assembler = exchange.endpoint.tee(rewrites)
    finished = not exchange.stores and exchange.flight is None
    try:
        async for chunk in upstream.aiter_bytes():
            if not finished or rewrites:
                chunk = assembler.feed(chunk)
                if assembler.done and not finished:
                    finished = True
                    completion = assembler.result()
                    if completion is not None:
                        write_back(exchange, completion)
            if chunk:
                yield chunk
    except Exception as exc:
        # Headers are gone already: end the stream with an error event; nothing is stored.
        error = translate_error(exc) if isinstance(exc, httpx.TransportError) else UpstreamUnreachableError(
            f"The upstream stream broke: {type(exc).__name__}: {exc}")
        log.warning("upstream stream broke: %s", error.message)
        exchange.services.metrics.count_error("upstream")
        yield encode_event(openai_error_body(error.message, error.error_type, error.code))
    finally:
        await upstream.aclose()


async def relay(services: Services, call: UpstreamCall) -> Response:
    """A pass-through call: the upstream's status, headers and body, streamed as they come."""
    upstream = await call.send(services.upstream)

    async def body() -> AsyncIterator[bytes]:
        try:
            async for chunk in upstream.aiter_raw():
                yield chunk
        except httpx.TransportError as exc:
            log.warning("upstream body broke on %s: %s", call.path, translate_error(exc).message)
        finally:
            await upstream.aclose()

    headers = {**response_headers(upstream, decoded=False), "X-Cache-Status": Status.BYPASS.value}
    return StreamingResponse(body(), status_code=upstream.status_code, headers=headers)
