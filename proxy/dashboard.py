"""The dashboard at /dashboard: one static page (plain HTML/JS, uPlot vendored) over the admin API.

The page itself carries no data: everything it shows comes from /admin/* with the admin token, which the page
asks for once (or takes from a `#token=…` fragment, which browsers never send to the server) and keeps in the
tab's sessionStorage. Like the admin API, it exists only when DEJA_ADMIN_TOKEN is set.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from .errors import NotFoundError
from .incoming import services_of

STATIC_DIR = Path(__file__).parent / "static"
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                               "frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


async def dashboard(request: Request) -> Response:
    if services_of(request).admin_token is None:
        raise NotFoundError("The dashboard is disabled: set DEJA_ADMIN_TOKEN to enable it.")
    return FileResponse(STATIC_DIR / "dashboard.html", media_type="text/html", headers=PAGE_HEADERS)


def dashboard_routes() -> list[BaseRoute]:
    return [
        Route("/dashboard", dashboard, methods=["GET"]),
        Mount("/dashboard/static", StaticFiles(directory=STATIC_DIR), name="dashboard-static"),
    ]
