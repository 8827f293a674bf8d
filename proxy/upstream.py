"""UpstreamClient: one shared httpx.AsyncClient; transport failures become 502/504 in OpenAI error shape."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from http.cookiejar import CookieJar, DefaultCookiePolicy
from urllib.parse import quote

import httpx

from .errors import BadRequestError, DejaError, UpstreamTimeoutError, UpstreamUnreachableError
from .memo import Memo
from .settings import Settings

# Hop-by-hop headers (RFC 9110 7.6.1) and those httpx sets itself never cross the proxy.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                        "transfer-encoding", "upgrade", "host", "content-length"})
# Headers that only Deja reads.
OWN_HEADERS = frozenset({"x-cache-namespace", "x-cache-debug", "x-cache-threshold", "x-deja-use-upstream-key"})
CREDENTIALS = frozenset({"authorization", "api-key", "x-api-key"})
# RFC 3986 pchar besides unreserved: what a path segment may hold unescaped.
SEGMENT_SAFE = "!$&'()*+,;=:@"
# Upstream URLs kept parsed: httpx parses a URL string in pure Python, half the cost of building a request. Bounded:
# pass-through paths and queries are the clients'.
PARSED_URLS = 1024


def upstream_path(path: str) -> str:
    """A client's (percent-decoded) path below the upstream base, re-encoded segment by segment. Dot segments are
    refused: `/v1/../x` and its encoded forms must never reach the upstream outside its base."""
    segments = path.split("/")
    if any(segment in (".", "..") for segment in segments):
        raise BadRequestError("The request path may not contain '.' or '..' segments.", code="invalid_path")
    return "/".join(quote(segment, safe=SEGMENT_SAFE) for segment in segments)


def translate_error(exc: httpx.TransportError) -> DejaError:
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamTimeoutError(f"The upstream did not answer in time ({type(exc).__name__}).")
    return UpstreamUnreachableError(f"The upstream could not be reached: {type(exc).__name__}: {exc}")


def no_cookies() -> CookieJar:
    """A jar that refuses every cookie (an empty allow-list of domains): clients' own Cookie headers still pass."""
    return CookieJar(DefaultCookiePolicy(allowed_domains=[]))


class UpstreamClient:
    def __init__(self, settings: Settings, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.base = settings.upstream.rstrip("/")
        self.api_key = settings.upstream_api_key
        timeout = httpx.Timeout(connect=settings.upstream_connect_timeout, read=settings.upstream_read_timeout,
                                write=settings.upstream_read_timeout, pool=settings.upstream_connect_timeout)
        # trust_env stays on: the user's HTTPS_PROXY applies to the upstream. The client is shared by every tenant,
        # so it keeps no cookies: one tenant's Set-Cookie must never ride on another tenant's requests.
        self.client = httpx.AsyncClient(timeout=timeout, transport=transport, cookies=no_cookies(),
                                        limits=httpx.Limits(max_connections=200, max_keepalive_connections=50))
        # httpx parses URL strings in pure Python: each upstream URL is parsed once.
        self.url: Memo[str, httpx.URL] = Memo(httpx.URL, PARSED_URLS)

    async def close(self) -> None:
        await self.client.aclose()

    def headers_for(self, incoming: Mapping[str, str], *, decoded: bool) -> dict[str, str]:
        """The client's headers as the upstream should see them. `decoded`: we read the body ourselves, so let
        httpx negotiate (and undo) the content encoding."""
        # httpx refuses non-ASCII header values (UnicodeEncodeError); no API header needs one.
        out = {k: v for k, v in incoming.items()
               if k.lower() not in HOP_BY_HOP and k.lower() not in OWN_HEADERS and v.isascii()}
        if self.api_key and "x-deja-use-upstream-key" in incoming:  # a client key from client_keys (access.py)
            out = {k: v for k, v in out.items() if k.lower() not in CREDENTIALS}
        if decoded:
            out = {k: v for k, v in out.items() if k.lower() != "accept-encoding"}
        if self.api_key and not any(k.lower() in ("authorization", "api-key") for k in out):
            out["Authorization"] = f"Bearer {self.api_key}"
        return out


    async def send(self, method: str, path: str, query: str, headers: Mapping[str, str],
                   body: bytes | AsyncIterator[bytes], *, decoded: bool, base: str | None = None) -> httpx.Response:
        """Send and return once the response headers are in; the caller reads (or streams) and closes it.
        `base` replaces the configured upstream (Azure deployments)."""
        url = self.url(f"{base or self.base}{path}" + (f"?{query}" if query else ""))
        out = self.headers_for(headers, decoded=decoded)
        if not isinstance(body, bytes) and "content-length" in headers:
            out["Content-Length"] = headers["content-length"]  # a streamed upload keeps its declared length
        request = self.client.build_request(method, url, headers=out, content=body)
        try:
            return await self.client.send(request, stream=True)
        except httpx.TransportError as exc:
            raise translate_error(exc) from exc


async def read_all(upstream: httpx.Response) -> bytes:
    """The whole body of a response opened with `send`, which is closed afterwards."""
    try:
        return await upstream.aread()
    except httpx.TransportError as exc:
        raise translate_error(exc) from exc
    finally:
        await upstream.aclose()


def response_headers(upstream: httpx.Response, *, decoded: bool) -> dict[str, str]:
    """Upstream headers to pass to the client; a decoded body no longer has its content encoding."""
    drop = HOP_BY_HOP | ({"content-encoding"} if decoded else frozenset())
    return {k: v for k, v in upstream.headers.items() if k.lower() not in drop}
