"""The errors Deja raises itself, each mapped to an OpenAI-shaped body and an HTTP status.

    DejaError
    ├── BadRequestError          400  invalid_request_error   (bad JSON, bad fields)
    ├── UnauthorizedError        401  authentication_error    (admin API: missing or wrong token)
    ├── NotFoundError            404  not_found_error         (admin API: unknown entry, admin disabled)
    ├── PayloadTooLargeError     413  invalid_request_error
    ├── UpstreamUnreachableError 502  upstream_error
    └── UpstreamTimeoutError     504  upstream_error

    ConfigError                  start-up only: names the file, the key and what was expected

Upstream HTTP errors are not in this tree: they pass through to the client unchanged.
"""

from __future__ import annotations

from typing import Any


class DejaError(Exception):
    status_code = 500
    error_type = "server_error"
    code = "internal_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code


class BadRequestError(DejaError):
    status_code = 400
    error_type = "invalid_request_error"
    code = "invalid_request"


class UnauthorizedError(DejaError):
    status_code = 401
    error_type = "authentication_error"
    code = "invalid_admin_token"


class NotFoundError(DejaError):
    status_code = 404
    error_type = "not_found_error"
    code = "not_found"


class PayloadTooLargeError(DejaError):
    status_code = 413
    error_type = "invalid_request_error"
    code = "payload_too_large"


class UpstreamUnreachableError(DejaError):
    status_code = 502
    error_type = "upstream_error"
    code = "upstream_unreachable"


class UpstreamTimeoutError(DejaError):
    status_code = 504
    error_type = "upstream_error"
    code = "upstream_timeout"


class ConfigError(Exception):
    """A bad setting or policy: start-up stops with this message."""


def openai_error_body(message: str, error_type: str, code: str | None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}
