"""HTTP handlers of the proxy's own routes: each hands its request to a flow (flow.py, embeddings_api.py) or
forwards it (forward.py). The Azure OpenAI routes are in azure.py, the admin API in admin.py."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .completions_api import COMPLETIONS
from .embeddings_api import embed_call
from .endpoints import CHAT, Target
from .flow import cached_call
from .forward import relay
from .incoming import services_of
from .outgoing import passthrough_call
from .responses_api import RESPONSES


async def chat_completions(request: Request) -> Response:
    return await cached_call(request, CHAT, Target(CHAT.path))


async def responses(request: Request) -> Response:
    return await cached_call(request, RESPONSES, Target(RESPONSES.path))


async def completions(request: Request) -> Response:
    return await cached_call(request, COMPLETIONS, Target(COMPLETIONS.path))


async def embeddings(request: Request) -> Response:
    return await embed_call(request, Target("/embeddings"))


async def passthrough(request: Request) -> Response:
    """Any other /v1/* call: forwarded unchanged, both bodies streamed."""
    return await relay(services_of(request), passthrough_call(request))


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
