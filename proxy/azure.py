"""Azure OpenAI routes, cached like their OpenAI twins:

  /openai/deployments/{deployment}/chat/completions | completions | embeddings | responses   (the deployment is
  the model); /openai/responses (AzureOpenAI's responses.create) and the v1 API's /openai/v1/chat/completions |
  completions | embeddings | responses (the model is in the body).

Misses go to the Azure resource (`azure_upstream`, else the upstream's scheme and host) under the same path and
query, `api-version` included, with the client's `api-key` (or the configured upstream key sent as `api-key`).
The deployment and API version are part of the key. Any other /openai/… path gets an OpenAI-shaped 404.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .completions_api import COMPLETIONS
from .embeddings_api import embed_call
from .endpoints import CHAT, Endpoint, Target
from .errors import BadRequestError, NotFoundError
from .flow import cached_call
from .incoming import services_of
from .responses_api import RESPONSES
from .route_counts import Handler, counted
from .settings import Settings

ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
# The first Azure OpenAI API version that accepts stream_options (include_usage).
STREAM_OPTIONS_SINCE = "2024-09-01"
DEPLOYMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
ENDPOINTS: dict[str, Endpoint] = {"chat/completions": CHAT, "completions": COMPLETIONS, "responses": RESPONSES}


def azure_base(settings: Settings) -> str:
    if settings.azure_upstream:
        return settings.azure_upstream.rstrip("/")
    parts = urlsplit(settings.upstream)
    return f"{parts.scheme}://{parts.netloc}"


def target_for(request: Request, path: str, deployment: str | None) -> Target:
    services = services_of(request)
    key = services.settings.upstream_api_key
    headers = None
    if key and "api-key" not in request.headers and "authorization" not in request.headers:
        headers = {**request.headers, "api-key": key}
    version = request.query_params.get("api-version", "")
    scope = {"azure": deployment or path, "api_version": version}
    return Target(path, base=azure_base(services.settings), model=deployment, scope=scope, headers=headers,
                  asks_usage=version >= STREAM_OPTIONS_SINCE or version in ("latest", "preview"))


def deployment_handler(operation: str) -> Handler:
    async def call(request: Request) -> Response:
        deployment = request.path_params["deployment"]
        if not DEPLOYMENT.fullmatch(deployment) or deployment.strip(".") == "":
            raise BadRequestError(f"Invalid deployment name {deployment!r}.", param="deployment")
        return await run(request, operation,
                         target_for(request, f"/openai/deployments/{deployment}/{operation}", deployment))

    return call


def path_handler(operation: str) -> Handler:
    """/openai/responses and the v1 API (/openai/v1/…): the model is in the body."""
    async def call(request: Request) -> Response:
        return await run(request, operation, target_for(request, request.url.path, None))

    return call


async def run(request: Request, operation: str, target: Target) -> Response:
    if operation == "embeddings":
        return await embed_call(request, target)
    return await cached_call(request, ENDPOINTS[operation], target)


async def unknown_route(request: Request) -> Response:
    raise NotFoundError(f"Deja does not serve {request.method} {request.url.path}; its Azure OpenAI routes are "
                        "/openai/deployments/{deployment}/chat/completions, /completions, /embeddings, /responses, "
                        "/openai/responses and /openai/v1/chat/completions, /completions, /embeddings, /responses.",
                        code="unknown_url")


def azure_routes() -> list[Route]:
    routes = [Route(f"/openai/deployments/{{deployment}}/{operation}",
                    counted(f"azure/{operation}", deployment_handler(operation)), methods=["POST"])
              for operation in (*ENDPOINTS, "embeddings")]
    routes += [Route(f"/openai/v1/{operation}", counted(f"azure/v1/{operation}", path_handler(operation)),
                     methods=["POST"]) for operation in (*ENDPOINTS, "embeddings")]
    return [*routes, Route("/openai/responses", counted("azure/responses", path_handler("responses")),
                           methods=["POST"]),
            Route("/openai/{path:path}", counted("azure/other", unknown_route), methods=ALL_METHODS)]
