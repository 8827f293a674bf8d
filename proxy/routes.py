"""HTTP handlers: parse, ask the cache, shape the answer. Cache failures never fail a request."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from .cache import Hit, SemanticCache
from .errors import (
    BadRequestError,
    DejaError,
    PayloadTooLargeError,
    UpstreamTimeoutError,
    UpstreamUnreachableError,
    openai_error_body,
)
from .flights import Answer, Failure, Flight, UpstreamReply
from .limits import DEFAULT_MAX_JSON_DEPTH, check_messages, loads_bounded
from .policies import Policy
from .requests import ChatRequest, build_chat_request, parse_cache_control, validate_body
from .services import Services
from .sse import StreamAssembler, encode_event, replay_stream, storable
from .upstream import response_headers, translate_error, upstream_path

log = logging.getLogger("deja.routes")

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


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
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequestError(f"The request body is not valid UTF-8 (byte {exc.start}).") from exc
    try:
        return loads_bounded(text, max_depth)
    except ValueError as exc:
        raise BadRequestError(f"We could not parse the JSON body of your request: {exc}.",
                              code="invalid_json") from exc


def cache_headers(status: str, hit: Hit | None = None, now: float | None = None) -> dict[str, str]:
    headers = {"X-Cache-Status": status}
    if hit is not None and now is not None:
        headers["X-Cache-Match"] = hit.match
        headers["Age"] = str(max(0, int(now - hit.record.created_at)))
        headers["X-Cache-Key"] = str(hit.record.id)
        if hit.similarity is not None:
            headers["X-Cache-Similarity"] = f"{hit.similarity:.4f}"
    return headers


async def chat_completions(request: Request) -> Response:
    services = services_of(request)
    raw = await read_body(request, services.settings.max_body_bytes)
    body = validate_body(parse_json(raw, services.settings.max_json_depth))
    check_messages(body, services.settings.max_messages)
    policy = services.policies.policy_for(body["model"])
    control = parse_cache_control(request.headers.get("cache-control"))
    chat = build_chat_request(body, request.headers, fallback_key=services.settings.upstream_api_key,
                              share_across_keys=policy.share_across_keys)
    cache = services.cache
    vector = None
    if policy.mode == "off" or control.no_store:
        status = "BYPASS"
    elif control.no_cache:
        status = "REFRESH"
    else:
        status = "MISS"
        started = time.perf_counter()
        try:
            lookup = await cache.lookup(chat, policy, control.max_age)
        except Exception as exc:
            log.exception("cache lookup failed; forwarding uncached")
            services.metrics.count_error("store", exc)  # skipped when the embedder counted it already
            status = "BYPASS"
        else:
            services.metrics.observe_lookup(time.perf_counter() - started)
            if lookup.hit is not None:
                cache.record_hit(lookup.hit.record.id)
                services.metrics.observe_hit(chat.model, lookup.hit, chat.question)
                return serve_hit(chat, lookup.hit)
            vector = lookup.vector
    services.metrics.observe_request(chat.model, status)
    store = status in ("MISS", "REFRESH")
    flight = None
    if status == "MISS":
        flight, leads = cache.flights.join(chat.exact_key)
        if not leads:
            outcome = await flight.wait()
            if isinstance(outcome, Failure):
                raise outcome.raised()
            if outcome is not None:
                cache.flights.coalesced += 1
                return serve_coalesced(chat, outcome)
            flight = None  # the leader got no answer: ask the upstream ourselves
    response = None
    try:
        response = await forward_chat(request, raw, services, chat, policy, status, store, vector, flight)
        return response
    except (UpstreamUnreachableError, UpstreamTimeoutError) as exc:
        if flight is not None:
            flight.land(Failure(exc))
        raise
    finally:
        # A leader that failed or was cancelled releases its followers; a tee'd stream lands its flight itself.
        if flight is not None and not isinstance(response, FlightStreamingResponse):
            flight.land(None)


class FlightStreamingResponse(StreamingResponse):
    """A leader's tee'd stream: lands its flight with nothing if the stream ends without an answer."""

    def __init__(self, *args: Any, flight: Flight, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.flight = flight

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.flight.land(None)


def serve_coalesced(chat: ChatRequest, outcome: Answer | UpstreamReply) -> Response:
    headers = {"X-Cache-Status": "MISS", "X-Cache-Coalesced": "true"}
    if isinstance(outcome, UpstreamReply):
        return Response(outcome.content, status_code=outcome.status_code, headers={**outcome.headers, **headers})
    if chat.stream:
        return StreamingResponse(replay_stream(outcome.completion, chat.include_usage),
                                 media_type="text/event-stream", headers={**SSE_HEADERS, **headers})
    return JSONResponse(outcome.completion, headers=headers)


def serve_hit(chat: ChatRequest, hit: Hit) -> Response:
    headers = cache_headers("HIT", hit, time.time())
    if chat.stream:
        return StreamingResponse(replay_stream(hit.record.response, chat.include_usage),
                                 media_type="text/event-stream", headers={**SSE_HEADERS, **headers})
    return JSONResponse(hit.record.response, headers=headers)


async def forward_chat(request: Request, raw: bytes, services: Services, chat: ChatRequest, policy: Policy,
                       status: str, store: bool, vector: Any, flight: Flight | None = None) -> Response:
    started = time.perf_counter()
    try:
        upstream = await services.upstream.send(request.method, "/chat/completions", request.url.query,
                                                request.headers, raw, decoded=True)
    except DejaError:
        services.metrics.count_error("upstream")
        raise
    services.metrics.observe_upstream(chat.model, time.perf_counter() - started)
    if upstream.status_code >= 500:
        services.metrics.count_error("upstream")
    headers = {**response_headers(upstream, decoded=True), **cache_headers(status)}
    is_sse = upstream.headers.get("content-type", "").startswith("text/event-stream")
    if upstream.status_code == 200 and chat.stream and is_sse:
        body = tee_stream(upstream, services.cache if store else None, chat, policy, vector, flight,
                          on_error=lambda: services.metrics.count_error("upstream"))
        if flight is not None:
            return FlightStreamingResponse(body, status_code=200, headers=headers, flight=flight)
        return StreamingResponse(body, status_code=200, headers=headers)
    try:
        content = await upstream.aread()
    except httpx.TransportError as exc:
        raise translate_error(exc) from exc
    finally:
        await upstream.aclose()
    if upstream.status_code == 200 and not chat.stream:
        try:
            completion = json.loads(content)
        except ValueError:
            completion = None
        if storable(completion):
            # Only queued here: the worker stores it while the response goes out.
            queued = store and services.cache.submit(chat, policy, completion, vector)
            if flight is not None:
                flight.land(Answer(completion), keep=queued)
    elif upstream.status_code != 200 and flight is not None:
        flight.land(UpstreamReply(upstream.status_code, {k: v for k, v in headers.items()
                                                         if k.lower() not in ("content-length", "x-cache-status")},
                                  content))
    headers.pop("content-length", None)
    return Response(content, status_code=upstream.status_code, headers=headers)


async def tee_stream(upstream: httpx.Response, cache: SemanticCache | None, chat: ChatRequest, policy: Policy,
                     vector: Any, flight: Flight | None = None,
                     on_error: Callable[[], None] | None = None) -> AsyncIterator[bytes]:
    """Pass upstream chunks through as they come; store the assembled answer (and hand it to the flight's
    followers) the moment [DONE] arrives, before the last chunk is yielded: a client hanging up after [DONE]
    cancels this generator."""
    assembler = StreamAssembler()
    finished = cache is None and flight is None
    try:
        async for chunk in upstream.aiter_bytes():
            if not finished:
                assembler.feed(chunk)
                if assembler.done:
                    finished = True
                    completion = assembler.completion()
                    if completion is not None:
                        queued = cache is not None and cache.submit(chat, policy, completion, vector)
                        if flight is not None:
                            flight.land(Answer(completion), keep=queued)
            yield chunk
    except Exception as exc:
        # Headers are gone already: end the stream with an error event; nothing is stored.
        error = translate_error(exc) if isinstance(exc, httpx.TransportError) else UpstreamUnreachableError(
            f"The upstream stream broke: {type(exc).__name__}: {exc}")
        log.warning("upstream stream broke: %s", error.message)
        if on_error is not None:
            on_error()
        yield encode_event(openai_error_body(error.message, error.error_type, error.code))
    finally:
        await upstream.aclose()


async def passthrough(request: Request) -> Response:
    """Any other /v1/* call: forwarded unchanged, both bodies streamed."""
    services = services_of(request)
    path = upstream_path(request.scope["path"].removeprefix("/v1"))  # decoded, before any URL parsing
    has_body = "content-length" in request.headers or "transfer-encoding" in request.headers
    upstream = await services.upstream.send(request.method, path, request.url.query, request.headers,
                                            request.stream() if has_body else b"", decoded=False)

    async def body() -> AsyncIterator[bytes]:
        try:
            async for chunk in upstream.aiter_raw():
                yield chunk
        except httpx.TransportError as exc:
            log.warning("upstream body broke on %s: %s", path, translate_error(exc).message)
        finally:
            await upstream.aclose()

    return StreamingResponse(body(), status_code=upstream.status_code,
                             headers={**response_headers(upstream, decoded=False), "X-Cache-Status": "BYPASS"})


async def healthz(request: Request) -> Response:
    services = services_of(request)
    reasons = services.metrics.degraded_reasons()  # still 200: it serves, uncached where it must
    return JSONResponse({"status": "degraded" if reasons else "ok", **({"reasons": reasons} if reasons else {}),
                         "embedding_model": services.cache.embedder.name,
                         "write_back_queue": services.cache.queue_depth})


async def metrics(request: Request) -> Response:
    """Prometheus text format (version 0.0.4)."""
    return Response(services_of(request).metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
