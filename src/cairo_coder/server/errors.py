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

logger = logging.getLogger(__name__)

# kind (our exceptions' stable ``kind``, see llm.py, store/errors.py, embeddings.py) -> HTTP status
KIND_STATUS: dict[str, int] = {
    "invalid_request": 400,
    "llm_bad_request": 400,
    "unknown_agent": 404,
    "llm_rate_limited": 429,
    "llm_not_configured": 503,
    "llm_unavailable": 503,
    "llm_auth": 503,
    "database_unavailable": 503,
    "database_auth": 503,
    "database_error": 503,
    "embedding_unavailable": 503,
    "embedding_not_configured": 503,
    "embedder_mismatch": 503,
    "llm_error": 503,
    "invalid_configuration": 503,  # a template or optimized program of the deployment is broken
    "source_unavailable": 503,
    "invalid_dataset": 400,
    "llm_bad_output": 502,  # the provider answered, but with nothing usable
    "llm_incomplete": 502,  # the provider's stream broke off mid-answer
    "internal_error": 500,
}

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


class APIError(Exception):
    """An error answer: status, message for people, stable code for programs, the offending parameter."""

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
        self.param = param
        self.headers = headers or {}

    @property
    def type(self) -> str:
        return STATUS_TYPE.get(self.status, "server_error" if self.status >= 500 else "invalid_request_error")

    def payload(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "code": self.code, "param": self.param}}


def from_kind(kind: str, message: str, retry_after: float | None = None) -> APIError:
    """The API error for one of our exception kinds (the ``type`` of a pipeline ``error`` event). 429 and 503
    carry Retry-After: the provider's own when it sent one, else 5 s."""
    status = KIND_STATUS.get(kind, 500)
    headers = None
    if status in (429, 503):
        headers = {"retry-after": str(max(1, math.ceil(retry_after))) if retry_after else "5"}
    return APIError(status, message, code=kind, headers=headers)


def from_payload(payload: dict[str, Any]) -> APIError:
    """The API error of a pipeline ``error`` event's data."""
    retry_after = payload.get("retry_after")
    return from_kind(
        str(payload.get("type")),
        str(payload.get("message")),
        float(retry_after) if isinstance(retry_after, int | float) else None,
    )


def from_exception(exc: BaseException) -> APIError:
    """Map any exception once: ours carry a ``kind``; anything else is a bug, logged with its traceback."""
    if isinstance(exc, APIError):
        return exc
    from cairo_coder.pipeline import error_payload  # the pipeline's own mapping (LLM errors translated)

    return from_payload(error_payload(exc))


def error_response(error: APIError) -> JSONResponse:
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
