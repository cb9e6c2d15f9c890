"""The chat page: ``/`` for browsers (``Accept: text/html``; other clients keep the JSON liveness answer) and its
assets under ``/ui/``, shipped inside the Python package (no Node at run time). Nothing is fetched from
elsewhere: the Content-Security-Policy allows the server's own origin only."""

from __future__ import annotations

import functools
import hashlib
from importlib import resources

from fastapi import APIRouter, Request
from fastapi.responses import Response

from cairo_coder.server.errors import APIError

router = APIRouter(include_in_schema=False)

ASSETS = {
    "app.js": "text/javascript; charset=utf-8",
    "markdown.js": "text/javascript; charset=utf-8",
    "highlight.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}


@functools.cache
def _read(name: str) -> tuple[bytes, str]:
    """A packaged page file and its ETag, read once per process (the package does not change under us)."""
    body = resources.files("cairo_coder.web").joinpath(name).read_bytes()
    return body, f'"{hashlib.sha256(body).hexdigest()[:16]}"'


def wants_page(request: Request) -> bool:
    """A browser navigating to the page (it lists text/html); API clients (JSON, */*, nothing) get JSON."""
    return "text/html" in request.headers.get("accept", "")


def page_response() -> Response:
    return Response(_read("index.html")[0], media_type="text/html; charset=utf-8", headers=SECURITY_HEADERS)


@router.get("/ui/{name}")
async def asset(name: str, request: Request) -> Response:
    media_type = ASSETS.get(name)
    if media_type is None:
        raise APIError(404, f"no page asset {name!r}", code="not_found")
    body, etag = _read(name)
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers={**SECURITY_HEADERS, "etag": etag})
    return Response(body, media_type=media_type, headers={**SECURITY_HEADERS, "etag": etag})
