"""create_app: routes, the error handlers, and a lifespan that owns the shared services."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .access import KeyGate
from .admin import admin_routes
from .azure import azure_routes
from .completions_api import COMPLETIONS
from .dashboard import dashboard_routes
from .embeddings import Embedder
from .endpoints import CHAT
from .errors import DejaError, openai_error_body
from .header_limit import HeaderLimit
from .modelcache import modelcache
from .policies import PolicySet
from .responses_api import RESPONSES
from .route_counts import counted, passthrough_route
from .routes import chat_completions, completions, embeddings, healthz, metrics, passthrough, responses
from .services import Services
from .settings import Settings
from .shortcut import HitShortcut
from .status import Status

log = logging.getLogger("deja")
# Deja's own error responses say so, apart from the upstream's (docs: X-Cache-Status).
OWN_ERROR = {"X-Cache-Status": Status.ERROR.value}
CACHED = ((CHAT, chat_completions), (RESPONSES, responses), (COMPLETIONS, completions))
ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


async def deja_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DejaError)
    return JSONResponse(openai_error_body(exc.message, exc.error_type, exc.code, exc.param),
                        status_code=exc.status_code, headers=OWN_ERROR)


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's own 404 (no route) and 405 (wrong method), in the OpenAI shape."""
    assert isinstance(exc, HTTPException)
    kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
    return JSONResponse(openai_error_body(f"{request.method} {request.url.path}: {exc.detail}", kind,
                                          str(exc.status_code)), status_code=exc.status_code,
                        headers={**(exc.headers or {}), **OWN_ERROR})


async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(openai_error_body("Deja hit an internal error; see its log.", "server_error",
                                          "internal_error"), status_code=500, headers=OWN_ERROR)


def worker_app() -> Starlette:
    """The app of one `deja serve --workers N` process, from the settings its supervisor passed on."""
    from .policies import load_policies
    from .settings import WORKER_SETTINGS_ENV, build_dataclass

    settings: Settings = build_dataclass(Settings, json.loads(os.environ[WORKER_SETTINGS_ENV]), "worker settings")
    return create_app(settings, policies=load_policies(settings.policies_dir))


def create_app(settings: Settings, *, policies: PolicySet | None = None, embedder: Embedder | None = None,
               transport: httpx.AsyncBaseTransport | None = None) -> Starlette:
    """`policies`, `embedder` and `transport` replace the configured ones (tests use a fake upstream transport)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        services = await Services.open(settings, policies=policies, embedder=embedder, transport=transport)
        app.state.services = services
        try:
            yield
        finally:
            await services.close()

    cached = [(endpoint, counted(endpoint.name, handler)) for endpoint, handler in CACHED]
    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        # Chat, and the other cached endpoints and the Azure OpenAI routes (issue 14).
        *(Route(f"/v1{endpoint.path}", route, methods=["POST"]) for endpoint, route in cached),
        Route("/v1/embeddings", counted("embeddings", embeddings), methods=["POST"]),
        *azure_routes(),
        Route("/v1/{path:path}", counted(passthrough_route, passthrough), methods=ALL_METHODS),
        # Operating it (issue 5): Prometheus, the admin API, ModelCache's API, the dashboard.
        Route("/metrics", metrics, methods=["GET"]),
        Route("/modelcache", modelcache, methods=["POST"]),
        *admin_routes(),
        *dashboard_routes(),
    ]
    middleware = [Middleware(HeaderLimit, limit=settings.max_header_bytes), Middleware(KeyGate, settings=settings),
                  Middleware(HitShortcut, routes=cached)]
    return Starlette(routes=routes, lifespan=lifespan, middleware=middleware,
                     exception_handlers={DejaError: deja_error, HTTPException: http_error,
                                         Exception: unexpected_error})
