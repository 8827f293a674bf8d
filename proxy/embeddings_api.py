"""`/v1/embeddings`: exact caching per input item; never by meaning (a similar text is not the same vector).

Each input item is its own entry, keyed by tenant, model, dimensions, encoding_format, namespace and the item
itself, holding the vector as the upstream encoded it (a float list or base64) and the item's share of the tokens.
A batch forwards only its uncached items, in one upstream call, and answers every item in the original order.

Usage: forwarded items count what the upstream reported for them; cached items count their stored tokens (zero with
`hit_usage: zero`). The upstream reports one total per call, so a call's total is split over its items in proportion
to their length (token arrays: exactly their length); a repeated batch reports exactly the original total.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .cache.flights import UpstreamReply
from .cache.lookup import Hit
from .canonical import CacheRequest, build_cache_request, canonical_json, parse_cache_control, require_model
from .endpoints import Target
from .errors import BadRequestError
from .forward import send
from .incoming import parse_json, read_body, services_of
from .leaders import shared_call
from .outgoing import to_target
from .policies import Policy
from .render import cache_headers, zero_counts
from .services import Services
from .status import Status
from .upstream import read_all, response_headers

log = logging.getLogger("deja.embeddings")

ENCODINGS = ("float", "base64")
KEY_IGNORES = frozenset({"input", "user", "encoding_format"})
MAX_KEYS_IN_HEADER = 16


def validate(body: Any) -> dict[str, Any]:
    require_model(body)
    items = body.get("input")
    if not (isinstance(items, str) and items) and not (isinstance(items, list) and items and (
            all(isinstance(i, str) for i in items) or all(_is_tokens(i) for i in items) or _is_tokens(items))):
        raise BadRequestError("'input' must be a non-empty string, array of strings, or array of token arrays",
                              param="input")
    dimensions = body.get("dimensions")
    if dimensions is not None and (not isinstance(dimensions, int) or isinstance(dimensions, bool) or dimensions < 1):
        raise BadRequestError("'dimensions' must be a positive integer", param="dimensions")
    if body.get("encoding_format") not in (None, *ENCODINGS):
        raise BadRequestError(f"'encoding_format' must be one of {list(ENCODINGS)}", param="encoding_format")
    return body


def _is_tokens(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(t, int) and not isinstance(t, bool)
                                                           for t in value)


def input_items(body: dict[str, Any]) -> list[Any]:
    """The batch as separate items: a string or one token array is a batch of one."""
    items = body["input"]
    return [items] if isinstance(items, str) or _is_tokens(items) else list(items)


def item_request(body: dict[str, Any], item: Any, headers: Mapping[str, str], *, fallback_key: str | None,
                 share_across_keys: bool) -> CacheRequest:
    params = {k: v for k, v in body.items() if k not in KEY_IGNORES}
    params.update(deja_endpoint="embeddings", encoding_format=body.get("encoding_format") or "float")
    return build_cache_request(body, headers, params=params, context=[], context_text="",
                               question=canonical_json(item), semantic_ok=False, fallback_key=fallback_key,
                               share_across_keys=share_across_keys)


def is_embedding(entry: Any) -> bool:
    """A stored embeddings entry: one item's vector (a float list or base64)."""
    return isinstance(entry, dict) and entry.get("object") == "embedding" and isinstance(
        entry.get("embedding"), (list, str))


def split_tokens(total: int, items: list[Any]) -> list[int]:
    """`total` over `items` in proportion to their length, largest remainders first: the parts add up exactly."""
    weights = [len(i) if isinstance(i, (str, list)) else 1 for i in items]
    weight = sum(weights)
    if weight == 0:
        weights, weight = [1] * len(items), len(items)
    shares = [total * w / weight for w in weights]
    parts = [int(s) for s in shares]
    for i in sorted(range(len(items)), key=lambda i: parts[i] - shares[i])[:total - sum(parts)]:
        parts[i] += 1
    return parts


def _tokens(usage: Any) -> int:
    value = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


async def embed_call(request: Request, target: Target) -> Response:
    """One embeddings request (`/v1/embeddings` or an Azure twin): every item cached, or the missing ones forwarded."""
    services = services_of(request)
    raw = await read_body(request, services.settings.max_body_bytes)
    client_body = parse_json(raw)
    body = validate(target.keyed(client_body))
    policy = services.policies.policy_for(body["model"])
    control = parse_cache_control(request.headers.get("cache-control"))
    items = input_items(body)
    requests = [item_request(body, item, request.headers, fallback_key=services.settings.upstream_api_key,
                             share_across_keys=policy.share_across_keys) for item in items]
    hits: list[Hit | None] = [None] * len(items)
    if policy.mode == "off" or control.no_store:
        status = Status.BYPASS
    elif control.no_cache:
        status = Status.REFRESH
    else:
        status = Status.MISS
        try:
            lookups = await asyncio.gather(*(services.cache.lookup(r, policy, control.max_age) for r in requests))
        except Exception as exc:
            log.exception("cache lookup failed; forwarding uncached")
            services.metrics.count_error("store", exc)
            status = Status.BYPASS
        else:
            hits = [lookup.hit for lookup in lookups]
    cached = sum(hit is not None for hit in hits)
    if status is Status.MISS and cached == len(items):
        return serve_all(body, hits, policy, services)
    services.metrics.observe_request(body["model"], status)
    missing = [i for i, hit in enumerate(hits) if hit is None]
    forward = client_body if not cached else {**client_body, "input": [items[i] for i in missing]}

    async def call() -> EmbeddingReply:
        started = time.perf_counter()
        upstream = await send(services, to_target(request, target,
                                                  raw if not cached else json.dumps(forward).encode()))
        services.metrics.observe_upstream(body["model"], time.perf_counter() - started)
        reply = read_reply(upstream.status_code, response_headers(upstream, decoded=True),
                           await read_all(upstream), len(missing))
        if reply.data is not None and status is not Status.BYPASS:  # stored by the caller that asked, not followers
            tokens = split_tokens(_tokens(reply.answer.get("usage")), [items[i] for i in missing])
            for i, item, n in zip(missing, reply.data, tokens, strict=True):
                entry = {**item, "model": reply.answer.get("model"), "usage": {"prompt_tokens": n, "total_tokens": n}}
                entry.pop("index", None)
                services.cache.submit(requests[i], policy, entry)
        return reply

    if status is Status.MISS:  # concurrent identical misses (same tenant, partition and items) share one call
        reply, coalesced = await shared_call(services.cache.flights, batch_key(requests, missing), call)
    else:
        reply, coalesced = await call(), False
    headers = {**reply.headers, "X-Cache-Status": status, **({"X-Cache-Coalesced": "true"} if coalesced else {})}
    if reply.data is None:
        return Response(reply.content, status_code=reply.status_code, headers=headers)  # errors pass as sent
    answer, data = reply.answer, reply.data
    headers["X-Cache-Items"] = f"{cached}/{len(items)}"
    if not cached:
        return Response(reply.content, status_code=200, headers=headers)
    merged: list[dict[str, Any]] = [{}] * len(items)
    for i, item in zip(missing, data, strict=True):
        merged[i] = {**item, "index": i}
    spent = _tokens(answer.get("usage"))
    for i, hit in enumerate(hits):
        if hit is not None:
            merged[i] = _item(hit, i)
            spent += 0 if policy.hit_usage == "zero" else _tokens(hit.record.response.get("usage"))
            services.cache.record_hit(hit.record.id)
            services.metrics.observe_saved(body["model"], hit.record.response.get("usage"))
    return JSONResponse({**answer, "data": merged, "usage": {"prompt_tokens": spent, "total_tokens": spent}},
                        headers=headers)


@dataclass(frozen=True)
class EmbeddingReply(UpstreamReply):
    """The upstream's reply; with `data` (its items in input order) only when it answers every item it was sent."""

    answer: dict[str, Any] = field(default_factory=dict)
    data: list[dict[str, Any]] | None = None


def read_reply(status_code: int, headers: dict[str, str], content: bytes, sent: int) -> EmbeddingReply:
    headers = {k: v for k, v in headers.items() if k.lower() != "content-length"}
    answer = _json(content) if status_code == 200 else None
    data = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(answer, dict) or not isinstance(data, list) or len(data) != sent or not all(
            isinstance(d, dict) for d in data):
        return EmbeddingReply(status_code, headers, content)
    return EmbeddingReply(status_code, headers, content, answer, sorted(data, key=lambda d: d.get("index", 0)))


def batch_key(requests: list[CacheRequest], missing: list[int]) -> str:
    """The flight of a batch's uncached items: their exact keys (each holds the tenant and partition)."""
    joined = "\n".join(requests[i].exact_key for i in missing)
    return "embeddings:" + hashlib.sha256(joined.encode()).hexdigest()


def serve_all(body: dict[str, Any], hits: list[Hit | None], policy: Policy, services: Services) -> Response:
    """Every item cached: the answer is built from the entries alone."""
    found = [hit for hit in hits if hit is not None]
    spent = sum(_tokens(hit.record.response.get("usage")) for hit in found)
    usage = {"prompt_tokens": spent, "total_tokens": spent}
    # One request, one hit (the first item stands for the batch); every item's tokens were saved.
    services.metrics.observe_hit(body["model"], found[0], found[0].record.question)
    for hit in found:
        services.cache.record_hit(hit.record.id)
        if hit is not found[0]:
            services.metrics.observe_saved(body["model"], hit.record.response.get("usage"))
    headers = cache_headers(Status.HIT, found[0], time.time())
    headers["Age"] = str(max(0, int(time.time() - min(hit.record.created_at for hit in found))))
    headers["X-Cache-Key"] = ",".join(str(hit.record.id) for hit in found[:MAX_KEYS_IN_HEADER])
    headers["X-Cache-Items"] = f"{len(found)}/{len(found)}"
    return JSONResponse({"object": "list", "data": [_item(hit, i) for i, hit in enumerate(found)],
                         "model": found[0].record.response.get("model") or body["model"],
                         "usage": zero_counts(usage) if policy.hit_usage == "zero" else usage}, headers=headers)


def _item(hit: Hit, index: int) -> dict[str, Any]:
    return {**{k: v for k, v in hit.record.response.items() if k not in ("model", "usage")}, "index": index}


def _json(content: bytes) -> Any:
    try:
        return json.loads(content)
    except ValueError:
        return None
