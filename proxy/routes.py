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

from . import render
from .cache import Hit, SemanticCache
from .canonical import CacheRequest, parse_cache_control
from .debug import DEBUG_HEADER, debug_wanted, describe_miss
from .endpoints import CHAT, Endpoint, StreamTee, Target
from .errors import DejaError, UpstreamUnreachableError, openai_error_body
from .fastjson import JSONBytesResponse
from .flights import Answer, Failure, Flight, UpstreamReply
from .incoming import parse_json, read_body, services_of
from .leaders import FlightStreamingResponse, Relay, lead
from .limits import check_messages
from .metrics import Metrics
from .nonanswers import worth_storing
from .policies import Policy
from .services import Services
from .sse import encode_event
from .terms import Terms, is_stale, request_terms, terms_headers
from .upstream import read_all, response_headers, translate_error, upstream_path
from .variety import variety_lookup

log = logging.getLogger("deja.routes")

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


async def chat_completions(request: Request) -> Response:
    return await cached_call(request, CHAT, Target(CHAT.path))


async def cached_call(request: Request, endpoint: Endpoint, target: Target) -> Response:
    """One request to a cached endpoint: key it, serve a hit, or forward it (coalesced) and store the answer."""
    services = services_of(request)
    raw = await read_body(request, services.settings.max_body_bytes)
    client_body = parse_json(raw, services.settings.max_json_depth)
    body = endpoint.validate(target.keyed(client_body))
    check_messages(body, services.settings.max_messages)
    policy = services.policies.policy_for(body["model"])
    control = parse_cache_control(request.headers.get("cache-control"))
    chat = endpoint.build(body, request.headers, fallback_key=services.settings.upstream_api_key,
                          share_across_keys=policy.share_across_keys)
    terms = request_terms(chat, policy, request.headers, control)
    policy = terms.policy
    if terms.volatile:
        services.metrics.time_sensitive.labels(terms.volatile).inc()
    cache = services.cache
    vector = None
    skipped = None
    debug = None
    if policy.mode == "off" or control.no_store or endpoint.bypass(body) is not None or not terms.cacheable:
        status = "BYPASS"
    elif control.no_cache:
        status = "REFRESH"
    else:
        status = "MISS"
        started = time.perf_counter()
        try:
            chat, found = await variety_lookup(cache, chat, terms, services.metrics)
            lookup = found or await cache.lookup(chat, policy, terms.max_age, terms.max_stale)
        except Exception as exc:
            log.exception("cache lookup failed; forwarding uncached")
            services.metrics.count_error("store", exc)  # skipped when the embedder counted it already
            status = "BYPASS"
        else:
            services.metrics.observe_lookup(time.perf_counter() - started)
            if lookup.hit is not None:
                cache.record_hit(lookup.hit.record.id)
                stale = is_stale(lookup.hit.record, cache.clock())
                if stale and policy.stale_while_revalidate:
                    services.revalidator.refresh(services, lookup.hit.record, chat, policy, request.headers,
                                                 endpoint, target, client_body)
                services.metrics.observe_hit(chat.model, lookup.hit, chat.question, "STALE" if stale else "HIT")
                return serve_hit(chat, lookup.hit, endpoint, policy, terms, "STALE" if stale else "HIT")
            vector = lookup.vector
            if lookup.skipped is not None:
                services.metrics.semantic_skipped.labels(lookup.skipped).inc()
                skipped = lookup.skipped
            if debug_wanted(request.headers, services.settings.debug_header, services.admin_token):
                debug = describe_miss(lookup)
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
                return serve_coalesced(chat, outcome, endpoint, policy, terms)
            flight = None  # the leader got no answer: ask the upstream ourselves
        elif (shared := await cache.wait_for_other_replica(chat, control.max_age)) is not None:
            answer = Answer(shared.record.response)  # another replica asked the upstream: a coalesced miss
            flight.land(answer)
            cache.flights.coalesced += 1
            return serve_coalesced(chat, answer, endpoint, policy, terms)
    forwarding = forward_chat(request, raw, services, chat, policy, status, store, vector, flight,
                              endpoint=endpoint, target=target, client_body=client_body, terms=terms)
    # A leader forwards for its followers too: its own client hanging up must not end their flight.
    response = await (forwarding if flight is None else lead(flight, forwarding))
    if skipped is not None:
        response.headers["X-Cache-Semantic"] = f"skipped-{skipped}"
    if debug is not None:
        response.headers[DEBUG_HEADER] = debug
    return response


def serve_coalesced(chat: CacheRequest, outcome: Answer | UpstreamReply, endpoint: Endpoint,
                    policy: Policy, terms: Terms) -> Response:
    headers = {"X-Cache-Status": "MISS", "X-Cache-Coalesced": "true", **terms_headers(terms, "MISS", None, 0)}
    if isinstance(outcome, UpstreamReply):
        return Response(outcome.content, status_code=outcome.status_code, headers={**outcome.headers, **headers})
    return render_answer(chat, outcome.completion, endpoint, policy, headers)


def serve_hit(chat: CacheRequest, hit: Hit, endpoint: Endpoint, policy: Policy, terms: Terms,
              status: str = "HIT") -> Response:
    now = time.time()
    headers = {**render.cache_headers(status, hit, now), **terms_headers(terms, status, hit.record, now)}
    return render_answer(chat, hit.record.response, endpoint, policy, headers)


def render_answer(chat: CacheRequest, stored: dict[str, Any], endpoint: Endpoint, policy: Policy,
                  headers: dict[str, str]) -> Response:
    """A stored answer as a new one (own id and created time), in the shape the client asked for."""
    answer = render.fresh(endpoint.shape, stored, policy.hit_usage)
    if isinstance(stored.get("id"), str):
        headers = {**headers, "X-Cache-Original-Id": stored["id"]}
    if chat.stream:
        return StreamingResponse(endpoint.shape.stream(answer, chat.include_usage),
                                 media_type="text/event-stream", headers={**SSE_HEADERS, **headers})
    return JSONBytesResponse(answer, headers=headers)


async def forward_chat(request: Request, raw: bytes, services: Services, chat: CacheRequest, policy: Policy,
                       status: str, store: bool, vector: Any, flight: Flight | None = None, *,
                       endpoint: Endpoint = CHAT, target: Target | None = None, client_body: Any = None,
                       terms: Terms | None = None) -> Response:
    target = target or Target(endpoint.path)
    # Answers to be stored are asked with usage, so every hit can report it; the client gets what it asked for.
    rewritten = endpoint.upstream_body(client_body) if store and target.asks_usage and isinstance(
        client_body, dict) else None
    started = time.perf_counter()
    try:
        upstream = await services.upstream.send(request.method, target.path, request.url.query,
                                                target.headers or request.headers,
                                                raw if rewritten is None else rewritten, decoded=True,
                                                base=target.base)
        if rewritten is not None and upstream.status_code == 400 and b"stream_options" in await read_all(upstream):
            # An upstream that does not know stream_options: ask again exactly as the client did.
            rewritten = None
            upstream = await services.upstream.send(request.method, target.path, request.url.query,
                                                    target.headers or request.headers, raw, decoded=True,
                                                    base=target.base)
    except DejaError:
        services.metrics.count_error("upstream")
        raise
    services.metrics.observe_upstream(chat.model, time.perf_counter() - started)
    if upstream.status_code >= 500:
        services.metrics.count_error("upstream")
    headers = {**response_headers(upstream, decoded=True), **render.cache_headers(status),
               **(terms_headers(terms, status, None, 0) if terms is not None else {})}
    is_sse = upstream.headers.get("content-type", "").startswith("text/event-stream")
    if upstream.status_code == 200 and chat.stream and is_sse:
        body = tee_stream(upstream, services.cache if store else None, chat, policy, vector, flight,
                          on_error=lambda: services.metrics.count_error("upstream"),
                          tee=endpoint.tee(rewritten is not None), rewrites=rewritten is not None,
                          metrics=services.metrics)
        if flight is not None:
            return FlightStreamingResponse(Relay(body, flight), status_code=200, headers=headers)
        return StreamingResponse(body, status_code=200, headers=headers)
    content = await read_all(upstream)
    if upstream.status_code == 200 and not chat.stream:
        try:
            completion = json.loads(content)
        except ValueError:
            completion = None
        if endpoint.storable(completion):
            # Only queued here: the worker stores it while the response goes out.
            queued = (store and worth_storing(completion, policy, services.metrics)
                      and services.cache.submit(chat, policy, completion, vector))
            if flight is not None:
                flight.land(Answer(completion), keep=queued)
    elif upstream.status_code != 200 and flight is not None:
        flight.land(UpstreamReply(upstream.status_code, {k: v for k, v in headers.items()
                                                         if k.lower() not in ("content-length", "x-cache-status")},
                                  content))
    headers.pop("content-length", None)
    return Response(content, status_code=upstream.status_code, headers=headers)


async def tee_stream(upstream: httpx.Response, cache: SemanticCache | None, chat: CacheRequest, policy: Policy,
                     vector: Any, flight: Flight | None = None,
                     on_error: Callable[[], None] | None = None, *, tee: StreamTee | None = None,
                     rewrites: bool = False, metrics: Metrics | None = None) -> AsyncIterator[bytes]:
    """Pass upstream chunks through as they come (rewritten by `tee` when `rewrites`); store the assembled answer
    (and hand it to the flight's followers) the moment the stream is complete, before the last chunk is yielded:
    a client hanging up after [DONE] cancels this generator."""
    assembler = tee or CHAT.tee(False)
    finished = cache is None and flight is None
    try:
        async for chunk in upstream.aiter_bytes():
            if not finished or rewrites:
                chunk = assembler.feed(chunk)
                if assembler.done and not finished:
                    finished = True
                    completion = assembler.result()
                    if completion is not None:
                        queued = (cache is not None and worth_storing(completion, policy, metrics)
                                  and cache.submit(chat, policy, completion, vector))
                        if flight is not None:
                            flight.land(Answer(completion), keep=queued)
            if chunk:
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
    # Still 200: it serves, uncached where it must. A shared store watches its own connection, so its present
    # state (reconnected or not) says more than its errors of the last minute.
    store = services.cache.store
    reasons = services.metrics.degraded_reasons(("embedding",) if store.shared else ("embedding", "store"))
    store_problem = store.health()
    if store_problem:
        reasons.append(store_problem)
    return JSONResponse({"status": "degraded" if reasons else "ok", **({"reasons": reasons} if reasons else {}),
                         "store": services.cache.store.kind, "embedding_model": services.cache.embedder.name,
                         "write_back_queue": services.cache.queue_depth})


async def metrics(request: Request) -> Response:
    """Prometheus text format (version 0.0.4)."""
    return Response(services_of(request).metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
