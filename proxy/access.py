"""Server key safety: who may spend the upstream key configured in DEJA_UPSTREAM_API_KEY.

Without that key nothing changes: every client's own credential is forwarded. With it, on every forwarded route:
  - a key listed in `client_keys` (sha256 hex digests) is accepted in place of it: the request is forwarded with
    the upstream key, and its cache partition is still its own (the tenant comes from the client key);
  - any other client key is forwarded as the client's own credential, as before;
  - a request with no key at all is refused (401) unless Deja listens on loopback only: otherwise anyone who
    reaches the port would spend the operator's key.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import UnauthorizedError, openai_error_body
from .settings import Settings
from .status import Status

log = logging.getLogger("deja.access")

CREDENTIAL_HEADERS = (b"authorization", b"api-key", b"x-api-key")
# Set by KeyGate only (any incoming copy is dropped): tells UpstreamClient to send the upstream key instead.
USE_UPSTREAM_KEY = b"x-deja-use-upstream-key"
FORWARDED_PREFIXES = ("/v1/", "/openai/")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def key_digest(credential: str) -> str:
    """sha256 hex of the key itself, with or without its `Bearer ` scheme."""
    scheme, _, rest = credential.partition(" ")
    key = rest.strip() if scheme.lower() == "bearer" and rest else credential.strip()
    return hashlib.sha256(key.encode()).hexdigest()


class KeyGate:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.guarding = settings.upstream_api_key is not None
        self.open_to_keyless = is_loopback(settings.host)
        self.accepted = frozenset(d.removeprefix("sha256:") for d in settings.client_keys)
        if self.guarding and not self.open_to_keyless:
            log.info("listening beyond loopback with an upstream key: requests without a key are refused%s",
                     f"; {len(self.accepted)} client keys accepted" if self.accepted else "")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope["headers"]
        if any(k == USE_UPSTREAM_KEY for k, _ in headers):
            headers = [(k, v) for k, v in headers if k != USE_UPSTREAM_KEY]
        if self.guarding and scope["path"].startswith(FORWARDED_PREFIXES):
            credential = next((v for k, v in headers if k in CREDENTIAL_HEADERS and v.strip()), None)
            if credential is None and not self.open_to_keyless:
                await self.refuse(scope, receive, send)
                return
            if credential is not None and key_digest(credential.decode("latin-1")) in self.accepted:
                headers = [*headers, (USE_UPSTREAM_KEY, b"1")]
        # The scope is copied only when its headers change (most requests: never).
        await self.app(scope if headers is scope["headers"] else {**scope, "headers": headers}, receive, send)

    @staticmethod
    async def refuse(scope: Scope, receive: Receive, send: Send) -> None:
        error = UnauthorizedError("This proxy does not forward requests without an API key. Send your own key "
                                  "(Authorization: Bearer …) or a client key the operator accepts (client_keys).",
                                  code="missing_api_key")
        response = JSONResponse(openai_error_body(error.message, error.error_type, error.code), status_code=401,
                                headers={"X-Cache-Status": Status.ERROR.value})
        await response(scope, receive, send)


def token_matches(expected: str | None, authorization: str | None) -> bool:
    """`Authorization: Bearer <expected>`, compared in constant time (the admin token: /admin, /modelcache)."""
    if not expected or not authorization:
        return False
    scheme, _, presented = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(presented.strip().encode(), expected.encode())
