"""The admin API under /admin: stats, entries (list, show, delete), purge, export.

Enabled only when DEJA_ADMIN_TOKEN is set (404 otherwise); every call needs it as `Authorization: Bearer <token>`,
compared in constant time (401 otherwise). The token is never logged: nothing here logs headers.
Deletions go through SemanticCache (its write-back worker), so the vector indexes stay in step with SQLite.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .access import token_matches
from .errors import BadRequestError, NotFoundError, UnauthorizedError, openai_error_body
from .importer import import_lines, split_lines
from .incoming import parse_json, read_body, services_of
from .limits import ascii_int
from .listing import DEFAULT_LIMIT, number, parse_filter, summary
from .render import answer_text
from .stats import snapshot
from .status import Status
from .stores.base import export_line

Handler = Callable[[Request], Awaitable[Response]]
MAX_LIMIT = 1000
MAX_PURGE_BODY = 64 * 1024
MAX_OFFSET = 2**62  # SQLite's OFFSET is a signed 64-bit integer
TOP_ENTRIES = 10
FILTER_KEYS = ("model", "namespace", "tenant", "partition", "q", "older_than")


def require_admin(handler: Handler) -> Handler:
    @functools.wraps(handler)
    async def guarded(request: Request) -> Response:
        expected = services_of(request).admin_token
        if expected is None:
            raise NotFoundError("The admin API is disabled: set DEJA_ADMIN_TOKEN to enable it.")
        if not token_matches(expected, request.headers.get("authorization")):
            error = UnauthorizedError("A valid admin token is required: Authorization: Bearer <DEJA_ADMIN_TOKEN>.")
            headers = {"WWW-Authenticate": 'Bearer realm="deja-admin"', "X-Cache-Status": Status.ERROR.value}
            return JSONResponse(openai_error_body(error.message, error.error_type, error.code), status_code=401,
                                headers=headers)
        return await handler(request)

    return guarded


def entry_id_of(request: Request) -> int:
    raw = request.path_params["entry_id"]
    entry_id = ascii_int(raw) if len(raw) <= 18 else None
    if entry_id is None:
        raise BadRequestError(f"entry id must be a positive integer, got {raw!r}", param="id")
    return entry_id


# -- handlers ---------------------------------------------------------------------------------------------------


@require_admin
async def stats(request: Request) -> Response:
    services = services_of(request)
    cache, store = services.cache, services.cache.store
    sizes = cache.partition_sizes()
    models = await store.model_totals()
    top = await store.top_entries(TOP_ENTRIES)
    return JSONResponse({
        **snapshot(services.metrics),
        "entries": sum(n for _, n, _ in models),
        "entry_hits": sum(h for _, _, h in models),
        "partitions": sum(1 for n, _ in sizes.values() if n),
        "index_vectors": sum(v for _, v in sizes.values()),
        "writeback_queue": cache.queue_depth,
        "embedding_model": cache.embedder.name,
        "store": {"kind": store.kind, "location": store.location, "shared": store.shared},
        "models": [{"model": m, "entries": n, "hits": h} for m, n, h in models],
        "top_entries": [summary(r) for r in top],
    })


@require_admin
async def list_entries(request: Request) -> Response:
    params = dict(request.query_params)
    limit = int(number("limit", params.pop("limit", DEFAULT_LIMIT), integer=True, low=1, high=MAX_LIMIT))
    offset = int(number("offset", params.pop("offset", 0), integer=True, low=0, high=MAX_OFFSET))
    selection = parse_filter(params, FILTER_KEYS, time.time())
    store = services_of(request).cache.store
    total = await store.count_entries(selection)
    records = await store.list_entries(selection, limit, offset)
    next_offset = offset + len(records) if offset + len(records) < total else None
    return JSONResponse({"total": total, "limit": limit, "offset": offset, "next_offset": next_offset,
                         "entries": [summary(r) for r in records]})


@require_admin
async def entry(request: Request) -> Response:
    entry_id = entry_id_of(request)
    cache = services_of(request).cache
    if request.method == "DELETE":
        if not await cache.delete_entries([entry_id]):
            raise NotFoundError(f"No entry with id {entry_id}.", param="id")
        return JSONResponse({"deleted": 1, "id": entry_id})
    record = (await cache.store.get_many([entry_id])).get(entry_id)
    if record is None:
        raise NotFoundError(f"No entry with id {entry_id}.", param="id")
    return JSONResponse({**export_line(record), "answer": answer_text(record.response),
                         "embedder": record.embedder})


@require_admin
async def purge(request: Request) -> Response:
    body = parse_json(await read_body(request, MAX_PURGE_BODY))
    if not isinstance(body, dict):
        raise BadRequestError("The purge body must be a JSON object of filters.")
    everything = body.pop("all", False)
    if not isinstance(everything, bool):
        raise BadRequestError(f"all: expected true or false, got {everything!r}", param="all")
    selection = parse_filter(body, ("model", "namespace", "tenant", "partition", "older_than"), time.time())
    if selection.empty and not everything:
        raise BadRequestError('Refusing to purge every entry without {"all": true}; give a filter '
                              "(model, namespace, tenant, partition, older_than) or all.")
    if everything and not selection.empty:
        raise BadRequestError('"all": true cannot be combined with filters.', param="all")
    purged = await services_of(request).cache.purge(selection)
    return JSONResponse({"purged": purged})


@require_admin
async def export(request: Request) -> Response:
    """JSONL, one entry a line (export_line), streamed from the store in batches."""
    selection = parse_filter(dict(request.query_params), FILTER_KEYS, time.time())
    store = services_of(request).cache.store
    total = await store.count_entries(selection)

    async def lines() -> AsyncIterator[bytes]:
        async for batch in store.iter_entries(selection):
            yield b"".join(json.dumps(export_line(r), ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
                           for r in batch)

    return StreamingResponse(lines(), media_type="application/x-ndjson",
                             headers={"X-Total-Count": str(total),
                                      "Content-Disposition": 'attachment; filename="deja-export.jsonl"'})


@require_admin
async def import_entries(request: Request) -> Response:
    """JSONL in the body, read as it streams (one line held at a time). Question/answer lines go to the tenant of
    the `X-Import-Api-Key` header (hashed like any key, never stored) or, with ?shared=true, to the shared tenant
    that policies with share_across_keys serve; export lines keep the tenant they name. Answers with the import
    report; bad lines are counted, not fatal."""
    shared = request.query_params.get("shared", "false")
    if shared not in ("true", "false"):
        raise BadRequestError(f"shared: expected true or false, got {shared!r}", param="shared")
    services = services_of(request)
    report = await import_lines(
        services.cache, services.policies, split_lines(request.stream()),
        tenant_key=request.headers.get("x-import-api-key"), shared=shared == "true",
        model=request.query_params.get("model"), namespace=request.query_params.get("namespace"))
    return JSONResponse({"lines": report.lines, "imported": report.imported, "skipped": report.skipped,
                         "failed": report.failed, "errors": report.errors})


def admin_routes() -> list[Route]:
    return [
        Route("/admin/stats", stats, methods=["GET"]),
        Route("/admin/entries", list_entries, methods=["GET"]),
        Route("/admin/entries/{entry_id}", entry, methods=["GET", "DELETE"]),
        Route("/admin/purge", purge, methods=["POST"]),
        Route("/admin/export", export, methods=["GET"]),
        Route("/admin/import", import_entries, methods=["POST"]),
    ]
