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
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .cache.flights import UpstreamReply
from .cache.lookup import Hit
from .canonical import (
    CacheControl,
    CacheRequest,
    Owner,
    build_cache_request,
    canonical_json,
    require_model,
    with_question,
)
from .decide import decide, lookup_failed
from .endpoints import Keying, Target
from .errors import BadRequestError
from .exchange import Exchange, parse
from .forward import send
from .leaders import shared_call
from .outgoing import items_call, to_target
from .policies import Policy
from .render import cache_headers, zero_counts
from .status import Status
from .terms import Terms
from .upstream import read_all, response_headers

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


def batch_request(body: dict[str, Any], owner: Owner) -> CacheRequest:
    """The batch as one canonical request: the partition every item shares, the whole input as its question. Each
    item is looked up and stored as its own request in that partition (`with_question`)."""
    params = {k: v for k, v in body.items() if k not in KEY_IGNORES}
    params.update(deja_endpoint="embeddings", encoding_format=body.get("encoding_format") or "float")
    return build_cache_request(body, owner, params=params, context=[], context_text="",
                               question=canonical_json(body["input"]), semantic_ok=False)


def item_terms(chat: CacheRequest, policy: Policy, headers: Mapping[str, str], control: CacheControl) -> Terms:
    """A vector neither ages nor is matched by meaning: no time-sensitivity, never stale, no X-Cache-Threshold."""
    return Terms(policy, control.max_age, 0, None, True)


EMBEDDINGS = Keying(name="embeddings", path="/embeddings", validate=validate, build=batch_request, terms=item_terms)


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
    exchange = await parse(request, EMBEDDINGS, target)
    batch = Batch(exchange.chat, input_items(exchange.body))
    await decide(exchange, batch.look_up)
    if exchange.hit is not None:
        return serve_all(exchange, batch)
    return await forward_missing(exchange, batch)


class Batch:
    """An embeddings exchange's items, each its own canonical request, and (once looked up) its hit or None."""

    def __init__(self, chat: CacheRequest, items: list[Any]) -> None:
        self.items = items
        self.requests = [with_question(chat, canonical_json(item)) for item in items]
        self.hits: list[Hit | None] = [None] * len(items)

    async def look_up(self, exchange: Exchange[Keying]) -> None:
        """Every item by its exact key; the exchange is a HIT only when all are found (the first one stands for it)."""
        services, terms = exchange.services, exchange.terms
        started = time.perf_counter()
        try:
            lookups = await asyncio.gather(*(services.cache.lookup(r, terms.policy, terms.max_age, terms.max_stale)
                                             for r in self.requests))
        except Exception as exc:
            lookup_failed(exchange, exc)
            return
        services.metrics.observe_lookup(time.perf_counter() - started)
        self.hits = [lookup.hit for lookup in lookups]
        if all(hit is not None for hit in self.hits):
            exchange.status = Status.HIT
            exchange.hit = self.hits[0]


async def forward_missing(exchange: Exchange[Keying], batch: Batch) -> Response:
    """The uncached items in one upstream call (shared by concurrent identical misses), merged with the cached ones
    in input order; the answer to each forwarded item is written back when the exchange stores."""
    services, body, items, hits = exchange.services, exchange.body, batch.items, batch.hits
    missing = [i for i, hit in enumerate(hits) if hit is None]
    cached = len(items) - len(missing)

    async def call() -> EmbeddingReply:
        outgoing = to_target(exchange.request, exchange.target, exchange.raw) if not cached else items_call(
            exchange.request, exchange.target, exchange.client_body, [items[i] for i in missing])
        started = time.perf_counter()
        upstream = await send(services, outgoing)
        exchange.upstream_seconds = time.perf_counter() - started
        services.metrics.observe_upstream(body["model"], exchange.upstream_seconds)
        reply = read_reply(upstream.status_code, response_headers(upstream, decoded=True),
                           await read_all(upstream), len(missing))
        if reply.data is not None and exchange.stores:  # stored by the caller that asked, not followers
            tokens = split_tokens(_tokens(reply.answer.get("usage")), [items[i] for i in missing])
            for i, item, n in zip(missing, reply.data, tokens, strict=True):
                entry = {**item, "model": reply.answer.get("model"), "usage": {"prompt_tokens": n, "total_tokens": n}}
                entry.pop("index", None)
                services.cache.submit(batch.requests[i], exchange.policy, entry)
        return reply

    if exchange.status is Status.MISS:  # concurrent identical misses (same tenant, partition and items) share one call
        reply, coalesced = await shared_call(services.cache.flights, batch_key(batch.requests, missing), call)
    else:
        reply, coalesced = await call(), False
    headers = {**reply.headers, "X-Cache-Status": exchange.status,
               **({"X-Cache-Coalesced": "true"} if coalesced else {})}
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
            spent += 0 if exchange.policy.hit_usage == "zero" else _tokens(hit.record.response.get("usage"))
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


def serve_all(exchange: Exchange[Keying], batch: Batch) -> Response:
    """Every item cached: the answer is built from the entries alone."""
    services, model = exchange.services, exchange.body["model"]
    found = [hit for hit in batch.hits if hit is not None]
    spent = sum(_tokens(hit.record.response.get("usage")) for hit in found)
    usage = {"prompt_tokens": spent, "total_tokens": spent}
    # One request, one hit (the first item stands for the batch); every item's tokens were saved.
    services.metrics.observe_hit(model, found[0], found[0].record.question)
    for hit in found:
        services.cache.record_hit(hit.record.id)
        if hit is not found[0]:
            services.metrics.observe_saved(model, hit.record.response.get("usage"))
    headers = cache_headers(Status.HIT, found[0], time.time())
    headers["Age"] = str(max(0, int(time.time() - min(hit.record.created_at for hit in found))))
    headers["X-Cache-Key"] = ",".join(str(hit.record.id) for hit in found[:MAX_KEYS_IN_HEADER])
    headers["X-Cache-Items"] = f"{len(found)}/{len(found)}"
    return JSONResponse({"object": "list", "data": [_item(hit, i) for i, hit in enumerate(found)],
                         "model": found[0].record.response.get("model") or model,
                         "usage": zero_counts(usage) if exchange.policy.hit_usage == "zero" else usage},
                        headers=headers)


def _item(hit: Hit, index: int) -> dict[str, Any]:
    return {**{k: v for k, v in hit.record.response.items() if k not in ("model", "usage")}, "index": index}


def _json(content: bytes) -> Any:
    try:
        return json.loads(content)
    except ValueError:
        return None
