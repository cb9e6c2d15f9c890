"""API errors: one exception type, one envelope, one table from our error kinds to HTTP statuses.

Every error leaves the server as the OpenAI envelope ``{"error": {"message", "type", "code", "param"}}``, so
OpenAI clients raise their own precise exceptions (``BadRequestError``, ``RateLimitError`` ...). Stack traces
are logged, never sent.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from cairo_coder import observe
from cairo_coder.errors import CairoCoderError, as_error

logger = logging.getLogger(__name__)

STATUS_TYPE: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "invalid_request_error",
    413: "invalid_request_error",
    421: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    502: "server_error",
    503: "service_unavailable",
}


class ErrorDetail(BaseModel):
    message: str
    type: str
    code: str | None = None
    param: str | None = None


class ErrorResponse(BaseModel):
    """The OpenAI error envelope."""

    error: ErrorDetail


class APIError(CairoCoderError):
    """An HTTP-level error answer: status, message for people, stable code for programs, the offending parameter.

    The pipeline's and the store's errors are not APIErrors: :func:`from_exception` turns any exception into
    one, through the single mapping of the error tree (cairo_coder/errors.py).
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.kind = code or STATUS_TYPE.get(status, "invalid_request_error")
        self.param = param
        self.headers = headers or {}

    @property
    def type(self) -> str:
        return STATUS_TYPE.get(self.status, "server_error" if self.status >= 500 else "invalid_request_error")

    def payload(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "code": self.code, "param": self.param}}


def from_error(error: CairoCoderError) -> APIError:
    """The API error of one of ours. 429 and 503 carry Retry-After: the cause's own when it had one, else 5 s."""
    if isinstance(error, APIError):
        return error
    headers = None
    if error.status in (429, 503):
        retry_after = error.retry_after
        headers = {"retry-after": str(max(1, math.ceil(retry_after))) if retry_after else "5"}
    return APIError(error.status, str(error), code=error.kind, headers=headers)


def from_exception(exc: BaseException) -> APIError:
    """Any exception as an API error (the one mapping: errors.as_error; a bug is logged with its traceback)."""
    return from_error(as_error(exc))


def error_response(error: APIError) -> JSONResponse:
    observe.note_error(error.kind)
    return JSONResponse(error.payload(), status_code=error.status, headers=error.headers)


# OpenAPI: the error answers each route documents (schemathesis checks responses against them).
def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorResponse, "description": STATUS_TYPE.get(status, "error")} for status in statuses}


def _validation_error(exc: RequestValidationError) -> APIError:
    errors = exc.errors()
    first = errors[0] if errors else {}
    loc = [str(part) for part in first.get("loc", ()) if part != "body"]
    param = ".".join(loc) or None
    message = str(first.get("msg", "invalid request"))
    if first.get("type") == "json_invalid":
        return APIError(400, "the request body is not valid JSON", code="invalid_json")
    status = 422 if loc and loc[0] == "messages" else 400
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    where = f"{param}: " if param else ""
    return APIError(
        status, f"{where}{message}{more}", code="invalid_messages" if status == 422 else "invalid_value", param=param
    )


HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 408: "request_timeout", 413: "body_too_large"}


def http_error(exc: StarletteHTTPException) -> APIError:
    """The API error of an HTTP exception raised by Starlette/FastAPI or by our body limits."""
    status = exc.status_code
    message = str(exc.detail) if exc.detail else "error"
    if status == 404:
        message = "no such endpoint; see /docs for the API"
    elif status == 405:
        message = "method not allowed on this endpoint; see /docs for the API"
    return APIError(status, message, code=HTTP_CODES.get(status), headers=dict(exc.headers or {}))


def install_error_handlers(app: FastAPI) -> None:
    async def api_error(_: Request, exc: Exception) -> JSONResponse:
        return error_response(from_exception(exc))

    async def validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return error_response(_validation_error(exc))

    async def http_exception(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return error_response(http_error(exc))

    # Every other exception: the ErrorBoundary middleware (middleware.py), which maps it with from_exception.
    app.add_exception_handler(APIError, api_error)
    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(StarletteHTTPException, http_exception)
