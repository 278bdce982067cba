"""CORS for the app's routes: which other origins' pages may call them from a browser.

Configured in `[cors]`; Starlette's CORSMiddleware answers preflights and
adds the headers. It sits inside the request log and outside the routes, and
errors are answered inside it (HTTP errors, and any other exception as a
logged 500), so every JSON error carries the headers too and a page can read
why its call failed and the request id to quote. shoestring's own
`/_` routes are left out: the S3 API applies each bucket's CORS rules itself.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from shoestring.config import CorsSettings
from shoestring.errors import HTTPError
from shoestring.http.errors import http_error_response, internal_error
from shoestring.http.routing import RESERVED_PREFIX


class PathCORS:
    """CORSMiddleware around `app` for requests under the configured path prefixes."""

    def __init__(self, app: ASGIApp, settings: CorsSettings) -> None:
        self.app = app
        # Every error answered in here, a 500 too, so a page can read the request id.
        errors = {HTTPError: _answer, HTTPException: _answer, Exception: _internal}
        self.cors = CORSMiddleware(
            ExceptionMiddleware(app, handlers=errors),
            allow_origins=settings.origins,
            allow_methods=settings.methods,
            allow_headers=settings.headers,
            allow_credentials=settings.credentials,
            max_age=settings.max_age,
        )
        self.prefixes = tuple(path.rstrip("/") + "/" for path in settings.paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.applies(scope["path"]):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    def applies(self, path: str) -> bool:
        if path.startswith(RESERVED_PREFIX):
            return False
        return (path + "/").startswith(self.prefixes)


async def _internal(request: Request, exc: Exception) -> Response:
    return internal_error(exc, request.scope)


async def _answer(request: Request, exc: Exception) -> Response:
    response = http_error_response(exc, request.scope)
    assert response is not None  # registered for HTTP errors only
    return response
