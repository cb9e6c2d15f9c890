"""What routes depend on, in one place: the request's services, the admin check, and credential parsing.

Routes declare ``services: Svc`` (503 ``not_ready`` while the server starts or stops) or ``AdminSvc`` (the admin
key checked too). The middleware (API keys) and the user hash of query insights read credentials with
:func:`bearer_token`, so that every place accepts the same ``Authorization: Bearer`` forms.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Annotated

from fastapi import Depends, Request
from starlette.requests import HTTPConnection

from cairo_coder.server.errors import APIError
from cairo_coder.server.state import Services
from cairo_coder.store.insights import hash_user


def bearer_token(value: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value (any case), or None."""
    if value and value[:7].lower() == "bearer ":
        return value[7:].strip() or None
    return None


def user_hash(services: Services, headers: Mapping[str, str]) -> str | None:
    """The salted hash query insights record for the request's user: ``x-user-id``, else its API key."""
    user = headers.get("x-user-id") or headers.get("x-api-key") or bearer_token(headers.get("authorization"))
    return hash_user(services.salt, user)


def get_services(connection: HTTPConnection) -> Services:
    services: Services | None = getattr(connection.app.state, "services", None)
    if services is None:
        raise APIError(503, "the server is starting or stopping; retry shortly", code="not_ready")
    return services


def services_dependency(request: Request) -> Services:
    return get_services(request)


Svc = Annotated[Services, Depends(services_dependency)]


def require_admin(request: Request, services: Svc) -> Services:
    admin_key = services.settings.server.admin_key
    if not admin_key:
        raise APIError(
            403,
            "query insights are disabled: set server.admin_key (CAIRO_CODER_SERVER__ADMIN_KEY)",
            code="admin_disabled",
        )
    presented = request.headers.get("x-admin-key") or bearer_token(request.headers.get("authorization")) or ""
    if not hmac.compare_digest(presented.encode(), admin_key.encode()):
        raise APIError(
            401, "the admin key is missing or wrong: send x-admin-key: <server.admin_key>", code="invalid_admin_key"
        )
    return services


AdminSvc = Annotated[Services, Depends(require_admin)]
